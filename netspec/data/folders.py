"""Other labelled image sources: `.npz` arrays (x, y) and folders of images, one
subfolder per class.

An image folder may hold a few files that are not readable images: a file whose name is not
an image's (`Thumbs.db`, `notes.txt`) is left out, and an image that cannot be read
(corrupt, truncated, not an image inside) is skipped, both named in one summary line,
while the skipped images are at most `MAX_SKIPPED` of the folder's; more are refused, the
first one named. An image over the size limits is refused, whatever the share."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from netspec.data.idx import MAX_BYTES
from netspec.data.pixels import byte_pixels
from netspec.data.sizing import centre, scaled
from netspec.errors import DataError
from netspec.fileio import open_regular
from netspec.text import fmt_shape

__all__ = [
    "MAX_SKIPPED",
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
MAX_SKIPPED = 0.1  # the share of a folder's images that may be unreadable and skipped
SHOWN = 5  # skipped files a summary names
PathLike = str | os.PathLike[str]
Log = Callable[[str], None]


class Unreadable(DataError):
    """An image file that cannot be read: corrupt, truncated, or not an image inside."""


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


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class ImageFiles:
    """A class-per-folder tree (``path/<class>/<image>``, classes in sorted order) listed,
    not read: each image is decoded when it is asked for, its header checked first
    (`MAX_PIXELS`), so that a page showing a few of them never decodes the rest."""

    def __init__(self, path: Path, channels: int = 1) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.classes, listed, self.others = _list_images(path)
        self.files = [f for f, _ in listed]
        self.labels = np.array([label for _, label in listed], np.int64)
        self.channels = channels

    def __len__(self) -> int:
        return len(self.files)

    def size(self, index: int) -> tuple[int, int]:
        """(H, W) of image ``index``, from its header alone (nothing is decoded)."""
        with _opened(self.files[index]) as image:
            return image.height, image.width

    def read(
        self, index: int, hw: tuple[int, int] | None = None, resize: int | None = None
    ) -> npt.NDArray[np.uint8]:
        """Image ``index`` as uint8 ``(H, W)`` or ``(H, W, 3)``, resized to ``hw``; with
        ``resize``, its shorter side scaled to that and its centre ``hw`` cut
        (netspec.data.sizing). A JPEG is decoded at the smallest scale that still covers
        what is kept."""
        with _opened(self.files[index]) as image:
            to = hw if hw is None or resize is None else scaled(image.size[::-1], resize, hw)
            if to is not None and image.format == "JPEG":
                image.draft(None, (to[1], to[0]))
            pixels = byte_pixels(image, self.channels)  # 16-bit grey scaled, not clipped
        if to is not None and pixels.shape[:2] != to:
            pixels = _resized(pixels, to)
        if hw is not None and to != hw:
            top, left = centre((pixels.shape[0], pixels.shape[1]), hw)
            pixels = pixels[top : top + hw[0], left : left + hw[1]]
        return pixels

    def chw(self, index: int, hw: tuple[int, int], resize: int | None) -> npt.NDArray[np.uint8]:
        """Image ``index`` read as `read` reads it, ``(H, W)`` grey or ``(3, H, W)``
        colour: laid out as a training array holds it."""
        image = self.read(index, hw, resize)
        return image if self.channels == 1 else image.transpose(2, 0, 1)


def _resized(pixels: npt.NDArray[np.uint8], hw: tuple[int, int]) -> npt.NDArray[np.uint8]:
    from PIL import Image

    resized = Image.fromarray(pixels).resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.uint8)


def load_image_folder(
    path: PathLike,
    size: int | tuple[int, int] | None = None,
    channels: int = 1,
    *,
    resize: int | None = None,
    log: Log | None = None,
) -> ImageFolder:
    """Load ``path/<class>/<image>`` into arrays, classes in sorted order.

    ``size`` (H, W) resizes every image (with ``resize``, its shorter side to that, then its
    centre cut to ``size``); without it they must all be the same size. ``channels`` 1
    gives ``(N, H, W)`` grayscale, 3 gives ``(N, 3, H, W)`` RGB. Every header is read
    first: an image over `MAX_PIXELS`, or a folder whose images together decode to more
    than `MAX_DECODED` bytes, is refused before anything is decoded; then one array is
    allocated and each image decoded into its place. Unreadable images are skipped (said in
    ``log``) or refused, as the module says.
    """
    headers = read_headers(Path(path), channels)
    return decode_folder(headers, headers.fitted(size), resize, log)


class Headers(NamedTuple):
    """A folder listed and every image's header read (nothing decoded): the files, the
    (H, W) of each readable image by its index, and what was left out so far."""

    files: ImageFiles
    sizes: dict[int, tuple[int, int]]
    skipped: Skipped

    def fitted(self, size: int | tuple[int, int] | None) -> tuple[int, int]:
        """(H, W) the images are brought to: ``size``, else their one size."""
        return (size, size) if isinstance(size, int) else size or _one_size(self.files, self.sizes)

    def decoded(self, hw: tuple[int, int]) -> tuple[int, ...]:
        """The shape of every readable image decoded at ``hw``: ``(N, H, W)`` grey,
        ``(N, 3, H, W)`` colour."""
        n = len(self.sizes)
        return (n, *hw) if self.files.channels == 1 else (n, 3, *hw)


def read_headers(path: Path, channels: int) -> Headers:
    """List ``path`` and read each image's header (`MAX_PIXELS` checked), skipping or
    refusing the unreadable ones as the module says."""
    files = ImageFiles(path, channels)
    skipped = Skipped(path, files)
    sizes: dict[int, tuple[int, int]] = {}
    for i, file in enumerate(files.files):
        with skipped.unless_unreadable(file):
            sizes[i] = files.size(i)  # each header checked before anything is decoded
    skipped.check()
    return Headers(files, sizes, skipped)


def decode_folder(
    headers: Headers, hw: tuple[int, int], resize: int | None, log: Log | None
) -> ImageFolder:
    """Every readable image decoded at ``hw`` into one array, refused first when it would
    hold more than `MAX_DECODED` bytes."""
    files, skipped = headers.files, headers.skipped
    shape = headers.decoded(hw)
    total = math.prod(shape)
    if total > MAX_DECODED:
        raise DataError(
            f"{skipped.path}: {len(headers.sizes):,} images of {fmt_shape(shape[1:])} decode "
            f"to {total:,} bytes; netspec reads at most {MAX_DECODED:,}"
        )
    x = np.empty(shape, np.uint8)
    y = np.empty(len(headers.sizes), np.int64)
    kept = 0
    for i in headers.sizes:
        with skipped.unless_unreadable(files.files[i]):
            x[kept] = files.chw(i, hw, resize)
            y[kept] = files.labels[i]
            kept += 1
    skipped.check()
    if log is not None and skipped.named:
        log(skipped.summary())
    return ImageFolder(x[:kept], y[:kept], files.classes)


def _one_size(files: ImageFiles, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """The one (H, W) of every image, or a DataError naming two that differ."""
    first = next(iter(sizes))
    for i, found in sizes.items():
        if found != sizes[first]:
            raise DataError(
                f"{files.files[i]}: {found} pixels, but {files.files[first]} is "
                f"{sizes[first]}; expected one size, or a rule to bring images of any size "
                "to the input: `resize N` in the train section (the shorter side scaled to "
                "N, then the centre cut)"
            )
    return sizes[first]


class Skipped:
    """The files of a folder left out: those not named as images, and the images that
    cannot be read, skipped while they are at most `MAX_SKIPPED` of the images."""

    def __init__(self, path: Path, files: ImageFiles) -> None:
        self.path, self.total = path, len(files)
        self.unreadable: list[tuple[Path, str]] = []
        self.named = [(f, "not an image's name") for f in files.others]

    @contextmanager
    def unless_unreadable(self, file: Path) -> Iterator[None]:
        try:
            yield
        except Unreadable as e:
            self.unreadable.append((file, e.message.removeprefix(f"{file}: ")))
            self.named.append(self.unreadable[-1])

    def check(self) -> None:
        """Refuse the folder when more than `MAX_SKIPPED` of its images cannot be read."""
        if len(self.unreadable) > MAX_SKIPPED * self.total:
            file, why = self.unreadable[0]
            raise DataError(
                f"{file}: {why}; {len(self.unreadable)} of the {self.total} images in "
                f"{self.path} cannot be read, more than the {MAX_SKIPPED:.0%} netspec skips",
                hint="remove or replace the broken files",
            )

    def summary(self) -> str:
        shown = ", ".join(f"{f.relative_to(self.path)} ({why})" for f, why in self.named[:SHOWN])
        more = f" and {len(self.named) - SHOWN} more" if len(self.named) > SHOWN else ""
        return f"skipped {len(self.named)} file(s) in {self.path}: {shown}{more}"


def _list_images(path: Path) -> tuple[list[str], list[tuple[Path, int]], list[Path]]:
    """Sorted class names, every (image file, class index), and the other files of the
    class folders (not hidden, not named as images)."""
    if not path.is_dir():
        raise DataError(f"{path}: not a directory; expected one subfolder per class")
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{path}: no class folders; expected one subfolder per class (a/1.png)")
    files: list[tuple[Path, int]] = []
    others: list[Path] = []
    for label, name in enumerate(classes):
        listed = sorted(f for f in (path / name).iterdir() if not f.name.startswith("."))
        found = [f for f in listed if f.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise DataError(
                f"{path / name}: no images; expected .png, .jpg or .jpeg files "
                "(or .bmp, .gif, .tif, .webp)"
            )
        files += [(f, label) for f in found]
        others += [f for f in listed if f.suffix.lower() not in IMAGE_SUFFIXES and not f.is_dir()]
    return classes, files, others


@contextmanager
def _opened(file: Path) -> Iterator[Any]:
    """A regular image file opened by Pillow (its header read, nothing decoded), refused
    over `MAX_PIXELS`; every failure, then or while decoding, a DataError (`Unreadable`
    where the file is not a readable image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_regular(file) as f, Image.open(f) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DataError(
                    f"{file}: {image.width}x{image.height} pixels; netspec reads images of "
                    f"at most {MAX_PIXELS:,} pixels"
                )
            yield image
    except Image.DecompressionBombError as e:
        raise DataError(f"{file}: cannot read image ({e})") from None
    except UnidentifiedImageError:
        raise Unreadable(f"{file}: cannot read image (not an image Pillow knows)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise Unreadable(f"{file}: cannot read image ({e})") from None
