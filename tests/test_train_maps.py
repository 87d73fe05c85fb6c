"""Training a network whose output is a map: an autoencoder on real MNIST digits (the input
is its own target), maps from an `.npz` with `loss mse`, per-pixel classes with
`loss cross_entropy`; metrics.csv and the plots without class accuracy; the exported model
run with `netspec run`, its reconstruction PNG compared with the input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from netspec.cli.train import eval_cmd, train_cmd
from netspec.compiler import compile
from netspec.data import load_mnist, write_idx
from netspec.train.setup import build_module, seeded_module
from tests.test_export import invoke
from tests.test_train import REAL_MNIST

pytestmark = pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="no MNIST in shared/data")

AUTOENCODER = """
network ae(image: 1x28x28) {
    conv 16 3x3 pad=same | relu
    conv 4 3x3 pad=same | relu          # a narrow code: 4 maps
    conv 16 3x3 pad=same | relu
    recon = conv 1 3x3 pad=same | sigmoid
    output recon
}

train ae on npz {
    loss mse
    optimizer adam lr=0.01
    epochs 1
    batch 32
}
"""
SEGMENT = """
network seg(image: 1x28x28) {
    conv 8 3x3 pad=same | relu
    conv 2 3x3 pad=same
}

train seg on npz {
    loss cross_entropy
    optimizer adam lr=0.01
    epochs 2
    batch 32
}
"""


def train(*args: str | Path) -> Result:
    result = CliRunner().invoke(train_cmd, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """600 real MNIST training digits, uint8 (N, 28, 28)."""
    return load_mnist(REAL_MNIST).train_x[:600]


@pytest.fixture(scope="module")
def autoencoder(
    digits: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Result]:
    """One epoch of the autoencoder on an .npz of digits without y (x is the target)."""
    tmp = tmp_path_factory.mktemp("ae")
    spec, data = tmp / "ae.net", tmp / "digits.npz"
    spec.write_text(AUTOENCODER)
    np.savez(data, x=digits)
    result = train(spec, "--data", data, "--out", tmp / "runs")
    assert result.exit_code == 0, result.output
    return spec, tmp / "runs" / "ae", result


def test_the_autoencoder_learns_to_reconstruct(
    autoencoder: tuple[Path, Path, Result], digits: np.ndarray
) -> None:
    spec, run, result = autoencoder
    assert "reconstructing it" in result.output
    (row,) = rows(run)
    assert list(row) == ["epoch", "train_loss", "test_loss", "lr", "seconds"]  # no accuracy
    # the loss of the run's own initial weights (seed 0) on the same 100 test digits
    compiled = compile(spec)
    module = seeded_module(compiled, build_module, 0).eval()
    test = torch.from_numpy(digits[500:, None].astype(np.float32) / 255)
    with torch.no_grad():
        before = float(((module(test) - test) ** 2).mean())
    assert float(row["test_loss"]) < 0.5 * before
    for name in ("curves.png", "predictions.png", "model.onnx", "samples/00.png"):
        assert (run / name).is_file(), name
    assert not (run / "confusion.png").exists()


def test_run_writes_a_reconstruction_that_resembles_the_input(
    autoencoder: tuple[Path, Path, Result], tmp_path: Path
) -> None:
    _, run, _ = autoencoder
    image = run / "samples" / "00.png"
    result = invoke("run", run / "model.onnx", image, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{image}: recon (map 1x28x28): min " in result.stdout
    picture = tmp_path / "00.recon.png"
    recon = np.asarray(Image.open(picture), np.float64) / 255
    original = np.asarray(Image.open(image), np.float64) / 255
    assert recon.shape == original.shape == (28, 28)
    error = float(((recon - original) ** 2).mean())
    assert error < 0.5 * float((original**2).mean())  # much closer than a blank image
    assert error < float(((original.mean() - original) ** 2).mean())  # and than flat grey
    np.testing.assert_allclose(np.load(tmp_path / "00.recon.npy")[0], recon, atol=1 / 255)


def test_eval_redraws_a_map_run(autoencoder: tuple[Path, Path, Result]) -> None:
    _, run, _ = autoencoder  # its data lies outside the dataset cache: named again
    result = CliRunner().invoke(
        eval_cmd, [str(run), "--data", str(run.parent.parent / "digits.npz")]
    )
    assert result.exit_code == 0, result.output
    assert "(mse per value) on 100 maps" in result.output
    assert "predictions.png" in result.output


def test_per_pixel_classes_train_with_cross_entropy(digits: np.ndarray, tmp_path: Path) -> None:
    spec, data = tmp_path / "seg.net", tmp_path / "ink.npz"
    spec.write_text(SEGMENT)
    np.savez(data, x=digits, y=(digits > 127).astype(np.int64))  # ink or paper, per pixel
    result = train(spec, "--data", data, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    metrics = rows(tmp_path / "runs" / "seg")
    assert list(metrics[0]) == [
        "epoch",
        "train_loss",
        "train_pixel_acc",
        "test_loss",
        "test_pixel_acc",
        "lr",
        "seconds",
    ]
    assert float(metrics[-1]["test_pixel_acc"]) > 0.95  # thresholding is easy to learn
    assert float(metrics[-1]["test_loss"]) < float(metrics[0]["train_loss"])


def test_maps_from_an_npz_train_with_mse(digits: np.ndarray, tmp_path: Path) -> None:
    spec, data = tmp_path / "inv.net", tmp_path / "inverted.npz"
    spec.write_text(
        AUTOENCODER.replace("train ae", "train ae").replace("epochs 1", "epochs 1\n    seed 3")
    )
    inverted = 1 - digits[:, None].astype(np.float32) / 255  # N x 1 x 28 x 28 float maps
    np.savez(data, x=digits, y=inverted)
    result = train(spec, "--data", data, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "reconstructing" not in result.output
    assert float(rows(tmp_path / "runs" / "ae")[0]["test_loss"]) < 0.05


@pytest.mark.parametrize(
    ("y", "spec", "expect"),
    [
        (np.zeros((600, 1, 14, 14), np.float32), AUTOENCODER, "the targets are 1x14x14 per sample"),
        (np.zeros((600, 28, 28), np.int64), AUTOENCODER, "loss mse on a map needs float maps"),
        (np.zeros((600, 1, 28, 28), np.float32), SEGMENT, "needs integer per-pixel classes"),
        (np.full((600, 28, 28), 2, np.int64), SEGMENT, "the output map has 2 channels"),
        (None, SEGMENT, "has no targets of the output's shape 2x28x28"),
    ],
)
def test_targets_that_do_not_fit_are_refused(
    digits: np.ndarray, tmp_path: Path, y: np.ndarray | None, spec: str, expect: str
) -> None:
    path, data = tmp_path / "m.net", tmp_path / "d.npz"
    path.write_text(spec)
    np.savez(data, x=digits, **({} if y is None else {"y": y}))
    result = train(path, "--data", data, "--out", tmp_path / "runs")
    assert result.exit_code == 1 and expect in result.output, result.output


def test_augmenting_a_map_with_given_targets_is_refused(digits: np.ndarray, tmp_path: Path) -> None:
    path, data = tmp_path / "m.net", tmp_path / "d.npz"
    path.write_text(
        SEGMENT.replace("epochs 2", "epochs 1\n    augment {\n        rotate 10deg\n    }")
    )
    np.savez(data, x=digits, y=(digits > 127).astype(np.int64))
    result = train(path, "--data", data, "--out", tmp_path / "runs")
    assert result.exit_code == 1 and "not their target maps" in result.output


def test_an_rbf_loss_on_a_map_is_refused(digits: np.ndarray, tmp_path: Path) -> None:
    path, data = tmp_path / "m.net", tmp_path / "d.npz"
    path.write_text(AUTOENCODER.replace("loss mse", "loss rbf"))
    np.savez(data, x=digits)
    result = train(path, "--data", data, "--out", tmp_path / "runs")
    assert result.exit_code == 1 and "a map output trains with loss mse" in result.output


def test_an_autoencoder_on_mnist_ignores_the_labels(tmp_path: Path) -> None:
    """`train ae on mnist`: MNIST has labels, not maps; the output has the input's shape."""
    d, idx = load_mnist(REAL_MNIST), tmp_path / "mnist"
    for name, array in (
        ("train-images-idx3-ubyte.gz", d.train_x[:300]),
        ("train-labels-idx1-ubyte.gz", d.train_y[:300].astype(np.uint8)),
        ("t10k-images-idx3-ubyte.gz", d.test_x[:100]),
        ("t10k-labels-idx1-ubyte.gz", d.test_y[:100].astype(np.uint8)),
    ):
        write_idx(idx / name, array)
    spec = tmp_path / "ae.net"
    spec.write_text(AUTOENCODER.replace("train ae on npz", "train ae on mnist"))
    result = train(spec, "--data", idx, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "reconstructing it (its labels are not used)" in result.output
    assert rows(tmp_path / "runs" / "ae")[0]["test_loss"]
