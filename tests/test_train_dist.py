"""`netspec train --nproc 2`: two gloo processes on the CPU train like one process.

Each rank takes its half of every global batch and DDP averages the gradients, with the
loss scaled so that the average is the global batch's gradient; without augmentation or
dropout, two processes at global batch B follow one process at batch B up to float
rounding (sums in another order): final weights agree within atol 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from netspec.cli.train import train_cmd
from tests.conftest import needs_mnist, write_mnist_subset

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "specs" / "lenet.net"


@pytest.mark.slow
@needs_mnist
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    data = write_mnist_subset(tmp_path / "data", 512, 200, real=True)
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
