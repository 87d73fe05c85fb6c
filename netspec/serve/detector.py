"""A detector on the page: the boxes in what is drawn, uploaded or generated, found by the
detector file through the decoder `netspec detect` uses (netspec.runtime.detect), and what
its head looks at: the grid of a single-shot head (YOLO) with each cell's confidence, or
the default boxes (anchors) of an SSD head with their scores; and for a two-stage detector
(a network that makes regions, netspec.probe.regions) its proposals with their scores and
its RPN's best anchors, as `netspec show` draws them in proposals.png.

The file is a run's `model.onnx` (or the ONNX file served); a spec's is exported once, at
start, with the seeded weights the probe draws (netspec.probe.torch_side), into a temporary
folder that is gone once ONNX Runtime has read it. Nothing here decodes boxes itself: the
boxes are the decoder's, as `netspec detect --json` prints them (`Detections.records`).

Every answer carries each box of at least `PAGE_FLOOR`, best first; the page's threshold
filters them without asking again. That is the decoder's answer at the higher threshold:
suppression keeps a box unless a better one of its class overlaps it, and a better one
passes any threshold the box passes.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.compiler import Compiled
from netspec.detection.boxes import label
from netspec.detection.paint import class_colour
from netspec.kinds import head_node, head_site
from netspec.ops import REGISTRY
from netspec.ops.detection import Head, head_of
from netspec.ops.ssd import DELTAS, Ssd, ssd_of
from netspec.probe import Probe
from netspec.probe.regions import TOP_ANCHORS, Ranked, Regions, regions_of
from netspec.runtime.decoders.base import run_image
from netspec.runtime.detect import DetectOptions, Detector, detector
from netspec.runtime.session import Model, open_model
from netspec.serve.images import BadRequest, plain
from netspec.serve.maps import encode

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]
PAGE_FLOOR = 0.05  # the least threshold the page offers: every answer holds these boxes
BEST_ANCHORS = 12  # an SSD head's default boxes shown by their score, best first


@dataclass(frozen=True)
class Detecting:
    """The detector file (`model`) and its decoder (`found_by`), the head's layer and what
    the head is: a single-shot `grid` or SSD `anchors` (None for the other), and the
    network's region stages where it makes regions (a two-stage detector)."""

    model: Model
    found_by: Detector[Any]
    head: str  # the layer whose output is the head's raw map or rows
    grid: Head | None
    anchors: Ssd | None
    priors: FloatArray = field(repr=False)  # (R, 4) the anchors' x1, y1, x2, y2 in input px
    regions: Regions | None = field(default=None, repr=False)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.info.labels or ()

    @property
    def threshold(self) -> float:
        """The file's own least score, where its head or its decoding says one (a two-stage
        head's `score`): `netspec detect`'s default."""
        own = self.grid or self.anchors
        if own is not None:
            return own.score
        said = getattr(self.found_by.params, "score", None)
        return float(said) if isinstance(said, float) else DetectOptions().chosen()[0]

    @property
    def classes(self) -> int:
        """How many classes its boxes may have (the head's count, else the labels')."""
        own = self.grid or self.anchors
        return own.classes if own is not None else len(self.labels)

    def info(self) -> dict[str, Any]:
        """GET /api/detector: the decoder, the class names and colours (those of `netspec
        detect`'s pictures), the thresholds, the grid's or the default boxes' geometry (in
        input pixels), which no image changes, and what makes a two-stage detector's
        regions: the layer, its rows, and its RPN's objectness map and anchors."""
        return {
            "decoder": self.found_by.decoder.name,
            "labels": [label(self.labels, k) for k in range(self.classes)],
            "colours": [list(class_colour(k)) for k in range(self.classes)],
            "threshold": self.threshold,
            "floor": PAGE_FLOOR,
            "head": self.head,
            "grid": None if self.grid is None else _grid_info(self.grid),
            "anchors": None if self.anchors is None else _anchor_info(self.anchors),
            "proposals": None if self.regions is None else _regions_info(self.regions),
        }

    def detect_json(self, probe: Probe, image: npt.NDArray[np.uint8], threshold: float) -> Any:
        """POST /api/detect: the input as the network sees it, and what `found` finds."""
        prepared = probe.prepare(plain(image))
        found = self.found(prepared, probe.run(prepared), threshold)
        return {"input": encode(prepared[0]), **found}

    def found(
        self, prepared: FloatArray, outputs: Mapping[str, FloatArray], threshold: float
    ) -> dict[str, Any]:
        """The boxes in one model-ready image ``(1, C, H, W)`` at the input's size (the
        decoder's, of at least ``threshold``), and the grid's cells or the best default
        boxes, or a two-stage detector's proposals and its RPN's best anchors, from the
        probe's ``outputs`` for that image."""
        options = DetectOptions(threshold=threshold)
        boxes = self.found_by.decode(self.model, prepared, options).records(self.labels)
        answer: dict[str, Any] = {"threshold": threshold, "boxes": boxes}
        if self.grid is not None:
            answer["cells"] = self._cells(prepared, self.grid)
        if self.anchors is not None:
            answer["anchors"] = self._anchors(np.asarray(outputs[self.head][0]), self.anchors)
        if self.regions is not None:
            answer["proposals"] = _proposals(self.regions, outputs)
        return answer

    def _cells(self, prepared: FloatArray, grid: Head) -> dict[str, Any]:
        """Each cell's best class-specific confidence (what the threshold compares) and its
        class, row by row, from the file's own proposed boxes: ``S*S*B`` rows of corners
        and C confidences, cell by cell, predictor by predictor."""
        rows = run_image(self.model, prepared)[0]
        s = grid.grid
        scores = rows[:, 4:].reshape(s * s, grid.boxes * grid.classes).astype(np.float64)
        best = np.nan_to_num(scores, nan=-np.inf).argmax(1)
        return {
            "scores": [round(_number(v), 4) for v in scores[np.arange(s * s), best]],
            "classes": [int(k) for k in best % grid.classes],
        }

    def _anchors(self, rows: npt.NDArray[Any], head: Ssd) -> dict[str, Any]:
        """Every default box's best class score (the softmax over background and classes
        that the exported graph takes, background left out), and the `BEST_ANCHORS` best
        with their map, position, box and class."""
        logits = rows[:, DELTAS:].astype(np.float64)
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs = (e / e.sum(1, keepdims=True))[:, 1:]
        scores, classes = probs.max(1), probs.argmax(1)
        order = np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable")[:BEST_ANCHORS]
        return {
            "scores": [round(_number(v), 4) for v in scores],
            "best": [self._anchor(int(r), head, scores, classes) for r in order],
        }

    def _anchor(
        self, r: int, head: Ssd, scores: npt.NDArray[Any], classes: npt.NDArray[Any]
    ) -> dict[str, Any]:
        """Default box ``r`` of the head's rows: map by map, position by position, box by box."""
        per = len(head.ratios) + int(head.extra)
        k, first = 0, 0
        while first + head.maps[k][0] * head.maps[k][1] * per <= r:
            first += head.maps[k][0] * head.maps[k][1] * per
            k += 1
        position, box = divmod(r - first, per)
        row, col = divmod(position, head.maps[k][1])
        return {
            "index": r,
            "map": k,
            "row": row,
            "col": col,
            "box": box,
            "xyxy": [round(float(v), 2) for v in self.priors[r]],
            "score": round(_number(scores[r]), 4),
            "class": int(classes[r]),
            "label": label(self.labels, int(classes[r])),
        }


