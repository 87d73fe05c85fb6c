"""Training: run directories, checkpoints and resume, reproducibility, data errors, augmentation.

Real MNIST (from the shared folder, passed with --data), real torch, real files. Most runs
use a 2,000/1,000-image slice of MNIST written as IDX files, so an epoch takes a second.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from safetensors import safe_open
from safetensors.torch import load_file

from netspec.cli.train import augment_cmd, eval_cmd, train_cmd
from netspec.compiler import compile
from netspec.data import load_mnist
from netspec.errors import OutputError, UsageError
from netspec.fileio import CRASH_ENV
from netspec.tasks.classes import CLASSES, CLASSIFIER
from netspec.train.augment import augment
from netspec.train.run import new_run_dir, weights_meta, write_atomic, write_text
from netspec.train.setup import train_config
from netspec.trainspec import Augment, Loss
from tests.conftest import REAL_MNIST, needs_mnist, write_mnist_subset

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "specs" / "lenet.net"
pytestmark = needs_mnist

# lenet.net's network with augmentation and dropout, to exercise every random draw
AUGMENTED = """
network lenet(image: 1x28x28) {
    conv 6 5x5 pad=same | relu | maxpool 2x2
    conv 16 5x5 | relu | maxpool 2x2
    dense 120 | relu | dropout 0.2
    dense 10
}

train lenet on mnist {
    normalize mean=0.1307 std=0.3081
    augment {
        rotate 10deg
        scale 0.9..1.1
        shift 2px
        elastic alpha=20 sigma=4
    }
    optimizer sgd lr=0.05 momentum=0.9 nesterov
    schedule onecycle
    epochs 2
    batch 64
}
"""
NO_TRAIN = """
network small(image: 1x28x28) {
    conv 4 5x5 | relu | maxpool 2x2
    dense 10
}
"""
RGB = """
network rgb(image: 3x28x28) {
    conv 4 5x5 | relu | maxpool 2x2
    dense 10
}
"""


def cli(*args: str | Path, command: object = train_cmd) -> Result:
    result = CliRunner().invoke(command, [str(a) for a in args])  # type: ignore[arg-type]
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 2,000 training and 1,000 test images of MNIST, as gzipped IDX files."""
    return write_mnist_subset(tmp_path_factory.mktemp("small-mnist"), 2000, 1000, real=True)


