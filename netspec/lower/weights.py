"""Weights in and out of a lowered module, with safetensors only (never pickle)."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_model
from torch import nn

from netspec.errors import WeightsError


def load_weights(path: str | Path, module: nn.Module) -> None:
    """Load a `.safetensors` file into `module`; a shared tensor stored once is fine."""
    try:
        missing, unexpected = load_model(module, str(path), strict=False)
    except (OSError, SafetensorError, RuntimeError) as e:
        raise WeightsError(f"{path}: cannot load into this network ({e})") from None
    if missing or unexpected:
        raise WeightsError(
            f"{path}: does not fit this network (missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(unexpected) or 'none'})"
        )
