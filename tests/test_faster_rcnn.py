"""Faster R-CNN as a `two_stage` head (issue 23): the loss's sampling on hand-made cases, a
short run that trains through `netspec train`, exports one ONNX file (anchors, proposals,
NMS, RoI pooling, heads and decoding) that ONNX Runtime runs as PyTorch does, and
`netspec detect` on it; the mistakes of a spec and of its `loss faster_rcnn`, located."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import netspec
from netspec.artifact import Decoding
from netspec.cli import main
from netspec.compiler import Compiled
from netspec.data import MnistData, load_mnist
from netspec.data.scenefiles import read_scenes, write_scenes
from netspec.data.scenes import DigitPool, SceneConfig, Split, make_scenes
from netspec.diagnostics import SpecError
from netspec.errors import DataError, MetadataError, ModelError
from netspec.export.detection import decoded, exported_outputs
from netspec.lower import to_torch
from netspec.lower.two_stage import refine, to_centres
from netspec.lower.weights import load_weights
from netspec.runtime.detect import detector
from netspec.runtime.session import open_model
from netspec.tasks import target_of
from netspec.tasks.two_stage import Labels, TwoStageTarget, encode, label, sample, scene_f1
from netspec.trainspec import Loss
from tests.conftest import REAL_MNIST, synthetic_digits

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

QUICK = """
network quick(image: 1x48x48) {
    maps = image | conv 16 3x3 pad=same | batchnorm | relu | maxpool 2x2
         | conv 32 3x3 pad=same | batchnorm | relu | maxpool 2x2
    rpn = maps | conv 32 3x3 pad=same | relu
    objectness = rpn | conv 2 1x1
    deltas = rpn | conv 8 1x1
    rois = proposals(objectness, deltas, sizes=[18], ratios=[0.5, 0.8], keep=16, pre=64)
    hidden = roi_align(maps, rois, 4x4) | dense 64 | relu
    scores = hidden | dense 11
    boxes = hidden | dense 4
    two_stage(rois, scores, boxes, objectness, deltas, classes=10, score=0.05)
}

