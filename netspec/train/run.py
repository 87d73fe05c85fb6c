"""A run directory: its spec, settings, metrics and checkpoints, every file written atomically.

    runs/NAME/
        settings.json   what defines the run (compared on --resume); written last when made
        spec/           every file the spec read, laid out as beside the spec (spec/lenet.net,
                        spec/lib/blocks.net); a run is compiled from here and nowhere else
        metrics.csv     one row per epoch
        weights/last.safetensors   the checkpoint's commit (see below)
        weights/best.safetensors   the weights of the best test accuracy so far
        state/epoch-0003.safetensors   optimizer, scheduler and scaler state after epoch 3
        curves.png  confusion.png  errors.png  samples/  model.onnx

A run directory appears whole or not at all: it is filled under a temp name and renamed
into place (an empty directory of the same name is taken over). A checkpoint is committed
by one rename, of ``weights/last.safetensors``, whose metadata says which epoch it is (so
which state file and how many metrics rows belong to it), the spec's digest and the
epoch's metrics: the state file and the metrics are written before it, and a resume
truncates the metrics to the committed epoch, so a run killed at any instant resumes from
a consistent checkpoint. Nothing is a pickle: weights and state are safetensors.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model
from torch import nn

from netspec.errors import RunError, UsageError
from netspec.fileio import (
    TMP_SUFFIX,
    PathLike,
    commit_point,
    fsync_dir,
    make_dirs,
    output_error,
    read_capped,
    umask,
    write_atomic,
    write_text,
)
from netspec.lower.weights import load_weights
from netspec.train.state import load_state, save_state

METRICS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
# Every column a metrics file may have, in order: a classifier's are METRICS; a map trained
# with mse has no accuracy, a segmentation map has pixel accuracy instead.
COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "train_pixel_acc",
    "test_loss",
    "test_acc",
    "test_pixel_acc",
    "test_map50",  # a detector's mAP@0.5 and mAP@0.5:0.95 on the test scenes (issue 13)
    "test_map",
    "lr",
    "seconds",
)
REQUIRED = ("epoch", "train_loss", "test_loss", "lr", "seconds")
MAX_RUNS_OF_A_NAME = 100_000
MAX_RUN_FILE_BYTES = 64 * 2**20  # settings.json, metrics.csv: kilobytes in any real run


def check_run_name(name: str) -> None:
    """Refuse a run name that is not one plain directory name (``../x``, ``a/b``, ``.``)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UsageError(f"--name {name!r}: expected a plain directory name, such as lenet-2")


