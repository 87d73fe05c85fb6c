"""`netspec eval` (re-evaluate a run's best weights) and `netspec augment` (show augmentation)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from netspec.errors import RunError
from netspec.fileio import PathLike
from netspec.limits import Limits
from netspec.lower.weights import load_weights
from netspec.train import plots
from netspec.train.augment import augment
from netspec.train.loop import Evaluation, evaluate
from netspec.train.opening import check_weights, compile_run, read_run, stored_data
from netspec.train.run import read_metrics
from netspec.train.session import draw
from netspec.train.setup import (
    Build,
    Request,
    build_module,
    check_seed,
    compile_request,
    load_tensors,
    make_place,
    seeded_module,
    train_config,
)
from netspec.trainspec import TrainConfig

Log = Callable[[str], None]


def evaluate_run(
    run: PathLike,
    data: PathLike | None,
    device: str,
    log: Log,
    build: Build = build_module,
    *,
    limits: Limits | None = None,
) -> Evaluation:
    """Test the run's best weights (on ``data``, else the run's own data); redraw its plots.

    The run's spec is compiled from inside it, and the weights are refused unless they
    were trained on that spec."""
    kept = read_run(run)
    best = kept.dir / "weights" / "best.safetensors"
    if not best.is_file():
        raise RunError(f"{best}: missing; the run has not finished an epoch yet")
    compiled = compile_run(kept, limits=limits)
    check_weights(best, kept.files)
    config = kept.config()
    place = make_place(Request(device=device), compiled, log)
    source = stored_data(kept, data)
    tensors = load_tensors(compiled, config, source, kept.settings.get("limit"), place.device, log)
    module = seeded_module(compiled, build, config.seed).to(place.device)
    load_weights(best, module)
    test = evaluate(module, tensors.test_x, tensors.test_y, config, place, tensors.target)
    said = tensors.target.task.evaluated(test, len(tensors.test_x))
    log(f"{kept.dir} (best weights) on {tensors.source}: {said}")
    if data is None or str(Path(data).resolve()) == kept.settings.get("data"):  # its own
        rows = read_metrics(kept.dir / "metrics.csv")
        drawn = draw(kept.dir, compiled.name, tensors, test, rows, module, config, place)
    else:  # other data: its plots beside the run's, never over them
        where = eval_dir(kept.dir, data)
        drawn = draw(where, compiled.name, tensors, test, [], module, config, place)
    log(f"plots: {', '.join(str(p) for p in drawn)}")
    return test


def eval_dir(run: Path, data: PathLike) -> Path:
    """Where `netspec eval RUN --data DATA` draws: ``RUN/eval/NAME``, NAME from DATA's name.

    >>> eval_dir(Path("runs/lenet"), "/data/my mnist.npz")
    PosixPath('runs/lenet/eval/my_mnist.npz')
    """
    name = re.sub(r"[^\w.-]", "_", Path(data).resolve().name).strip(".")
    return run / "eval" / (name or "data")  # made by the first plot written into it


def augment_grid(
    spec: PathLike,
    network: str | None,
    overrides: dict[str, Any],
    data: PathLike | None,
    output: PathLike,
    count: int,
    copies: int,
    seed: int | None,
    log: Log,
    *,
    limits: Limits | None = None,
) -> None:
    """Draw the first ``count`` test images and ``copies`` augmented versions of each."""
    compiled = compile_request(Path(spec), network, overrides, limits)
    config = train_config(compiled, overrides, log)
    if not config.augment.enabled:
        log("the train section enables no augmentation: the copies equal the originals")
    source = Path(data) if data is not None else None
    tensors = load_tensors(compiled, config, source, None, torch.device("cpu"), log)
    originals = tensors.test_x[:count]
    if seed is not None:
        check_seed(seed)
    gen = torch.Generator().manual_seed(config.seed if seed is None else seed)
    batches = [augment(originals, config.augment, gen).numpy() for _ in range(copies)]
    plots.augmented_grid(Path(output), originals.numpy(), batches, _describe(config))
    log(f"wrote {output}: {len(originals)} test images, {copies} augmented copies each")


def _describe(config: TrainConfig) -> str:
    a = config.augment
    parts = [
        f"rotate ±{a.rotate:g}°" if a.rotate else "",
        f"scale {a.scale[0]:g}..{a.scale[1]:g}" if a.scale else "",
        f"shift ±{a.shift:g}px" if a.shift else "",
        f"shear ±{a.shear:g}°" if a.shear else "",
        f"squeeze {a.squeeze[0]:g}..{a.squeeze[1]:g}" if a.squeeze else "",
        f"elastic α={a.elastic_alpha:g} σ={a.elastic_sigma:g}" if a.elastic_alpha else "",
        f"random resized crop {a.crop_scale[0]:g}..{a.crop_scale[1]:g}" if a.crop_scale else "",
        f"random crop ±{a.crop_pad}px" if a.crop_pad is not None else "",
        f"flip p={a.flip:g}" if a.flip is not None else "",
        "colour jitter" if "colour_jitter" in a.words else "",
    ]
    return ", ".join(p for p in parts if p) or "no augmentation"
