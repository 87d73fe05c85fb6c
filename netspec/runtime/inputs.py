"""Files to model-ready batches: PNG/JPEG images, `.npy` arrays, IDX files, directories.

Pixels (images, uint8 arrays and IDX files) are scaled to [0, 1] (16-bit images by
65535), fitted to the model's size (by its `resize` rule where it has one: the shorter
side scaled, the centre cut, as training did; netspec.data.sizing), converted to its
channels, then normalized with the model's `(x - mean) / std`, per channel where it has
one value per channel. Float arrays are taken as already model-ready.
MNIST-style models expect a white digit on black; `invert=True` turns a dark-on-light
image around. The kind of a file is read from its first bytes, not its name.

Reads are bounded before anything large is allocated: an image's size is read from its
header and refused above MAX_IMAGE_PIXELS (a small PNG can decode to gigabytes), and
an IDX file's dimensions are read from its header first.
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from netspec.artifact import InputInfo
from netspec.data import DataError, load_idx_pair, read_idx
from netspec.data.folders import load_npz_targets
from netspec.data.pixels import unit_pixels
from netspec.data.sizing import centre, scaled
from netspec.errors import InputError
from netspec.fileio import open_regular
from netspec.text import fmt_shape

Notice = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npz"),
    (b"\x1f\x8b", "idx"),  # gzipped IDX
    (b"\x00\x00", "idx"),
)
EXPECTED = "a PNG or JPEG image, a .npy array, an IDX file, or a directory of these"
MAX_IMAGE_PIXELS = 2**25  # 33.5 Mpx: a 8192x4096 photo; decoded as float32, 128 MiB a channel
MAX_IDX_DIMS = 4  # (N, C, H, W)


@dataclass(frozen=True)
class Batch:
    """Model-ready inputs `(N, C, H, W)` and, per sample, the file (and index) it came from."""

    array: FloatArray
    names: tuple[str, ...]


def file_kind(path: Path) -> str | None:
    """`png`, `jpeg`, `npy`, `npz` or `idx` from the leading bytes, or None."""
    try:
        with open_regular(path) as f:
            head = f.read(8)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; directories replaced by their readable files, sorted by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and file_kind(p) not in (None, "npz")
            )
            if not found:
                raise InputError(f"{path}: no inputs in this directory; expected {EXPECTED}")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    return files


def load_inputs(
    paths: Sequence[Path], info: InputInfo, *, invert: bool = False, notice: Notice = lambda _: None
) -> Batch:
    """Every input file, fitted to `info`, as one batch."""
    arrays: list[FloatArray] = []
    names: list[str] = []
    for path in expand_paths(paths):
        array = load_file(path, info, invert=invert, notice=notice)
        arrays.append(array)
        names += [str(path)] if len(array) == 1 else [f"{path}[{i}]" for i in range(len(array))]
    return Batch(np.concatenate(arrays), tuple(names))


def load_file(
    path: Path, info: InputInfo, *, invert: bool = False, notice: Notice = lambda _: None
) -> FloatArray:
    """One file as `(N, C, H, W)` float32, ready for the model."""
    kind = file_kind(path)
    if kind in ("png", "jpeg"):
        return _from_unit(_read_image(path, _channels(info, path)), info, path, invert, notice)
    if kind == "npy":
        return _from_array(_read_npy(path), info, path, invert, notice)
    if kind == "idx":
        _check_idx_dims(path)
        try:
            array = read_idx(path)
        except DataError as e:
            raise InputError(str(e)) from None
        if array.ndim == 1:
            raise InputError(f"{path}: an IDX file of {len(array)} labels; expected images")
        return _from_array(array, info, path, invert, notice)
    raise InputError(f"{path}: not an image or array; expected {EXPECTED}")


def load_samples(
    path: Path, info: InputInfo, *, invert: bool = False, notice: Notice = lambda _: None
) -> tuple[FloatArray, npt.NDArray[np.int64] | None]:
    """Inputs and, where the data carries them, labels: an IDX images file with its labels file
    beside it (MNIST's names), an `.npz` with `x` (and labels `y`), or any input `load_inputs`
    reads."""
    try:
        if path.is_file() and file_kind(path) == "npz":
            data = load_npz_targets(path)  # y may be absent, or maps: no labels then
            labels = data.y if data.y is not None and data.y.ndim == 1 else None
            return _from_array(data.x, info, path, invert, notice), labels
        labels_file = _labels_beside(path)
        if labels_file is not None:
            _check_idx_dims(path)
            pair = load_idx_pair(path, labels_file)
            return _from_array(pair.images, info, path, invert, notice), pair.labels
    except DataError as e:
        raise InputError(str(e)) from None
    return load_inputs([path], info, invert=invert, notice=notice).array, None


def _labels_beside(path: Path) -> Path | None:
    """`t10k-labels-idx1-ubyte[.gz]` for `t10k-images-idx3-ubyte[.gz]`, if it is there."""
    if not path.is_file() or "images-idx3" not in path.name:
        return None
    candidate = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    return candidate if candidate.is_file() else None


def _check_idx_dims(path: Path) -> None:
    """Refuse an IDX file of more than MAX_IDX_DIMS dimensions from its 4-byte header,
    before its data is read (the format allows 255)."""
    try:
        with open_regular(path) as raw:
            head = raw.read(4)
            if head.startswith(b"\x1f\x8b"):
                raw.seek(0)
                with gzip.open(raw) as inflated:
                    head = inflated.read(4)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path}: cannot read IDX header ({e})") from None
    if len(head) == 4 and head[3] > MAX_IDX_DIMS:
        raise InputError(
            f"{path}: an IDX file of {head[3]} dimensions; expected images "
            f"(N, H, W) or (N, C, H, W), at most {MAX_IDX_DIMS} dimensions"
        )


def _channels(info: InputInfo, path: Path) -> int:
    if len(info.shape) != 3 or info.shape[0] not in (1, 3):
        raise InputError(
            f"{path}: the model's input '{info.name}' is {fmt_shape(info.shape)}; "
            "images feed only 1- or 3-channel inputs (C x H x W): give a .npy array"
        )
    return int(info.shape[0])


def _read_image(path: Path, channels: int) -> FloatArray:
    """`(1, C, H, W)` in [0, 1]: grey (`L`) or `RGB`, 16-bit grey scaled by 65535
    (netspec.data.pixels, the one reader of pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(path, image.size)
                image.load()
                pixels = unit_pixels(image, channels)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: cannot read image ({e}); expected {EXPECTED}") from None
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return chw[None]


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image above MAX_IMAGE_PIXELS from the size in its header, before decoding."""
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{path}: an image of {width}x{height} ({width * height:,} pixels); netspec "
            f"reads images of at most {MAX_IMAGE_PIXELS:,} pixels: scale it down first"
        )


def _read_npy(path: Path) -> npt.NDArray[np.generic]:
    try:
        array: npt.NDArray[np.generic] = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read .npy ({e}); expected a numeric array") from None
    if array.dtype.kind not in "uif":
        raise InputError(
            f"{path}: a {array.dtype} array; expected numbers (uint8 pixels or model-ready floats)"
        )
    return array


def _as_nchw(
    array: npt.NDArray[np.generic], info: InputInfo, path: Path
) -> npt.NDArray[np.generic]:
    """`(H, W)`, `(N, H, W)` (one channel), `(C, H, W)` or `(N, C, H, W)` as `(N, C, H, W)`."""
    c = info.shape[0] if info.shape else None
    if array.ndim == 2 and c == 1:
        return array[None, None]
    if array.ndim == 3 and c == 1 and array.shape[0] != 1:
        return array[:, None]
    if array.ndim == 3:
        return array[None]
    if array.ndim == 4:
        return array
    raise InputError(
        f"{path}: an array of shape {fmt_shape(array.shape)}; the model's input "
        f"'{info.name}' is {fmt_shape(info.shape)} per sample: expected (C, H, W), "
        "(N, C, H, W), or for one channel (H, W) or (N, H, W)"
    )


def _from_array(
    array: npt.NDArray[np.generic], info: InputInfo, path: Path, invert: bool, notice: Notice
) -> FloatArray:
    if array.size == 0:
        raise InputError(
            f"{path}: no samples (shape {fmt_shape(array.shape)}); expected at least one"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{path}: holds NaN or infinite values; expected finite numbers")
    if len(info.shape) != 3:
        return _exact(array.astype(np.float32), info, path)
    nchw = _as_nchw(array, info, path)
    if nchw.dtype == np.uint8:
        return _from_unit(nchw.astype(np.float32) / np.float32(255.0), info, path, invert, notice)
    return _exact(nchw.astype(np.float32), info, path)


def _exact(array: FloatArray, info: InputInfo, path: Path) -> FloatArray:
    """Model-ready floats must already have the model's per-sample shape."""
    want = info.shape
    got = array.shape[1:] if array.ndim == len(want) + 1 else array.shape
    if len(got) != len(want) or any(
        isinstance(w, int) and w != g for w, g in zip(want, got, strict=True)
    ):
        raise InputError(
            f"{path}: float samples of shape {fmt_shape(got)}; the model's input "
            f"'{info.name}' takes {fmt_shape(want)} (float arrays are used as given; "
            "uint8 arrays are treated as pixels and fitted)"
        )
    return array if array.ndim == len(want) + 1 else array[None]


def _from_unit(
    x: FloatArray, info: InputInfo, path: Path, invert: bool, notice: Notice
) -> FloatArray:
    """Pixels in [0, 1], `(N, C, H, W)` -> inverted if asked, fitted, normalized floats."""
    if invert:
        x = 1.0 - x
    elif x.shape[1] == 1 and np.count_nonzero(x > 0.5) > x.size / 2:  # mostly light
        notice(
            f"{path}: looks like dark ink on a light background; models trained on "
            "MNIST expect a white digit on black (pass --invert)"
        )
    x = _fit_channels(x, int(info.shape[0]), path, notice)
    if info.resize is not None and all(isinstance(d, int) for d in info.shape[1:]):
        x = _resize_and_cut(x, (int(info.shape[1]), int(info.shape[2])), info.resize, path, notice)
    else:
        x = _fit_size(x, info.shape[1], info.shape[2], path, notice)
    return info.normalize(x)


def _fit_channels(x: FloatArray, channels: int, path: Path, notice: Notice) -> FloatArray:
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1:
        notice(f"{path}: grey input repeated to the model's {channels} channels")
        return np.repeat(x, channels, axis=1)
    if have == 3 and channels == 1:
        notice(f"{path}: colour input converted to grey for the model's 1 channel")
        weights = np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)
        grey: FloatArray = (x * weights).sum(axis=1, keepdims=True)
        return grey
    raise InputError(f"{path}: {have} channels; the model takes {channels}")


def _fit_size(
    x: FloatArray, height: int | str, width: int | str, path: Path, notice: Notice
) -> FloatArray:
    """Pad a smaller input centred on black when it fits evenly (MNIST's 28 -> 32, as training
    does), else resize bilinearly; say which."""
    h, w = x.shape[2], x.shape[3]
    want_h = height if isinstance(height, int) else h
    want_w = width if isinstance(width, int) else w
    if (h, w) == (want_h, want_w):
        return x
    dh, dw = want_h - h, want_w - w
    if dh >= 0 and dw >= 0 and dh % 2 == 0 and dw % 2 == 0:
        notice(f"{path}: {h}x{w} padded to the model's {want_h}x{want_w} (centred, black border)")
        return np.pad(x, ((0, 0), (0, 0), (dh // 2, dh // 2), (dw // 2, dw // 2)))
    notice(f"{path}: {h}x{w} resized to the model's {want_h}x{want_w}")
    return _resize(x, want_h, want_w)


def _resize_and_cut(
    x: FloatArray, out: tuple[int, int], resize: int, path: Path, notice: Notice
) -> FloatArray:
    """The model's `resize` rule: the shorter side scaled to ``resize`` (at least covering
    ``out``), then the centre ``out`` cut, as its training set's images were."""
    h, w = x.shape[2], x.shape[3]
    size = scaled((h, w), resize, out)
    if size != (h, w):
        notice(
            f"{path}: {h}x{w} resized to {size[0]}x{size[1]} (shorter side {resize}), "
            f"its centre {out[0]}x{out[1]} kept"
        )
        x = _resize(x, *size)
    top, left = centre(size, out)
    return x[:, :, top : top + out[0], left : left + out[1]]


def _resize(x: FloatArray, height: int, width: int) -> FloatArray:
    from PIL import Image

    out = np.empty((*x.shape[:2], height, width), np.float32)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane = Image.fromarray(x[n, c], mode="F")
            out[n, c] = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
    return out
