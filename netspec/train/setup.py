"""From a request on the command line to the things a run needs: the compiled spec, its
resolved settings, the device, the data and the module. Shared by train, eval and augment.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netspec.compiler import Compiled, compile
from netspec.data import read_arrays
from netspec.data.record import Fit
from netspec.data.registry import DEFAULT_DATASET
from netspec.data.stream import stream_above
from netspec.errors import UsageError
from netspec.ir import Shape
from netspec.limits import Limits
from netspec.lower import to_torch
from netspec.ops import channels_last_helps
from netspec.syntax import ast
from netspec.tasks import target_of
from netspec.train.data import Sizing, Tensors, fit_to_input
from netspec.train.loop import Place
from netspec.train.run import check_run_name
from netspec.train.sources import spec_files
from netspec.trainspec import TRAIN_KEYS, Scenes, TrainConfig, require_dataset
from netspec.trainspec import train_config as section_config

Log = Callable[[str], None]
Build = Callable[[Compiled], nn.Module]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Request:
    """What `netspec train` was asked; None means "not given" (the spec or the run decides)."""

    spec: Path | None = None  # str is accepted too (made a Path)
    network: str | None = None
    data: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # --set and --epochs, --lr, ...
    limit: int | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    out: Path = Path("runs")
    name: str | None = None
    resume: Path | None = None
    nproc: int = 1
    limits: Limits = field(default_factory=Limits)  # the compile limits (--max-... flags)
    threads: int | None = None  # CPU threads (None: as torch is set; a resumed run: its own)
    threads_said: str | None = None  # how they were chosen, for the run's log

    def __post_init__(self) -> None:
        for name in ("spec", "data", "out", "resume"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value))
        check_overrides(self.overrides)
        if self.name is not None:
            check_run_name(self.name)  # before anything is read, not after the data


RESERVED = frozenset({"limits", "allow_outside", "source", "network"})  # compile()'s own


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse an override no run could take: a non-finite number, or a name compile() uses."""
    for key, value in overrides.items():
        if key in RESERVED:
            raise UsageError(f"--set {key}: not a constant or training setting")
        if key == "seed" and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"--set seed={value}: expected a whole number", hint="e.g. --seed 1")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(
                f"--{key} {value}: expected a finite number", hint=f"e.g. --set {key}=0.01"
            )


def build_module(compiled: Compiled) -> nn.Module:
    """The network as a torch module (netspec.lower)."""
    return to_torch(compiled)


def compile_request(
    spec: Path, network: str | None, overrides: Mapping[str, Any], limits: Limits | None = None
) -> Compiled:
    """Compile the spec at ``spec`` with the command line's overrides and limits."""
    check_overrides(overrides)
    return compile(spec, network, limits=limits, **overrides)


def train_config(compiled: Compiled, overrides: Mapping[str, Any], log: Log) -> TrainConfig:
    """The spec's train section, or the defaults (MNIST) with the overrides applied; every
    number in it finite (an infinite lr would train to NaN), its dataset one netspec can
    load (compile only warns: W506)."""
    check_overrides(overrides)
    require_dataset(compiled.program.trains.get(compiled.name))
    config = compiled.train if compiled.train is not None else _defaults(compiled, overrides, log)
    for where, value in _numbers(config.model_dump(mode="python")):
        if not math.isfinite(value):
            raise UsageError(f"invalid {where}: {value} (expected a finite number)")
    check_seed(config.seed)
    return config


def check_seed(seed: int) -> None:
    """Refuse a seed torch cannot take (it holds 64 bits)."""
    if not -(2**63) <= seed < 2**63:
        raise UsageError(f"--seed {seed}: expected a whole number of at most 63 bits")


def _numbers(value: Any, where: str = "") -> list[tuple[str, float]]:
    """Every float in a nested dump of a config, with its dotted place."""
    if isinstance(value, float):
        return [(where, value)]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{where}.{k}".lstrip("."))]
    if isinstance(value, list | tuple):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{where}.{i}")]
    return []


