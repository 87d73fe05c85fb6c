"""Test digits to show: the test split of a run's dataset (or of `--data`), read through
netspec.data without torch, and the ones the network gets wrong (the gallery: the
"82 errors" figure of a training run, made clickable). Image folders are listed, not
read: each image is decoded when the page asks for it or the gallery runs it, so a
folder of large pictures costs one of them at a time (docs/limits.md)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.data.arrays import data_format, read_test_split
from netspec.data.fetch import load_idx_files
from netspec.data.folders import ImageFiles
from netspec.data.registry import dataset as record
from netspec.errors import DataError
from netspec.probe import Probe
from netspec.serve.images import BadRequest, fit, plain
from netspec.serve.maps import predicted

GALLERY = 400  # misclassified digits listed at most (MNIST's LeNet makes about 80)
CHUNK = 250  # test images per probe call while looking for the misclassified


@dataclass
class Digits:
    """A test split: images ``(N, H, W, C)`` uint8, or image files decoded one at a time,
    and labels ``(N,)`` (or None)."""

    x: npt.NDArray[np.uint8] | ImageFiles
    y: npt.NDArray[np.int64] | None
    source: str
    _errors: list[dict[str, Any]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.x)

    def image(self, index: int, size: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
        """Test image ``index`` fitted to the network's input ``(H, W, C)``."""
        if isinstance(self.x, ImageFiles):
            try:
                picture = self.x.read(index)
            except DataError as e:  # a file of the folder, broken or changed since listed
                raise BadRequest(e.message, 422) from None
            return fit(picture[..., None] if picture.ndim == 2 else picture, size)
        return fit(self.x[index], size)

    def label(self, index: int) -> int | None:
        return None if self.y is None else int(self.y[index])

    def errors(self, probe: Probe, size: tuple[int, int, int]) -> list[dict[str, Any]]:
        """The misclassified test digits (index, label, prediction), found once, on first
        use, by running the whole test split through the network."""
        with self._lock:
            if self._errors is None:
                self._errors = self._find_errors(probe, size)
            return self._errors

    def _find_errors(self, probe: Probe, size: tuple[int, int, int]) -> list[dict[str, Any]]:
        if self.y is None or probe.classes is None:
            return []
        found: list[dict[str, Any]] = []
        step = probe.batch_limit(CHUNK)
        for start in range(0, len(self), step):
            batch = np.concatenate(
                [
                    probe.prepare(plain(self.image(i, size)))
                    for i in range(start, min(start + step, len(self)))
                ]
            )
            guesses = predicted(probe, probe.run(batch))
            for offset, guess in enumerate(guesses):
                label = int(self.y[start + offset])
                if guess != label:
                    found.append({"index": start + offset, "label": label, "predicted": int(guess)})
        return found


def read_digits(dataset: str | None, data: Path | None, channels: int) -> Digits | None:
    """The test split of ``data`` (IDX files, train/ and test/ image folders read with
    ``channels``, or an .npz's held-out part), else of the dataset's own files when they
    are here already (netspec's cache, or a system package's: nothing is fetched); None
    when there is nothing to read (a dataset drawn or read only from --data)."""
    known = record(dataset)
    source = known.source if known is not None else None
    if data is not None and data_format(data) == "folders":
        files = ImageFiles(data / "test", channels)
        return Digits(files, files.labels, str(data / "test"))
    if data is not None:
        return _digits(*read_test_split(data, channels, source))
    if source is None:
        return None
    d = load_idx_files(source, mirrors=(), use_npm=False)
    return _digits(d.test_x, d.test_y, d.source)


def _digits(x: npt.NDArray[Any], y: npt.NDArray[Any] | None, source: str) -> Digits | None:
    """Images as ``(N, H, W, C)`` uint8 (floats taken as [0, 1]); None when there are none."""
    if len(x) == 0:
        return None
    if x.dtype != np.uint8:
        x = np.clip(np.rint(np.asarray(x, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    x = x[..., None] if x.ndim == 3 else np.moveaxis(x, 1, -1)
    return Digits(np.ascontiguousarray(x), None if y is None else y.astype(np.int64), source)
