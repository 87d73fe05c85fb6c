"""R-FCN (issue 23) as a spec: position-sensitive score maps computed once per scene, each
region's class scores and offsets the vote (mean) of its bins with no weights after
`ps_roi_pool`; a short run through `netspec train` with `loss faster_rcnn`, its one ONNX file
against PyTorch, and `netspec detect` on it. The helpers of tests/test_faster_rcnn.py make
the scenes and call the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import netspec
from netspec.compiler import Compiled
from netspec.data.scenefiles import read_scenes
from netspec.export.detection import exported_outputs
from netspec.lower import to_torch
from netspec.lower.weights import load_weights
from tests.test_faster_rcnn import _invoke, _scene_dirs, detect_draws, file_agrees

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

SPECS = Path(__file__).resolve().parent.parent / "specs"
QUICK = """
network quick(image: 1x48x48) {
    maps = image | conv 16 3x3 pad=same | batchnorm | relu | maxpool 2x2
         | conv 32 3x3 pad=same | batchnorm | relu | maxpool 2x2
    rpn = maps | conv 32 3x3 pad=same | relu
    objectness = rpn | conv 3 1x1
    deltas = rpn | conv 12 1x1
    rois = proposals(objectness, deltas, sizes=[18], ratios=[0.3, 0.55, 0.9], keep=16, pre=64)
    class_maps = maps | conv 99 1x1
    box_maps = maps | conv 36 1x1
    scores = ps_roi_pool(class_maps, rois, 3x3, classes=11) | avgpool global | flatten
    boxes = ps_roi_pool(box_maps, rois, 3x3, classes=4) | avgpool global | flatten
    two_stage(rois, scores, boxes, objectness, deltas, classes=10, score=0.05)
}

train quick on mnist_scenes {
    loss faster_rcnn rpn_batch=64 batch=16
    optimizer adam lr=0.004
    epochs 1
    batch 8
}
"""


def _per_region_macs(compiled: Compiled) -> int:
    """Multiply-adds of the RoI poolings and of what is applied to each region after them."""
    return sum(layer.macs or 0 for layer in compiled.layers if layer.regions)


# ---- the spec --------------------------------------------------------------------------------


def test_the_spec_compiles_with_9_anchors_and_costs_less_than_faster_rcnn() -> None:
    rfcn = netspec.compile(SPECS / "rfcn_digits.net")
    faster = netspec.compile(SPECS / "faster_rcnn_digits.net")
    assert rfcn.totals.trainable_params == 126_164
    layers = {layer.name: layer for layer in rfcn.layers}
    assert layers["objectness"].shape == (9, 16, 16) and layers["deltas"].shape == (36, 16, 16)
    assert layers["class_maps"].shape == (99, 16, 16)  # 3x3 bins x (1 + 10) classes
    assert layers["scores.2"].shape == (32, 11) and layers["boxes.2"].shape == (32, 4)
    assert rfcn.totals.macs is not None and faster.totals.macs is not None
    assert rfcn.totals.macs < 0.8 * faster.totals.macs
    # the work per region: 69k multiply-adds of bilinear samples against 28M of a dense head
    assert _per_region_macs(rfcn) < 1e5 < 2e7 < _per_region_macs(faster)


@pytest.mark.parametrize("spec", [SPECS / "rfcn_digits.net", QUICK])
def test_the_vote_has_no_weights_after_the_pooling(spec: Path | str) -> None:
    compiled = netspec.compile(spec)
    regions = [layer for layer in compiled.layers if layer.regions]
    assert [layer.op for layer in regions] == ["ps_roi_pool", "avgpool", "flatten"] * 2
    assert all(layer.params == layer.fixed == 0 for layer in regions)
    module = to_torch(compiled)
    after = [n for n, _ in module.named_parameters() if n.startswith(("scores.", "boxes."))]
    assert after == []


def test_the_scores_are_the_mean_of_each_regions_bins() -> None:
    compiled = netspec.compile(QUICK)
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    pooled: dict[str, torch.Tensor] = {}
    for name in ("scores", "boxes"):
        module.get_submodule(f"{name}.0").register_forward_hook(
            lambda _m, _a, out, name=name: pooled.__setitem__(name, out)
        )
        module.get_submodule(f"{name}.2").register_forward_hook(
            lambda _m, _a, out, name=name: pooled.__setitem__(f"{name} vote", out)
        )
    with torch.no_grad():
        module(torch.rand(2, 1, 48, 48))
    assert pooled["scores"].shape == (2, 16, 11, 3, 3) and pooled["boxes"].shape == (2, 16, 4, 3, 3)
    for name in ("scores", "boxes"):
        bins = pooled[name]
        assert bins.std(dim=(-2, -1)).min() > 0  # the bins differ: a mean is no copy of one
        want = bins.mean(dim=(-2, -1))
        torch.testing.assert_close(pooled[f"{name} vote"], want, atol=1e-6, rtol=1e-6)


def test_ps_roi_pool_runs_channels_last_as_training_lays_it() -> None:
    """Training moves a convolutional module channels-last, which re-lays every tensor of 4
    or 5 axes (and fails on 5); ps_roi_pool's outputs stay the same."""
    compiled = netspec.compile(QUICK)
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        want = module(x)
        got = module.to(memory_format=torch.channels_last)(x)  # type: ignore[call-overload]
    assert (want[..., 5] >= 0).any()  # rows that hold boxes
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---- a short run, its file, and detect -------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run of QUICK, one epoch of 48 scenes, and its scenes."""
    root = tmp_path_factory.mktemp("rfcn")
    data = _scene_dirs(root / "data", 48, 8)
    spec = root / "quick.net"
    spec.write_text(QUICK)
    result = _invoke("train", spec, "--data", data, "--out", root / "runs", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return root / "runs" / "quick", data


def test_the_trained_file_agrees_with_pytorch(trained: tuple[Path, Path]) -> None:
    run, data = trained
    compiled = netspec.compile(QUICK)
    assert [(o.kind, o.shape) for o in exported_outputs(compiled)] == [("detections", (20, 6))]
    module = to_torch(compiled)
    load_weights(run / "weights" / "best.safetensors", module)
    scenes = read_scenes(data / "test").scenes
    x = (np.stack([s.image for s in scenes])[:, None] / 255.0).astype(np.float32)
    ops = {n.op_type for n in onnx.load(str(run / "model.onnx")).graph.node}
    assert {"NonMaxSuppression", "RoiAlign"} <= ops
    assert not ops & {"Gemm", "MatMul"}  # fully convolutional: no dense stage anywhere
    held = file_agrees(compiled, module, run / "model.onnx", x)
    assert held >= len(x) // 2, held  # rows that hold boxes were compared, not only empty ones


def test_netspec_detect_finds_boxes_with_the_file(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data = trained
    detections = detect_draws(run / "model.onnx", data, tmp_path)
    assert all(0 <= d["class"] <= 9 for d in detections)
