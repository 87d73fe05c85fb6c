"""What several test modules share: where MNIST is, a few hundred MNIST-shaped samples
written as IDX files (real MNIST where it is there, else synthetic digits, so that tests
needing only a small learnable set never skip), and one torch thread for small tensors.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import settings

from netspec.data import load_mnist, write_idx

ROOT = Path(__file__).resolve().parents[1]
# The commands choose their threads by the load (netspec/threads.py); a test's outcome must
# not, so every command the suite runs, here and in subprocesses, computes on this many.
os.environ.setdefault("NETSPEC_THREADS", str(torch.get_num_threads()))
# Hypothesis explores new examples on every local run (it found fmt's `0 x 0.5`); under CI
# its examples are derived from each test, so that a submission's outcome is not a draw.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
REAL_MNIST = Path(os.environ.get("NETSPEC_TEST_MNIST", ROOT.parent / "shared" / "data" / "mnist"))
needs_mnist = pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="no MNIST in shared/data")
IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def synthetic_digits(n: int, seed: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """``n`` 28x28 uint8 images of ten classes a small network learns in one epoch (class
    k: a bright 6x6 square at the k-th place of a 2x5 grid, on noise), labels cycling 0-9."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        top, left = 4 + 12 * (k // 5), 1 + 5 * (k % 5)
        images[i, top : top + 6, left : left + 5] = 255
    return images, labels


def write_mnist_subset(out: Path, train: int, test: int, *, real: bool | None = None) -> Path:
    """The first ``train`` training and ``test`` test images of MNIST as gzipped IDX files
    in ``out`` (MNIST's file names); synthetic digits where MNIST is not there (or where
    ``real`` is False). Returns ``out``."""
    if real is None:
        real = REAL_MNIST.is_dir()
    if real:
        d = load_mnist(REAL_MNIST)
        arrays = (d.train_x[:train], d.train_y[:train], d.test_x[:test], d.test_y[:test])
    else:
        arrays = (*synthetic_digits(train, 0), *synthetic_digits(test, 1))
    out.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(out / name, array if "images" in name else array.astype(np.uint8))
    return out


@pytest.fixture(scope="session")
def quick_two_stage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A short Faster R-CNN run (tests/test_faster_rcnn.py's QUICK) and its scenes, trained
    once for the session: the two-stage tests of training, show, serve and parity read it."""
    from tests.test_faster_rcnn import train_quick

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread, as `one_thread` gives
    try:
        return train_quick(tmp_path_factory.mktemp("faster_rcnn"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core machine: one thread avoids OpenMP's busy waiting.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def interruptible() -> None:
    """`preexec_fn` for a child that a test interrupts with SIGINT: a test run started in
    the background by a shell without job control inherits SIGINT ignored (and Python then
    never raises KeyboardInterrupt); the child takes it as a terminal's Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
