"""Other labelled image sources: `.npz` arrays (x, y) and folders of images, one
subfolder per class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from netspec.data.idx import MAX_BYTES
from netspec.errors import DataError
from netspec.fileio import open_regular
from netspec.text import fmt_shape

__all__ = [
    "ImageFolder",
    "LabeledArrays",
    "TargetArrays",
    "load_image_folder",
    "load_npz",
    "load_npz_targets",
]

MAX_PIXELS = 2**25  # per image: checked from its header, before it is decoded
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


def load_image_folder(
    path: PathLike, size: int | tuple[int, int] | None = None, channels: int = 1
) -> ImageFolder:
    """Load ``path/<class>/<image>`` into arrays, classes in sorted order.

    ``size`` (H, W) resizes every image; without it they must all be the same
    size. ``channels`` 1 gives ``(N, H, W)`` grayscale, 3 gives ``(N, 3, H, W)`` RGB.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    classes, files = _list_images(Path(path))
    hw = (size, size) if isinstance(size, int) else size
    images = [_read_image(f, hw, channels) for f, _ in files]
    for (file, _), image in zip(files, images, strict=True):
        if image.shape != images[0].shape:
            raise DataError(
                f"{file}: {image.shape[:2]} pixels, but {files[0][0]} is {images[0].shape[:2]}; "
                "expected one size (or pass a size to resize to)"
            )
    x = np.stack(images)
    x = x.transpose(0, 3, 1, 2).copy() if channels == 3 else x  # (N, H, W, C) -> (N, C, H, W)
    return ImageFolder(x, np.array([label for _, label in files], np.int64), classes)


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


def _read_image(file: Path, hw: tuple[int, int] | None, channels: int) -> npt.NDArray[np.uint8]:
    """One image as uint8 ``(H, W)`` or ``(H, W, 3)``; Pillow is imported only when needed."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DataError(
                    f"{file}: {image.width}x{image.height} pixels; netspec reads images of "
                    f"at most {MAX_PIXELS:,} pixels"
                )
            converted = image.convert("L" if channels == 1 else "RGB")
            if hw is not None:
                converted = converted.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
            return np.asarray(converted, np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{file}: cannot read image ({e})") from None
