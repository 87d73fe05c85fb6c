"""A kill loses nothing and duplicates nothing: a run killed at every commit of its epochs
(``NETSPEC_CRASH_AT=N`` makes the process SIGKILL itself just before its Nth rename)
resumes to exactly the metrics and weights of a run never interrupted.

Every process trains with the same torch thread count (the subprocesses get this one's
through OMP_NUM_THREADS; a resume pins the count the run was made with), so the
comparison is exact. The run is tiny (300 images, 2 epochs) to keep the loop short.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from netspec.cli.train import train_cmd
from netspec.fileio import CRASH_ENV
from tests.conftest import interruptible, write_mnist_subset

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 2
SPEC = f"""
network tiny(image: 1x28x28) {{
    conv 4 5x5 | relu | maxpool 2x2 | dropout 0.1
    dense 10
}}

train tiny on mnist {{
    augment {{
        shift 1px
    }}
    optimizer sgd lr=0.05 momentum=0.9
    schedule onecycle
    epochs {EPOCHS}
    batch 50
}}
"""
CREATION_COMMITS = 3  # spec/tiny.net, settings.json, the run directory's rename


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The spec and 300/100 MNIST images (synthetic digits where MNIST is not there)."""
    root = tmp_path_factory.mktemp("kill")
    data = write_mnist_subset(root / "data", 300, 100)
    spec = root / "tiny.net"
    spec.write_text(SPEC)
    return spec, data


def _args(spec: Path, data: Path, out: Path) -> list[str]:
    return [str(spec), "--data", str(data), "--device", "cpu", "--out", str(out)]


def _train(*args: str) -> None:
    result = CliRunner().invoke(train_cmd, list(args))
    assert result.exit_code == 0, result.output


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _crash(args: list[str], n: int) -> None:
    code = "from netspec.cli.train import train_cmd; train_cmd(prog_name='netspec train')"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        CRASH_ENV: str(n),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def _commits_through_last_checkpoint(rows: list[dict[str, str]]) -> int:
    """Creation, then per epoch: metrics, best weights (when test accuracy improved), the
    state and the committing last weights."""
    best, n = -1.0, CREATION_COMMITS
    for row in rows:
        acc = float(row["test_acc"])
        n += 3 + (acc > best)
        best = max(best, acc)
    return n


def test_kill_at_every_commit_then_resume_equals_an_uninterrupted_run(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, data = setup
    _train(*_args(spec, data, tmp_path / "whole"))
    whole = tmp_path / "whole" / "tiny"
    want_rows = _rows(whole)
    want = load_file(whole / "weights" / "last.safetensors")
    assert [r["epoch"] for r in want_rows] == [str(e) for e in range(1, EPOCHS + 1)]
    last = _commits_through_last_checkpoint(want_rows)
    for n in range(1, last + 2):  # and the first commit after the last checkpoint
        out = tmp_path / f"killed-{n}"
        args = _args(spec, data, out)
        _crash(args, n)
        run = out / "tiny"
        if n <= CREATION_COMMITS:  # nothing named tiny yet: no half-made run is left
            assert not run.exists(), n
            _train(*args)
        else:
            _train("--resume", str(run), "--data", str(data), "--device", "cpu")
        assert sorted(p.name for p in out.iterdir()) == ["tiny"], n
        assert _rows(run) == want_rows, n
        got = load_file(run / "weights" / "last.safetensors")
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), n
        assert [p.name for p in (run / "state").iterdir()] == [f"epoch-{EPOCHS:04d}.safetensors"]
        assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], n


def test_ctrl_c_while_training_exits_130_and_the_run_resumes(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGINT once the first epoch is committed (many epochs are left, so the run is still
    training): exit 130 with a message, no traceback; the resume finishes every epoch once."""
    spec, data = setup
    epochs = 20
    args = [*_args(spec, data, tmp_path), "--epochs", str(epochs)]
    code = "from netspec.cli.train import train_cmd; train_cmd(prog_name='netspec train')"
    run = tmp_path / "tiny"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", code, *args]
    with subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    ) as process:
        assert process.stderr is not None
        while not (run / "weights" / "last.safetensors").is_file():
            assert process.poll() is None, process.stderr.read()[-2000:]
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=300) == 130, rest[-2000:]
    assert "interrupted" in rest and "--resume" in rest
    assert "Traceback" not in rest
    _train("--resume", str(run), "--data", str(data), "--device", "cpu")
    assert [r["epoch"] for r in _rows(run)] == [str(e) for e in range(1, epochs + 1)]
