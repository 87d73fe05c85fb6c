"""R-CNN and Fast R-CNN on digit scenes (issue 23): specs/rcnn_digits.net and
specs/fast_rcnn_digits.net compile to their sizes, their proposals `edge_windows`' (no RPN);
a small network of each kind trains a few steps through `netspec train` and exports one ONNX
file (proposals, NMS, RoI pooling, heads, decoding) that ONNX Runtime runs as PyTorch does
and `netspec detect` reads; and rcnn_digits' RoIs in its exported graph equal PyTorch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import netspec
from netspec.data import MnistData, load_mnist
from netspec.data.scenefiles import read_scenes
from netspec.data.scenes import DigitPool, SceneConfig, make_scenes
from netspec.export import export_compiled
from netspec.export.detection import exported_outputs
from netspec.kinds import output_infos
from netspec.lower import to_torch
from netspec.lower.weights import load_weights
from netspec.tasks import target_of
from netspec.tasks.two_stage import TwoStageTarget
from tests.conftest import REAL_MNIST, synthetic_digits
from tests.test_faster_rcnn import _invoke, _scene_dirs, detect_draws, file_agrees

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # conftest.py: small tensors, one thread
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the TorchScript exporter
]
SPECS = Path(__file__).resolve().parent.parent / "specs"
PROPOSE = "rois = image | edge_windows sizes=[14, 22] ratios=[0.5, 0.8] stride=4 keep=12"
# Each kind's regions, small: R-CNN warps each proposal of the image to 14x14 pixels and runs
# a CNN on it; Fast R-CNN pools each from one pass of the backbone.
HEADS = {
    "rcnn": "hidden = roi_align(image, rois, 14x14) | conv 8 3x3 pad=same | batchnorm | relu\n"
    "           | maxpool 2x2 | dense 64 | relu",
    "fast": "maps = image | conv 16 3x3 pad=same | batchnorm | relu | maxpool 2x2\n"
    "         | conv 32 3x3 pad=same | batchnorm | relu | maxpool 2x2\n"
    "    hidden = roi_pool(maps, rois, 4x4) | dense 64 | relu",
}
QUICK = """
network quick(image: 1x48x48) {{
    {propose}
    {head}
    scores = hidden | dense 11
    boxes = hidden | dense 4
    two_stage(rois, scores, boxes, classes=10, score=0.05)
}}

train quick on mnist_scenes {{
    loss faster_rcnn positive=0.5 negative=0.5 batch=16 fraction=0.25
    optimizer adam lr=0.004
    epochs 1
    batch 8
}}
"""


def quick(kind: str) -> str:
    return QUICK.format(propose=PROPOSE, head=HEADS[kind])


# ---- the specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "pooling"),
    [("rcnn_digits", 44_927, "roi_align"), ("fast_rcnn_digits", 933_295, "roi_pool")],
)
def test_the_specs_compile_to_their_sizes(name: str, params: int, pooling: str) -> None:
    compiled = netspec.compile(SPECS / f"{name}.net")
    assert compiled.totals.trainable_params == params
    ops = {layer.name: layer.op for layer in compiled.layers}
    assert ops["rois"] == "edge_windows" and pooling in ops.values()
    assert [(o.kind, o.shape) for o in output_infos(compiled)] == [("detections", (48, 20))]
    assert compiled.train is not None
    target = target_of(compiled, compiled.train.loss)
    assert isinstance(target, TwoStageTarget) and target.rpn is None  # the head alone trains
    assert target.two_stage is not None and target.two_stage.regions == 48


def test_the_true_boxes_join_the_windows_only_while_training() -> None:
    compiled = netspec.compile(quick("rcnn"))
    target = target_of(compiled, compiled.train.loss)
    assert compiled.train is not None and target is not None
    module, loss = to_torch(compiled).train(), compiled.train.loss
    seen: list[torch.Tensor] = []
    module.get_submodule("rois").register_forward_hook(lambda _m, _a, out: seen.append(out))
    x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([[[3.0, 10, 8, 26, 30], [-1] * 5], [[-1.0] * 5] * 2])
    with torch.no_grad():
        target.task.forward(module, x, y, loss, target)
        module(x)
        module.eval()
        target.task.forward(module, x, y, loss, target)
    joined, plain, shown = seen
    # the last 2 rows (the most boxes a scene has) take a scene's boxes, a padding box none
    assert joined[0, -2].tolist() == [10, 8, 26, 30, 1]
    assert torch.equal(joined[0, :-2], plain[0, :-2]) and torch.equal(joined[0, -1], plain[0, -1])
    assert torch.equal(joined[1], plain[1])
    assert torch.equal(shown, plain)  # a file never sees the truth


# ---- a short run of each kind, its file, and detect ------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 training and 8 test scenes of 48x48 pixels, one or two digits each."""
    return _scene_dirs(tmp_path_factory.mktemp("rcnn_scenes"), 48, 8)


