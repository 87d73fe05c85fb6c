"""What a two-stage detector's region stages make of one image, read from the probe's
outputs: the RoI set of the layer that makes one (an operation whose `OpDef.makes_rois`:
`proposals`, or any other that makes regions), and, where that layer is a region proposal
network's proposal layer, the anchors its RPN scores best, as placed, before its deltas
move them.

A RoI-making layer is an RPN's where its placed record says its anchors (`Anchored`: the
layer's first input then holds one logit per anchor, in the anchors' order); a layer that
makes regions another way (windows from the image's edges) has no RPN, and no anchors are
shown. `netspec show` (proposals.png) and `netspec serve` (every detector answer) both read
the stages here, from the layers' outputs, so the boxes are the network's own, as ONNX
Runtime or PyTorch computed them, never recomputed. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from netspec.compiler import Compiled
from netspec.ops import REGISTRY

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
SCORE = 4  # a RoI row's score column; an empty row's score is negative
TOP_ANCHORS = 10  # the RPN's best anchors that `show` draws and `serve` sends


@runtime_checkable
class Anchored(Protocol):
    """A placed RoI-making layer that scores anchors: an RPN's proposal layer."""

    def anchor_boxes(self) -> list[tuple[float, float, float, float]]:
        """Every anchor's x1, y1, x2, y2 in input pixels, in the order of the logits of the
        layer's first input read cell by cell (row-major), anchor by anchor."""
        ...


@dataclass(frozen=True)
class Ranked:
    """Boxes ``(R, 4)`` x1, y1, x2, y2 in input pixels with their scores ``(R,)``, best
    first, and where they come from: rows of the RoI set, or anchors of the RPN."""

    boxes: FloatArray
    scores: FloatArray
    index: IntArray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Regions:
    """The network's RoI-making `layer` (``keep`` rows per image) and, for an RPN, the map
    of its anchors' logits (`objectness`) and the anchors ``(L, 4)`` in the logits' order."""

    layer: str
    keep: int
    objectness: str | None = None
    anchors: FloatArray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def rois(self, outputs: Mapping[str, FloatArray]) -> Ranked:
        """The rows of the first image's RoI set that hold a box (a score of 0 or more), in
        the set's order (the layer keeps them best first)."""
        rows = np.asarray(outputs[self.layer][0], np.float32).reshape(self.keep, -1)
        scores = rows[:, SCORE] if rows.shape[1] > SCORE else np.ones(self.keep, np.float32)
        held = np.flatnonzero(np.isfinite(scores) & (scores >= 0))
        return Ranked(rows[held, :SCORE], scores[held], held.astype(np.int64))

    def best_anchors(
        self, outputs: Mapping[str, FloatArray], count: int = TOP_ANCHORS
    ) -> Ranked | None:
        """The ``count`` anchors of the first image the RPN scores best (the sigmoid of each
        one's logit), best first, at equal scores the first; None without an RPN."""
        if self.objectness is None:
            return None
        maps = np.asarray(outputs[self.objectness][0], np.float64)  # (A, H, W)
        logits = maps.transpose(1, 2, 0).reshape(-1)  # cell by cell, anchor by anchor
        scores = 1.0 / (1.0 + np.exp(-np.clip(np.nan_to_num(logits, nan=-np.inf), -60, 60)))
        order = np.argsort(-scores, kind="stable")[:count]
        return Ranked(self.anchors[order], scores[order].astype(np.float32), order)


def regions_of(compiled: Compiled) -> Regions | None:
    """The network's RoI-making layer (the last, where there are several: the one nearest
    the head), with its RPN's anchors where it has one; None for a network that makes no
    regions."""
    makers = [layer for layer in compiled.layers if REGISTRY[layer.op].makes_rois]
    if not makers:
        return None
    layer = makers[-1]
    keep = int(layer.shape[0]) if isinstance(layer.shape[0], int) else 0
    placed = layer.placed
    if not isinstance(placed, Anchored):
        return Regions(layer.name, keep)
    anchors = np.asarray(placed.anchor_boxes(), np.float32).reshape(-1, 4)
    return Regions(layer.name, keep, compiled.graph.node(layer.name).inputs[0], anchors)