@pytest.fixture(scope="module")
def finished(small: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A finished two-epoch run of specs/lenet.net."""
    out = tmp_path_factory.mktemp("runs")
    result = cli(LENET, "--data", small, "--epochs", "2", "--batch", "32", "--out", out)
    assert result.exit_code == 0, result.output
    return out / "lenet", result


def test_run_directory_holds_every_artifact(finished: tuple[Path, Result]) -> None:
    run, result = finished
    assert "device: cpu" in result.output
    for name in (
        "spec/lenet.net",
        "settings.json",
        "metrics.csv",
        "curves.png",
        "confusion.png",
        "errors.png",
        "weights/best.safetensors",
        "weights/last.safetensors",
        "model.onnx",
    ):
        assert (run / name).is_file(), name
    assert (run / "spec" / "lenet.net").read_text() == LENET.read_text()
    assert [r["epoch"] for r in metrics(run)] == ["1", "2"]
    assert list(metrics(run)[0]) == [
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "lr",
        "seconds",
    ]
    last = weights_meta(run / "weights" / "last.safetensors")
    settings = json.loads((run / "settings.json").read_text())
    assert last["epoch"] == 2 and last["spec_sha256"] == settings["spec_sha256"]
    assert last["metrics"]["epoch"] == 2 and settings["main"] == "lenet.net"
    assert settings["train"]["epochs"] == 2 and settings["train"]["batch"] == 32
    assert settings["train"]["optimizer"]["lr"] == 0.05  # the spec's, not overridden
    with safe_open(str(run / "weights" / "last.safetensors"), framework="pt") as f:
        assert f.metadata()["epoch"] == "2"
    assert [p.name for p in (run / "state").iterdir()] == ["epoch-0002.safetensors"]
    assert temp_files(run) == []
    assert f"netspec eval {run}" in result.output
    assert float(metrics(run)[-1]["test_acc"]) > 0.5


def test_second_run_of_a_name_gets_a_new_directory(tmp_path: Path) -> None:
    def fill(run: Path) -> None:
        (run / "settings.json").write_text("{}")

    assert [new_run_dir(tmp_path, "x", fill).name for _ in range(3)] == ["x", "x-2", "x-3"]
    (tmp_path / "y").mkdir()  # an empty directory (a kill right after it was made) is taken over
    assert new_run_dir(tmp_path, "y", fill) == tmp_path / "y"
    assert (tmp_path / "y" / "settings.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x", "x-2", "x-3", "y"]
    for bad in ("", "..", "a/b", "../up"):
        with pytest.raises(UsageError, match="plain directory name"):
            new_run_dir(tmp_path / "sub", bad, fill)
    assert not (tmp_path / "sub").exists()


def test_eval_reevaluates_the_best_weights(finished: tuple[Path, Result], small: Path) -> None:
    run, _ = finished
    (run / "confusion.png").unlink()
    result = cli(run, "--data", small, command=eval_cmd)
    assert result.exit_code == 0, result.output
    best = weights_meta(run / "weights" / "best.safetensors")
    assert f"accuracy {best['metrics']['test_acc']:.2%}" in result.output
    assert (run / "confusion.png").is_file()


def test_resume_refuses_other_settings(finished: tuple[Path, Result], small: Path) -> None:
    run, _ = finished
    result = cli("--resume", run, "--data", small, "--epochs", "3", "--set", "lr=0.1")
    assert result.exit_code == 2
    assert "train.epochs: 2 -> 3" in result.output
    assert "train.optimizer.lr: 0.05 -> 0.1" in result.output


def test_resume_of_a_finished_run_trains_nothing(
    finished: tuple[Path, Result], small: Path
) -> None:
    run, _ = finished
    before = metrics(run)
    result = cli("--resume", run, "--data", small)
    assert result.exit_code == 0, result.output
    assert "epoch 1/2" not in result.output and "resuming" in result.output
    assert metrics(run) == before


def test_same_seed_same_metrics(small: Path, tmp_path: Path) -> None:
    spec = tmp_path / "augmented.net"
    spec.write_text(AUGMENTED)
    for name in ("a", "b"):
        result = cli(spec, "--data", small, "--limit", "500", "--out", tmp_path, "--name", name)
        assert result.exit_code == 0, result.output
    assert without_time(metrics(tmp_path / "a")) == without_time(metrics(tmp_path / "b"))
    a, b = (load_file(tmp_path / n / "weights" / "last.safetensors") for n in "ab")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit (the metadata names the run)


@pytest.mark.slow
def test_resume_after_sigkill_continues_exactly(small: Path, tmp_path: Path) -> None:
    """SIGKILLed after epoch 2's metrics row is written, before its checkpoint commits (at the
    9th rename: 3 make the run, epoch 1 takes metrics, best, state, last): the resume drops
    that row, trains epochs 2 and 3 again, and ends bit for bit where a whole run ends."""
    args = [
        str(LENET),
        "--data",
        str(small),
        "--limit",
        "640",
        "--epochs",
        "3",
        "--batch",
        "16",
        "--out",
        str(tmp_path),
    ]
    code = "from netspec.cli.train import train_cmd; train_cmd(prog_name='netspec train')"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        CRASH_ENV: "9",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # this process's, as the reference's
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--name", "killed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    run = tmp_path / "killed"
    assert [r["epoch"] for r in metrics(run)] == ["1", "2"]
    resumed = cli("--resume", run, "--data", small)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} after epoch 1" in resumed.output
    assert [r["epoch"] for r in metrics(run)] == ["1", "2", "3"]
    assert temp_files(run) == []
    whole = cli(*args, "--name", "whole")
    assert whole.exit_code == 0, whole.output
    # Every epoch ran with this process's thread count (the killed process got it through
    # OMP_NUM_THREADS, the resume pins the run's), so the sums agree bit for bit.
    assert without_time(metrics(run)) == without_time(metrics(tmp_path / "whole"))
    a, b = (load_file(p / "weights" / "last.safetensors") for p in (run, tmp_path / "whole"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_quick_training_reaches_95_percent(tmp_path: Path) -> None:
    """10,000 training images, one epoch of batch 32: measured 96.5% on the full test set."""
    result = cli(
        LENET,
        "--data",
        REAL_MNIST,
        "--limit",
        "10000",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert float(metrics(tmp_path / "lenet")[-1]["test_acc"]) >= 0.95


def test_spec_without_train_section_uses_defaults(small: Path, tmp_path: Path) -> None:
    spec = tmp_path / "small.net"
    spec.write_text(NO_TRAIN)
    config = train_config(compile(spec, epochs=1), {"epochs": 1}, lambda _: None)
    assert (config.dataset, config.epochs, config.batch) == ("mnist", 1, 128)
    result = cli(spec, "--data", small, "--epochs", "1", "--limit", "256", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "no train section" in result.output


def _broken(small: Path, tmp_path: Path, name: str, data: bytes) -> Path:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in small.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / f"{name}.gz").write_bytes(gzip.compress(data))
    return broken


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("t10k-images-idx3-ubyte", lambda b: b[:-100], "t10k-images"),
        ("train-labels-idx1-ubyte", lambda b: b"\x12\x34" + b[2:], "magic"),
        (
            "train-labels-idx1-ubyte",
            lambda b: b[:4] + (1999).to_bytes(4, "big") + b[8:-1],
            "train-labels",
        ),
    ],
    ids=["truncated", "wrong-magic", "count-mismatch"],
)
def test_corrupt_data_is_a_clear_error(
    small: Path, tmp_path: Path, name: str, edit: object, message: str
) -> None:
    raw = gzip.decompress((small / f"{name}.gz").read_bytes())
    data = _broken(small, tmp_path, name, edit(raw))  # type: ignore[operator]
    result = cli(LENET, "--data", data, "--out", tmp_path)
    assert result.exit_code == 1
    assert "error:" in result.output and message in result.output


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    result = cli(LENET, "--data", tmp_path / "nowhere", "--out", tmp_path)
    assert result.exit_code == 1
    assert "nowhere" in result.output
    assert not (tmp_path / "lenet").exists()


def test_input_that_does_not_fit_the_data(small: Path, tmp_path: Path) -> None:
    spec = tmp_path / "rgb.net"
    spec.write_text(RGB)
    result = cli(spec, "--data", small, "--out", tmp_path)
    assert result.exit_code == 1
    assert "3 channel(s)" in result.output and "have 1" in result.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert cli("--out", tmp_path).exit_code == 2  # no SPEC, no --resume
    assert cli(LENET, "--set", "nonsense=1", "--out", tmp_path).exit_code == 2
    assert cli("--resume", tmp_path, "--out", tmp_path).exit_code == 1  # not a run


def test_augment_command_draws_a_grid(small: Path, tmp_path: Path) -> None:
    spec = tmp_path / "augmented.net"
    spec.write_text(AUGMENTED)
    out = tmp_path / "grid.png"
    result = cli(
        spec, "-o", out, "--data", small, "--count", "4", "--copies", "3", command=augment_cmd
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def digits() -> Iterator[torch.Tensor]:
    d = load_mnist(REAL_MNIST)
    yield torch.as_tensor(d.test_x[:16, None]).float() / 255


def test_augmentation_changes_images_but_not_their_shape(digits: torch.Tensor) -> None:
    spec = Augment(rotate=15, scale=(0.9, 1.1), shift=2, shear=10, elastic_alpha=34)
    out = augment(digits, spec, torch.Generator().manual_seed(0))
    assert out.shape == digits.shape and out.dtype == digits.dtype
    assert (out - digits).abs().mean() > 0.02
    assert 0.7 < out.sum() / digits.sum() < 1.3  # ink moves, it is not created or lost
    again = augment(digits, spec, torch.Generator().manual_seed(0))
    other = augment(digits, spec, torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_no_augmentation_is_the_identity(digits: torch.Tensor) -> None:
    assert augment(digits, Augment(), torch.Generator()) is digits


def test_shift_moves_the_centre_of_mass(digits: torch.Tensor) -> None:
    def centre_x(x: torch.Tensor) -> torch.Tensor:
        cols = torch.arange(x.shape[-1], dtype=torch.float32)
        return (x.sum(2)[:, 0] * cols).sum(1) / x.sum((1, 2, 3))

    out = augment(digits, Augment(shift=3), torch.Generator().manual_seed(0))
    moved = (centre_x(out) - centre_x(digits)).abs()
    assert moved.max() <= 3.2 and moved.mean() > 0.5


def test_rbf_loss_is_lenet5s_and_predicts_the_nearest() -> None:
    distances = torch.tensor([[0.5, 3.0, 9.0], [4.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2])
    expected = sum(
        float(d[y]) + math.log(math.exp(-1) + float(torch.exp(-d).sum()))
        for d, y in zip(distances, labels, strict=True)
    )
    rbf = CLASSES.loss_sum((distances,), labels, Loss(name="rbf"), CLASSIFIER)
    assert float(rbf) == pytest.approx(expected)
    assert CLASSES.predict((distances,), Loss(name="rbf"), CLASSIFIER).tolist() == [0, 1]
    assert CLASSES.predict((distances,), Loss(), CLASSIFIER).tolist() == [2, 0]


def test_atomic_writes_leave_no_temp_file_and_keep_the_old_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_text(target, "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OutputError, match=r"a\.json: disk full"):
        write_atomic(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