@pytest.fixture(scope="module", params=["rcnn", "fast"])
def trained(
    request: pytest.FixtureRequest, scenes: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """A run of the small network of each kind: one epoch of 48 scenes (6 steps)."""
    kind: str = request.param
    root = tmp_path_factory.mktemp(kind)
    spec = root / "quick.net"
    spec.write_text(quick(kind))
    result = _invoke("train", spec, "--data", scenes, "--out", root / "runs", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return kind, root / "runs" / "quick"


def test_one_file_holds_the_pipeline_and_onnx_runtime_agrees(
    trained: tuple[str, Path], scenes: Path
) -> None:
    kind, run = trained
    compiled = netspec.compile(quick(kind))
    assert [(o.kind, o.shape) for o in exported_outputs(compiled)] == [("detections", (20, 6))]
    module = to_torch(compiled)
    load_weights(run / "weights" / "best.safetensors", module)
    x = np.stack([s.image for s in read_scenes(scenes / "test").scenes])[:, None] / 255.0
    x = np.concatenate([x, np.zeros_like(x[:1])]).astype(np.float32)  # and an empty scene
    path = run / "model.onnx"
    pooling = {"rcnn": "RoiAlign", "fast": "MaxRoiPool"}[kind]
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"CumSum", "TopK", "NonMaxSuppression", pooling} <= ops
    held = file_agrees(compiled, module, path, x)
    assert held >= len(x) // 2, held  # rows that hold boxes were compared, not only empty ones


def test_netspec_detect_draws_the_boxes(
    trained: tuple[str, Path], scenes: Path, tmp_path: Path
) -> None:
    _, run = trained
    detect_draws(run / "model.onnx", scenes, tmp_path)


# ---- rcnn_digits' proposals in its exported graph -------------------------------------------


def _digit_scenes(count: int) -> np.ndarray:
    """Randomized test scenes of 128x128 pixels with 1..4 digits, as rcnn_digits trains on
    (MNIST's own digits where they are here), ``(count, 1, 128, 128)`` in [0, 1]."""
    if REAL_MNIST.is_dir():
        mnist = load_mnist(REAL_MNIST)
    else:
        x, y = synthetic_digits(200, 0)
        mnist = MnistData(x, y.astype(np.int64), x, y.astype(np.int64), "synthetic")
    config = SceneConfig.randomized(size=128, digits=(1, 4), split="test")
    made = make_scenes(config, DigitPool.of(mnist, "test"), count)
    return (np.stack([s.image for s in made])[:, None] / 255.0).astype(np.float32)


def test_rcnn_digits_rois_in_onnx_equal_pytorchs(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "rcnn_digits.net")
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    path = tmp_path / "rcnn.onnx"
    export_compiled(compiled, path, weights=module, log=lambda _: None)
    model = onnx.load(str(path))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("rois", onnx.TensorProto.FLOAT, None)
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    seen: list[np.ndarray] = []
    module.get_submodule("rois").register_forward_hook(
        lambda _m, _a, out: seen.append(out.detach().numpy())
    )
    x = _digit_scenes(4)
    with torch.no_grad():
        module(torch.from_numpy(x))
    (want,) = seen
    _, got = session.run(None, {"image": x})
    assert got.shape == want.shape == (4, 48, 5)
    np.testing.assert_array_equal(got[..., :4], want[..., :4])  # the same windows, in order
    np.testing.assert_allclose(got[..., 4], want[..., 4], atol=1e-6)
    assert (want[..., 4] > 0).all()  # every scene fills its 48 rows
