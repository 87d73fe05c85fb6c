"""CIFAR-10: 60,000 colour pictures of 32x32 pixels in ten classes (Krizhevsky 2009), read
from its binary version, ``cifar-10-binary.tar.gz``: five training batches and one test
batch of 10,000 records, each one label byte and 3,072 bytes of planar RGB (1,024 red,
then green, then blue, row by row), and ``batches.meta.txt``, the class names one a line.

The Python version is never read: it is pickled, and unpickling runs code, the rule netspec
keeps for weights too. ``--data`` takes the archive as downloaded, the folder it unpacks to
(``cifar-10-batches-bin``) or the folder holding either; without it the archive is fetched
from its publisher, checked against its published MD5, and cached. The archive is read as
it is, member by member, never extracted, so no member can land outside a folder.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from netspec.data.record import AS_THEY_ARE, Arrays, Dataset, Fit, Log, SceneSettings
from netspec.errors import DataError

if TYPE_CHECKING:
    import numpy.typing as npt

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published beside the archive
FOLDER = "cifar-10-batches-bin"
TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST = ("test_batch.bin",)
META = "batches.meta.txt"
RECORD = 1 + 3 * 32 * 32
MAX_BATCH_BYTES = 10_000 * RECORD * 2  # a batch file holds 10,000 records; refuse far more
LABELS = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
EXPECTED = f"CIFAR-10's binary version: {ARCHIVE}, or its {FOLDER} folder ({', '.join(TRAIN)}, "


def read(
    data: Path | None, log: Log, settings: SceneSettings | None, fit: Fit = AS_THEY_ARE
) -> Arrays:
    """Both splits as ``(N, 3, 32, 32)`` uint8 images and int64 labels, from ``data`` or the
    cached (else fetched) archive."""
    path = data if data is not None else _cached(log)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    found = _from_archive(path) if path.is_file() else _from_folder(path)
    labels = _labels(found.get(META), str(path))
    train = _batches(found, TRAIN, str(path))
    test = _batches(found, TEST, str(path))
    log(f"reading CIFAR-10 from {path}: {len(train[0]):,} training, {len(test[0]):,} test images")
    return Arrays(train[0], train[1], test[0], test[1], str(path), labels)


def _limit(name: str) -> int:
    return MAX_BATCH_BYTES if name.endswith(".bin") else 1 << 16


def _from_folder(path: Path) -> dict[str, bytes]:
    """A folder: the batches in it, in its `FOLDER`, or the archive in it."""
    for folder in (path, path / FOLDER):
        if (folder / TEST[0]).is_file():
            return {n: _read(folder / n) for n in (*TRAIN, *TEST, META) if (folder / n).is_file()}
    if (path / ARCHIVE).is_file():
        return _from_archive(path / ARCHIVE)
    seen = ", ".join(sorted(p.name for p in path.iterdir())[:6]) if path.is_dir() else ""
    raise DataError(
        f"{path}: expected {EXPECTED}{TEST[0]}); found {seen or 'nothing'}",
        hint="give --data the archive as downloaded, or the folder it unpacks to",
    )


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > _limit(path.name):
        raise DataError(f"{path}: {size:,} bytes; a CIFAR-10 {path.name} is smaller")
    return path.read_bytes()


def _from_archive(path: Path) -> dict[str, bytes]:
    """A .tar.gz, read member by member (never extracted); refused if a member would leave
    its folder."""
    try:
        with tarfile.open(path, "r:*") as archive:
            return dict(_members(archive, path))
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable tar archive ({e}); expected {ARCHIVE}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None


def _members(archive: tarfile.TarFile, path: Path) -> Iterator[tuple[str, bytes]]:
    for member in archive:
        parts = PurePosixPath(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            raise DataError(f"{path}: its member {member.name!r} would leave the archive's folder")
        name = parts[-1] if parts else ""
        if name not in (*TRAIN, *TEST, META):
            continue
        if not member.isfile():
            raise DataError(f"{path}: {member.name} is not a regular file")
        if member.size > _limit(name):
            raise DataError(f"{path}: {member.name} is {member.size:,} bytes; too large")
        handle = archive.extractfile(member)
        if handle is not None:
            yield name, handle.read(member.size)


def _labels(data: bytes | None, where: str) -> tuple[str, ...]:
    if data is None:
        return LABELS
    try:
        names = tuple(line.strip() for line in data.decode("ascii").splitlines() if line.strip())
    except UnicodeDecodeError:
        raise DataError(f"{where}: {META} is not text") from None
    if len(names) != len(LABELS) or not all(re.fullmatch(r"[\w\- ]{1,40}", n) for n in names):
        raise DataError(f"{where}: {META} must name the 10 classes, one a line")
    return names


def _batches(
    found: dict[str, bytes], names: tuple[str, ...], where: str
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The images ``(N, 3, 32, 32)`` uint8 and labels of ``names``' records (numpy is
    imported here: the registry, which the front end imports, loads no numpy)."""
    import numpy as np

    images, labels = [], []
    for name in names:
        data = found.get(name)
        if data is None:
            have = ", ".join(sorted(found)) or "none of its files"
            raise DataError(f"{where}: no {name}; expected {EXPECTED}{TEST[0]}); found {have}")
        if not data or len(data) % RECORD:
            raise DataError(
                f"{where}: {name} is {len(data):,} bytes, not a whole number of "
                f"{RECORD:,}-byte records (a label byte, then 32x32 pixels of red, green, blue)"
            )
        records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
        if int(records[:, 0].max()) >= len(LABELS):
            raise DataError(f"{where}: {name} has labels up to {int(records[:, 0].max())}; 0-9")
        labels.append(records[:, 0].astype(np.int64))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(images), np.concatenate(labels)


def _cached(log: Log) -> Path:
    """The cached archive, fetched and checked first if it is not there."""
    from netspec.data.fetch import cache_root, download_verified

    path = cache_root() / "cifar10" / ARCHIVE
    if not path.is_file():
        log(f"fetching {URL} (170 MB)")
        download_verified(URL, path, md5=MD5, title="CIFAR-10")
    return path


CIFAR10 = Dataset(
    "cifar10",
    "CIFAR-10's 32x32 colour pictures in 10 classes, fetched and cached (or --data ARCHIVE|DIR)",
    read,
    task="classes",
    sample="picture",
    labels=LABELS,
    channels=3,
    size=(32, 32),
    rank=25,
)

RECORDS = (CIFAR10,)  # what netspec.data.datasets finds here
