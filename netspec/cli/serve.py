"""`netspec serve`: the page where a person draws and watches every layer (netspec.serve).

uvicorn, Starlette and the probe are imported inside the command; on an ONNX file nothing
it loads imports torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from netspec.cli.console import echo, say
from netspec.cli.options import command, threads_option
from netspec.threads import choose_threads


@command("serve")
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="the address to listen on (another than 127.0.0.1 opens the page to the network)",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="the port (0: any free one, printed)",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="test images to browse (IDX directory, image folders, .npz), or for a detector the "
    "MNIST IDX files its generated scenes draw digits from; a run's own by default",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(0.1, 3600),
    default=20.0,
    show_default=True,
    help="seconds a request may take to arrive, headers and body; a slower one is dropped",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 100_000),
    default=256,
    show_default=True,
    help="connections open at once; past it a new one is closed at once",
)
@threads_option
def serve_cmd(
    target: Path,
    host: str,
    port: int,
    data: Path | None,
    request_timeout: float,
    max_connections: int,
    threads: int | None,
) -> None:
    """Serve a page for TARGET (a run directory, a spec or an ONNX file): draw a digit,
    see every layer's feature maps, the receptive field of any unit, the spec line that
    made its layer, and (for a run) the misclassified test digits. Ctrl-C stops it.
    Only requests addressed to 127.0.0.1, localhost, [::1] or --host are answered.
    The layers run on the threads chosen at start (--threads, else the free cores)."""
    from netspec.serve.guard import Guard, allowed_hosts
    from netspec.serve.server import listen, open_served, serve, url

    chosen = choose_threads(threads, quick=True)
    say(chosen.describe())
    served = open_served(target, data, say, chosen.threads)
    sock = listen(host, port)
    echo(f"serving {target} at {url(sock)} (Ctrl-C stops)")
    serve(served, sock, say, Guard(allowed_hosts(host), request_timeout, max_connections))
