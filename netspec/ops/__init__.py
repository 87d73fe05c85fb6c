"""The operations a spec may name. Importing this package fills the registry.

`netspec.ops.registry`'s docstring lists the files a new operation touches.
"""

from __future__ import annotations

from netspec.ops import (
    activations,
    detection,
    merges,
    normalization,
    pointwise,
    shape,
    spatial,
    upsampling,
)
from netspec.ops.registry import (
    REGISTRY,
    RF,
    Cost,
    OpDef,
    OutputMeaning,
    ShapeError,
    channels_last_helps,
    merge_names,
)

__all__ = [
    "REGISTRY",
    "RF",
    "Cost",
    "OpDef",
    "OutputMeaning",
    "ShapeError",
    "activations",
    "channels_last_helps",
    "detection",
    "merge_names",
    "merges",
    "normalization",
    "pointwise",
    "shape",
    "spatial",
    "upsampling",
]
