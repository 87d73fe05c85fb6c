"""The networks of the field, as specs: exact parameter counts, per-layer facts, and the CLI.

Every count below is the published one (or torchvision's, for its layouts); a spec
that drifts from its paper fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import netspec
from netspec.compiler import Compiled

SPECS = Path(__file__).resolve().parent.parent / "specs"
NETSPEC = Path(sys.executable).parent / "netspec"

# spec file -> trainable parameters
TRAINABLE = {
    "lenet5.net": 60_000,
    "lenet.net": 61_706,
    "digit_window.net": 184_715,
    "yolo_digits.net": 395_892,  # issue 13: 20 maps of an 8x8 grid (2 boxes, 10 classes)
    "ssd_digits.net": 528_180,  # issue 24: 3 maps of 60 (4 default boxes of 4 + 11 numbers)
    "faster_rcnn_digits.net": 973_148,  # issue 23: an RPN of 9 anchors a cell, a RoI head
    "rfcn_digits.net": 126_164,  # issue 23: the same RPN (9 anchors), score maps that vote
    "rcnn_digits.net": 44_927,  # issue 23: edge_windows' proposals, a small CNN per crop
    "fast_rcnn_digits.net": 933_295,  # issue 23: the same proposals, RoI pooling on one pass
    "hog_features.net": 0,  # issue 24: HOG, fixed gradients and parameter-free binning/norms
    "viola_jones_digits.net": 0,  # issue 24: boosted stumps, not learned by gradient descent
    "hog_digits.net": 9_911,  # issue 24: HOG's 900 features (36x5x5) and dense 11: 900*11 + 11
    "hog_mnist.net": 12_970,  # issue 24: HOG's 1,296 features (36x6x6) and dense 10: 1296*10 + 10
    "haar_features.net": 0,  # issue 24: Viola-Jones' Haar-like features, fixed kernels
    "ciresan2010.net": 12_115_010,
    "alexnet.net": 60_965_224,
    "zfnet.net": 62_357_608,
    "vgg16.net": 138_357_544,
    "googlenet.net": 6_998_552,
    "resnet18.net": 11_689_512,
    "resnet50.net": 25_557_032,
    "resnet152.net": 60_192_808,
    "densenet121.net": 7_978_856,
    "siamese.net": 128_227,
    "local.net": 162_762,
    "filters.net": 0,
    # 9*32 + 9*32*32 + 9*32*64 + 9*64*64 + 3136*256 (no biases) + 2*(32+32+64+64+256) + 2570
    "mnist_deform.net": 871_082,
    "signal1d.net": 10_645,  # 1-D: 112 + 32 + 2,560 + 64 + 6,144 + 128 + 1,605
    # issue 10's zoo; each also equals its hand-written module's count (tests/test_zoo.py)
    "mobilenet_v2.net": 3_504_872,
    "efficientnet_b0.net": 5_288_548,
    "se_resnet.net": 28_088_024,  # ResNet-50's 25,557,032 and 2,530,992 in the SE gates
    "unet.net": 31_030_658,
    "autoencoder.net": 2_713,
    # issue 14: 16*25+16 + 32*16*9+32 + 800*128+128 + 1290, and 2*(16+32) batchnorm
    "mnist_fast.net": 108_970,
    "lenet5_distorted.net": 60_000,  # specs/lenet5.net's network, trained on distortions
    # issue 21: 32*9+32 + 64*32*9+64 + 128*64*9+128 + 1152*256+256 + 2570,
    # and 2*(32+64+128) batchnorm
    "fashion_mnist.net": 390_858,
    # issue 21: Page's ResNet-9 (DAWNBench), counted by hand in the spec's header
    "cifar10_resnet.net": 6_573_120,
    # issue 22: each also equals its plain-PyTorch reference's count (tests/test_words_blocks.py)
    "shufflenet_v2.net": 2_278_604,
    "mobilenet_v3_small.net": 2_542_856,
    # issue 22: 1*64*25+64 + 64*32*9+32 + 32*9*9+9 = 1,664 + 18,464 + 2,601; equal outputs
    # to tests/reference_espcn.py (tests/test_words_resample.py)
    "espcn.net": 22_729,
    # issue 22: torchvision's convnext_tiny; equal outputs to tests/reference_convnext.py
    "convnext_t.net": 28_589_128,
}


def compile_spec(name: str, **overrides: Any) -> Compiled:
    return netspec.compile(SPECS / name, **overrides)


def test_every_spec_is_listed() -> None:
    assert sorted(p.name for p in SPECS.glob("*.net")) == sorted(TRAINABLE)


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_trainable_parameters(name: str) -> None:
    assert compile_spec(name).totals.trainable_params == TRAINABLE[name]


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_header_cites_the_count(name: str) -> None:
    """Each spec's comment header gives its published parameter count."""
    header = SPECS.joinpath(name).read_text(encoding="utf-8").split("\n\n")[0]
    assert header.startswith("#")
    assert f"{TRAINABLE[name]:,}" in header


