"""`mnist_scenes` and `mnist_windows`: scenes drawn from MNIST's digits with each digit's
box and class, and 28x28 windows cut from them (a centred digit is its class, anything
else class 10, background). Drawn as the train section's `scenes` setting says (and
cached, netspec.data.scenedata), or read from a scenes directory given as ``--data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from netspec.data.record import (
    AS_THEY_ARE,
    DIGITS,
    WINDOW_LABELS,
    Arrays,
    Dataset,
    Fit,
    Log,
    SceneSettings,
)


def _read(
    kind: Literal["scenes", "windows"],
    labels: tuple[str, ...],
    data: Path | None,
    log: Log,
    settings: SceneSettings,
) -> Arrays:
    """Scenes (images and their digits' boxes) or windows cut from them."""
    from netspec.data.mnist import load_mnist
    from netspec.data.scenedata import SceneRequest, from_directory, generated
    from netspec.data.scenes import TRAINING_FAMILIES, SceneConfig
    from netspec.errors import DataError

    if data is not None:
        if not data.exists():
            raise DataError(f"{data}: no such file or directory")
        got = from_directory(data, kind, settings.seed, settings.negatives, log)
    else:
        config = SceneConfig(
            size=settings.size,
            digits=settings.digits,
            scale=settings.scale,
            max_iou=settings.overlap,
            seed=settings.seed,
            switches=settings.switches(),
            families=(settings.background,) if settings.background else TRAINING_FAMILIES,
        )
        request = SceneRequest(kind, config, settings.count, settings.test, settings.negatives)
        got = generated(request, lambda: load_mnist(log=log), log)
    return Arrays(
        got.train_x[:, None], got.train_y, got.test_x[:, None], got.test_y, got.source, labels
    )


def _settings(settings: SceneSettings | None) -> SceneSettings:
    if settings is None:
        raise ValueError("the scene datasets are drawn as a `scenes` setting says: pass one")
    return settings


def read_scenes(
    data: Path | None, log: Log, settings: SceneSettings | None, fit: Fit = AS_THEY_ARE
) -> Arrays:
    """Scenes ``(N, 1, H, W)`` uint8 and their digits, rows ``(class, x1, y1, x2, y2)``."""
    return _read("scenes", DIGITS, data, log, _settings(settings))


def read_windows(
    data: Path | None, log: Log, settings: SceneSettings | None, fit: Fit = AS_THEY_ARE
) -> Arrays:
    """Windows ``(N, 1, 28, 28)`` uint8 cut from scenes, and their classes ``(N,)``."""
    return _read("windows", WINDOW_LABELS, data, log, _settings(settings))


SCENES = Dataset(
    "mnist_scenes",
    "generated scenes of MNIST digits with their boxes (or a scenes directory, --data DIR)",
    read_scenes,
    task="boxes",
    sample="scene",
    labels=DIGITS,
    channels=1,
    scenes=True,
    rank=60,
)
WINDOWS = Dataset(
    "mnist_windows",
    "28x28 windows cut from generated scenes: 10 digits and background (or --data DIR)",
    read_windows,
    task="classes",
    sample="window",
    labels=WINDOW_LABELS,
    channels=1,
    size=(28, 28),
    scenes=True,
    windows=True,
    rank=70,
)

RECORDS = (SCENES, WINDOWS)  # what netspec.data.datasets finds here
