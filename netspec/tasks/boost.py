"""Discrete AdaBoost with decision stumps, one cascade stage at a time, as Viola and Jones
(2001) train theirs; in vectorized NumPy, on windows of the cascade's size.

A feature's value on a window is computed as the cascade computes it in its graph
(netspec.lower.cascade): its rectangles' corners on the window's summed-area table, on the
window standardized to mean 0 and deviation 1. A stump votes 1 where ``polarity * value <
polarity * threshold``. A stage adds the stump of least weighted error over the whole pool
(a threshold at every edge of 64 bins of every feature's values, both polarities), weighs
it by log(1 / beta) with beta = error / (1 - error), multiplies the weights of the windows
it gets right by beta, and lowers its own threshold (the sum of the votes a window must
reach) until it keeps at least the declared share of the positives; it stops adding stumps
when that threshold lets through at most the declared share of the negatives, or at its
count. The stages' negatives are the cascade's business (netspec.tasks.cascade).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.ops.cascade import DEVIATION, STEP_LOOKUPS, CascadeParams, pool

Floats = npt.NDArray[np.float32]
Bools = npt.NDArray[np.bool_]
BINS = 64  # a feature's values are cut into this many bins, a threshold at each edge
SPREAD = 3.0  # the bins span the feature's mean plus and minus this many deviations
SMALLEST_ERROR = 1e-10  # a stump's error is kept off 0 (beta would be 0, alpha infinite)
CUT_SLACK = 1e-6  # a stage's threshold is lowered by this share of its votes (float32 sums)


@dataclass(frozen=True)
class Pool:
    """A cascade's pool of features as matrices: each feature's corner weights on a
    window's flattened summed-area table ``((w+1)^2, F)``, its kernel's mass ``(F,)``, and
    its corners (dy, dx, weight) in the window, padded to 9 ``(F, 9, 3)``."""

    window: int
    corners: Floats
    mass: Floats
    points: Floats

    @classmethod
    def of(cls, params: CascadeParams) -> Pool:
        features = pool(params)
        side = params.window + 1
        corners = np.zeros((side * side, len(features)), np.float32)
        points = np.zeros((len(features), STEP_LOOKUPS, 3), np.float32)
        for f, feature in enumerate(features):
            for j, (dy, dx, weight) in enumerate(feature.points):
                y, x = feature.top + dy, feature.left + dx
                corners[y * side + x, f] += weight
                points[f, j] = (y, x, weight)
        mass = np.array([f.mass for f in features], np.float32)
        return cls(params.window, corners, mass, points)

    def __len__(self) -> int:
        return len(self.mass)


def tables(windows: Floats) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Windows ``(N, w, w)`` to their summed-area tables of pixels and of squares, each
    ``(N, w+1, w+1)`` with a row and a column of zeros first."""
    padded = np.zeros((len(windows), windows.shape[1] + 1, windows.shape[2] + 1))
    squares = padded.copy()
    padded[:, 1:, 1:] = windows.astype(np.float64).cumsum(1).cumsum(2)
    squares[:, 1:, 1:] = (windows.astype(np.float64) ** 2).cumsum(1).cumsum(2)
    return padded, squares


def values(windows: Floats, features: Pool) -> Floats:
    """Every feature of the pool on every window ``(N, w, w)``: ``(N, F)``, standardized."""
    sums, squares = tables(windows)
    pixels = float(features.window**2)
    raw = sums.reshape(len(windows), -1).astype(np.float32) @ features.corners
    mean = sums[:, -1, -1] / pixels
    power = squares[:, -1, -1] / pixels
    deviation = np.sqrt(np.maximum(power - mean * mean, 0) + DEVIATION**2)
    out = (raw - (mean[:, None] * features.mass).astype(np.float32)) / deviation[:, None]
    return out.astype(np.float32)


@dataclass(frozen=True)
class Stump:
    """One weak classifier: a feature of the pool, its threshold, polarity and weight."""

    feature: int
    threshold: float
    polarity: float
    alpha: float

    def votes(self, x: Floats) -> Floats:
        """1 where the stump says "object" on feature values ``(N, F)``, else 0."""
        return (self.polarity * x[:, self.feature] < self.polarity * self.threshold).astype(
            np.float32
        )


@dataclass(frozen=True)
class Stage:
    """A stage: its stumps, its threshold on the sum of their votes, and what it kept of
    its training windows (the positives' share, the negatives')."""

    stumps: tuple[Stump, ...]
    threshold: float
    detection: float
    false_positive: float


