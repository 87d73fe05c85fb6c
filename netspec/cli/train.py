"""`netspec train`, `netspec eval` and `netspec augment`: the click layer over netspec.train.

torch and the training modules are imported inside the commands, so listing the commands
costs nothing. This module is also what `torchrun` starts for `netspec train --nproc N`
and for training on several machines: `torchrun ... -m netspec.cli.train SPEC ...`.
"""

from __future__ import annotations

from pathlib import Path

import click

from netspec.cli.console import echo, out_console, parse_set
from netspec.cli.options import (
    MAX_EPOCHS,
    MAX_TRAIN_BATCH,
    FiniteFloat,
    command,
    limit_options,
    network_option,
    seed_option,
    sets_option,
    threads_option,
)
from netspec.errors import UsageError
from netspec.threads import choose_threads

__all__ = ["augment_cmd", "eval_cmd", "train_cmd"]

INTERRUPTED = "interrupted; a run resumes from its last checkpoint with --resume RUN"

_path = click.Path(path_type=Path)
_device = click.Choice(["auto", "cpu", "cuda"])


@command("train", interrupted=INTERRUPTED)
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path), required=False)
@network_option
@click.option(
    "--data",
    type=_path,
    help="a folder of MNIST IDX files, train/ and test/ image "
    "folders, or an .npz with x and y (default: the spec's dataset)",
)
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), help="override the spec's epochs")
@click.option(
    "--batch", type=click.IntRange(1, MAX_TRAIN_BATCH), help="override the spec's batch size"
)
@click.option("--lr", type=FiniteFloat(minimum=0), help="override the spec's lr")
@seed_option("override the spec's seed")
@click.option("--device", type=_device, default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="mixed precision on CUDA (auto: bf16 where supported)",
)
@click.option(
    "--out", type=_path, default=Path("runs"), show_default=True, help="where run directories go"
)
@click.option("--name", help="the run's directory name (default: the network's name)")
@click.option(
    "--resume",
    type=click.Path(file_okay=False, path_type=Path),
    help="continue the run in this directory from its last checkpoint",
)
@click.option(
    "--nproc",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="processes to train with (torchrun: gloo on CPU, NCCL on GPU)",
)
@click.option("--limit", type=click.IntRange(min=1), help="train on the first N samples only")
@sets_option("override a constant or a training value (epochs, lr, optimizer, ...)")
@click.option("--compile", "compile_", is_flag=True, help="run the module through torch.compile")
@threads_option
@limit_options
def train_cmd(
    spec: Path | None,
    network: str | None,
    data: Path | None,
    epochs: int | None,
    batch: int | None,
    lr: float | None,
    seed: int | None,
    device: str,
    precision: str,
    out: Path,
    name: str | None,
    resume: Path | None,
    nproc: int,
    limit: int | None,
    sets: tuple[str, ...],
    compile_: bool,
    threads: int | None,
    **limits: int,
) -> None:
    """Train the network of SPEC on its `train` section's data; write a run directory."""
    if spec is None and resume is None:
        raise UsageError("missing SPEC", hint="netspec train SPEC, or netspec train --resume RUN")
    flags = {"epochs": epochs, "batch": batch, "lr": lr, "seed": seed}
    overrides = {**parse_set(sets), **{k: v for k, v in flags.items() if v is not None}}
    from netspec.limits import Limits
    from netspec.train.heap import keep_freed_memory
    from netspec.train.session import train
    from netspec.train.setup import Request

    keep_freed_memory()  # a training process reuses each step's memory (netspec/train/heap.py)
    said = None
    if resume is None and nproc == 1:  # a resumed run keeps its own; torchrun gives each rank 1
        chosen = choose_threads(threads)
        threads, said = chosen.threads, chosen.describe()
    request = Request(
        spec=spec,
        network=network,
        data=data,
        overrides=overrides,
        limit=limit,
        device=device,
        precision=precision,
        compile=compile_,
        out=out,
        name=name,
        resume=resume,
        nproc=nproc,
        limits=Limits(**limits),
        threads=threads,
        threads_said=said,
    )
    train(request, out_console)


@command("eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=_path,
    help="evaluate on this data (other data than the run's: plots go to RUN/eval/NAME)",
)
@click.option(
    "--scenes",
    type=click.Path(file_okay=False, path_type=Path),
    help="test scenes (netspec scenes) for a detector RUN.onnx: mAP, pr.png, detections.png",
)
@click.option("--device", type=_device, default="auto", show_default=True)
@limit_options
def eval_cmd(run: Path, data: Path | None, scenes: Path | None, device: str, **limits: int) -> None:
    """Re-evaluate RUN's best weights on the test set and redraw its plots (with --data
    other than the run's, the plots for that data go to RUN/eval/NAME, beside the run's);
    or a detector file on test scenes (netspec eval fcn.onnx --scenes DIR)."""
    if run.is_file() or scenes is not None:
        if scenes is None:
            raise UsageError(
                f"{run}: a detector file is evaluated on scenes",
                hint=f"netspec eval {run} --scenes DIR (a directory `netspec scenes` wrote)",
            )
        from netspec.runtime.evaluate import evaluate_detector

        evaluate_detector(run, scenes, echo)
        return
    from netspec.limits import Limits
    from netspec.train.tools import evaluate_run

    evaluate_run(run, data, device, echo, limits=Limits(**limits))


@command("augment")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("augment.png"),
    show_default=True,
    help="the PNG to write",
)
@network_option
@click.option("--data", type=_path, help="images to use instead of the spec's dataset")
@click.option(
    "--count", type=click.IntRange(1, 64), default=8, show_default=True, help="how many test images"
)
@click.option(
    "--copies",
    type=click.IntRange(1, 32),
    default=8,
    show_default=True,
    help="augmented copies of each",
)
@seed_option("random seed (default: the spec's)")
@sets_option("override a constant or a training value")
@limit_options
def augment_cmd(
    spec: Path,
    output: Path,
    network: str | None,
    data: Path | None,
    count: int,
    copies: int,
    seed: int | None,
    sets: tuple[str, ...],
    **limits: int,
) -> None:
    """Draw a grid of augmented test images, as the train section's `augment` makes them."""
    from netspec.limits import Limits
    from netspec.train.tools import augment_grid

    augment_grid(
        spec,
        network,
        parse_set(sets),
        data,
        output,
        count,
        copies,
        seed,
        echo,
        limits=Limits(**limits),
    )


if __name__ == "__main__":  # the processes that `netspec train --nproc N` starts (torchrun)
    import os
    import sys

    try:
        train_cmd.main(prog_name="netspec train")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and the process group destroyed: leave without the interpreter's
    # finalization, where gloo's worker threads can still abort the process (SIGABRT).
    os._exit(code)
