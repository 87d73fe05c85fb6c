"""Other labelled image sources: `.npz` arrays (x, y) and folders of images, one
subfolder per class."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from netspec.data.idx import MAX_BYTES
from netspec.data.pixels import byte_pixels
from netspec.errors import DataError
from netspec.fileio import open_regular
from netspec.text import fmt_shape

__all__ = [
    "ImageFiles",
    "ImageFolder",
    "LabeledArrays",
    "TargetArrays",
    "load_image_folder",
    "load_npz",
    "load_npz_targets",
]

MAX_PIXELS = 2**25  # per image: checked from its header, before it is decoded
MAX_DECODED = MAX_BYTES  # all of a folder's images decoded together, checked from headers
PathLike = str | os.PathLike[str]


class LabeledArrays(NamedTuple):
    """Inputs ``(N, H, W)`` or ``(N, C, H, W)`` and int64 labels ``(N,)``."""

    x: npt.NDArray[Any]
    y: npt.NDArray[np.int64]


class TargetArrays(NamedTuple):
    """Inputs as `LabeledArrays`' and what to train towards: labels ``(N,)``, per-pixel
    classes ``(N, H, W)`` (integers), maps ``(N, C, H, W)`` (floats), or None (no ``y``:
    the inputs are their own targets)."""

    x: npt.NDArray[Any]
    y: npt.NDArray[Any] | None


class ImageFolder(NamedTuple):
    """Images from a class-per-folder tree; ``y`` indexes ``classes``."""

    x: npt.NDArray[np.uint8]
    y: npt.NDArray[np.int64]
    classes: list[str]


def load_npz(path: PathLike, max_bytes: int = MAX_BYTES) -> LabeledArrays:
    """Load an ``.npz`` with arrays ``x`` (uint8 or float, 3-D or 4-D) and ``y`` (integer, 1-D).

    Each array's declared size is checked against ``max_bytes`` before it is read."""
    x, y = _read_npz(Path(path), max_bytes, need_y=True)
    assert y is not None
    _check_arrays(x, y, str(path))
    return LabeledArrays(x, y.astype(np.int64))


def load_npz_targets(path: PathLike, max_bytes: int = MAX_BYTES) -> TargetArrays:
    """Load an ``.npz`` for training: ``x`` as `load_npz` takes it, and ``y`` labels ``(N,)``
    or per-pixel classes ``(N, H, W)`` (integers), maps ``(N, H, W)`` or ``(N, C, H, W)``
    (floats), or no ``y`` at all (the inputs are the targets: an autoencoder's data)."""
    path = Path(path)
    x, y = _read_npz(path, max_bytes, need_y=False)
    _check_x(x, str(path))
    if y is None:
        return TargetArrays(x, None)
    integer = y.dtype.kind in "iu"
    if not (integer or y.dtype.kind == "f") or y.ndim not in ((1, 3) if integer else (3, 4)):
        raise DataError(
            f"{path}: y must be integer labels (N,) or per-pixel classes (N, H, W), or float "
            f"maps (N, H, W) or (N, C, H, W); found {y.dtype} {y.shape}"
        )
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} inputs in x but {len(y)} targets in y")
    if not integer and not np.isfinite(y).all():
        raise DataError(f"{path}: y has NaN or infinite values")
    return TargetArrays(x, y.astype(np.int64) if integer else y.astype(np.float32))


def _read_npz(
    path: Path, max_bytes: int, need_y: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[Any] | None]:
    """The arrays ``x`` and ``y`` (None if absent and not needed) of a regular file, each
    checked against ``max_bytes`` before it is read."""
    try:
        with open_regular(path) as f:
            return _read_members(_np_load(f, path), path, max_bytes, need_y)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); expected an .npz") from None


def _np_load(f: Any, path: Path) -> Any:
    try:
        return np.load(f, allow_pickle=False)
    except Exception as e:  # numpy raises OSError, ValueError, EOFError, ... for non-npz files
        raise DataError(f"{path}: cannot read as .npz ({e})") from None


def _read_members(
    loaded: Any, path: Path, max_bytes: int, need_y: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[Any] | None]:
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array; expected an .npz with arrays x and y")
    with loaded:
        names = ("x", "y") if need_y or "y" in loaded.files else ("x",)
        if any(n not in loaded.files for n in names):
            found = ", ".join(sorted(loaded.files)) or "none"
            wanted = "arrays 'x' and 'y'" if need_y else "an array 'x' (and 'y')"
            raise DataError(f"{path}: expected {wanted}, found: {found}")
        try:
            for name in names:
                _check_size(loaded, name, path, max_bytes)
            arrays = [loaded[n] for n in names]
        except DataError:
            raise
        except Exception as e:  # object arrays (pickles), corrupt members
            raise DataError(f"{path}: cannot read {' and '.join(names)} ({e})") from None
    return arrays[0], arrays[1] if len(arrays) > 1 else None


