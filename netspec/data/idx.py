"""Read and write IDX files, the format MNIST ships in.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the values in C order, big-endian. MNIST
uses type 0x08 (uint8): magic 0x00000801 for labels, 0x00000803 for images.
Files may be gzipped; that is detected from the content, never the name.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from netspec.errors import DataError
from netspec.fileio import PathLike, open_regular, write_bytes
from netspec.text import fmt_shape

__all__ = [
    "IdxFile",
    "IdxPair",
    "check_pair",
    "load_idx_pair",
    "read_idx",
    "read_idx_file",
    "write_idx",
]

GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES = 2**30  # decompressed: all of MNIST's training images are 47 MB
MAX_DIMS = 32  # numpy holds 64; an image set needs 3 or 4
TRAILING_LIMIT = 2**20  # junk after the payload is read this far, to say how much there is
CHUNK_BYTES = 2**20
MAX_LABELS = MAX_BYTES // 8  # labels become int64: eight times a uint8 file's size


class _Stream(Protocol):
    """A file or a gzip stream: what reading an IDX file needs of it."""

    def read(self, size: int = -1, /) -> bytes: ...


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


class IdxFile(NamedTuple):
    """An IDX file read: its array (native-endian, the declared shape), the SHA-256 of its
    uncompressed bytes (header and payload, what dataset checksums are taken of) and how
    many uncompressed bytes there were."""

    array: npt.NDArray[np.generic]
    sha256: str
    size: int


def read_idx_file(path: PathLike, source: str | None = None, max_bytes: int = MAX_BYTES) -> IdxFile:
    """Read an IDX file (gunzipped if it starts with gzip's magic) and hash it as it streams.

    Reading is bounded: the header's dimensions are checked against `MAX_DIMS` and its
    declared size against ``max_bytes`` before anything is allocated; then one array of
    exactly that size is allocated and the payload is decompressed straight into it, in
    chunks, so a file costs the array its header declares and little more (a gzip bomb
    no more than a real file of that size). At most `TRAILING_LIMIT` bytes after the
    payload are read, to say how much junk there is. Every failure is a DataError naming
    ``source`` (default ``path``; a download's temp file has a better name).
    """
    name = source or str(path)
    try:
        with open_regular(path) as f:
            compressed = f.read(2) == GZIP_MAGIC
            f.seek(0)
            if not compressed:
                return _read_stream(f, name, max_bytes)
            with gzip.GzipFile(fileobj=f) as gz:
                return _read_stream(gz, name, max_bytes)
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{name}: corrupt gzip data ({e}); expected a gzipped IDX file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read: {e.strerror or e}; expected an IDX file") from None


def _read_stream(stream: _Stream, name: str, max_bytes: int) -> IdxFile:
    """The header, checked; then the payload it declares, into a preallocated array."""
    digest = hashlib.sha256()
    head = _read_up_to(stream, 4)
    code, ndim = _parse_magic(head, name)
    head += _read_up_to(stream, 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        raise DataError(
            f"{name}: truncated header: magic {_magic(code, ndim)} declares {ndim} "
            f"dimensions, which needs {4 + 4 * ndim} header bytes, file has {len(head)}"
        )
    digest.update(head)
    dims = tuple(int(d) for d in np.frombuffer(head, ">u4", count=ndim, offset=4))
    dtype = DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if expected > max_bytes:
        raise DataError(
            f"{name}: header says {fmt_shape(dims)} {dtype.name} = {expected:,} bytes; "
            f"netspec reads at most {max_bytes:,}"
        )
    try:
        array = np.empty(dims, dtype)
    except MemoryError:
        raise DataError(
            f"{name}: header says {fmt_shape(dims)} {dtype.name} = {expected:,} bytes, "
            "more than this machine can allocate now"
        ) from None
    got = _read_into(stream, array.reshape(-1).view(np.uint8), digest)
    _check_payload(got + _trailing(stream, expected, name), dims, dtype, name)
    native = dtype.newbyteorder("=")
    if native != dtype:
        array.byteswap(inplace=True)
    return IdxFile(array.view(native), digest.hexdigest(), len(head) + expected)


def _read_into(stream: _Stream, buffer: npt.NDArray[np.uint8], digest: Any) -> int:
    """Fill ``buffer`` from ``stream`` a chunk at a time, hashing each; the bytes filled."""
    got = 0
    while got < len(buffer):
        chunk = stream.read(min(CHUNK_BYTES, len(buffer) - got))
        if not chunk:
            break
        buffer[got : got + len(chunk)] = np.frombuffer(chunk, np.uint8)
        digest.update(chunk)
        got += len(chunk)
    return got


def _trailing(stream: _Stream, expected: int, name: str) -> int:
    """How many bytes follow the payload (read and dropped), refusing more than
    `TRAILING_LIMIT` of them."""
    extra = 0
    while chunk := stream.read(min(CHUNK_BYTES, TRAILING_LIMIT + 1 - extra)):
        extra += len(chunk)
        if extra > TRAILING_LIMIT:
            raise DataError(
                f"{name}: more than {TRAILING_LIMIT:,} trailing bytes after the "
                f"{expected:,} bytes its header declares"
            )
    return extra


def _read_up_to(stream: _Stream, n: int) -> bytes:
    """At most ``n`` bytes (a header: ``n`` is at most 132)."""
    parts = b""
    while len(parts) < n:
        chunk = stream.read(n - len(parts))
        if not chunk:
            break
        parts += chunk
    return parts


def read_idx(path: PathLike, max_bytes: int = MAX_BYTES) -> npt.NDArray[np.generic]:
    """Read an IDX file (gzipped or not) into a native-endian array of its declared shape."""
    return read_idx_file(path, max_bytes=max_bytes).array


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
    if len(labels) > MAX_LABELS:
        raise DataError(
            f"{labels_source}: {len(labels):,} labels; netspec reads at most {MAX_LABELS:,} "
            f"(as int64, {MAX_BYTES:,} bytes)"
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
