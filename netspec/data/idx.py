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
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from netspec.errors import DataError
from netspec.fileio import PathLike, open_regular, write_bytes
from netspec.text import fmt_shape

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
MAX_BYTES = 2**30  # decompressed: all of MNIST's training images are 47 MB
MAX_DIMS = 32  # numpy holds 64; an image set needs 3 or 4
TRAILING_LIMIT = 2**20  # junk after the payload is read this far, to say how much there is
CHUNK_BYTES = 2**20
Read = Callable[[int], bytes]

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


def read_idx_bytes(path: PathLike, source: str | None = None, max_bytes: int = MAX_BYTES) -> bytes:
    """Return the uncompressed content of ``path``, gunzipping if it starts with gzip's magic.

    Reading is bounded: the header's dimensions are checked against `MAX_DIMS` and its
    declared size against ``max_bytes`` before anything is allocated, then at most that many
    bytes (and `TRAILING_LIMIT` more, to report trailing junk) are decompressed, so a gzip
    bomb costs no more than a real file of the size its header claims. ``source`` names the
    file in errors when ``path`` is a temp file (a download, say).
    """
    name = source or str(path)
    try:
        with open_regular(path) as f:
            compressed = f.read(2) == GZIP_MAGIC
            f.seek(0)
            if not compressed:
                return _read_bounded(f.read, name, max_bytes)
            with gzip.GzipFile(fileobj=f) as gz:
                return _read_bounded(gz.read, name, max_bytes)
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{name}: corrupt gzip data ({e}); expected a gzipped IDX file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read: {e.strerror or e}; expected an IDX file") from None


def _read_bounded(read: Read, name: str, max_bytes: int) -> bytes:
    """The header, then the payload it declares (if within ``max_bytes``) and a little more."""
    head = _read_up_to(read, 4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in DTYPES or head[3] == 0:
        return head  # parse_idx says what is wrong with it
    ndim = head[3]
    if ndim > MAX_DIMS:
        raise DataError(
            f"{name}: magic {_magic(head[2], ndim)} declares {ndim} dimensions; "
            f"netspec reads IDX files of at most {MAX_DIMS}"
        )
    head += _read_up_to(read, 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        return head
    dims = tuple(int(d) for d in np.frombuffer(head, ">u4", count=ndim, offset=4))
    expected = math.prod(dims) * DTYPES[head[2]].itemsize
    if expected > max_bytes:
        raise DataError(
            f"{name}: header says {fmt_shape(dims)} {DTYPES[head[2]].name} = {expected:,} bytes; "
            f"netspec reads at most {max_bytes:,}"
        )
    data = head + _read_up_to(read, expected + TRAILING_LIMIT + 1)
    if len(data) > len(head) + expected + TRAILING_LIMIT:
        raise DataError(
            f"{name}: more than {TRAILING_LIMIT:,} trailing bytes after the "
            f"{expected:,} bytes its header declares"
        )
    return data


def _read_up_to(read: Read, n: int) -> bytes:
    """At most ``n`` bytes, read in chunks (so a short stream never costs ``n``)."""
    parts = bytearray()
    while len(parts) < n:
        chunk = read(min(CHUNK_BYTES, n - len(parts)))
        if not chunk:
            break
        parts += chunk
    return bytes(parts)


def read_idx(path: PathLike, max_bytes: int = MAX_BYTES) -> npt.NDArray[np.generic]:
    """Read an IDX file (gzipped or not) into a native-endian array of its declared shape."""
    return parse_idx(read_idx_bytes(path, max_bytes=max_bytes), str(path))


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
    if ndim > MAX_DIMS:
        raise DataError(
            f"{source}: magic {_magic(code, ndim)} declares {ndim} dimensions; "
            f"netspec reads IDX files of at most {MAX_DIMS}"
        )
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
    raise DataError(
        f"{source}: {problem}: header says {fmt_shape(dims)}{kind} = {expected} bytes of {noun}, "
        f"file has {size}"
    )


def _magic(code: int, ndim: int) -> str:
    return f"{(code << 8) | ndim:#010x}"


def _show(prefix: bytes) -> str:
    """Show leading bytes as hex, plus text when printable (an HTML error page, say)."""
    hexed = " ".join(f"{b:02x}" for b in prefix)
    text = prefix.decode("latin-1")
    return f"{hexed} ({text!r})" if text.isprintable() else hexed


def load_idx_pair(images_path: PathLike, labels_path: PathLike) -> IdxPair:
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


def write_idx(
    path: PathLike, array: npt.NDArray[np.generic], *, compress: bool | None = None
) -> None:
    """Write ``array`` as an IDX file, atomically (temp file in the same directory, then rename).

    ``compress=None`` gzips when the name ends in ``.gz``. Raises ValueError for
    arrays IDX cannot hold (0-D, more than `MAX_DIMS` dimensions, unsupported dtype).
    """
    data = _encode(array)
    if compress if compress is not None else Path(path).name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    write_bytes(path, data)


def _encode(array: npt.NDArray[np.generic]) -> bytes:
    """Header plus big-endian values."""
    codes = {(d.kind, d.itemsize): c for c, d in DTYPES.items()}
    code = codes.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= MAX_DIMS:
        raise ValueError(f"IDX needs 1 to {MAX_DIMS} dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, DTYPES[code]).tobytes()