# ---- LeNet-5 ------------------------------------------------------------------------------

LENET5_LAYERS = {  # name -> (trainable parameters, receptive field)
    "c1": (156, 5),
    "s2": (12, 6),
    "c3": (1_516, 14),
    "s4": (32, 16),
    "c5": (48_120, 32),
    "f6": (10_164, None),
}


def test_lenet5_fixed_parameters() -> None:
    totals = compile_spec("lenet5.net").totals
    assert (totals.trainable_params, totals.fixed_params, totals.params) == (60_000, 840, 60_840)


@pytest.mark.parametrize("name", sorted(LENET5_LAYERS))
def test_lenet5_layer(name: str) -> None:
    layer = compile_spec("lenet5.net").inferred.layer(name)
    params, rf = LENET5_LAYERS[name]
    assert layer.params == params
    if rf is None:
        assert layer.rf.whole
    else:
        assert layer.rf.size == (rf, rf)


def test_lenet5_shapes_and_rbf() -> None:
    inferred = compile_spec("lenet5.net").inferred
    shapes = {n: inferred.layer(n).shape for n in ("c1", "s2", "c3", "s4", "c5", "f6", "output")}
    assert shapes == {
        "c1": (6, 28, 28),
        "s2": (6, 14, 14),
        "c3": (16, 10, 10),
        "s4": (16, 5, 5),
        "c5": (120, 1, 1),
        "f6": (84,),
        "output": (10,),
    }
    assert inferred.layer("output").fixed == 840  # 10 prototypes of 7x12 = 84 pixels


# ---- cost -----------------------------------------------------------------------------------

RESNET18_CONV_FC_MACS = 1_814_073_344  # the published 1.82 G: convolutions and the classifier


def _elements(compiled: Compiled, op: str) -> int:
    """Output elements of every `op` layer."""
    return sum(layer.activations or 0 for layer in compiled.layers if layer.op == op)


def test_resnet18_macs() -> None:
    """netspec counts the convolutions (projection shortcuts included) and the classifier,
    plus one multiply-add per output element of a batchnorm (the projection's own included)
    and per add; pooling and activations count nothing."""
    compiled = compile_spec("resnet18.net")
    by_op: Counter[str] = Counter()
    for layer in compiled.layers:
        assert layer.macs is not None
        by_op[layer.op] += layer.macs
    projections = sum(  # 175,616: the batchnorms of the projections that are not identities
        layer.activations or 0
        for layer in compiled.layers
        if layer.op == "project" and layer.params
    )
    assert by_op["conv"] + by_op["project"] - projections + by_op["dense"] == (
        RESNET18_CONV_FC_MACS
    )
    assert by_op["batchnorm"] == _elements(compiled, "batchnorm") == 2_308_096
    assert by_op["add"] == _elements(compiled, "add") == 752_640
    assert compiled.totals.macs == 1_817_134_080 + projections == 1_817_309_696


def test_alexnet_groups_halve_the_grouped_layers() -> None:
    inferred = compile_spec("alexnet.net").inferred
    assert inferred.layer("conv2").params == 256 * 48 * 5 * 5 + 256
    assert inferred.layer("conv5").params == 256 * 192 * 3 * 3 + 256
    assert inferred.layer("fc6").in_shapes == ((256, 6, 6),)


