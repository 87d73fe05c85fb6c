"""The `mnist_scenes` and `mnist_windows` datasets as arrays: generated from MNIST (and
cached under the user's cache dir, keyed by every setting), or read from a scenes
directory (``--data DIR``).

- ``mnist_scenes``: images ``(N, H, W)`` uint8 and targets float32 ``(N, K, 5)``, one row
  per digit ``(class, x1, y1, x2, y2)`` in pixels, padded to the scene with the most
  digits with rows of class -1.
- ``mnist_windows``: windows ``(N, 28, 28)`` uint8 and classes int64 ``(N,)``, 0..9 and
  10 = background (netspec.data.windows).

Generated train scenes draw MNIST's training digits and test scenes its test digits. A
``--data DIR`` holding ``train/`` and ``test/`` scenes directories gives both splits; a
single scenes directory is split, its last sixth (at least one scene) the test set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from netspec.data.mnist import MnistData, default_cache_dir
from netspec.data.record import held_out
from netspec.data.scenefiles import read_scenes
from netspec.data.scenes import DigitPool, Scene, SceneConfig, Split, make_scenes
from netspec.data.windows import windows
from netspec.errors import DataError
from netspec.fileio import write_atomic

__all__ = ["SceneArrays", "SceneRequest", "from_directory", "generated", "scene_targets"]

Kind = Literal["scenes", "windows"]
Log = Callable[[str], None]
CACHE_VERSION = 1  # bump when what a setting draws changes, so old caches are not read


class SceneArrays(NamedTuple):
    train_x: npt.NDArray[np.uint8]
    train_y: npt.NDArray[np.generic]
    test_x: npt.NDArray[np.uint8]
    test_y: npt.NDArray[np.generic]
    source: str


@dataclass(frozen=True)
class SceneRequest:
    """What a train section asks for: the train scenes' config (test scenes are the same
    but for their split), how many of each, and background windows per digit window."""

    kind: Kind
    config: SceneConfig
    count: int
    test_count: int
    negatives: float = 1.0

    def key(self) -> str:
        """A digest of every setting, naming its cache file."""
        text = json.dumps(
            {
                "version": CACHE_VERSION,
                "kind": self.kind,
                "config": self.config.as_dict(),
                "count": self.count,
                "test": self.test_count,
                "negatives": self.negatives,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def scene_targets(scenes: Sequence[Scene]) -> npt.NDArray[np.float32]:
    """Every scene's digits as rows (class, x1, y1, x2, y2), padded with class -1 rows."""
    most = max([len(s.classes) for s in scenes] + [1])
    y = np.zeros((len(scenes), most, 5), np.float32)
    y[:, :, 0] = -1
    for i, s in enumerate(scenes):
        y[i, : len(s.classes), 0] = s.classes
        y[i, : len(s.classes), 1:] = s.boxes
    return y


def _arrays(
    kind: Kind,
    scenes: Sequence[Scene],
    seed: int,
    negatives: float,
    scale: tuple[int, int],
    where: str,
    stacked: npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.generic]]:
    """Windows cut from the scenes, or the scenes' images ``(N, H, W)`` (``stacked``
    already, when they were read into one buffer) and their targets."""
    if kind == "windows":
        return windows(scenes, seed, negatives, scale)
    if stacked is not None:
        return stacked, scene_targets(scenes)
    sizes = {s.image.shape for s in scenes}
    if len(sizes) > 1:
        raise DataError(
            f"{where}: scenes of different sizes {sorted(sizes)}; training needs one size"
        )
    return np.stack([s.image for s in scenes]), scene_targets(scenes)


def generated(
    request: SceneRequest, mnist: Callable[[], MnistData], log: Log, cache: Path | None = None
) -> SceneArrays:
    """The requested arrays, from the cache if an earlier run made them, else drawn (MNIST
    from ``mnist()``) and cached."""
    folder = cache if cache is not None else default_cache_dir().parent / "scenes"
    path = folder / f"mnist_{request.kind}-{request.key()}.npz"
    cached = _read_cache(path, log)
    if cached is not None:
        return cached
    digits = mnist()
    config = request.config
    log(f"drawing {request.count} train and {request.test_count} test scenes (cached in {path})")
    parts = []
    splits: tuple[tuple[Split, int], ...] = (("train", request.count), ("test", request.test_count))
    for split, count in splits:
        split_config = replace(config, split=split)
        scenes = list(make_scenes(split_config, DigitPool.of(digits, split), count))
        parts.append(
            _arrays(request.kind, scenes, config.seed, request.negatives, config.scale, str(path))
        )
    arrays = SceneArrays(*parts[0], *parts[1], f"generated {request.kind} ({path.name})")
    _write_cache(path, arrays)
    return arrays


def _read_cache(path: Path, log: Log) -> SceneArrays | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = SceneArrays(
                z["train_x"], z["train_y"], z["test_x"], z["test_y"], f"cached scenes ({path})"
            )
    except (OSError, ValueError, KeyError) as e:
        log(f"{path}: unreadable cache ({e}); drawing the scenes again")
        return None
    log(f"reading cached scenes from {path}")
    return arrays


def _write_cache(path: Path, arrays: SceneArrays) -> None:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                train_x=arrays.train_x,
                train_y=arrays.train_y,
                test_x=arrays.test_x,
                test_y=arrays.test_y,
            )

    write_atomic(path, save)


def from_directory(path: Path, kind: Kind, seed: int, negatives: float, log: Log) -> SceneArrays:
    """The arrays of the scenes in ``path`` (train/ and test/, or one directory split)."""
    if (path / "train" / "images").is_dir() and (path / "test" / "images").is_dir():
        train, test = read_scenes(path / "train"), read_scenes(path / "test")
        log(f"reading scenes from {path}: {len(train.scenes)} train, {len(test.scenes)} test")
        parts = ((train, slice(None)), (test, slice(None)))
        scale = _scale(train.made)
    elif (path / "images").is_dir():
        whole = read_scenes(path)
        if len(whole.scenes) < 2:
            raise DataError(f"{path}: {len(whole.scenes)} scene; need at least 2 (train and test)")
        cut = held_out(len(whole.scenes))
        log(
            f"reading scenes from {path}: training on the first {cut}, "
            f"testing on the last {len(whole.scenes) - cut}"
        )
        parts = ((whole, slice(None, cut)), (whole, slice(cut, None)))
        scale = _scale(whole.made)
    else:
        raise DataError(
            f"{path}: not a scenes directory (expected images/ and labels/, "
            "or train/ and test/ holding them; `netspec scenes -o DIR` writes one)"
        )
    (train_x, train_y), (test_x, test_y) = (
        _arrays(kind, s.scenes[part], seed + k, negatives, scale, str(path), s.stacked(part))
        for k, (s, part) in enumerate(parts)
    )
    return SceneArrays(train_x, train_y, test_x, test_y, str(path))


def _scale(made: dict[str, object]) -> tuple[int, int]:
    """The digits' scale range the scenes were drawn with (scenes.json), else the default."""
    config = made.get("config")
    scale = config.get("scale") if isinstance(config, dict) else None
    if isinstance(scale, list) and len(scale) == 2 and all(isinstance(v, int) for v in scale):
        return int(scale[0]), int(scale[1])
    return SceneConfig().scale
