"""Export: a compiled network to a checked, verified ONNX file (fp32, fp16 or int8)."""

from __future__ import annotations

from netspec.artifact import InputInfo, ModelInfo, OutputInfo
from netspec.errors import ExportError
from netspec.export.onnx_export import ExportOptions, ExportReport, export_compiled

__all__ = [
    "ExportError",
    "ExportOptions",
    "ExportReport",
    "InputInfo",
    "ModelInfo",
    "OutputInfo",
    "export_compiled",
]