def test_torchvision_names() -> None:
    resnet50 = compile_spec("resnet50.net").graph
    names = {node.name for node in resnet50.nodes}
    assert {"conv1", "bn1", "layer1.0.downsample", "layer3.5.conv2", "layer4.2.bn3", "fc"} <= names
    densenet = compile_spec("densenet121.net").graph
    assert {"conv0", "norm0", "denseblock4.15.concat1", "transition3.conv1", "classifier"} <= {
        node.name for node in densenet.nodes
    }


def test_googlenet_inception_widths() -> None:
    inferred = compile_spec("googlenet.net").inferred
    widths = {
        n: inferred.layer(f"{n}.concat1").shape
        for n in ("inception3a", "inception4e", "inception5b")
    }
    assert widths == {
        "inception3a": (256, 28, 28),
        "inception4e": (832, 14, 14),
        "inception5b": (1024, 7, 7),
    }


# ---- sharing, locality, fixed kernels ---------------------------------------------------------

TOWER = """
network tower(image: 1x28x28) {
    conv 20 5x5 | relu | maxpool 2x2
    conv 50 5x5 | relu | maxpool 2x2
    dense 128
}
"""


def test_siamese_counts_the_tower_once() -> None:
    siamese = compile_spec("siamese.net")
    tower = netspec.compile(TOWER).totals.trainable_params
    head = 128 * 1 + 1
    assert siamese.totals.trainable_params == tower + head == 128_227
    shared = {layer.name: layer.shared_with for layer in siamese.layers if layer.shared_with}
    assert shared == {"b.conv1": "a.conv1", "b.conv2": "a.conv2", "b.dense1": "a.dense1"}
    assert all(siamese.inferred.layer(n).params == 0 for n in shared)


def test_local_has_one_kernel_per_position() -> None:
    inferred = compile_spec("local.net").inferred
    first = inferred.layer("local1")
    assert first.shape == (8, 12, 12)
    assert first.params == 12 * 12 * 8 * (5 * 5 + 1)  # a convolution would have 8 * 26


def test_filters_symbolic_size() -> None:
    compiled = compile_spec("filters.net")
    assert compiled.graph.outputs == ("concat1",)
    assert compiled.inferred.layer("concat1").shape == (10, "H", "W")
    totals = compiled.totals
    assert (totals.trainable_params, totals.fixed_params) == (0, 8 * 9 + 2 * 25)
    assert totals.macs is None and totals.activations is None


def test_filters_bound_size() -> None:
    totals = compile_spec("filters.net", H=64, W=48).totals
    assert compile_spec("filters.net", H=64, W=48).inferred.layer("concat1").shape == (10, 64, 48)
    assert totals.macs == 64 * 48 * (8 * 9 + 2 * 25)
    assert totals.activations == 64 * 48 * (1 + 8 + 2 + 10)


def test_train_sections() -> None:
    lenet = compile_spec("lenet.net").train
    assert lenet is not None
    assert (lenet.optimizer.name, lenet.optimizer.nesterov, lenet.schedule.name) == (
        "sgd",
        True,
        "onecycle",
    )
    assert (lenet.epochs, lenet.batch, lenet.normalize.std) == (7, 128, 0.3081)
    ciresan = compile_spec("ciresan2010.net").train
    assert ciresan is not None
    aug = ciresan.augment
    assert aug.enabled and aug.elastic_alpha is not None and aug.rotate == 15
    assert aug.scale == (0.85, 1.15)


# ---- the command line -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """`netspec compile SPEC --json` for every spec, run side by side from a temporary dir."""
    cwd = tmp_path_factory.mktemp("cli")
    procs = {
        name: subprocess.Popen(
            [str(NETSPEC), "compile", str(SPECS / name), "--json"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in TRAINABLE
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.slow  # a process per spec, side by side on two cores: ten to twenty seconds
@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_cli_json(name: str, cli_results: dict[str, tuple[int, str, str]]) -> None:
    code, out, err = cli_results[name]
    assert code == 0, err
    totals = json.loads(out)["totals"]
    assert {"params", "trainable_params", "macs"} <= set(totals)
    assert totals["trainable_params"] == TRAINABLE[name]


def test_cli_filters_bound(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(NETSPEC),
            "compile",
            str(SPECS / "filters.net"),
            "--json",
            "--set",
            "H=64",
            "--set",
            "W=64",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["layers"][-1]["shape"] == [10, 64, 64]
    assert report["totals"]["macs"] == 64 * 64 * 122
