"""Limits that keep a spec from asking for more than a workstation has.

A spec over a limit is refused with the numbers, before anything is allocated.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_params: int = Field(default=1_000_000_000, gt=0)
    max_activations: int = Field(default=1_000_000_000, gt=0)  # elements per sample, all layers
    max_nodes: int = Field(default=100_000, gt=0)
    max_repeat: int = Field(default=10_000, gt=0)
    max_depth: int = Field(default=64, gt=0)  # nested block calls
    max_file_bytes: int = Field(default=1 << 20, gt=0)
    max_tokens: int = Field(default=100_000, gt=0)  # words, numbers and symbols per file
    max_nesting: int = Field(default=50, gt=0)  # groups, repeats, shared bodies, arithmetic


# The largest size, count or stride a spec may write: what a 32-bit integer holds, the
# widest that PyTorch's and ONNX Runtime's kernels take for a size everywhere. Bounding
# every value keeps shape, receptive-field and cost arithmetic far from overflowing.
MAX_VALUE = 2**31 - 1