def new_run_dir(out: PathLike, name: str, fill: Callable[[Path], None] = lambda _: None) -> Path:
    """Make ``out/name`` (or ``name-2``, ``name-3``... if taken) holding what ``fill`` writes.

    ``fill`` writes into a temp directory that is renamed into place in one step, so a kill
    leaves no half-made run; an empty directory of the name is taken over.
    """
    check_run_name(name)
    parent = make_dirs(out)
    _remove_stale_temps(parent, name)
    try:
        tmp = Path(
            tempfile.mkdtemp(dir=parent, prefix=f".{name}.{os.getpid()}.", suffix=TMP_SUFFIX)
        )
    except OSError as e:
        raise output_error(parent / name, e) from None
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp's 0700 would hide the run from others
        return _rename_into_place(tmp, parent, name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rename_into_place(tmp: Path, parent: Path, name: str) -> Path:
    for n in range(1, MAX_RUNS_OF_A_NAME):
        path = parent / (name if n == 1 else f"{name}-{n}")
        if path.exists() and not (path.is_dir() and not any(path.iterdir())):
            continue
        commit_point()
        try:
            os.rename(tmp, path)  # onto a missing or empty directory; refused onto anything else
        except OSError as e:
            if path.exists():
                continue  # taken meanwhile
            raise output_error(path, e) from None
        fsync_dir(parent)
        return path
    raise RunError(f"{parent}: too many runs named {name}")


def _remove_stale_temps(parent: Path, name: str) -> None:
    """Remove the temp directories of runs whose creating process was killed."""
    for tmp in parent.glob(f".{glob.escape(name)}.*{TMP_SUFFIX}"):
        pid = tmp.name.removeprefix(f".{name}.").split(".")[0]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def write_json(path: PathLike, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(read_capped(path, MAX_RUN_FILE_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise RunError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object")
    return data


def remove_temp_files(run: Path) -> None:
    """Delete what a killed writer left: temp files are never part of a checkpoint."""
    for tmp in run.rglob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def write_metrics(path: PathLike, rows: Sequence[Mapping[str, float]]) -> None:
    """One row per epoch, with the columns the rows have (METRICS for a classifier)."""
    fields = [k for k in COLUMNS if k in rows[0]] if rows else list(METRICS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in fields})
    write_text(path, buf.getvalue())


def _cell(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else f"{value:.6g}"


def read_metrics(path: PathLike) -> list[dict[str, float]]:
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = read_capped(path, MAX_RUN_FILE_BYTES).decode("utf-8")
        rows = csv.DictReader(io.StringIO(text, newline=""))
        fields = [k for k in COLUMNS if k in (rows.fieldnames or ())]
        if any(k not in fields for k in REQUIRED):
            raise KeyError(", ".join(k for k in REQUIRED if k not in fields))
        return [{k: float(row[k]) for k in fields} for row in rows]
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as e:
        raise RunError(f"{path}: not a netspec metrics file ({e})") from None


@dataclass(frozen=True)
class Checkpoint:
    """What a run's last checkpoint holds, once loaded into a module."""

    epoch: int
    state: dict[str, Any]


def save_weights(path: PathLike, module: nn.Module, meta: Mapping[str, Any]) -> None:
    """``path`` (.safetensors, shared tensors stored once), its metadata saying what it is:
    ``epoch``, ``spec_sha256``, and the per-file ``sources`` and epoch ``metrics`` as JSON."""
    metadata = {
        "epoch": str(meta["epoch"]),
        "spec_sha256": str(meta["spec_sha256"]),
        "sources": json.dumps(meta.get("sources", {}), sort_keys=True),
        "metrics": json.dumps(meta.get("metrics", {}), sort_keys=True),
    }

    def write(tmp: Path) -> None:
        try:
            save_model(module, str(tmp), metadata=metadata)
        except SafetensorError as e:  # a full disk, say: the writer says so as an OSError
            raise OSError(str(e)) from None

    write_atomic(path, write)


def weights_meta(path: PathLike) -> dict[str, Any]:
    """What a netspec weights file says it is: ``epoch`` (int), ``spec_sha256`` (str or None),
    ``sources`` and ``metrics`` (dicts, empty when absent)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        epoch = int(meta["epoch"]) if "epoch" in meta else None
        sources = json.loads(meta.get("sources", "{}"))
        metrics = json.loads(meta.get("metrics", "{}"))
    except (OSError, SafetensorError, ValueError, RecursionError) as e:
        raise RunError(f"{path}: not a netspec weights file ({e})") from None
    if not isinstance(sources, dict) or not isinstance(metrics, dict):
        raise RunError(f"{path}: not a netspec weights file (bad sources or metrics)")
    return {
        "epoch": epoch,
        "spec_sha256": meta.get("spec_sha256"),
        "sources": sources,
        "metrics": metrics,
    }


def weights_epoch(path: PathLike) -> int:
    """The epoch recorded in a weights file's metadata."""
    epoch = weights_meta(path)["epoch"]
    if not isinstance(epoch, int) or epoch < 1:
        raise RunError(f"{path}: not a netspec checkpoint (no epoch in its metadata)")
    return epoch


def state_path(run: Path, epoch: int) -> Path:
    return run / "state" / f"epoch-{epoch:04d}.safetensors"


def save_checkpoint(
    run: Path, module: nn.Module, state: dict[str, Any], meta: Mapping[str, Any]
) -> None:
    """The state of epoch ``meta['epoch']``, then the weights that commit it; then tidy up."""
    keep = state_path(run, int(meta["epoch"]))
    save_state(keep, state)
    save_weights(run / "weights" / "last.safetensors", module, meta)
    remove_other_states(run, keep)


def remove_other_states(run: Path, keep: Path) -> None:
    """Delete every state file but ``keep`` (those of older or uncommitted epochs)."""
    for old in (run / "state").glob("epoch-*"):
        if old != keep:
            old.unlink(missing_ok=True)


def load_checkpoint(run: PathLike, module: nn.Module) -> Checkpoint | None:
    run = Path(run)
    """Load the last committed weights into ``module``; None if the run has no checkpoint."""
    last = run / "weights" / "last.safetensors"
    if not last.is_file():
        return None
    epoch = weights_epoch(last)
    path = state_path(run, epoch)
    if not path.is_file():
        raise RunError(f"{path}: missing; the optimizer state of epoch {epoch} is needed to resume")
    load_weights(last, module)
    return Checkpoint(epoch, load_state(path))


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
