"""`netspec train --nproc 2`: two gloo processes on the CPU train like one process.

Each rank takes its half of every global batch and DDP averages the gradients, with the
loss scaled so that the average is the global batch's gradient; without augmentation or
dropout, two processes at global batch B follow one process at batch B up to float
rounding (sums in another order): final weights agree within atol 1e-4.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from netspec.cli.train import train_cmd
from netspec.data import load_mnist, write_idx

ROOT = Path(__file__).resolve().parents[1]
REAL_MNIST = Path(os.environ.get("NETSPEC_TEST_MNIST", ROOT.parent / "shared" / "data" / "mnist"))
LENET = ROOT / "specs" / "lenet.net"


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="no MNIST in shared/data")
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    d = load_mnist(REAL_MNIST)
    data = tmp_path / "data"
    data.mkdir()
    for name, array in (
        ("train-images-idx3-ubyte.gz", d.train_x[:512]),
        ("train-labels-idx1-ubyte.gz", d.train_y[:512].astype(np.uint8)),
        ("t10k-images-idx3-ubyte.gz", d.test_x[:200]),
        ("t10k-labels-idx1-ubyte.gz", d.test_y[:200].astype(np.uint8)),
    ):
        write_idx(data / name, array)
    common = [
        str(LENET),
        "--data",
        str(data),
        "--epochs",
        "1",
        "--batch",
        "64",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    for name, nproc in (("one", "1"), ("two", "2")):
        result = CliRunner().invoke(train_cmd, [*common, "--name", name, "--nproc", nproc])
        assert result.exit_code == 0, result.output
    one, two = (load_file(tmp_path / n / "weights" / "last.safetensors") for n in ("one", "two"))
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-4), key
