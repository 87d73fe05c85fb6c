"""Generated scenes for a detector's page: GET /api/scene?seed=N draws a scene of MNIST
test digits with the generator `netspec scenes` uses (netspec.data.scenes), seeded, and
says where its digits truly are.

The settings are the train section's `scenes` (size, digits per scene, scale, overlap,
randomizations), else `netspec scenes`' defaults; the size is always the network's input,
and the digits are MNIST's test digits (no digit a run trained on). Scene ``seed=N`` is
the first scene of ``netspec scenes --seed N --count 1 --split test`` with those settings.
The digits come from ``--data`` (MNIST's IDX files), else from netspec's dataset cache or a
system package: nothing is fetched. Without them the page still detects what is drawn or
uploaded; only this route says that it has no digits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.data.fetch import MnistData, load_idx_files
from netspec.data.record import SceneSettings
from netspec.data.scenes import TRAINING_FAMILIES, DigitPool, SceneConfig, make_scene
from netspec.data.sources import MNIST
from netspec.detection.boxes import label
from netspec.errors import DataError, UsageError
from netspec.serve.images import BadRequest, fit
from netspec.serve.maps import pixels_json

MAX_SEED = 2**63 - 1  # what the scenes' generator takes (`netspec scenes --seed`)
Log = Callable[[str], None]


@dataclass(frozen=True)
class SceneMaker:
    """Scenes of `config` (the test split) drawn from `pool`, fitted to the input `size`
    (H, W, C), their digits named by `labels`."""

    config: SceneConfig
    pool: DigitPool
    size: tuple[int, int, int]
    labels: tuple[str, ...]

    def settings(self) -> dict[str, Any]:
        """What GET /api/detector says of the scenes: the `netspec scenes` settings."""
        c = self.config
        return {
            "size": c.size,
            "digits": list(c.digits),
            "scale": list(c.scale),
            "max_iou": c.max_iou,
            "randomize": list(c.switches),
        }

    def scene_json(self, seed: int) -> Any:
        """GET /api/scene?seed=N: scene `seed`'s pixels for the page's canvas, its seed and
        its digits' true boxes (`truth`: xyxy in input pixels, class, label)."""
        image, truth = self.scene(seed)
        return pixels_json(image, [("seed", seed), ("truth", truth)])

    def scene(self, seed: int) -> tuple[npt.NDArray[np.uint8], list[dict[str, Any]]]:
        """Scene `seed` at the input's size ``(H, W, C)`` (``fit``: a square scene of
        another input's size is scaled into it, its boxes with it), and its true boxes."""
        drawn = make_scene(replace(self.config, seed=seed), self.pool, 0)
        h, w = self.size[:2]
        image = fit(drawn.image[:, :, None], self.size)
        side = self.config.size
        scale = min(h / side, w / side)
        top, left = (h - round(side * scale)) // 2, (w - round(side * scale)) // 2
        truth = [
            {
                "xyxy": [
                    round(float(x1) * scale + left, 2),
                    round(float(y1) * scale + top, 2),
                    round(float(x2) * scale + left, 2),
                    round(float(y2) * scale + top, 2),
                ],
                "class": int(k),
                "label": label(self.labels, int(k)),
            }
            for (x1, y1, x2, y2), k in zip(drawn.boxes, drawn.classes, strict=True)
        ]
        return image, truth


def seed_of(query: str | None) -> int:
    """The ``seed`` of GET /api/scene: a whole number 0..`MAX_SEED` (400 otherwise)."""
    if query is None:
        raise BadRequest("GET /api/scene?seed=N: give a seed, a whole number from 0")
    if not (query.isascii() and query.isdigit()) or len(query) > 19 or int(query) > MAX_SEED:
        raise BadRequest(f"seed {query[:40]!r}: expected a whole number from 0 to {MAX_SEED}")
    return int(query)


def scene_maker(
    settings: SceneSettings | None,
    size: tuple[int, int, int],
    labels: tuple[str, ...],
    data: Path | None,
    log: Log,
) -> SceneMaker | None:
    """Scenes for the page, or None (said in `log`) where MNIST's digits are not here or
    the settings cannot be drawn at the input's size."""
    try:
        config = _config(settings, min(size[0], size[1]))
        mnist = _digits(data)
    except (DataError, UsageError) as e:
        log(f"no generated scenes ({e.message}); pass --data with MNIST's IDX files for them")
        return None
    log(f"scenes: drawn from {len(mnist.test_x):,} MNIST test digits ({mnist.source})")
    return SceneMaker(config, DigitPool.of(mnist, "test"), size, labels)


def _config(settings: SceneSettings | None, side: int) -> SceneConfig:
    """The train section's scenes (as the scene datasets draw them), else the defaults,
    at the input's size; a scale past it is cut to it."""
    if settings is None:
        low, high = SceneConfig().scale
        return SceneConfig(size=side, scale=(min(low, side), min(high, side)), split="test")
    return SceneConfig(
        size=side,
        digits=settings.digits,
        scale=settings.scale,
        max_iou=settings.overlap,
        split="test",
        seed=settings.seed,
        switches=settings.switches(),
        families=(settings.background,) if settings.background else TRAINING_FAMILIES,
    )


def _digits(data: Path | None) -> MnistData:
    """MNIST from ``data`` (IDX files), else from what is here already: nothing fetched."""
    if data is not None:
        return load_idx_files(MNIST, data)
    return load_idx_files(MNIST, mirrors=(), use_npm=False)
