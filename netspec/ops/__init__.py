"""The operations a spec may name. Importing this package fills the registry.

Every module of this package is imported by `discover`, in the order of the modules'
names: each one that declares operations registers them as it is imported, so a new module
of operations is found without being listed anywhere. Modules without operations (the
registry, the shared shape helpers, the spelling of synonyms) are imported the same way.
That order is the registry's, which `merge_names()` and the hints that list the merges
follow. `netspec.ops.registry`'s docstring lists the files a new operation touches.
"""

from __future__ import annotations

import importlib
import pkgutil

from netspec.ops.registry import (
    REGISTRY,
    RF,
    Cost,
    HeadLoss,
    LossParams,
    OpDef,
    OutputMeaning,
    ShapeError,
    channels_last_helps,
    head_losses,
    merge_names,
)


def discover() -> tuple[str, ...]:
    """Import every module of this package, by name (one imported already is not run
    again), so that each registers its operations; the modules' names, in that order."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__, f"{__name__}."))
    for name in names:
        importlib.import_module(name)
    return tuple(names)


discover()

__all__ = [
    "REGISTRY",
    "RF",
    "Cost",
    "HeadLoss",
    "LossParams",
    "OpDef",
    "OutputMeaning",
    "ShapeError",
    "channels_last_helps",
    "discover",
    "head_losses",
    "merge_names",
]
