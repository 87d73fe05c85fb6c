"""`netspec train`: start or resume a run, train it epoch by epoch, finish it.

A run is one directory (see netspec.train.run). With ``--nproc N`` this process creates
it, then starts N copies of itself through ``torch.distributed.run`` that resume it:
rank 0 writes every file, the others only train.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from netspec import __version__
from netspec.compiler import Compiled
from netspec.errors import ExportError, RunError, UsageError
from netspec.export import onnx_export
from netspec.fileio import write_text
from netspec.lower.weights import load_weights
from netspec.train import plots
from netspec.train.data import Tensors
from netspec.train.loop import (
    Bar,
    Evaluation,
    Parts,
    Place,
    evaluate,
    make_parts,
    train_epoch,
)
from netspec.train.run import (
    differences,
    load_checkpoint,
    new_run_dir,
    read_json,
    read_metrics,
    remove_temp_files,
    save_checkpoint,
    save_weights,
    sha256,
    write_json,
    write_metrics,
)
from netspec.train.setup import (
    Build,
    Request,
    build_module,
    compile_request,
    distributed,
    load_tensors,
    make_place,
    seeded_module,
    settings,
    train_config,
)
from netspec.trainspec import TrainConfig

Log = Callable[[str], None]
EXPORT_SAMPLES = 64  # test images the exported model is checked on


@dataclass
class Run:
    """A run being trained: where it lives and everything it trains with."""

    dir: Path
    compiled: Compiled
    config: TrainConfig
    data: Tensors
    place: Place
    module: nn.Module  # owns the weights; parts.module may wrap it
    parts: Parts
    rows: list[dict[str, float]]
    epoch: int = 0  # the last epoch completed
    best_acc: float = -1.0


def train(request: Request, console: Console, build: Build = build_module) -> Path:
    """Train (or resume) a run as ``request`` asks; return its directory."""
    rank, _, world = distributed()
    log = _logger(console, rank)
    if request.nproc > 1 and world == 1:
        return _launch(request, console, log)
    if world > 1:
        _init_distributed(request)
    try:
        run = _open(request, log, build)
        _train(run, console, log)
        if rank == 0:
            finish(
                run.dir, run.compiled, run.config, run.data, run.module, run.place, run.rows, log
            )
            _next_steps(run.dir, console)
        return run.dir
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def _logger(console: Console, rank: int) -> Log:
    def log(message: str) -> None:
        if rank == 0:
            console.print(message, markup=False, highlight=False)

    return log


def _init_distributed(request: Request) -> None:
    backend = "nccl" if request.device != "cpu" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(distributed()[1])
    torch.distributed.init_process_group(backend)


def _stored(request: Request) -> tuple[Request, dict[str, Any], str]:
    """For --resume: the request with the run's stored values where none was given."""
    assert request.resume is not None
    run = request.resume
    if not (run / "settings.json").is_file() or not (run / "spec.net").is_file():
        raise RunError(f"{run}: not a netspec run (no settings.json or spec.net)")
    stored = read_json(run / "settings.json")
    text = (run / "spec.net").read_text(encoding="utf-8")
    spec = request.spec or Path(stored.get("spec", run / "spec.net"))
    merged = replace(
        request,
        spec=spec,
        network=request.network or stored.get("network"),
        data=request.data or (Path(stored["data"]) if stored.get("data") else None),
        overrides={**stored.get("overrides", {}), **request.overrides},
        limit=request.limit if request.limit is not None else stored.get("limit"),
    )
    return merged, stored, text if request.spec is None else ""


def _resolve(request: Request, log: Log, text: str = "") -> tuple[Compiled, TrainConfig]:
    assert request.spec is not None
    compiled = compile_request(request.spec, request.network, request.overrides, text or None)
    return compiled, train_config(compiled, request.overrides, log)


def _prepare(request: Request, log: Log) -> tuple[Request, Compiled, TrainConfig, dict[str, Any]]:
    """Compile and resolve; on --resume, refuse settings that differ from the run's."""
    stored: dict[str, Any] | None = None
    text = ""
    if request.resume is not None:
        request, stored, text = _stored(request)
    compiled, config = _resolve(request, log, text)
    wanted = settings(compiled, config, request)
    if stored is not None:
        changed = differences({k: stored.get(k) for k in wanted}, wanted)
        if changed:
            raise UsageError(
                f"{request.resume}: these settings differ from the run's, so it "
                "cannot be resumed:\n    " + "\n    ".join(changed),
                hint="resume with the run's settings, or start a new run",
            )
    return request, compiled, config, wanted


