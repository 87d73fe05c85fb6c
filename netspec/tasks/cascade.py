"""`cascade`: a Viola-Jones cascade (netspec.ops.cascade) boosted on the scenes' windows by
the train section's `cascade stages=... features=[...] detection=... false_positive=...`.

AdaBoost is not gradient descent, so this task fits its module itself (`trains_itself`):
the positives are every training digit's window (the square whose middle holds the digit's
box as the head's `box` says, and a jittered copy), cut from the scenes and resized to the
cascade's window; stage k's negatives are background windows that stages 1..k-1 let
through, mined by running the cascade so far over the training scenes at every scale (for
stage 1, any window), those overlapping no digit's box by IoU `NEGATIVE_IOU` or more. Each
stage is boosted (netspec.tasks.boost) and set into the module at once, so the next stage's
mining runs through the same graph the file exports.

The detector is binary: every digit is one class, "digit", and its mAP is class-agnostic.
Its loss, for `netspec train` and `netspec eval`, is the errors per scene at its own score:
the digits no box finds at IoU 0.5 and the boxes that find no digit.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import nn

from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.detection.boxes import Detections, as_boxes
from netspec.detection.coco import Metrics, evaluate
from netspec.errors import DataError
from netspec.kinds import head_site
from netspec.lower.cascade import Cascade, Integral
from netspec.ops.cascade import CascadeParams, window_side
from netspec.tasks import boost
from netspec.tasks.base import Fitted, Given, Log, Outputs, Target, Tested, Trained
from netspec.tasks.boxes import SceneBoxes, fitted, scene_boxes
from netspec.trainspec import Cascade as Boosting
from netspec.trainspec import Loss, TrainConfig

LABELS = ("digit",)
DIGITS = 10  # the classes the scenes' boxes may have; the cascade finds them all as one
NEGATIVE_IOU = 0.4  # a window is background when its box overlaps every digit's less
FOUND_IOU = 0.5  # a box finds a digit (the loss; mAP@0.5)
JITTER = (0.05, 0.1)  # a positive's copy: its centre moved by this share, its side 2^+-this
BATCH = 32  # scenes mined at once
MINED = 4  # background windows found per one drawn, before mining stops


@dataclass(frozen=True)
class CascadeTarget(Target):
    """A cascade's target: the scenes' boxes, and the head's parameters."""

    params: CascadeParams | None = None


def _params(target: Target) -> CascadeParams:
    assert isinstance(target, CascadeTarget) and target.params is not None
    return target.params


def cascade_of(module: nn.Module) -> Cascade:
    """The network's cascade head module."""
    return next(m for m in module.modules() if isinstance(m, Cascade))


def overlaps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes ``(..., M, 4)`` with ``(..., K, 4)``: ``(..., M, K)``."""
    top_left = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-12)


def truth_boxes(y: torch.Tensor) -> list[npt.NDArray[np.float32]]:
    """Each scene's real boxes ``(K, 4)`` from padded rows ``(N, K, 5)``."""
    rows = y.cpu().numpy()
    return [r[r[:, 0] >= 0, 1:].astype(np.float32) for r in rows]


def crop(
    scene: npt.NDArray[np.float32], top: float, left: float, side: float, size: int
) -> npt.NDArray[np.float32]:
    """The square of ``side`` pixels at (top, left) resized to ``size`` (black outside)."""
    h, w = scene.shape
    inside = top >= 0 and left >= 0 and top + side <= h and left + side <= w
    pad = 0 if inside else int(np.ceil(side)) + 1
    image = Image.fromarray(scene if inside else np.pad(scene, pad), "F")
    box = (left + pad, top + pad, left + side + pad, top + side + pad)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box), np.float32)


def positives(
    x: torch.Tensor, boxes: list[npt.NDArray[np.float32]], p: CascadeParams, seed: int
) -> npt.NDArray[np.float32]:
    """Every digit's window, and a copy moved and scaled a little, ``(2 D, w, w)``."""
    rng = np.random.default_rng(seed)
    bh, bw = p.object_box
    out = []
    for scene, found in zip(x[:, 0].cpu().numpy(), boxes, strict=True):
        for x1, y1, x2, y2 in found:
            side = max((y2 - y1) * p.window / bh, (x2 - x1) * p.window / bw)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            for move, zoom in ((0.0, 0.0), JITTER):
                s = side * 2 ** rng.uniform(-zoom, zoom)
                dx, dy = rng.uniform(-move, move, 2) * s
                out.append(crop(scene, cy + dy - s / 2, cx + dx - s / 2, s, p.window))
    return np.asarray(out, np.float32).reshape(-1, p.window, p.window)


