"""The operations a spec may name. Importing this package fills the registry."""

from __future__ import annotations

from netspec.ops import pointwise, spatial
from netspec.ops.registry import REGISTRY, RF, Cost, OpDef, ShapeError

__all__ = ["REGISTRY", "RF", "Cost", "OpDef", "ShapeError", "pointwise", "spatial"]