def _defaults(compiled: Compiled, overrides: Mapping[str, Any], log: Log) -> TrainConfig:
    """The defaults, as an empty train section would give them: the overrides are placed
    and checked (a bad one named by its flag) exactly as for a spec's own section."""
    log(
        f"the spec has no train section for '{compiled.name}': using the defaults "
        f"(dataset {DEFAULT_DATASET}, sgd lr=0.01, 10 epochs, batch 128)"
    )
    empty = ast.Train(network=compiled.name, dataset=DEFAULT_DATASET, settings=())
    return section_config(empty, {k: v for k, v in overrides.items() if k in TRAIN_KEYS})


def settings(compiled: Compiled, config: TrainConfig, request: Request) -> dict[str, Any]:
    """The settings that define a run (compared on --resume), as plain JSON values."""
    files = spec_files(compiled)
    return _plain(
        {
            "spec_sha256": files.digest(),
            "main": files.main,
            "sources": files.hashes(),
            "network": compiled.name,
            "overrides": dict(sorted(request.overrides.items())),
            "data": str(request.data.resolve()) if request.data is not None else None,
            "limit": request.limit,
            "train": config.model_dump(mode="json"),
        }
    )


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(value))
    return out


def distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) without it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def pick_device(name: str, log: Log, local_rank: int = 0) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {name}: expected auto, cpu or cuda")
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise UsageError(
            "--device cuda: this machine has no usable CUDA device",
            hint="use --device cpu (or auto)",
        )
    device = torch.device(f"cuda:{local_rank}") if (cuda and name != "cpu") else torch.device("cpu")
    note = f" (auto: {'CUDA found' if cuda else 'no CUDA'})" if name == "auto" else ""
    log(f"device: {device}{note}")
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: mixed precision is for CUDA only; auto takes bf16 where supported."""
    if name not in PRECISIONS:
        raise UsageError(f"--precision {name}: expected one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if name in ("bf16", "fp16"):
            raise UsageError(
                f"--precision {name}: mixed precision needs CUDA",
                hint="on the CPU, train in fp32 (the default)",
            )
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def make_place(request: Request, compiled: Compiled, log: Log) -> Place:
    rank, local_rank, world = distributed()
    device = pick_device(request.device, log, local_rank)
    amp = pick_precision(request.precision, device)
    if amp is not None:
        log(f"mixed precision: {str(amp).removeprefix('torch.')}")
    nhwc = channels_last_helps((n.op for n in compiled.graph.nodes), device.type) and all(
        len(i.shape) == 3
        for i in compiled.graph.inputs  # NHWC needs 2-D maps, not signals
    )
    return Place(device, amp, nhwc, rank, world)


def load_tensors(
    compiled: Compiled,
    config: TrainConfig,
    data: Path | None,
    limit: int | None,
    device: torch.device,
    log: Log,
) -> Tensors:
    """The data, fitted to the network's input and checked against what its output is
    trained as (netspec.tasks), and the augment block against what moves its targets."""
    target = target_of(compiled, config.loss)
    shape = compiled.graph.inputs[0].shape
    sizing = Sizing(config.resize, config.augment.crop_scale is not None)
    stream = stream_above() if target.task.per_sample and not target.reconstruct else None
    fit = _fit(shape, sizing, stream)
    arrays = read_arrays(config.dataset, data, log, config.scenes or Scenes(), fit)
    tensors = fit_to_input(arrays, shape, target, limit, device, log, sizing)
    tensors.target.task.check_augment(config.augment, tensors.target)
    return tensors


def _fit(shape: Shape, sizing: Sizing, stream: int | None) -> Fit:
    """What a reader of images of any size is told of the input (C x H x W), and over how
    many bytes of decoded images it may stream a per-sample target's training images."""
    if len(shape) != 3:
        return Fit()
    channels, height, width = shape
    size = (height, width) if isinstance(height, int) and isinstance(width, int) else None
    grey_or_rgb = channels if channels in (1, 3) else 1  # others: fit_to_input says so
    return Fit(int(grey_or_rgb), size, sizing.resize, sizing.crops, stream)


def seeded_module(compiled: Compiled, build: Build, seed: int) -> nn.Module:
    """The module, its initial weights drawn from ``seed``."""
    torch.manual_seed(seed)
    try:
        return build(compiled)
    except ImportError as e:
        raise UsageError(f"cannot build a PyTorch module for '{compiled.name}' ({e})") from None