def _open(request: Request, log: Log, build: Build) -> Run:
    """Create the run directory, or check and reopen the one to resume."""
    request, compiled, config, wanted = _prepare(request, log)
    place = make_place(request, compiled, log)
    data = load_tensors(compiled, config, request.data, request.limit, place.device, log)
    log(f"data: {data.source}: {len(data.train_x)} training, {len(data.test_x)} test images")
    module = seeded_module(compiled, build, config.seed).to(place.device)
    if place.channels_last:
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if request.resume is not None:
        directory = request.resume
        if place.rank == 0:
            remove_temp_files(directory)
    else:
        directory = _create(request, compiled, wanted, place, log)
    return _assemble(directory, compiled, config, data, place, module, request.compile, log)


def _create(
    request: Request, compiled: Compiled, wanted: dict[str, Any], place: Place, log: Log
) -> Path:
    directory = new_run_dir(request.out, request.name or compiled.name)
    write_text(directory / "spec.net", compiled.source)
    write_json(directory / "settings.json", {**wanted, **_runtime(request, place)})
    log(f"run: {directory}")
    return directory


def _runtime(request: Request, place: Place) -> dict[str, Any]:
    """Settings that may change on --resume: where and how, not what, is trained."""
    spec = str(request.spec.resolve()) if request.spec is not None else None
    return {
        "spec": spec,
        "runtime": {
            "device": str(place.device),
            "precision": request.precision,
            "compile": request.compile,
            "nproc": max(request.nproc, place.world),
            "netspec": __version__,
            "torch": torch.__version__,
        },
    }


def _assemble(
    directory: Path,
    compiled: Compiled,
    config: TrainConfig,
    data: Tensors,
    place: Place,
    module: nn.Module,
    compile_module: bool,
    log: Log,
) -> Run:
    checkpoint = load_checkpoint(directory, module)
    called: nn.Module = module
    if place.world > 1:
        ids = [place.device.index] if place.device.type == "cuda" else None
        called = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if compile_module:
        called = torch.compile(called)  # type: ignore[assignment]
    parts = make_parts(called, module, config, len(data.train_x), place)
    run = Run(
        directory,
        compiled,
        config,
        data,
        place,
        module,
        parts,
        read_metrics(directory / "metrics.csv"),
    )
    if checkpoint is not None:
        parts.load_state_dict(checkpoint.state)
        run.epoch, run.best_acc = checkpoint.epoch, float(checkpoint.state["best_acc"])
        run.rows = [r for r in run.rows if r["epoch"] <= run.epoch]
        log(f"resuming {directory} after epoch {run.epoch} of {config.epochs}")
    return run


def _train(run: Run, console: Console, log: Log) -> None:
    config, place = run.config, run.place
    with Bar(console, place.rank == 0 and console.is_terminal) as bar:
        for epoch in range(run.epoch + 1, config.epochs + 1):
            bar.begin(epoch, config.epochs, run.parts.steps_per_epoch)
            start = time.perf_counter()
            result = train_epoch(run.parts, run.data, config, place, epoch, bar.show)
            if place.rank != 0:
                run.epoch = epoch
                continue
            test = evaluate(run.module, run.data.test_x, run.data.test_y, config, place)
            row = {
                "epoch": epoch,
                "train_loss": result.loss,
                "train_acc": result.acc,
                "test_loss": test.loss,
                "test_acc": test.acc,
                "lr": float(run.parts.scheduler.get_last_lr()[0]),
                "seconds": time.perf_counter() - start,
            }
            run.rows.append(row)
            log(
                f"epoch {epoch}/{config.epochs}: train loss {result.loss:.4f} "
                f"acc {result.acc:.2%} | test loss {test.loss:.4f} acc {test.acc:.2%} "
                f"({test.errors} errors) | lr {row['lr']:.3g} | {row['seconds']:.1f} s "
                f"({result.seconds:.1f} s training)"
            )
            _checkpoint(run, epoch, test, row)