def _check_size(loaded: Any, name: str, path: Path, max_bytes: int) -> None:
    """Refuse a member whose .npy header declares more than ``max_bytes``."""
    with loaded.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(f)
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > max_bytes:
        raise DataError(
            f"{path}: '{name}' declares {fmt_shape(shape)} {dtype} = {size:,} bytes; "
            f"netspec reads at most {max_bytes:,}"
        )


def _check_x(x: npt.NDArray[Any], source: str) -> None:
    if x.ndim not in (3, 4) or not (x.dtype == np.uint8 or x.dtype.kind == "f"):
        raise DataError(
            f"{source}: x must be uint8 or float with shape (N, H, W) or (N, C, H, W); "
            f"found {x.dtype} {x.shape}"
        )
    if len(x) == 0:
        raise DataError(f"{source}: no samples (x is {fmt_shape(x.shape)}); expected at least one")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{source}: x holds NaN or infinite values; expected finite numbers")


def _check_arrays(x: npt.NDArray[Any], y: npt.NDArray[Any], source: str) -> None:
    _check_x(x, source)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{source}: y must be integer labels (N,); found {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{source}: {len(x)} inputs in x but {len(y)} labels in y")


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


class ImageFiles:
    """A class-per-folder tree (``path/<class>/<image>``, classes in sorted order) listed,
    not read: each image is decoded when it is asked for, its header checked first
    (`MAX_PIXELS`), so that a page showing a few of them never decodes the rest."""

    def __init__(self, path: Path, channels: int = 1) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.classes, listed = _list_images(path)
        self.files = [f for f, _ in listed]
        self.labels = np.array([label for _, label in listed], np.int64)
        self.channels = channels

    def __len__(self) -> int:
        return len(self.files)

    def size(self, index: int) -> tuple[int, int]:
        """(H, W) of image ``index``, from its header alone (nothing is decoded)."""
        with _opened(self.files[index]) as image:
            return image.height, image.width

    def read(self, index: int, hw: tuple[int, int] | None = None) -> npt.NDArray[np.uint8]:
        """Image ``index`` as uint8 ``(H, W)`` or ``(H, W, 3)``, resized to ``hw``."""
        from PIL import Image

        with _opened(self.files[index]) as image:
            pixels = byte_pixels(image, self.channels)  # 16-bit grey scaled, not clipped
        if hw is None or pixels.shape[:2] == hw:
            return pixels
        resized = Image.fromarray(pixels).resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        return np.asarray(resized, np.uint8)


def load_image_folder(
    path: PathLike, size: int | tuple[int, int] | None = None, channels: int = 1
) -> ImageFolder:
    """Load ``path/<class>/<image>`` into arrays, classes in sorted order.

    ``size`` (H, W) resizes every image; without it they must all be the same
    size. ``channels`` 1 gives ``(N, H, W)`` grayscale, 3 gives ``(N, 3, H, W)`` RGB.
    Every header is read first: an image over `MAX_PIXELS`, or a folder whose images
    together decode to more than `MAX_DECODED` bytes, is refused before anything is
    decoded; then one array is allocated and each image decoded into its place.
    """
    files = ImageFiles(Path(path), channels)
    hw = (size, size) if isinstance(size, int) else size
    if hw is None:
        sizes = [files.size(i) for i in range(len(files))]
        for file, found in zip(files.files, sizes, strict=True):
            if found != sizes[0]:
                raise DataError(
                    f"{file}: {found} pixels, but {files.files[0]} is {sizes[0]}; "
                    "expected one size (or pass a size to resize to)"
                )
        hw = sizes[0]
    else:
        for i in range(len(files)):
            files.size(i)  # each header checked before anything is decoded
    shape = (len(files), *hw) if channels == 1 else (len(files), 3, *hw)
    total = math.prod(shape)
    if total > MAX_DECODED:
        raise DataError(
            f"{path}: {len(files):,} images of {fmt_shape(shape[1:])} decode to {total:,} "
            f"bytes; netspec reads at most {MAX_DECODED:,}"
        )
    x = np.empty(shape, np.uint8)
    for i in range(len(files)):
        image = files.read(i, hw)
        x[i] = image if channels == 1 else image.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return ImageFolder(x, files.labels, files.classes)


def _list_images(path: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names and every (image file, class index)."""
    if not path.is_dir():
        raise DataError(f"{path}: not a directory; expected one subfolder per class")
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{path}: no class folders; expected one subfolder per class (a/1.png)")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = sorted(f for f in (path / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{path / name}: no images; expected .png, .jpg or .jpeg files")
        files += [(f, label) for f in found]
    return classes, files


@contextmanager
def _opened(file: Path) -> Iterator[Any]:
    """A regular image file opened by Pillow (its header read, nothing decoded), refused
    over `MAX_PIXELS`; every failure, then or while decoding, a DataError."""
    from PIL import Image

    try:
        with open_regular(file) as f, Image.open(f) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DataError(
                    f"{file}: {image.width}x{image.height} pixels; netspec reads images of "
                    f"at most {MAX_PIXELS:,} pixels"
                )
            yield image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{file}: cannot read image ({e})") from None
