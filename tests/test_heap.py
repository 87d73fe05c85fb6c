"""netspec/train/heap.py: a training process keeps the memory it frees, so the next step's
tensors reuse pages instead of faulting fresh ones in. Each case runs in
its own interpreter: the setting belongs to the whole process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHILD = """
import json, resource, sys
import torch
from netspec.train.heap import keep_freed_memory

kept = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(16, 8, 3, padding=1),
)
x = torch.rand(40, 1, 128, 128)  # 16 maps of 128x128 for 40 images: 40 MiB a tensor
faults = []
for _ in range(6):  # training steps: every activation and gradient allocated and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(x).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults}))
"""


def _faults(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    default, kept = _faults("default"), _faults("keep")
    assert kept["kept"] is True
    # the steady state, the last four steps (the first ones also build the heap): by
    # default the tensors above glibc's mmap threshold are mapped, faulted in page by page
    # and unmapped every step (20,000-80,000 faults a step measured); kept, most steps
    # fault nothing (0-10,240 measured)
    again_default = sum(default["faults"][2:])  # type: ignore[index]
    again_kept = sum(kept["faults"][2:])  # type: ignore[index]
    assert again_default > 40_000, default
    assert again_kept * 3 < again_default, (default, kept)