def _checkpoint(run: Run, epoch: int, test: Evaluation, row: dict[str, float]) -> None:
    """Metrics, then best weights if they improved, then the committing last checkpoint."""
    write_metrics(run.dir / "metrics.csv", run.rows)
    meta = {"epoch": epoch, "spec_sha256": sha256(run.compiled.source), "metrics": row}
    if test.acc > run.best_acc:
        run.best_acc = test.acc
        save_weights(run.dir / "weights" / "best.safetensors", run.module, meta)
    state = {**run.parts.state_dict(), "epoch": epoch, "best_acc": run.best_acc}
    save_checkpoint(run.dir, run.module, state, meta)
    run.epoch = epoch


def finish(
    directory: Path,
    compiled: Compiled,
    config: TrainConfig,
    data: Tensors,
    module: nn.Module,
    place: Place,
    rows: list[dict[str, float]],
    log: Log,
) -> Evaluation:
    """Evaluate the best weights on the test set, draw the plots, export ONNX."""
    best = directory / "weights" / "best.safetensors"
    if best.is_file():
        load_weights(best, module)
    test = evaluate(module, data.test_x, data.test_y, config, place)
    log(
        f"test ({'best' if best.is_file() else 'last'} weights): accuracy {test.acc:.2%}, "
        f"{test.errors} errors of {len(data.test_y)}"
    )
    draw(directory, compiled.name, data, test, rows)
    plots.sample_images(
        directory / "samples", data.test_x[:8].cpu().numpy(), data.test_y[:8].cpu().numpy()
    )
    _export_onnx(directory, compiled, module, data, config, log)
    return test


def draw(
    directory: Path, name: str, data: Tensors, test: Evaluation, rows: list[dict[str, float]]
) -> None:
    true = data.test_y.cpu().numpy()
    pred = test.predictions.cpu().numpy()
    if rows:
        plots.curves(directory / "curves.png", rows, name)
    plots.confusion(directory / "confusion.png", true, pred, data.classes, name)
    plots.errors(directory / "errors.png", data.test_x.cpu().numpy(), true, pred, name)


def _export_onnx(
    directory: Path,
    compiled: Compiled,
    module: nn.Module,
    data: Tensors,
    config: TrainConfig,
    log: Log,
) -> None:
    """Write ``model.onnx``, checked against PyTorch on test images."""
    mean, std = config.normalize.mean, config.normalize.std
    samples = ((data.test_x[:EXPORT_SAMPLES] - mean) / std).cpu().numpy()
    try:
        onnx_export.export_compiled(
            compiled,
            directory / "model.onnx",
            onnx_export.ExportOptions(labels=tuple(data.labels), normalization=(mean, std)),
            weights=module,
            samples=samples,
            targets=data.test_y[:EXPORT_SAMPLES].cpu().numpy(),
            log=log,
        )
    except ExportError as e:
        raise RunError(f"the run is saved, but exporting model.onnx failed: {e}") from None


def _next_steps(directory: Path, console: Console) -> None:
    lines = ["next:"]
    if (directory / "model.onnx").is_file():
        lines.append(f"  netspec run {directory / 'model.onnx'} {directory / 'samples'}")
    lines.append(f"  netspec eval {directory}")
    console.print("\n".join(lines), markup=False, highlight=False)


def _launch(request: Request, console: Console, log: Log) -> Path:
    """Create the run here (checking spec and data), then train it in N processes."""
    request, compiled, config, wanted = _prepare(request, log)
    place = make_place(request, compiled, log)
    load_tensors(compiled, config, request.data, request.limit, torch.device("cpu"), log)
    directory = request.resume or _create(
        request, compiled, wanted, replace(place, world=request.nproc), log
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={request.nproc}",
        "-m",
        "netspec.cli.train",
        "--resume",
        str(directory),
        "--device",
        request.device,
        "--precision",
        request.precision,
        *(["--compile"] if request.compile else []),
    ]
    log(f"starting {request.nproc} processes: {' '.join(command[1:])}")
    code = subprocess.call(command)
    if code != 0:
        raise RunError(
            f"the distributed run exited with status {code}; resume it with "
            f"netspec train --resume {directory} --nproc {request.nproc}"
        )
    return directory
