"""One module per dataset: its record (netspec.data.record) and its reader, and a tuple
``RECORDS`` of the records it defines. `discover` finds them, so a new dataset is one
module here (and its row in docs/language.md); `netspec.data.registry` lists them by
their ``rank``. The modules import nothing heavy: their readers import what they need."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from netspec.data.record import (
    AS_THEY_ARE,
    Arrays,
    Dataset,
    Fit,
    Log,
    Reader,
    SceneSettings,
    Source,
)


def discover() -> tuple[Dataset, ...]:
    """Every record of every module of this package, by rank (then name)."""
    found: list[Dataset] = []
    for info in pkgutil.iter_modules(__path__, f"{__name__}."):
        found.extend(getattr(importlib.import_module(info.name), "RECORDS", ()))
    names = [d.name for d in found]
    assert len(set(names)) == len(names), f"a dataset defined twice: {names}"
    return tuple(sorted(found, key=lambda d: (d.rank, d.name)))


def idx_reader(source: Source, labels: tuple[str, ...]) -> Reader:
    """The reader of a dataset in MNIST's format: ``--data`` in any format netspec reads
    (the same IDX files, an .npz, image folders), else ``source``'s files, fetched and
    verified as needed."""

    def read(
        data: Path | None, log: Log, settings: SceneSettings | None, fit: Fit = AS_THEY_ARE
    ) -> Arrays:
        from netspec.data.arrays import read_fetched

        return read_fetched(source, labels, data, log, fit)

    return read