@dataclass(frozen=True)
class Binned:
    """Feature values ``(N, F)`` cut into BINS equal bins per feature between its mean
    minus and plus SPREAD deviations (the values beyond in the end bins), as each window's
    flat bin index ``f * BINS + bin`` ``(N, F)``, with each feature's lowest edge and bin
    width: a stump's threshold is a bin's edge (histogram boosting, as LightGBM's)."""

    index: npt.NDArray[np.int32]
    low: npt.NDArray[np.float64]
    width: npt.NDArray[np.float64]

    @classmethod
    def of(cls, x: Floats) -> Binned:
        mean, deviation = x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)
        low = mean - SPREAD * deviation
        width = np.maximum(2 * SPREAD * deviation / BINS, 1e-12)
        bins = np.clip(np.floor((x - low) / width), 0, BINS - 1).astype(np.int32)
        return cls(bins + np.arange(x.shape[1], dtype=np.int32) * BINS, low, width)

    def histogram(self, weights: npt.NDArray[np.float64], rows: Bools) -> Any:
        """The weights of the windows ``rows`` summed per feature and bin ``(F, BINS)``."""
        index = self.index[rows]
        features = index.shape[1]
        summed = np.bincount(
            index.ravel(), np.repeat(weights[rows], features), minlength=features * BINS
        )
        return summed.reshape(features, BINS)


def best_stump(data: Binned, weights: npt.NDArray[np.float64], positive: Bools) -> Stump:
    """The stump of least weighted error (its alpha is left 0): for each feature, a
    threshold at each inner bin edge, with either polarity."""
    below_p = np.cumsum(data.histogram(weights, positive), 1)[:, :-1]
    below_n = np.cumsum(data.histogram(weights, ~positive), 1)[:, :-1]
    total_p, total_n = float(weights[positive].sum()), float(weights[~positive].sum())
    small = below_n + (total_p - below_p)  # "object" below the edge after the bin
    large = below_p + (total_n - below_n)  # "object" above it
    errors = np.stack([small, large])  # (2, F, BINS - 1)
    side, feature, edge = (int(v) for v in np.unravel_index(int(np.argmin(errors)), errors.shape))
    threshold = float(data.low[feature] + (edge + 1) * data.width[feature])
    return Stump(feature, threshold, 1.0 if side == 0 else -1.0, 0.0)


def stage_cut(score: npt.NDArray[np.float64], positive: Bools, detection: float) -> float:
    """The highest threshold on the votes that keeps at least ``detection`` of the
    positives, lowered by a sliver so that float32 sums keep the same ones."""
    kept = np.sort(score[positive])
    if not len(kept):
        return 0.0
    at = kept[min(math.floor((1 - detection) * len(kept)), len(kept) - 1)]
    return float(at) - CUT_SLACK * max(float(score.max()), 1.0)


def train_stage(
    x: Floats, positive: Bools, most: int, detection: float, false_positive: float
) -> Stage:
    """One stage boosted on feature values ``(N, F)``, ``positive`` saying which windows are
    the object's: stumps added until the stage's threshold, set to keep ``detection`` of
    the positives, lets through at most ``false_positive`` of the negatives, or ``most``."""
    data = Binned.of(x)
    m, n = int(positive.sum()), int((~positive).sum())
    weights = np.where(positive, 0.5 / max(m, 1), 0.5 / max(n, 1))
    score = np.zeros(len(x))
    stumps: list[Stump] = []
    stage = Stage((), 0.0, 1.0, 1.0)
    for _ in range(most):
        weights = weights / weights.sum()
        stump = best_stump(data, weights, positive)
        votes = stump.votes(x)
        error = float(np.clip(weights @ (votes != positive), SMALLEST_ERROR, 1 - SMALLEST_ERROR))
        beta = error / (1 - error)
        stump = Stump(stump.feature, stump.threshold, stump.polarity, math.log(1 / beta))
        weights = weights * np.where(votes == positive, beta, 1.0)
        score += stump.alpha * votes
        stumps.append(stump)
        cut = stage_cut(score, positive, detection)
        passed = score >= cut
        stage = Stage(
            tuple(stumps),
            cut,
            float(passed[positive].mean()) if m else 1.0,
            float(passed[~positive].mean()) if n else 0.0,
        )
        if stage.false_positive <= false_positive:
            break
    return stage


def stage_votes(stage: Stage, x: Floats) -> npt.NDArray[np.float64]:
    """A stage's summed votes on feature values ``(N, F)``."""
    total = np.zeros(len(x))
    for stump in stage.stumps:
        total += stump.alpha * stump.votes(x)
    return total
