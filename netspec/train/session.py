"""`netspec train`: start or resume a run, train it epoch by epoch, finish it.

A run is one directory (see netspec.train.run). With ``--nproc N`` this process creates
it, then starts N copies of itself through ``torch.distributed.run`` that resume it:
rank 0 writes every file, the others only train.
"""

from __future__ import annotations

import math
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
from netspec.detection.coco import Metrics
from netspec.errors import ExportError, RunError, UsageError
from netspec.export import onnx_export
from netspec.fileio import check_dir
from netspec.lower.weights import load_weights
from netspec.tasks import Target
from netspec.tasks.base import as_outputs
from netspec.train import plots, yolo_run
from netspec.train.data import Tensors, measured, normalized
from netspec.train.loop import (
    Bar,
    Evaluation,
    Parts,
    Place,
    evaluate,
    make_parts,
    normalize_once,
    train_epoch,
)
from netspec.train.opening import (
    WEIGHTS,
    KeptRun,
    check_weights,
    compile_run,
    read_run,
    stored_data,
)
from netspec.train.run import (
    Checkpoint,
    differences,
    load_checkpoint,
    new_run_dir,
    read_metrics,
    remove_other_states,
    remove_temp_files,
    save_checkpoint,
    save_weights,
    state_path,
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
from netspec.train.sources import spec_files, write_spec
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
    best_acc: float = -math.inf  # the best score so far: test accuracy, or -loss for a map


def train(request: Request, console: Console, build: Build = build_module) -> Path:
    """Train (or resume) a run as ``request`` asks; return its directory."""
    rank, _, world = distributed()
    log = _logger(console, rank)
    if request.nproc > 1 and world == 1:
        return _launch(request, console, log)
    if world > 1:
        _init_distributed(request)
    threads = torch.get_num_threads()
    try:
        return _train_and_finish(request, console, log, build, rank)
    finally:
        torch.set_num_threads(threads)
        if world > 1:
            torch.distributed.destroy_process_group()


def _train_and_finish(
    request: Request, console: Console, log: Log, build: Build, rank: int
) -> Path:
    """The run trained and, on rank 0, its files finished. In a distributed run every rank
    leaves together, and the module (whose DDP reducer holds the process group) is gone
    before the group is destroyed: gloo aborts (SIGABRT) a process that tears down a group
    a peer or a live reducer still holds."""
    run = _open(request, log, build)
    _train(run, console, log)
    if rank == 0:
        finish(run.dir, run.compiled, run.config, run.data, run.module, run.place, run.rows, log)
        _next_steps(run.dir, console, run.data.target.task.run_out)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return run.dir


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


def _stored(request: Request) -> tuple[Request, KeptRun]:
    """For --resume: the checked run, and the request with its stored values where none was
    given. The run's spec is compiled from inside it; its stored paths are never followed
    (its data only inside netspec's dataset cache: opening.stored_data)."""
    assert request.resume is not None
    kept = read_run(request.resume)
    stored = kept.settings
    merged = replace(
        request,
        network=request.network or kept.network,
        data=stored_data(kept, request.data),
        overrides={**kept.overrides, **request.overrides},
        limit=request.limit if request.limit is not None else stored.get("limit"),
    )
    return merged, kept


def _resolve(request: Request, log: Log, kept: KeptRun | None) -> tuple[Compiled, TrainConfig]:
    if kept is not None and request.spec is None:
        compiled = compile_run(kept, request.network, request.overrides, request.limits)
    else:
        assert request.spec is not None
        compiled = compile_request(request.spec, request.network, request.overrides, request.limits)
    return compiled, train_config(compiled, request.overrides, log)


def _prepare(
    request: Request, log: Log
) -> tuple[Request, Compiled, TrainConfig, dict[str, Any], KeptRun | None]:
    """Compile and resolve; on --resume, refuse settings that differ from the run's."""
    kept = None
    if request.resume is not None:
        request, kept = _stored(request)
    else:
        check_dir(request.out)  # before the data is read: --out naming a file, say
    compiled, config = _resolve(request, log, kept)
    wanted = settings(compiled, config, request)
    if kept is not None:
        stored = kept.settings
        compared = [k for k in wanted if k in stored or k not in ("main", "sources")]
        changed = differences(
            {k: stored.get(k) for k in compared}, {k: wanted[k] for k in compared}
        )
        if changed:
            raise UsageError(
                f"{request.resume}: these settings differ from the run's, so it "
                "cannot be resumed:\n    " + "\n    ".join(changed),
                hint="resume with the run's settings, or start a new run",
            )
    return request, compiled, config, wanted, kept


def _open(request: Request, log: Log, build: Build) -> Run:
    """Create the run directory, or check and reopen the one to resume."""
    request, compiled, config, wanted, kept = _prepare(request, log)
    place = make_place(request, compiled, log)
    data = load_tensors(compiled, config, request.data, request.limit, place.device, log)
    config, wanted = _measure(config, wanted, data, kept, log)
    data = normalize_once(data, config)
    log(f"data: {data.source}: {len(data.train_x)} training, {len(data.test_x)} test images")
    module = seeded_module(compiled, build, config.seed).to(place.device)
    if place.channels_last:
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if request.threads is not None and place.world == 1:
        torch.set_num_threads(request.threads)
        if request.threads_said:
            log(request.threads_said)
    if kept is not None:
        directory = kept.dir
        if request.threads is None:
            _pin_threads(kept, place, log)
        if place.rank == 0:
            remove_temp_files(directory)
    else:
        directory = _create(request, compiled, wanted, place, log)
    return _assemble(directory, compiled, config, data, place, module, request.compile, log)


def _measure(
    config: TrainConfig, wanted: dict[str, Any], data: Tensors, kept: KeptRun | None, log: Log
) -> tuple[TrainConfig, dict[str, Any]]:
    """A new run's `normalize auto` measured on its training images, and the settings that
    record it (a resumed run's were read from its settings: opening.compile_run)."""
    if not config.normalize.auto or kept is not None:
        return config, wanted
    config = measured(config, data.train_x, log)
    return config, {**wanted, "train": config.model_dump(mode="json")}


def _pin_threads(kept: KeptRun, place: Place, log: Log) -> None:
    """Train with the thread count the run was made with: CPU kernels sum in an order that
    depends on it, so this is what makes a resumed epoch the epoch it would have been."""
    threads = (kept.settings.get("runtime") or {}).get("threads")
    if not isinstance(threads, int) or threads < 1 or place.world > 1:
        return
    if threads != torch.get_num_threads():
        log(f"threads: {threads}, as the run was made with")
        torch.set_num_threads(threads)


def _create(
    request: Request, compiled: Compiled, wanted: dict[str, Any], place: Place, log: Log
) -> Path:
    """The new run directory, made whole in one rename: its spec files, then its settings."""

    def fill(directory: Path) -> None:
        write_spec(directory, spec_files(compiled))
        write_json(directory / "settings.json", {**wanted, **_runtime(request, place)})

    directory = new_run_dir(request.out, request.name or compiled.name, fill)
    log(f"run: {directory}")
    return directory


def _runtime(request: Request, place: Place) -> dict[str, Any]:
    """Settings that may change on --resume: where and how, not what, is trained. ``spec``
    records where the spec came from, for people: it is never read back."""
    spec = str(request.spec.resolve()) if request.spec is not None else None
    return {
        "spec": spec,
        "runtime": {
            "device": str(place.device),
            "precision": request.precision,
            "compile": request.compile,
            "nproc": max(request.nproc, place.world),
            "threads": torch.get_num_threads(),
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
    files = spec_files(compiled)
    for weights in (directory / "weights" / n for n in WEIGHTS):
        if weights.is_file():
            check_weights(weights, files)
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
        run.epoch, run.best_acc = checkpoint.epoch, _restore(parts, checkpoint, directory)
        log(f"resuming {directory} after epoch {run.epoch} of {config.epochs}")
    if place.rank == 0:  # what a kill left of an epoch that was never committed
        rows = [r for r in run.rows if r["epoch"] <= run.epoch]
        if rows != run.rows:
            run.rows = rows
            write_metrics(directory / "metrics.csv", rows)
        remove_other_states(directory, state_path(directory, run.epoch))
    return run


def _restore(parts: Parts, checkpoint: Checkpoint, directory: Path) -> float:
    """Load the optimizer, schedule and scaler state; return the best accuracy so far."""
    try:
        parts.load_state_dict(checkpoint.state)
        return float(checkpoint.state["best_acc"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
        path = state_path(directory, checkpoint.epoch)
        raise RunError(f"{path}: does not fit this run's optimizer and schedule ({e})") from None


def _train(run: Run, console: Console, log: Log) -> None:
    config, place = run.config, run.place
    shown = place.rank == 0 and console.is_terminal
    task = run.data.target.task
    if task.trains_itself:
        _fit(run, log)
        return
    with Bar(console, shown, task.metric is not None) as bar:
        for epoch in range(run.epoch + 1, config.epochs + 1):
            bar.begin(epoch, config.epochs, run.parts.steps_per_epoch)
            start = time.perf_counter()
            result = train_epoch(run.parts, run.data, config, place, epoch, bar.show)
            if place.rank != 0:
                run.epoch = epoch
                continue
            data = run.data
            test = evaluate(run.module, data.test_x, data.test_y, config, place, data.target)
            row = metrics_row(epoch, result.loss, result.acc, test, data.target)
            trained = Shown(run.dir, run.compiled.name, data, test, run.module, config, place)
            row.update(task.measure(trained))
            row["lr"] = float(run.parts.scheduler.get_last_lr()[0])
            row["seconds"] = time.perf_counter() - start
            run.rows.append(row)
            log(
                f"epoch {epoch}/{config.epochs}: train {task.scores(result.loss, result.acc)} "
                f"| test {task.scores(test.loss, test.acc)}{task.note(test, row)}"
                f" | lr {row['lr']:.3g} | {row['seconds']:.1f} s "
                f"({result.seconds:.1f} s training)"
            )
            checkpoint(run, epoch, test, row)


def _fit(run: Run, log: Log) -> None:
    """A task that fits its module in one pass (a boosted cascade): what it measured in
    fitted.json, one row of metrics and one checkpoint, as of epoch 1, which a resumed run
    that has it does not repeat."""
    if run.epoch >= 1:
        return
    data, config, place = run.data, run.config, run.place
    start = time.perf_counter()
    task = data.target.task
    if not isinstance(data.train_x, torch.Tensor):
        raise RunError(f"{task.name}: fits its module on training images held in memory")
    train, test = (data.train_x, data.train_y), (data.test_x, data.test_y)
    measured = task.fit_module(run.module, train, test, data.target, config, log)
    if place.rank != 0:
        run.epoch = 1
        return
    seen = len(data.test_x)  # the training loss on as many training images as test images
    fitted = evaluate(run.module, train[0][:seen], train[1][:seen], config, place, data.target)
    tested = evaluate(run.module, *test, config, place, data.target)
    row = metrics_row(1, fitted.loss, fitted.acc, tested, data.target)
    row["lr"], row["seconds"] = 0.0, time.perf_counter() - start
    write_json(run.dir / "fitted.json", measured)
    run.rows.append(row)
    log(
        f"fitted: train {task.scores(fitted.loss, fitted.acc)} | test "
        f"{task.scores(tested.loss, tested.acc)} | {row['seconds']:.1f} s"
    )
    checkpoint(run, 1, tested, row)


def metrics_row(
    epoch: int, train_loss: float, train_acc: float, test: Evaluation, target: Target
) -> dict[str, float]:
    """An epoch's row of metrics.csv: the losses, and the accuracies the task has."""
    row = {"epoch": float(epoch), "train_loss": train_loss}
    metric = target.task.metric
    if metric:
        row[f"train_{metric}"] = train_acc
    row["test_loss"] = test.loss
    if metric:
        row[f"test_{metric}"] = test.acc
    return row


def checkpoint(run: Run, epoch: int, test: Evaluation, row: dict[str, float]) -> None:
    """Metrics, then best weights if they improved, then the committing last checkpoint."""
    write_metrics(run.dir / "metrics.csv", run.rows)
    files = spec_files(run.compiled)
    meta = {
        "epoch": epoch,
        "spec_sha256": files.digest(),
        "sources": files.hashes(),
        "metrics": row,
    }
    score = run.data.target.task.best(test)
    if score > run.best_acc:
        run.best_acc = score
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
    test = evaluate(module, data.test_x, data.test_y, config, place, data.target)
    said = data.target.task.tested(test, len(data.test_x))
    log(f"test ({'best' if best.is_file() else 'last'} weights): {said}")
    draw(directory, compiled.name, data, test, rows, module, config, place)
    labels = data.test_y[:8].cpu().numpy() if data.target.task.per_sample else None
    plots.sample_images(directory / "samples", data.test_x[:8].cpu().numpy(), labels)
    _export_onnx(directory, compiled, module, data, config, log)
    return test


def draw(
    directory: Path,
    name: str,
    data: Tensors,
    test: Evaluation,
    rows: list[dict[str, float]],
    module: nn.Module,
    config: TrainConfig,
    place: Place,
) -> list[Path]:
    """The run's pictures: curves, then those of its task (netspec.tasks): a confusion
    matrix and the misclassified images, the first test inputs beside their target and
    predicted maps, or a detector's precision-recall and boxes."""
    drawn = []
    if rows:
        plots.curves(directory / "curves.png", rows, name)
        drawn.append(directory / "curves.png")
    shown = Shown(directory, name, data, test, module, config, place)
    return [*drawn, *data.target.task.draw(shown)]


@dataclass(frozen=True)
class Shown:
    """A trained network and its test set, as a task asks to see it (netspec.tasks.Trained):
    pictures written into ``directory``, and a detector's metrics."""

    directory: Path
    name: str
    data: Tensors
    test: Evaluation
    module: nn.Module
    config: TrainConfig
    place: Place

    def confusion(self) -> list[Path]:
        true = self.data.test_y.cpu().numpy()
        pred = self.test.predictions.cpu().numpy()
        confusion, errors = self.directory / "confusion.png", self.directory / "errors.png"
        plots.confusion(confusion, true, pred, self.data.classes, self.name)
        plots.errors(errors, self.data.test_x.cpu().numpy(), true, pred, self.name)
        return [confusion, errors]

    def maps(self) -> list[Path]:
        plots.maps(self.directory / "predictions.png", *self._predicted_maps(), self.name)
        return [self.directory / "predictions.png"]

    def detections(self) -> list[Path]:
        return yolo_run.draw(self.directory, self.data, self.module, self.config, self.place)

    def detection_metrics(self) -> Metrics:
        return yolo_run.metrics(self.module, self.data, self.config, self.place)

    @torch.no_grad()
    def _predicted_maps(self) -> tuple[Any, Any, Any]:
        """The first test inputs, their targets and what the network predicts of them (maps,
        or per-pixel classes), as numpy arrays in [0, 1] or class indices."""
        x = self.data.test_x[: plots.MAP_ROWS]
        config, place, target = self.config, self.place, self.data.target
        self.module.eval()
        with place.autocast():
            out = self.module(place.batch(normalized(x, config.normalize)))
        outs = tuple(o.float() for o in as_outputs(out))
        pred = target.task.predict(outs, config.loss, target)
        y = self.data.test_y[: plots.MAP_ROWS]
        return x.cpu().numpy(), y.cpu().numpy(), pred.cpu().numpy()


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
    samples = normalized(data.test_x[:EXPORT_SAMPLES], config.normalize).cpu().numpy()
    task = data.target.task
    labels = tuple(data.labels) if task.exports_labels else None
    try:
        onnx_export.export_compiled(
            compiled,
            directory / "model.onnx",
            onnx_export.ExportOptions(labels=labels, normalization=(mean, std)),
            weights=module,
            samples=samples,
            targets=data.test_y[:EXPORT_SAMPLES].cpu().numpy() if task.per_sample else None,
            log=log,
        )
    except ExportError as e:
        raise RunError(f"the run is saved, but exporting model.onnx failed: {e}") from None


def _next_steps(directory: Path, console: Console, run_out: bool) -> None:
    lines = ["next:"]
    if (directory / "model.onnx").is_file():
        out = f" --out {directory / 'outputs'}" if run_out else ""
        lines.append(f"  netspec run {directory / 'model.onnx'} {directory / 'samples'}{out}")
    lines.append(f"  netspec eval {directory}")
    console.print("\n".join(lines), markup=False, highlight=False)


def _launch(request: Request, console: Console, log: Log) -> Path:
    """Create the run here (checking spec and data), then train it in N processes."""
    request, compiled, config, wanted, kept = _prepare(request, log)
    place = make_place(request, compiled, log)
    tensors = load_tensors(compiled, config, request.data, request.limit, torch.device("cpu"), log)
    config, wanted = _measure(config, wanted, tensors, kept, log)
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
        *(["--data", str(Path(request.data).resolve())] if request.data is not None else []),
        *(["--compile"] if request.compile else []),
    ]
    log(f"starting {request.nproc} processes: {' '.join(command[1:])}")
    code = subprocess.call(command)
    if code != 0:
        data = f" --data {command[command.index('--data') + 1]}" if "--data" in command else ""
        raise RunError(
            f"the distributed run exited with status {code}; resume it with "
            f"netspec train --resume {directory}{data} --nproc {request.nproc}"
        )
    return directory
