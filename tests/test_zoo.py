"""Issue 10's zoo against PyTorch written by hand (tests/handwritten.py): the same parameter
count, the same weights in the same order, and the same outputs once the hand-written
module is given the generated one's weights.

The parity runs on small inputs (the spec's text with a smaller image), so that it costs a
fraction of a second: the layers do not depend on the input's size, only the shapes do.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

import netspec
from netspec.cli.train import train_cmd
from netspec.compiler import Compiled
from netspec.export import export_compiled
from netspec.lower import to_torch
from tests.handwritten import (
    HandAutoencoder,
    HandEfficientNetB0,
    HandMobileNetV2,
    HandSEResNet50,
    HandUNet,
)
from tests.test_export import QUIET, invoke
from tests.test_specs import TRAINABLE
from tests.test_train import REAL_MNIST

SPECS = Path(__file__).resolve().parent.parent / "specs"
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

# spec -> the PyTorch module written by hand with the same layers
HAND: dict[str, type[nn.Module]] = {
    "mobilenet_v2.net": HandMobileNetV2,
    "efficientnet_b0.net": HandEfficientNetB0,
    "se_resnet.net": HandSEResNet50,
    "unet.net": HandUNet,
    "autoencoder.net": HandAutoencoder,
}


def small(name: str) -> Compiled:
    """The spec on a small input: 3x64x64 for the classifiers; for the U-Net a 188x188 tile,
    the smallest its four unpadded levels allow (4x4 out), every crop then 8x8."""
    text = (SPECS / name).read_text(encoding="utf-8")
    if name == "unet.net":
        text = re.sub(r"crop \d+x\d+", "crop 8x8", text.replace("1x572x572", "1x188x188"))
    return netspec.compile(text.replace("3x224x224", "3x64x64"))


@pytest.mark.parametrize("name", sorted(HAND))
def test_count_equals_the_hand_written_module(name: str) -> None:
    hand = sum(p.numel() for p in HAND[name]().parameters())
    assert netspec.compile(SPECS / name).totals.trainable_params == hand == TRAINABLE[name]


@pytest.mark.parametrize("name", sorted(HAND))
def test_same_outputs_as_the_hand_written_module(name: str) -> None:
    """The generated module's weights and batchnorm statistics, copied in order into the
    hand-written one (every tensor's shape must agree on the way), give the same outputs."""
    compiled = small(name)
    generated, hand = to_torch(compiled).eval(), HAND[name]().eval()
    ours = [(k, v) for k, v in generated.state_dict().items() if "num_batches" not in k]
    theirs = [v for k, v in hand.state_dict().items() if "num_batches" not in k]
    assert [tuple(v.shape) for _, v in ours] == [tuple(v.shape) for v in theirs]
    torch.manual_seed(0)
    with torch.no_grad():
        for (key, mine), other in zip(ours, theirs, strict=True):
            if mine.dim() == 1 and not key.endswith("running_var"):
                mine.uniform_(-0.5, 0.5)  # batchnorm's ones and zeros would hide a swap
            other.copy_(mine)
        x = torch.rand(2, *(int(d) for d in compiled.graph.inputs[0].shape))
        want, got = hand(x), generated(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_unet_maps_572_to_388() -> None:
    inferred = netspec.compile(SPECS / "unet.net").inferred
    assert inferred.layer("head").shape == (2, 388, 388)
    crops = {n: inferred.layer(n).shape for n in ("skip4", "skip3", "skip2", "skip1")}
    assert crops == {
        "skip4": (512, 56, 56),
        "skip3": (256, 104, 104),
        "skip2": (128, 200, 200),
        "skip1": (64, 392, 392),
    }


@pytest.mark.parametrize("name", ["efficientnet_b0.net", "se_resnet.net"])
def test_squeeze_excitation_broadcasts_a_gate(name: str) -> None:
    """Each of the 16 blocks' `mul` multiplies CxHxW maps by a Cx1x1 gate."""
    muls = [layer for layer in netspec.compile(SPECS / name).layers if layer.op == "mul"]
    assert len(muls) == 16
    for layer in muls:
        maps, gate = layer.in_shapes if layer.in_shapes[1][1:] == (1, 1) else layer.in_shapes[::-1]
        assert gate == (maps[0], 1, 1) and layer.shape == maps


def test_run_writes_the_autoencoders_reconstruction_as_an_image(tmp_path: Path) -> None:
    """`netspec run` on the exported autoencoder prints its one output as a 1x28x28 map and
    saves it as .npy and as a 28x28 PNG (a sigmoid's values, 0..1, drawn as they are)."""
    model, digit, out = tmp_path / "ae.onnx", tmp_path / "digit.png", tmp_path / "out"
    export_compiled(netspec.compile(SPECS / "autoencoder.net"), model, **QUIET)
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:16] = 255  # a "1"
    Image.fromarray(pixels).save(digit)
    result = invoke("run", model, digit, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"{digit}: reconstruction (map 1x28x28): min " in result.stdout
    saved = np.load(out / "digit.reconstruction.npy")
    assert saved.shape == (1, 28, 28) and 0 < saved.min() <= saved.max() < 1
    png = np.asarray(Image.open(out / "digit.reconstruction.png"), np.float64)
    np.testing.assert_allclose(png / 255, saved[0], atol=1 / 255)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="no MNIST in shared/data")
def test_the_autoencoder_trains_from_its_spec(tmp_path: Path) -> None:
    """specs/autoencoder.net as written (loss mse, adam), on 8,000 real digits for one epoch:
    its test loss falls below a quarter of the flat grey image's (MNIST's pixel variance,
    about 0.095), and `netspec run` on a test digit draws a reconstruction closer to it than a
    blank image is."""
    runs = tmp_path / "runs"
    result = CliRunner().invoke(
        train_cmd,
        [str(SPECS / "autoencoder.net"), "--data", str(REAL_MNIST), "--limit", "8000",
         "--epochs", "1", "--out", str(runs)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "reconstructing it" in result.output
    with open(runs / "autoencoder" / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["test_loss"]) < 0.095 / 4
    digit, out = runs / "autoencoder" / "samples" / "00.png", tmp_path / "out"
    ran = invoke("run", runs / "autoencoder" / "model.onnx", digit, "--out", out)
    assert ran.exit_code == 0, ran.output
    recon = np.asarray(Image.open(out / "00.reconstruction.png"), np.float64) / 255
    original = np.asarray(Image.open(digit), np.float64) / 255
    assert float(((recon - original) ** 2).mean()) < 0.5 * float((original**2).mean())


@pytest.mark.parametrize(
    ("name", "blocks"), [("mobilenet_v2.net", 17), ("efficientnet_b0.net", 16)]
)
def test_depthwise_convolutions_have_one_kernel_per_map(name: str, blocks: int) -> None:
    """`groups=in.c*t`: in each block, every expanded map gets a kxk kernel of its own."""
    compiled = netspec.compile(SPECS / name)
    grouped = [n for n in compiled.graph.nodes if n.op == "conv" and n.params.groups > 1]
    assert len(grouped) == blocks
    for node in grouped:
        layer = compiled.inferred.layer(node.name)
        c, (kh, kw) = layer.in_shapes[0][0], node.params.kernel
        assert node.params.groups == c == layer.shape[0]
        assert layer.params == c * kh * kw  # no bias: a batchnorm follows