def _background(cascade: Cascade, index: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Of windows ``index`` (image-major over a batch), those whose box overlaps no digit's
    (the batch's padded boxes ``(N, K, 5)``) by NEGATIVE_IOU."""
    windows = cascade.base.shape[0]
    image = torch.div(index, windows, rounding_mode="floor")
    rows = truth[image]  # (M, K, 5)
    iou = overlaps(cascade.boxes[index % windows][:, None], rows[..., 1:])[:, 0]  # (M, K)
    iou = torch.where(rows[..., 0] >= 0, iou, torch.zeros_like(iou))
    return index[iou.max(1).values < NEGATIVE_IOU] if rows.shape[1] else index


@torch.no_grad()
def negatives(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int, seed: int
) -> npt.NDArray[np.float32]:
    """Up to ``count`` background windows that the cascade so far lets through, drawn at
    random from the training scenes (a random quarter of them, or more until there are
    MINED times as many to draw from), cut and resized to the window."""
    cascade, integral = cascade_of(module), Integral()
    rng = np.random.default_rng(seed)
    windows = cascade.base.shape[0]
    order = rng.permutation(len(x))
    found: list[torch.Tensor] = []
    total, seen = 0, 0
    for first in range(0, len(x), BATCH):
        chosen = torch.as_tensor(order[first : first + BATCH])
        index, _ = cascade.survivors(integral(x[chosen].float()))
        index = _background(cascade, index, y[chosen])
        image = chosen[torch.div(index, windows, rounding_mode="floor")]
        found.append(image * windows + index % windows)
        total, seen = total + len(index), seen + len(chosen)
        if total >= MINED * count and 4 * seen >= len(x):
            break
    every = torch.cat(found)
    picked = every[torch.as_tensor(rng.permutation(len(every))[:count])]
    scenes = x[:, 0].cpu().numpy()
    w = cascade.window
    out = [crop(scenes[int(k) // windows], *_frame(cascade, int(k) % windows), w) for k in picked]
    return np.asarray(out, np.float32).reshape(-1, w, w)


def _frame(cascade: Cascade, window: int) -> tuple[float, float, float]:
    """A window's top, left and side in pixels."""
    width = cascade.image[1] + 1
    base, scale = int(cascade.base[window]), int(cascade.scale_of[window])
    side = window_side(cascade.window, cascade.scales[scale])
    return float(base // width), float(base % width), float(side)


def trained(stages: list[boost.Stage], features: boost.Pool) -> dict[str, torch.Tensor]:
    """The module's tensors (netspec.lower.cascade.TRAINED) of these stages."""
    stumps = [s for stage in stages for s in stage.stumps]
    chosen = [s.feature for s in stumps]
    return {
        "points": torch.as_tensor(features.points[chosen]).reshape(-1, features.points.shape[1], 3),
        "threshold": torch.tensor([s.threshold for s in stumps]),
        "polarity": torch.tensor([s.polarity for s in stumps]),
        "alpha": torch.tensor([s.alpha for s in stumps]),
        "stages": torch.tensor([[len(s.stumps), s.threshold] for s in stages]).reshape(-1, 2),
    }


@torch.no_grad()
def rejected(module: nn.Module, x: torch.Tensor) -> list[float]:
    """Of the windows that reach each stage on scenes ``x``, the share it rejects."""
    cascade, integral = cascade_of(module), Integral()
    alive = np.zeros(len(cascade.sizes) + 1)
    for first in range(0, len(x), BATCH):
        alive += np.asarray(cascade.alive(integral(x[first : first + BATCH].float())))
    return [float(1 - b / a) if a else 0.0 for a, b in itertools.pairwise(alive)]


@torch.no_grad()
def detections(module: nn.Module, x: torch.Tensor) -> list[Detections]:
    """Each scene's boxes, through the whole network (one class)."""
    module.eval()
    out = []
    for first in range(0, len(x), BATCH):
        for rows in module(x[first : first + BATCH].float()).cpu().numpy():
            held = rows[rows[:, 5] >= 0]
            out.append(Detections(as_boxes(held[:, :4]), held[:, 4], np.zeros(len(held), np.int64)))
    return out


@dataclass(frozen=True)
class _Truth:
    boxes: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]


def class_agnostic(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Metrics:
    """COCO's metrics of the cascade on scenes ``x`` with boxes ``y``, every digit one class."""
    truth = [_Truth(b, np.zeros(len(b), np.int64)) for b in truth_boxes(y)]
    return evaluate(truth, detections(module, x), classes=1)


def boost_cascade(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    p: CascadeParams,
    spec: Boosting,
    seed: int,
    log: Log,
) -> dict[str, float]:
    """The cascade boosted stage by stage on scenes ``x`` and boxes ``y``, set into the
    module as it grows; what each stage did, as metrics.csv's columns."""
    features = boost.Pool.of(p)
    boxes = truth_boxes(y)
    kept = positives(x, boxes, p, seed)
    kept_values = boost.values(kept, features)
    log(f"cascade: {len(features):,} Haar-like features, {len(kept):,} digit windows")
    stages: list[boost.Stage] = []
    measured: dict[str, float] = {}
    for k, most in enumerate(spec.features, 1):
        start = time.perf_counter()
        background = negatives(module, x, y, spec.negatives, seed + k)
        if not len(background):
            log(f"stage {k}: no background window gets through; the cascade stops at {k - 1}")
            break
        values = np.concatenate([kept_values, boost.values(background, features)])
        positive = np.arange(len(values)) < len(kept)
        stage = boost.train_stage(values, positive, most, spec.detection, spec.false_positive)
        stages.append(stage)
        cascade_of(module).set(trained(stages, features))
        kept_values = kept_values[boost.stage_votes(stage, kept_values) >= stage.threshold]
        seconds = time.perf_counter() - start
        measured.update(
            {
                f"stage{k}_features": float(len(stage.stumps)),
                f"stage{k}_detection": stage.detection,
                f"stage{k}_false_positive": stage.false_positive,
            }
        )
        log(
            f"stage {k}: {len(stage.stumps)} features, keeps {stage.detection:.2%} of "
            f"{int(positive.sum()):,} digit windows, lets {stage.false_positive:.2%} of "
            f"{len(background):,} background windows through | {seconds:.1f} s"
        )
    return measured


@dataclass(frozen=True)
class CascadeTask(SceneBoxes):
    """A Viola-Jones cascade against the scenes' boxes, boosted, not trained by gradients."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        site = head_site(compiled)
        if site is None or not isinstance(site.params, CascadeParams):
            return None
        return CascadeTarget(self, (site.params.keep, 6), params=site.params)

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        train, test = scene_boxes(
            given.train_y, given.test_y, given.read, given.size, DIGITS, given.source
        )
        found = fitted(given, target, (train, test), device)
        return Fitted(found.target, found.train_y, found.test_y, LABELS)

    def fit_module(
        self,
        module: nn.Module,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        target: Target,
        config: TrainConfig,
        log: Log,
    ) -> dict[str, float]:
        """Boost the cascade on the training scenes; measure on the test scenes the share
        of windows each stage rejects and the class-agnostic mAP."""
        if config.cascade is None:
            raise DataError(
                "a cascade is boosted, not trained by gradients: give the train section a "
                "`cascade stages=... features=[...]` setting"
            )
        start = time.perf_counter()
        measured = boost_cascade(module, *train, _params(target), config.cascade, config.seed, log)
        measured["boosting_seconds"] = time.perf_counter() - start
        log(f"boosted in {measured['boosting_seconds']:.1f} s")
        shares = rejected(module, test[0])
        measured.update({f"stage{k}_rejected": s for k, s in enumerate(shares, 1)})
        said = ", ".join(f"{k}: {s:.1%}" for k, s in enumerate(shares, 1))
        log(f"windows each stage rejects of those it sees (test scenes): {said}")
        metrics = class_agnostic(module, *test)
        measured.update({"map50": metrics.map50, "map": metrics.map})
        log(
            f"test mAP@0.5 {metrics.map50:.3f}, mAP@0.5:0.95 {metrics.map:.3f} "
            "(class-agnostic: one class, digit)"
        )
        return measured

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        """The digits missed and the boxes that found none, summed over the batch."""
        rows = outs[0].float()
        shown = (rows[..., 5] >= 0) & (rows[..., 4] >= _params(target).score)
        real = y[..., 0] >= 0
        iou = overlaps(rows[..., :4], y[..., 1:].float())  # (N, keep, K)
        hit = (iou >= FOUND_IOU) & shown[..., None] & real[:, None, :]
        missed = (real & ~hit.any(1)).sum()
        false = (shown & ~hit.any(2)).sum()
        return (missed + false).float()

    def scores(self, loss: float, acc: float) -> str:
        return f"{loss:.3g} errors per scene"

    def tested(self, test: Tested, n: int) -> str:
        return f"{test.loss:.3g} errors per scene (digits missed, boxes on none) on {n} scenes"

    def draw(self, trained: Trained) -> list[Path]:
        return []


CASCADE = CascadeTask("cascade", exports_labels=True, trains_itself=True, rank=10)

RECORDS = (CASCADE,)  # what netspec.tasks finds here