def threshold_of(body: Mapping[str, Any], default: float) -> float:
    """The ``threshold`` of POST /api/detect: a score from 0 to 1, else ``default``."""
    value = body.get("threshold", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BadRequest(f"'threshold' must be a score from 0 to 1, not {str(value)[:40]}", 422)
    return float(value)


def _number(v: Any) -> float:
    """A score for JSON: a non-finite one (a broken network's) as 0."""
    f = float(v)
    return f if math.isfinite(f) else 0.0


def _corners(head: Ssd | None) -> FloatArray:
    """The head's default boxes as corners x1, y1, x2, y2 in input pixels (none without)."""
    if head is None:
        return np.zeros((0, 4), np.float32)
    h, w = head.image
    cx, cy, bw, bh = np.asarray(head.priors(), np.float64).reshape(-1, 4).T
    corners = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
    return np.stack(corners, 1).astype(np.float32)


def _regions_info(regions: Regions) -> dict[str, Any]:
    """The RoI-making layer and its rows per image; for an RPN, its objectness map, how
    many anchors it scores and how many of the best each answer carries."""
    return {
        "layer": regions.layer,
        "keep": regions.keep,
        "objectness": regions.objectness,
        "anchors": len(regions.anchors),
        "best": TOP_ANCHORS if regions.objectness is not None else 0,
    }


def _proposals(regions: Regions, outputs: Mapping[str, FloatArray]) -> dict[str, Any]:
    """The image's RoI set, each box that a row holds with its score and row, best first,
    and its RPN's best anchors, as placed, with their scores and indices (None without)."""
    anchors = regions.best_anchors(outputs)
    return {
        "layer": regions.layer,
        "boxes": _ranked(regions.rois(outputs), "row"),
        "anchors": None if anchors is None else _ranked(anchors, "index"),
    }


def _ranked(ranked: Ranked, where: str) -> list[dict[str, Any]]:
    return [
        {
            where: int(ranked.index[k]),
            "xyxy": [round(_number(v), 2) for v in ranked.boxes[k]],
            "score": round(_number(ranked.scores[k]), 4),
        }
        for k in range(len(ranked))
    ]


def _grid_info(grid: Head) -> dict[str, Any]:
    h, w = grid.image
    return {
        "size": grid.grid,
        "boxes": grid.boxes,
        "classes": grid.classes,
        "cell": [h / grid.grid, w / grid.grid],
        "rf": list(grid.rf),
        "text": grid.text(),
    }


def _anchor_info(head: Ssd) -> dict[str, Any]:
    """Each map's size and its default boxes' (width, height) in input pixels: box ``a``
    of position (i, j) of map k is centred at ((j + 0.5) W / w, (i + 0.5) H / h)."""
    h, w = head.image
    return {
        "rows": head.rows,
        "maps": [
            {
                "height": mh,
                "width": mw,
                "scale": head.scales[k],
                "sizes": [[round(bw * w, 2), round(bh * h, 2)] for bw, bh in head.sizes(k)],
            }
            for k, (mh, mw) in enumerate(head.maps)
        ],
    }


def open_detecting(probe: Probe, target: Path, threads: int | None, log: Log) -> Detecting | None:
    """The detector of ``target`` (served as ``probe``), or None for a network whose head
    has no decoding (a classifier) or a run without its `model.onnx` (said in ``log``)."""
    site, node = head_site(probe.compiled), head_node(probe.compiled)
    if site is None or node is None or REGISTRY[node.op].decoding is None:
        return None
    model = _detector_file(probe.compiled, target, threads, log)
    if model is None:
        return None
    found_by = detector(model.info, str(model.path))
    grid = head_of(site.params, site.shape, site.rf, site.image)
    anchors = ssd_of(site.params, site.inputs, site.image)
    log(f"detector: {model.path.name}, decoded by {found_by.decoder.name}")
    regions = regions_of(probe.compiled)
    return Detecting(model, found_by, node.name, grid, anchors, _corners(anchors), regions)


def _detector_file(compiled: Compiled, target: Path, threads: int | None, log: Log) -> Model | None:
    """A run's `model.onnx`, the ONNX file served, or a spec exported with seeded weights."""
    if target.is_dir():
        path = target / "model.onnx"
        if not path.is_file():
            log(f"no boxes: {target} has no model.onnx (`netspec export {target}` writes one)")
            return None
        return open_model(path, "cpu", threads)
    if target.suffix == ".onnx":
        return open_model(target, "cpu", threads)
    return _exported(compiled, threads)


def _exported(compiled: Compiled, threads: int | None) -> Model:
    """The spec exported with the probe's seeded weights, read by ONNX Runtime, removed."""
    from netspec.export import ExportOptions, export_compiled
    from netspec.probe.torch_side import build_network

    with tempfile.TemporaryDirectory(prefix="netspec-serve-") as folder:
        path = Path(folder) / f"{compiled.name}.onnx"
        network = build_network(compiled, None)
        export_compiled(compiled, path, ExportOptions(verify=False), weights=network, log=_quiet)
        return open_model(path, "cpu", threads)


def _quiet(line: str) -> None:
    """Export's progress, not shown: the server says what it serves."""
