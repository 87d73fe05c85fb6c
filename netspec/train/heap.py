"""Keep the memory a training process frees for its next step (glibc's malloc, Linux).

PyTorch on the CPU allocates every step's activations and gradients afresh through
malloc. glibc serves a block above its mmap threshold (32 MiB at most) with a fresh mmap and
unmaps it when freed, and gives the top of its heap back to the kernel once more than the
trim threshold is free; the next step then faults every page in again and the kernel zeroes
it. For specs/yolo_digits.net at batch 64 that was about 100,000 page faults a step, 180 ms
of kernel time in a 240 ms step on the 2-core machine (docs/benchmarks.md, "Memory a
training step gives back"). Serving every block from the heap and keeping what is freed
there does for the CPU what PyTorch's caching allocator does on CUDA: the process keeps its
peak, and a step reuses it.

Called by the commands that train (`netspec train`, the benchmarks of its loop), not by
the library's functions: it is a setting of the whole process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
KEEP = 2**31 - 1  # the largest trim threshold mallopt takes (an int): 2 GiB free at the top


def keep_freed_memory() -> bool:
    """Ask glibc to serve every block from its heap and keep freed memory; True when it
    could (Linux with glibc), False elsewhere (another libc or OS: nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP))