train quick on mnist_scenes {
    loss faster_rcnn rpn_batch=64 batch=16
    optimizer adam lr=0.004
    epochs 1
    batch 8
}
"""
TOLERANCE = 1e-3  # pixels and scores: ONNX Runtime against PyTorch (float32 arithmetic)


def _invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the person
    return result


# ---- the loss's sampling, by hand ------------------------------------------------------------


def test_anchors_are_labelled_by_iou_and_each_truths_best_is_positive() -> None:
    anchors = torch.tensor(
        [[[0.0, 0, 10, 10], [1, 0, 11, 10], [5, 0, 15, 10], [20, 20, 30, 30], [40, 40, 44, 44]]]
    )
    y = torch.tensor([[[3.0, 0, 0, 10, 10], [7.0, 38, 38, 50, 50], [-1, 0, 0, 0, 0]]])
    valid = torch.ones(1, 5, dtype=torch.bool)
    found = label(anchors, valid, y, (0.7, 0.3), best_of_each=True)
    # IoU with the first truth: 1, 0.818, 0.333, 0, 0; the last anchor is the second
    # truth's best (IoU 16/144), positive only as its best
    assert found.positive.tolist() == [[True, True, False, False, True]]
    assert found.negative.tolist() == [[False, False, False, True, False]]  # 0.333: ignored
    assert found.truth[0, [0, 1, 4]].tolist() == [0, 0, 1]
    plain = label(anchors, valid, y, (0.7, 0.3), best_of_each=False)
    assert plain.positive.tolist() == [[True, True, False, False, False]]
    assert plain.negative.tolist() == [[False, False, False, True, True]]


def test_an_empty_scene_has_only_negatives_and_invalid_boxes_are_neither() -> None:
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 0, 0]]])
    y = torch.tensor([[[-1.0, 0, 0, 0, 0]]])
    found = label(boxes, torch.tensor([[True, False]]), y, (0.5, 0.5), best_of_each=True)
    assert found.positive.tolist() == [[False, False]]
    assert found.negative.tolist() == [[True, False]]


def test_sampling_keeps_the_fraction_of_positives_and_fills_with_negatives() -> None:
    positive = torch.zeros(2, 100, dtype=torch.bool)
    positive[0, :30] = True
    positive[1, :2] = True
    labels = Labels(torch.zeros(2, 100, dtype=torch.long), positive, ~positive)
    torch.manual_seed(0)
    pos, neg = sample(labels, 20, 0.25)
    assert pos.sum(1).tolist() == [5, 2]  # at most 20 * 0.25; all the second's two
    assert neg.sum(1).tolist() == [15, 18]  # the rest of 20
    assert not (pos & ~positive).any() and not (neg & positive).any()


def test_a_scenes_f1_counts_each_true_box_once_and_its_class() -> None:
    rows = torch.tensor(
        [
            [  # two boxes on the first digit (one counts), one of the wrong class, one faint
                [0.0, 0, 10, 10, 0.9, 3],
                [0.5, 0, 10, 10, 0.8, 3],
                [20, 20, 30, 30, 0.9, 4],
                [40, 40, 50, 50, 0.1, 7],
            ],
            [[0, 0, 0, 0, 0, -1]] * 4,  # nothing found in an empty scene
        ]
    )
    y = torch.tensor([[[3.0, 0, 0, 10, 10], [5, 20, 20, 30, 30]], [[-1.0, 0, 0, 0, 0]] * 2])
    assert scene_f1(rows, y, 0.5).tolist() == pytest.approx([2 * 1 / (3 + 2), 1.0])


def test_the_detectors_gradients_reach_the_backbone_through_roi_pooling() -> None:
    compiled = netspec.compile(QUICK)
    target = target_of(compiled, compiled.train.loss)
    assert isinstance(target, TwoStageTarget)
    module = to_torch(compiled).train()
    y = torch.tensor([[[3.0, 10, 8, 26, 30], [6, 28, 20, 44, 44]]] * 2)
    torch.manual_seed(0)
    out = module(torch.rand(2, 1, 48, 48))
    without_rpn = TwoStageTarget(target.task, target.shape, two_stage=target.two_stage)
    target.task.loss_sum((out,), y, compiled.train.loss, without_rpn).backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    assert float(grads["maps.0.weight"].abs().sum()) > 0  # the backbone's first convolution
    for rpn in ("objectness.weight", "deltas.weight"):  # the proposals are data to it
        grad = grads[rpn]
        assert grad is None or not grad.any()


@pytest.mark.parametrize("truth", [True, False])
def test_the_true_boxes_join_the_regions_only_while_training(truth: bool) -> None:
    compiled = netspec.compile(QUICK.replace("batch=16", f"batch=16 truth={str(truth).lower()}"))
    target = target_of(compiled, compiled.train.loss)
    assert target is not None
    module, loss = to_torch(compiled).train(), compiled.train.loss
    y = torch.tensor([[[3.0, 10, 8, 26, 30], [6, 28, 20, 44, 44]], [[1.0, 5, 6, 15, 40], [-1] * 5]])
    x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    joined = target.task.forward(module, x, y, loss, target)[0][:, :16, :5]
    plain = module(x)[:, :16, :5]  # the same batch's statistics, no truth given
    assert torch.equal(joined[:, :14], plain[:, :14])  # the proposals ranked first stay
    assert torch.equal(joined[1, 15], plain[1, 15])  # a padding box takes no row
    ones = torch.ones(2, 1)
    rows, want = (joined[0, 14:], joined[1, 14]), (torch.cat([y[0, :, 1:], ones], 1), y[1, 0])
    assert torch.equal(rows[0], want[0]) == truth
    assert torch.equal(rows[1][:4], want[1][1:]) == truth
    module.eval()
    shown = target.task.forward(module, x, y, loss, target)[0][:, :16, :5]
    assert not (shown[..., 4] == 1).any()  # a file never sees the truth
    assert all(m.truth is None for m in module.modules() if hasattr(m, "truth"))


def test_encoded_offsets_refine_the_roi_into_the_truth() -> None:
    rois = torch.tensor([[10.0, 12, 30, 40], [50, 50, 60, 70]])
    truth = torch.tensor([[12.0, 10, 28, 44], [48, 55, 66, 69]])
    offsets = encode(truth, to_centres(rois), (0.1, 0.2))
    back = refine(rois, offsets, torch.tensor([100.0, 100, 100, 100]))
    assert torch.allclose(back, truth, atol=1e-4)


# ---- the spec's mistakes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "says", "at"),
    [
        ("rpn_negative=0.8", "loss rpn_negative must be at most rpn_positive (0.7), got 0.8", 22),
        ("positive=0.4 negative=0.6", "loss negative must be at most positive (0.4), got 0.6", 35),
        ("rpn_batch=64 batch=0", "loss batch must be greater than 0, got 0", 35),
        ("rpn_fraction=2", "loss rpn_fraction must be at most 1, got 2", 22),
        ("anchors=3", "loss anchors must be", 22),
    ],
)
def test_bad_loss_settings_are_located_at_their_key(settings: str, says: str, at: int) -> None:
    text = QUICK.replace("rpn_batch=64 batch=16", settings)
    line = 1 + text.splitlines().index(f"    loss faster_rcnn {settings}")
    with pytest.raises(SpecError) as caught:
        netspec.compile(text)
    (diagnostic,) = caught.value.diagnostics
    assert says in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.col) == (line, at)


@pytest.mark.parametrize(
    ("head", "says"),
    [
        ("two_stage(rois, scores, boxes, objectness, classes=10)", "reads 3 tensors"),
        ("two_stage(rois, boxes, scores, classes=10)", "scores must be 16x11"),
        ("two_stage(rois, scores, boxes, deltas, objectness, classes=10)", "RPN's maps"),
    ],
)
def test_a_head_fed_the_wrong_tensors_is_located(head: str, says: str) -> None:
    text = QUICK.replace(
        "two_stage(rois, scores, boxes, objectness, deltas, classes=10, score=0.05)", head
    )
    with pytest.raises(SpecError) as caught:
        netspec.compile(text)
    (diagnostic,) = caught.value.diagnostics
    assert says in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.col) == (12, 5)


def test_the_head_and_its_loss_go_together() -> None:
    compiled = netspec.compile(QUICK)
    target = target_of(compiled, compiled.train.loss)
    assert isinstance(target, TwoStageTarget) and target.rpn is not None
    assert target.shape == (16 + 12 * 12 * 2, 20)
    with pytest.raises(DataError, match="trains with loss faster_rcnn, not loss cross_entropy"):
        target_of(compiled, Loss(name="cross_entropy"))
    plain = netspec.compile(
        QUICK.split("train quick")[0].replace(
            "two_stage(rois, scores, boxes, objectness, deltas, classes=10, score=0.05)", "scores"
        )
    )
    with pytest.raises(DataError, match="loss faster_rcnn trains a two_stage head"):
        target_of(plain, Loss.model_validate({"name": "faster_rcnn"}))
    other = QUICK.replace("rois = proposals(objectness", "rois = proposals(objectness2").replace(
        "    deltas = rpn | conv 8 1x1\n",
        "    deltas = rpn | conv 8 1x1\n    objectness2 = rpn | conv 2 1x1\n",
    )
    with pytest.raises(DataError, match="must be the proposals made from its objectness"):
        target_of(netspec.compile(other), netspec.compile(other).train.loss)


# ---- a short run, its file, and detect -------------------------------------------------------


def _scene_dirs(root: Path, train: int, test: int) -> Path:
    """Scenes of 48x48 with one or two digits (MNIST's own where it is here), as files."""
    if REAL_MNIST.is_dir():
        mnist = load_mnist(REAL_MNIST)
    else:
        x, y = synthetic_digits(200, 0)
        mnist = MnistData(x, y.astype(np.int64), x, y.astype(np.int64), "synthetic")
    splits: tuple[tuple[Split, int], ...] = (("train", train), ("test", test))
    for split, count in splits:
        config = SceneConfig(size=48, digits=(1, 2), scale=(20, 30), split=split)
        write_scenes(root / split, make_scenes(config, DigitPool.of(mnist, split), count), config)
    return root


def train_quick(root: Path) -> tuple[Path, Path]:
    """A run of QUICK, one epoch of 48 scenes, and its scenes, under ``root``."""
    data = _scene_dirs(root / "data", 48, 8)
    spec = root / "quick.net"
    spec.write_text(QUICK)
    result = _invoke("train", spec, "--data", data, "--out", root / "runs", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return root / "runs" / "quick", data


@pytest.fixture(scope="session")
def trained(quick_two_stage: tuple[Path, Path]) -> tuple[Path, Path]:
    """The session's run of QUICK (conftest.py's `quick_two_stage`: trained once for every
    module that reads it) and its scenes. Tests read it; none writes into it."""
    return quick_two_stage


def _rows_agree(got: np.ndarray, want: np.ndarray) -> int:
    """Two engines' detections ``(R, 6)`` agree row by row up to the first near-tie (two
    scores within 1e-5, a few times what the engines' scores differ by: a barely trained
    head scores many boxes alike, and either engine may rank either first, which changes
    what suppression keeps after it); the rows that hold a box among those compared."""
    ties = np.flatnonzero(np.abs(np.diff(want[:, 4])) < 1e-5)
    n = int(ties[0]) if len(ties) else len(want)
    assert np.array_equal(got[:n, 5], want[:n, 5])  # the same classes in the same rows
    assert np.allclose(got[:n, :5], want[:n, :5], atol=TOLERANCE)
    return int((want[:n, 5] >= 0).sum())


def file_agrees(compiled: Compiled, module: torch.nn.Module, path: Path, x: np.ndarray) -> int:
    """The exported file at ``path`` and the module with its decoding agree on each image of
    ``x`` ``(N, 1, H, W)``, run one at a time (the proposals of each alone), as
    `_rows_agree` compares them; the rows holding a box that were compared."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    held = 0
    for image in x:
        with torch.no_grad():
            want = decoded(compiled, module.eval())(torch.from_numpy(image[None])).numpy()
        (got,) = session.run(None, {"image": image[None]})
        assert got.shape == want.shape == (1, 20, 6)
        held += _rows_agree(got[0], want[0])
    return held


def test_one_file_holds_the_pipeline_and_onnx_runtime_agrees(trained: tuple[Path, Path]) -> None:
    run, data = trained
    compiled = netspec.compile(QUICK)
    assert [(o.kind, o.shape) for o in exported_outputs(compiled)] == [("detections", (20, 6))]
    module = to_torch(compiled)
    load_weights(run / "weights" / "best.safetensors", module)
    scenes = read_scenes(data / "test").scenes
    x = (np.stack([s.image for s in scenes])[:, None] / 255.0).astype(np.float32)
    # and a scene of no digit: a ramp, as a constant image ties every inner cell's scores
    # exactly, and either engine may rank either first (tests/test_two_stage_parity.py)
    ramp = np.broadcast_to(np.linspace(0, 0.5, x.shape[-1], dtype=np.float32), x.shape[1:])
    x = np.concatenate([x, ramp[None]])
    ops = {n.op_type for n in __import__("onnx").load(str(run / "model.onnx")).graph.node}
    assert {"NonMaxSuppression", "RoiAlign", "TopK"} <= ops
    held = file_agrees(compiled, module, run / "model.onnx", x)
    assert held >= len(x) // 2, held  # rows that hold boxes were compared, not only empty ones


def detect_draws(model: Path, scenes: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """`netspec detect` on the first test scene of ``scenes`` with ``model``: it finds boxes
    from a score of 0.01 and draws them in colour on the grey scene; what it found."""
    scene = tmp_path / "scene.png"
    Image.fromarray(read_scenes(scenes / "test").scenes[0].image).save(scene)
    found = tmp_path / "found"
    result = _invoke("detect", model, scene, "-o", found, "--json", "--threshold", "0.01")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    detections: list[dict[str, Any]] = record["detections"]
    assert detections and all(d["score"] >= 0.01 for d in detections)
    drawn = np.asarray(Image.open(found / "scene.png").convert("RGB"))
    assert drawn.shape[:2] == (48, 48)
    assert (drawn[..., 0] != drawn[..., 1]).any()  # coloured boxes on a grey scene
    return detections


def test_netspec_detect_draws_the_boxes(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    detect_draws(run / "model.onnx", data, tmp_path)


@pytest.mark.parametrize(
    ("change", "error", "says"),
    [
        ({"image": (16, 16)}, MetadataError, r"two_stage: image 16x16 is not the input's size"),
        ({"keep": 7}, ModelError, "its output is 20x6, but its two_stage head keeps 7 rows"),
        ({"keep": -3}, MetadataError, r"two_stage\.keep: Input should be greater than 0"),
        ({"classes": 3}, ModelError, "its two_stage head has 3 classes but it has 10 labels"),
    ],
)
def test_crafted_metadata_is_refused_at_detect(
    trained: tuple[Path, Path], change: dict[str, object], error: type[Exception], says: str
) -> None:
    info = open_model(trained[0] / "model.onnx").info
    assert info.decoding is not None and info.decoding.decoder == "two_stage"
    params = {**info.decoding.params, **change}
    with pytest.raises(error, match=says):
        detector(replace(info, decoding=Decoding("two_stage", params)), "m")
