"""CIFAR-10's loader on small archives in the exact binary format (this machine cannot
reach its publisher): records of a label byte and planar RGB, read from the archive, the
folder it unpacks to and the folder above; trained on through the real command; every
malformed input a clear DataError; and the verified download against a real HTTP server on
127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from netspec.data.datasets import cifar10
from netspec.data.fetch import download_verified
from netspec.data.registry import dataset
from netspec.errors import DataError
from tests.conftest import ROOT, write_mnist_subset

QUIET = print
SIZES = {**{name: 12 for name in cifar10.TRAIN}, "test_batch.bin": 8}


def records(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``n`` records: labels cycling 0-9, and pictures whose red plane is bright for even
    labels, so that a network can learn them and the layout can be checked."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) + seed) % 10
    images = rng.integers(0, 100, (n, 3, 32, 32), np.uint8)
    images[labels % 2 == 0, 0] = 250
    data = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(n, -1)], 1)
    return data.tobytes(), images, labels


def batches(extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {name: records(n, i)[0] for i, (name, n) in enumerate(SIZES.items())}
    files["batches.meta.txt"] = "\n".join(cifar10.LABELS).encode() + b"\n\n"
    return {**files, **(extra or {})}


def without(name: str) -> dict[str, bytes]:
    return {k: v for k, v in batches().items() if k != name}


def archive(path: Path, files: dict[str, bytes], folder: str = cifar10.FOLDER) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def unpacked(path: Path, files: dict[str, bytes]) -> Path:
    folder = path / cifar10.FOLDER
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_archive_folder_and_parent_read_the_same(tmp_path: Path) -> None:
    files = batches()
    sources = [
        archive(tmp_path / cifar10.ARCHIVE, files),
        unpacked(tmp_path / "a", files),
        tmp_path / "a",
        tmp_path,  # holds the archive
    ]
    read = [cifar10.read(s, QUIET, None) for s in sources]
    want_train = np.concatenate([records(n, i)[1] for i, n in enumerate(SIZES.values())][:5])
    _, test_images, test_labels = records(8, 5)
    for arrays in read:
        assert arrays.train_x.shape == (60, 3, 32, 32) and arrays.train_x.dtype == np.uint8
        assert np.array_equal(arrays.train_x, want_train)
        assert np.array_equal(arrays.test_x, test_images)
        assert np.array_equal(arrays.test_y, test_labels)
        assert arrays.labels == cifar10.LABELS
    # planar RGB: the red plane is the first 1,024 bytes after the label
    assert (read[0].test_x[test_labels % 2 == 0, 0] == 250).all()


def test_the_record_is_found_and_describes_cifar() -> None:
    record = dataset("cifar10")
    assert record is not None
    assert (record.channels, record.size, record.labels[0], record.task) == (
        3,
        (32, 32),
        "airplane",
        "classes",
    )


@pytest.mark.parametrize(
    ("files", "folder", "words"),
    [
        (batches({"test_batch.bin": b"\x01" * 3000}), cifar10.FOLDER, "whole number of 3,073"),
        (batches({"data_batch_3.bin": b"\x0c" + bytes(3072)}), cifar10.FOLDER, "labels up to 12"),
        (batches({"batches.meta.txt": b"cat\ndog\n"}), cifar10.FOLDER, "the 10 classes"),
        (
            {k: v for k, v in batches().items() if k != "data_batch_2.bin"},
            cifar10.FOLDER,
            "no data_batch_2.bin",
        ),
        (batches(), "../escape", "would leave the archive's folder"),
    ],
)
def test_malformed_archives_are_refused(
    tmp_path: Path, files: dict[str, bytes], folder: str, words: str
) -> None:
    path = archive(tmp_path / "c.tar.gz", files, folder)
    with pytest.raises(DataError, match=words):
        cifar10.read(path, QUIET, None)


def test_a_corrupt_archive_and_mnist_files_say_what_was_expected(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive(tmp_path / "ok.tar.gz", batches()).read_bytes()[:5000])
    with pytest.raises(DataError, match=r"not a readable tar archive|cannot read"):
        cifar10.read(broken, QUIET, None)
    mnist = write_mnist_subset(tmp_path / "mnist", 20, 10)
    with pytest.raises(DataError, match="expected CIFAR-10's binary version") as e:
        cifar10.read(mnist, QUIET, None)
    assert "train-images-idx3-ubyte.gz" in str(e.value)


SPEC = """network tiny(image: 3x32x32) {
    conv 8 3x3 | relu | maxpool 4x4
    dense 10
}

train tiny on cifar10 {
    normalize mean=0.47 std=0.25
    epochs 1
    batch 16
}
"""


def test_netspec_train_on_a_cifar_archive(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.net"
    spec.write_text(SPEC)
    data = archive(tmp_path / cifar10.ARCHIVE, batches())
    command = ["train", spec, "--data", data, "--out", tmp_path / "runs", "--name", "c"]
    result = subprocess.run(
        [sys.executable, "-m", "netspec", *map(str, command)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "60 training, 8 test images" in result.stdout + result.stderr
    assert (tmp_path / "runs" / "c" / "model.onnx").is_file()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(www), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", www
    finally:
        server.shutdown()
        server.server_close()


def test_a_download_is_verified_before_it_is_cached(
    tmp_path: Path, served: tuple[str, Path]
) -> None:
    url, www = served
    body = os.urandom(100_000)
    (www / "a.tar.gz").write_bytes(body)
    cache = tmp_path / "cache" / "cifar10"
    good = hashlib.md5(body, usedforsecurity=False).hexdigest()
    with pytest.raises(DataError, match="not the published"):
        download_verified(url + "a.tar.gz", cache / "a.tar.gz", md5="0" * 32, title="CIFAR-10")
    assert list(cache.iterdir()) == []  # nothing poisoned, no temp file left
    download_verified(url + "a.tar.gz", cache / "a.tar.gz", md5=good, title="CIFAR-10")
    assert (cache / "a.tar.gz").read_bytes() == body
    with pytest.raises(DataError, match="HTTP 404"):
        download_verified(url + "missing", cache / "m", md5=good, title="CIFAR-10")
