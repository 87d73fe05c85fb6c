"""A run directory: its settings, metrics and checkpoints, every file written atomically.

    runs/NAME/
        spec.net  settings.json  metrics.csv
        weights/last.safetensors  weights/last.json  weights/best.safetensors  weights/best.json
        state/epoch-0003.pt       optimizer, scheduler and scaler state after epoch 3
        curves.png  confusion.png  errors.png  model.onnx

A checkpoint is committed by renaming `weights/last.safetensors` into place: its metadata
names the epoch, and the state file of that epoch is written before it, so a run killed at
any instant resumes from a consistent pair. Weights are read with safetensors only; the
state file is our own and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model
from torch import nn

from netspec.errors import RunError
from netspec.fileio import TMP_SUFFIX, write_atomic, write_text
from netspec.lower.weights import load_weights

METRICS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_run_dir(out: Path, name: str) -> Path:
    """Create ``out/name``, or ``name-2``, ``name-3``... if taken; never reuse one."""
    out.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100_000):
        path = out / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"{out}: too many runs named {name}")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object")
    return data


def remove_temp_files(run: Path) -> None:
    """Delete what a killed writer left: temp files are never part of a checkpoint."""
    for tmp in run.rglob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def write_metrics(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in METRICS})
    write_text(path, buf.getvalue())


def _cell(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else f"{value:.6g}"


def read_metrics(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        try:
            return [{k: float(row[k]) for k in METRICS} for row in csv.DictReader(f)]
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{path}: not a netspec metrics file ({e})") from None


@dataclass(frozen=True)
class Checkpoint:
    """What a run's last checkpoint holds, once loaded into a module."""

    epoch: int
    state: dict[str, Any]


def save_weights(path: Path, module: nn.Module, meta: Mapping[str, Any]) -> None:
    """``path`` (.safetensors, shared tensors stored once) and its ``.json`` sidecar."""
    metadata = {"epoch": str(meta["epoch"]), "spec_sha256": str(meta["spec_sha256"])}
    write_atomic(path, lambda tmp: save_model(module, str(tmp), metadata=metadata))
    write_json(path.with_suffix(".json"), meta)


def weights_epoch(path: Path) -> int:
    """The epoch recorded in a weights file's metadata."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return int(meta["epoch"])
    except (OSError, SafetensorError, KeyError, ValueError) as e:
        raise RunError(f"{path}: not a netspec weights file ({e})") from None


def state_path(run: Path, epoch: int) -> Path:
    return run / "state" / f"epoch-{epoch:04d}.pt"


def save_checkpoint(
    run: Path, module: nn.Module, state: dict[str, Any], meta: Mapping[str, Any]
) -> None:
    """The state of epoch ``meta['epoch']``, then the weights that commit it; then tidy up."""
    epoch = int(meta["epoch"])
    keep = state_path(run, epoch)
    write_atomic(keep, lambda tmp: torch.save(state, tmp))
    save_weights(run / "weights" / "last.safetensors", module, meta)
    for old in keep.parent.glob("epoch-*.pt"):
        if old != keep:
            old.unlink(missing_ok=True)


def load_checkpoint(run: Path, module: nn.Module) -> Checkpoint | None:
    """Load the last committed weights into ``module``; None if the run has no checkpoint."""
    last = run / "weights" / "last.safetensors"
    if not last.is_file():
        return None
    epoch = weights_epoch(last)
    path = state_path(run, epoch)
    if not path.is_file():
        raise RunError(f"{path}: missing; the optimizer state of epoch {epoch} is needed to resume")
    load_weights(last, module)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        raise RunError(f"{path}: cannot read the training state ({e})") from None
    return Checkpoint(epoch, state)


def differences(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """``key: stored -> wanted`` for every leaf that differs, nested keys dotted."""
    out: list[str] = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out
