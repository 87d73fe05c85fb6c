"""What a model's outputs mean for a person, in the form each output's kind calls for.

Class scores give the top classes (from the probabilities `netspec.artifact.class_scores`
makes of the kind); a map, a raw tensor or boxes give their shape and range, and are saved
as `.npy` (a map of 1 or 3 channels also as a PNG) when `run` is given a directory; an
embedding gives its shape, its length (L2 norm) and its first values.

A PNG shows a map's values as they are when they lie in [0, 1] (a reconstruction of
pixels), else stretched from its minimum to its maximum.

>>> import numpy as np
>>> from netspec.artifact import class_scores
>>> probs = class_scores(np.array([[0.0, 2.0]], np.float32), "logits")
>>> [round(float(p), 3) for p in probs[0]]
[0.119, 0.881]
>>> top_k(probs, 1, ["cat", "dog"])[0][0]["label"]
'dog'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import ModelInfo, OutputInfo, class_scores
from netspec.fileio import make_dirs, write_atomic

EMBEDDING_HEAD = 8  # values of an embedding shown


def top_k(
    probs: npt.NDArray[np.float32], k: int, labels: Sequence[str] | None
) -> list[list[dict[str, Any]]]:
    """The `k` likeliest classes of each sample, likeliest first: class, label, probability."""
    rows = []
    for p in probs:
        order = np.argsort(-p, kind="stable")[:k]
        rows.append(
            [
                {
                    "class": int(c),
                    "label": labels[c] if labels and c < len(labels) else str(int(c)),
                    "probability": float(p[c]),
                }
                for c in order
            ]
        )
    return rows


@dataclass(frozen=True)
class Reading:
    """How `run` reports a model's outputs: `k` classes per scores output, and where maps
    and tensors are saved (None: nowhere, only summarized)."""

    info: ModelInfo
    k: int = 3
    out: Path | None = None


def read_outputs(
    reading: Reading, names: Sequence[str], outputs: Sequence[npt.NDArray[np.float32]]
) -> list[dict[str, Any]]:
    """One record per input: `{"input": name, "outputs": [one record per output]}`, plus
    `"top"` when the model has one output and it is class scores (the classifier's form)."""
    info = reading.info
    if reading.out is not None:
        make_dirs(reading.out)
    stems = _stems(names)
    per_output = [
        _read_output(o, array, reading, stems)
        for o, array in zip(info.outputs, outputs, strict=True)
    ]
    records = []
    for i, name in enumerate(names):
        record: dict[str, Any] = {"input": name, "outputs": [rows[i] for rows in per_output]}
        if len(info.outputs) == 1 and info.outputs[0].scores:
            record["top"] = per_output[0][i]["top"]
        records.append(record)
    return records


def _read_output(
    output: OutputInfo, array: npt.NDArray[np.float32], reading: Reading, stems: Sequence[str]
) -> list[dict[str, Any]]:
    """The records of one output, one per sample."""
    head = {"name": output.name, "kind": output.kind}
    if output.scores:
        rows = top_k(class_scores(array, output.kind), reading.k, reading.info.labels)
        return [{**head, "top": r} for r in rows]
    records = []
    for sample, stem in zip(array, stems, strict=True):
        record = {**head, **_summary(sample)}
        if output.kind == "embedding":
            flat = sample.reshape(-1).astype(np.float64)
            record["norm"] = float(np.linalg.norm(flat))
            record["head"] = [float(v) for v in flat[:EMBEDDING_HEAD]]
        if reading.out is not None:
            record["files"] = _save(sample, reading.out / f"{stem}.{_safe(output.name)}", output)
        records.append(record)
    return records


def _summary(sample: npt.NDArray[np.float32]) -> dict[str, Any]:
    finite = sample[np.isfinite(sample)]
    stats: tuple[float | None, ...] = (
        (float(finite.min()), float(finite.max()), float(finite.mean()))
        if finite.size
        else (None, None, None)  # JSON has no NaN
    )
    return {
        "shape": list(sample.shape),
        "min": stats[0],
        "max": stats[1],
        "mean": stats[2],
        "nonfinite": int(sample.size - finite.size),
    }


def _save(sample: npt.NDArray[np.float32], base: Path, output: OutputInfo) -> list[str]:
    """`base.npy`, and `base.png` for a map of 1 or 3 channels; the paths written."""
    npy = base.with_name(base.name + ".npy")
    write_atomic(npy, lambda tmp: _write_npy(tmp, sample))
    written = [str(npy)]
    if output.kind == "map" and sample.ndim == 3 and sample.shape[0] in (1, 3):
        png = base.with_name(base.name + ".png")
        image = map_image(sample)
        write_atomic(png, lambda tmp: image.save(tmp, format="PNG"))
        written.append(str(png))
    return written


def _write_npy(tmp: Path, sample: npt.NDArray[np.float32]) -> None:
    with open(tmp, "wb") as f:
        np.save(f, sample, allow_pickle=False)


def map_image(sample: npt.NDArray[np.float32]) -> Any:
    """A `1 x H x W` or `3 x H x W` map as a Pillow image: values in [0, 1] as they are,
    any other range stretched from its minimum to its maximum (non-finite values black)."""
    from PIL import Image

    values = np.nan_to_num(sample.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 1:
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    pixels = np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0], mode="L")
    return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")


def _safe(text: str) -> str:
    """A file-name part: letters, digits, `.`, `_`, `-`; anything else becomes `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "_"


def _stems(names: Sequence[str]) -> list[str]:
    """A distinct file-name stem per input: `digit.png` -> `digit`, `x.npy[3]` -> `x-3`."""
    stems: list[str] = []
    seen: set[str] = set()
    for name in names:
        match = re.fullmatch(r"(.*)\[(\d+)\]", name)
        path, index = (match.group(1), f"-{match.group(2)}") if match else (name, "")
        stem = _safe(Path(path).stem + index)
        unique, n = stem, 2
        while unique in seen:
            unique, n = f"{stem}-{n}", n + 1
        seen.add(unique)
        stems.append(unique)
    return stems
