"""Start the page's server: open the target, bind the socket, print the URL, serve until
Ctrl-C. The socket is bound (and listening) before the URL is printed, so `--port 0`
prints the port the system chose and a client may connect the moment it reads it."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn

from netspec.data.registry import DATASETS
from netspec.data.registry import dataset as record
from netspec.errors import DataError, NetspecError, UsageError
from netspec.probe import Probe, open_probe
from netspec.serve.app import Served, make_app
from netspec.serve.detector import Detecting, open_detecting
from netspec.serve.digits import Digits, read_digits
from netspec.serve.guard import KEEP_ALIVE_S, Guard, HostCheck, QuietLoopErrors, guarded_protocol
from netspec.serve.images import input_size
from netspec.serve.scenes import scene_maker

Log = Callable[[str], None]
GRACE_S = 2  # seconds open requests get to finish after Ctrl-C


def open_served(target: Path, data: Path | None, log: Log, threads: int | None = None) -> Served:
    """The probe of ``target`` (a run directory, a spec or an ONNX file), its layers run
    on ``threads`` CPU threads (None: the engine's default), and its test digits: ``data``,
    else a run's own test set, else none (said in ``log``)."""
    probe = open_probe(target, threads=threads)
    try:
        input_size(probe.input_shape)
    except ValueError:
        shape = "x".join(map(str, probe.input_shape))
        raise UsageError(
            f"{target}: the network's input is {shape}; netspec serve draws images "
            "(1 or 3 channels x height x width)"
        ) from None
    detecting = open_detecting(probe, target, threads, log)
    if detecting is not None:
        return _detector(probe, target, data, detecting, log)
    dataset, stored = _dataset(probe, target, data)
    known = record(dataset)
    word = known.sample if known is not None else "image"
    digits = _digits(probe, target, data, (dataset, stored), f"test {word}s", log)
    return Served(probe, target.name or str(target), digits, word)


def _detector(
    probe: Probe, target: Path, data: Path | None, detecting: Detecting, log: Log
) -> Served:
    """A detector's page: no gallery of misclassified digits, but scenes drawn for it
    from MNIST's test digits (``data``: MNIST's IDX files, else netspec's cache)."""
    train = probe.compiled.train
    known = record(train.dataset if train is not None else None)
    size = input_size(probe.input_shape)
    settings = train.scenes if train is not None else None
    scenes = scene_maker(settings, size, detecting.labels, data, log)
    word = known.sample if known is not None else "image"
    return Served(probe, target.name or str(target), None, word, detecting, scenes)


def _digits(
    probe: Probe,
    target: Path,
    data: Path | None,
    found: tuple[str | None, Path | None],
    what: str,
    log: Log,
) -> Digits | None:
    """The test images to browse (``found``: the dataset and the data path to read), said
    in ``log`` as ``what`` ("test digits", "test garments")."""
    if data is None and target.suffix == ".onnx":
        log(f"no {what} for an ONNX file: pass --data DIR to browse a test set")
        return None
    try:
        digits = read_digits(*found, input_size(probe.input_shape)[2])
    except DataError as e:
        if data is not None:
            raise
        log(f"no {what} ({e.message}); pass --data to browse a test set")
        return None
    if digits is not None:
        log(f"{what}: {len(digits):,} from {digits.source}")
    return digits


def _dataset(probe: Probe, target: Path, data: Path | None) -> tuple[str | None, Path | None]:
    """The dataset a run or a spec trains on, and the data path to read (``data``, or
    the one a run stored where netspec follows it)."""
    if target.is_dir():
        from netspec.train.opening import read_run, stored_data

        kept = read_run(target)
        return kept.config().dataset, stored_data(kept, data)
    if data is not None:
        return None, data
    train = probe.compiled.train
    dataset = train.dataset if train is not None else None
    return (dataset if dataset in DATASETS else None), None


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise UsageError(f"--host {host}: cannot resolve it ({e.strerror or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(served: Served, sock: socket.socket, log: Log, guard: Guard) -> None:
    """Serve until Ctrl-C (or SIGTERM), within ``guard``'s bounds (netspec.serve.guard).
    Ctrl-C ends it with a message, not a traceback, even while a client holds a request
    half-sent: open requests get `GRACE_S` seconds, then the server stops."""
    config = uvicorn.Config(
        HostCheck(make_app(served), guard.hosts),
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=guarded_protocol(guard),
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACE_S,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        quiet = QuietLoopErrors(logging.getLogger("uvicorn.error"))
        asyncio.get_running_loop().set_exception_handler(quiet)
        await server.serve(sockets=[sock])

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        sock.close()
    log("stopped")


__all__ = ["Guard", "NetspecError", "listen", "open_served", "serve", "url"]
