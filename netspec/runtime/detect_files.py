"""`netspec detect` on files: each image read whole and model-ready, its boxes found
(netspec.runtime.detect), drawn with the one painter (netspec.detection.paint) into a PNG
where asked, and described by a JSON-ready record for the command line to print. ONNX
Runtime only, never torch.

A detector sees an image at its own size, so an image is read with the model's input
height and width left free. A file may hold several images (a .npy stack): they are named
`x.npy[0]`, `x.npy[1]`, ..., and each drawing is named by a stem of its own (`stems`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import InputInfo
from netspec.detection.boxes import Detections, label
from netspec.detection.paint import class_colour, paint_boxes, picture_of
from netspec.errors import InputError
from netspec.fileio import make_dirs, write_atomic
from netspec.runtime.detect import DetectOptions, Detector, detector
from netspec.runtime.inputs import Notice, expand_paths, load_file
from netspec.runtime.session import Model

FloatArray = npt.NDArray[np.float32]


def detect_files(
    model: Model,
    paths: Sequence[Path],
    options: DetectOptions,
    out: Path | None,
    *,
    invert: bool = False,
    notice: Notice = lambda _: None,
) -> list[dict[str, Any]]:
    """Each image's record, in order: `input` (its name), `size` ([H, W]), `detections`
    (Detections.records) and `file` (its picture with the boxes, written to `out`/STEM.png;
    None without `out`). Every image is read before the first is run, so a bad file stops
    the command before anything is drawn."""
    given = model.info.inputs[0]
    if len(given.shape) != 3:
        raise InputError(f"{model.path}: its input is {given.shape}; a detector takes images")
    found_by = detector(model.info, str(model.path))
    found = read_images(given, paths, invert=invert, notice=notice)
    names = stems([name for name, _ in found])
    return [
        _detect_one(model, found_by, name, image, options, out and out / f"{stem}.png")
        for (name, image), stem in zip(found, names, strict=True)
    ]


def read_images(
    info: InputInfo,
    paths: Sequence[Path],
    *,
    invert: bool = False,
    notice: Notice = lambda _: None,
) -> list[tuple[str, FloatArray]]:
    """Every image in `paths` (files or directories), named, model-ready for an input like
    `info` but at its own height and width: (1, C, H, W) each."""
    sliding = replace(info, shape=(info.shape[0], "H", "W"))
    found: list[tuple[str, FloatArray]] = []
    for path in expand_paths(list(paths)):
        batch = load_file(path, sliding, invert=invert, notice=notice)
        names = [str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))]
        found += [(name, batch[i : i + 1]) for i, name in enumerate(names)]
    return found


def _detect_one(
    model: Model,
    found_by: Detector[Any],
    name: str,
    image: FloatArray,
    options: DetectOptions,
    target: Path | None,
) -> dict[str, Any]:
    """One image's record, its picture written to `target` (if any)."""
    found = found_by.decode(model, image, options)
    labels = model.info.labels or ()
    if target is not None:
        picture = draw(image, found, model.info.inputs[0], labels)
        make_dirs(target.parent)
        write_atomic(target, lambda tmp: picture.save(tmp, format="PNG"))
    return {
        "input": name,
        "size": list(image.shape[2:]),
        "detections": found.records(labels),
        "file": None if target is None else str(target),
    }


def draw(image: FloatArray, found: Detections, info: InputInfo, labels: Sequence[str]) -> Any:
    """A Pillow picture of a model-ready image (1, C, H, W) as its pixels were, each box in
    its class's colour, labelled `class score` on a tag."""
    texts = [
        f"{label(labels, int(c))} {s:.2f}" for c, s in zip(found.classes, found.scores, strict=True)
    ]
    colours = [class_colour(int(c)) for c in found.classes]
    picture = picture_of(pixels(image, info))
    return paint_boxes(picture, found.boxes, texts, colours, tags=True)


def pixels(image: FloatArray, info: InputInfo) -> npt.NDArray[np.uint8]:
    """A model-ready image (1, C, H, W) back to 8-bit pixels (H, W, 3) to draw on."""
    unit = np.clip(info.pixels(image[0]), 0, 1)
    rgb = np.repeat(unit, 3, axis=0) if unit.shape[0] == 1 else unit[:3]
    out: npt.NDArray[np.uint8] = np.rint(rgb.transpose(1, 2, 0) * 255).astype(np.uint8)
    return out


def stems(names: list[str]) -> list[str]:
    """A distinct file name stem per input: `scene.png` -> `scene`, `x.npy[3]` -> `x-3`.

    >>> stems(["a/scene.png", "b/scene.png", "x.npy[3]", ".hidden"])
    ['scene', 'scene-2', 'x-3', 'hidden']
    """
    out: list[str] = []
    for name in names:
        match = re.fullmatch(r"(.*)\[(\d+)\]", name)
        path, index = (match.group(1), f"-{match.group(2)}") if match else (name, "")
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem + index).lstrip(".") or "_"
        unique, n = stem, 2
        while unique in out:
            unique, n = f"{stem}-{n}", n + 1
        out.append(unique)
    return out
