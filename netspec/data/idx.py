"""Read and write IDX files, the format MNIST ships in.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the values in C order, big-endian. MNIST
uses type 0x08 (uint8): magic 0x00000801 for labels, 0x00000803 for images.
Files may be gzipped; that is detected from the content, never the name.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from netspec.errors import DataError
from netspec.fileio import write_bytes

__all__ = [
    "IdxPair",
    "check_pair",
    "load_idx_pair",
    "parse_idx",
    "read_idx",
    "read_idx_bytes",
    "write_idx",
]

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype (the codes the format defines).
DTYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


class IdxPair(NamedTuple):
    """Images ``(N, H, W)`` uint8 and their labels ``(N,)`` int64.

    Labels are returned as stored, even when out of the expected range;
    ``max_label`` lets callers check them against their number of classes.
    """

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]

    @property
    def max_label(self) -> int:
        """The largest label, or -1 for an empty set."""
        return int(self.labels.max()) if self.labels.size else -1


def read_idx_bytes(path: Path, source: str | None = None) -> bytes:
    """Return the uncompressed content of ``path``, gunzipping if it starts with gzip's magic.

    ``source`` names the file in errors when ``path`` is a temp file (a download, say).
    """
    name = source or str(path)
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
            f.seek(0)
            if not compressed:
                return f.read()
            with gzip.GzipFile(fileobj=f) as gz:
                return gz.read()
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{name}: corrupt gzip data ({e}); expected a gzipped IDX file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read: {e.strerror or e}") from None


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """Read an IDX file (gzipped or not) into a native-endian array of its declared shape."""
    return parse_idx(read_idx_bytes(path), str(path))


def parse_idx(data: bytes, source: str) -> npt.NDArray[np.generic]:
    """Parse IDX bytes; ``source`` names the file in error messages."""
    code, ndim = _parse_magic(data, source)
    dtype = DTYPES[code]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: truncated header: magic {_magic(code, ndim)} declares {ndim} "
            f"dimensions, which needs {header} header bytes, file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    _check_payload(len(data) - header, dims, dtype, source)
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def _parse_magic(data: bytes, source: str) -> tuple[int, int]:
    """Return (type code, ndim) from the magic number, or raise saying what was found."""
    expected = f"an IDX file (magic {LABELS_MAGIC:#010x} labels or {IMAGES_MAGIC:#010x} images)"
    if not data:
        raise DataError(f"{source}: empty file; expected {expected}")
    if len(data) < 4:
        raise DataError(f"{source}: only {len(data)} bytes; expected {expected}")
    if data[:2] != b"\0\0":
        raise DataError(
            f"{source}: not an IDX file: starts with {_show(data[:4])}; expected {expected}"
        )
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        supported = ", ".join(f"{c:#04x} {d.name}" for c, d in DTYPES.items())
        raise DataError(
            f"{source}: unsupported IDX type code {code:#04x} in magic {_magic(code, ndim)}; "
            f"supported: {supported}"
        )
    if ndim == 0:
        raise DataError(f"{source}: magic {_magic(code, ndim)} declares 0 dimensions; expected 1+")
    return code, ndim


def _check_payload(
    size: int, dims: tuple[int, ...], dtype: np.dtype[np.generic], source: str
) -> None:
    """Raise unless ``size`` bytes is exactly what the header's dimensions need."""
    expected = math.prod(dims) * dtype.itemsize
    if size == expected:
        return
    noun = {1: "labels", 3: "pixels"}.get(len(dims), "values") if dtype.itemsize == 1 else "values"
    kind = "" if dtype.itemsize == 1 else f" {dtype.name}"
    problem = "truncated" if size < expected else f"{size - expected} trailing bytes"
    shape = "x".join(str(d) for d in dims)
    raise DataError(
        f"{source}: {problem}: header says {shape}{kind} = {expected} bytes of {noun}, "
        f"file has {size}"
    )


def _magic(code: int, ndim: int) -> str:
    return f"{(code << 8) | ndim:#010x}"


def _show(prefix: bytes) -> str:
    """Show leading bytes as hex, plus text when printable (an HTML error page, say)."""
    hexed = " ".join(f"{b:02x}" for b in prefix)
    text = prefix.decode("latin-1")
    return f"{hexed} ({text!r})" if text.isprintable() else hexed


def load_idx_pair(images_path: Path, labels_path: Path) -> IdxPair:
    """Load matching image and label files, checking their kinds and that their counts agree."""
    return check_pair(
        read_idx(images_path), read_idx(labels_path), str(images_path), str(labels_path)
    )


def check_pair(
    images: npt.NDArray[np.generic],
    labels: npt.NDArray[np.generic],
    images_source: str,
    labels_source: str,
) -> IdxPair:
    """Check that parsed arrays are uint8 images and integer labels of the same count."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_source}: expected uint8 images (N, rows, cols), magic {IMAGES_MAGIC:#010x}; "
            f"found {images.dtype} with shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{labels_source}: expected integer labels (N,), magic {LABELS_MAGIC:#010x}; "
            f"found {labels.dtype} with shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{labels_source}: {len(labels)} labels, but {images_source} has {len(images)} "
            "images; expected one label per image (are they from different sets?)"
        )
    return IdxPair(images.astype(np.uint8, copy=False), labels.astype(np.int64))


def write_idx(path: Path, array: npt.NDArray[np.generic], *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, atomically (temp file in the same directory, then rename).

    ``compress=None`` gzips when the name ends in ``.gz``. Raises ValueError for
    arrays IDX cannot hold (0-D, more than 255 dimensions, unsupported dtype).
    """
    data = _encode(array)
    if compress if compress is not None else path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    write_bytes(path, data)


def _encode(array: npt.NDArray[np.generic]) -> bytes:
    """Header plus big-endian values."""
    codes = {(d.kind, d.itemsize): c for c, d in DTYPES.items()}
    code = codes.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, DTYPES[code]).tobytes()
