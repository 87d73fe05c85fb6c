"""SSD (issue 24): the `ssd` head's default boxes (against a NumPy reference), matching, hard
negative mining and loss (on cases checked by hand), its decoding inside the exported graph
(the same choice as netspec's one NMS; ONNX Runtime agreeing with PyTorch), `netspec detect`
on its file with ONNX Runtime alone (an empty scene, an over-full one), located diagnostics
for bad anchors, and a short training run on a few hundred scenes whose loss falls."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import netspec
from netspec.artifact import KINDS, Decoding
from netspec.cli import main
from netspec.compiler import Compiled
from netspec.data import MnistData, load_mnist
from netspec.data.scenefiles import read_scenes, write_scenes
from netspec.data.scenes import DigitPool, SceneConfig, Split, make_scenes
from netspec.detection.boxes import Detections
from netspec.detection.coco import evaluate
from netspec.diagnostics import SpecError
from netspec.errors import DataError, MetadataError, ModelError
from netspec.export.detection import decoded, decoding, exported_outputs
from netspec.export.onnx_export import export_compiled
from netspec.kinds import output_infos
from netspec.lower import to_torch
from netspec.lower.ssd import CANDIDATES, choose, priors
from netspec.lower.weights import load_weights
from netspec.ops.ssd import Ssd
from netspec.runtime.detect import DetectOptions, detect, detector
from netspec.runtime.session import open_model
from netspec.tasks import target_of
from netspec.tasks.ssd import encode, match, ssd_head, ssd_loss
from netspec.trainspec import Loss
from tests.conftest import REAL_MNIST, synthetic_digits

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = Path(__file__).resolve().parent.parent / "specs"
HEAD = "ssd(a, b, classes=3, scales=[0.2, 0.5], ratios=[1, 0.5], keep=6)"
TWO_MAPS = """network two(image: 1x32x32) {{
    conv 8 3x3 pad=same | relu | maxpool 2x2 | maxpool 2x2
    fine = conv 8 3x3 pad=same | relu
    coarse = fine | maxpool 2x2
    a = fine | conv 24 3x3 pad=same
    b = coarse | conv 24 3x3 pad=same
    {head}
}}
"""
QUIET = {"log": lambda _: None}


def _two(head: str = HEAD, image: str = "1x32x32") -> Compiled:
    return netspec.compile(TWO_MAPS.format(head=head).replace("1x32x32", image))


# ---- default boxes -----------------------------------------------------------------------------


def reference_priors(
    maps: list[tuple[int, int]], scales: list[float], ratios: list[float], extra: bool
) -> np.ndarray:
    """SSD's default boxes (cx, cy, w, h as fractions of the input), written with NumPy's
    grids: per map, per position (row-major), per box (the ratios, then the extra one)."""
    out = []
    for k, (h, w) in enumerate(maps):
        s, after = scales[k], (scales[k + 1] if k + 1 < len(scales) else 1.0)
        r = np.asarray(ratios, np.float64)
        sizes = np.stack([s * np.sqrt(r), s / np.sqrt(r)], 1)
        if extra:
            sizes = np.vstack([sizes, [np.sqrt(s * after)] * 2])
        ys, xs = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        centres = np.stack([xs, ys], -1).reshape(-1, 1, 2)
        a = len(sizes)
        boxes = np.concatenate(
            [np.broadcast_to(centres, (h * w, a, 2)), np.broadcast_to(sizes, (h * w, a, 2))], -1
        )
        out.append(boxes.reshape(-1, 4))
    return np.concatenate(out)


@pytest.mark.parametrize(
    ("compiled", "maps", "scales", "ratios", "extra"),
    [
        (lambda: _two(), [(8, 8), (4, 4)], [0.2, 0.5], [1, 0.5], True),
        (
            lambda: _two(
                HEAD.replace("keep=6", "extra=false").replace("[1, 0.5]", "[1, 0.5, 2]"),
                image="1x32x48",
            ),
            [(8, 12), (4, 6)],
            [0.2, 0.5],
            [1, 0.5, 2],
            False,
        ),
        (
            lambda: netspec.compile(SPECS / "ssd_digits.net"),
            [(16, 16), (8, 8), (4, 4)],
            [0.1, 0.2, 0.35],
            [1, 0.6, 0.35],
            True,
        ),
    ],
    ids=["two maps", "not square, no extra", "ssd_digits"],
)
def test_default_boxes_equal_a_numpy_reference(
    compiled: object,
    maps: list[tuple[int, int]],
    scales: list[float],
    ratios: list[float],
    extra: bool,
) -> None:
    assert callable(compiled)
    head = ssd_head(compiled())
    assert head is not None and list(head.maps) == maps
    want = reference_priors(maps, scales, ratios, extra)
    assert head.rows == len(want)
    assert np.allclose(priors(head).numpy(), want, atol=1e-6)
    assert np.allclose(np.asarray(head.priors()), want, atol=1e-12)


def test_the_head_says_its_rows_kind_and_files_decoding() -> None:
    compiled = _two()
    (out,) = output_infos(compiled)
    assert (out.kind, out.shape) == ("detections", ((64 + 16) * 3, 4 + 1 + 3))
    assert KINDS["detections"] == "ssd"  # declared by the decoder that reads it
    (exported,) = exported_outputs(compiled)
    assert (exported.kind, exported.shape) == ("detections", (6, 6))
    assert decoding(compiled) == Decoding(
        "ssd",
        {"classes": 3, "keep": 6, "image": (32, 32), "score": 0.3, "floor": 0.01, "iou": 0.45},
    )


# ---- bad anchors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "where", "says"),
    [
        (HEAD.replace("[0.2, 0.5]", "[0, 0.5]"), 26, "'ssd' scales must be greater than 0"),
        (HEAD.replace("[0.2, 0.5]", "[0.2, 1.5]"), 26, "'ssd' scales must be at most 1"),
        (HEAD.replace("[1, 0.5]", "[]"), 45, "'ssd' ratios must be at least 1 values long"),
        (HEAD.replace("[1, 0.5]", "[1, 0]"), 45, "'ssd' ratios must be greater than 0"),
        (HEAD.replace("[0.2, 0.5]", "[0.2]"), 5, "ssd reads 2 maps but has 1 scales"),
        (
            HEAD.replace("(a, b,", "(a, b | dense 10,"),
            5,
            "ssd reads feature maps (C x H x W); its input 2 is 10",
        ),
        (
            HEAD.replace("[1, 0.5]", "[1]"),
            5,
            "ssd's input 1 has 24 channels; its 2 default boxes per position of 8 numbers "
            "(4 offsets, background and 3 classes) need 16",
        ),
    ],
    ids=["scale 0", "scale 1.5", "no ratios", "ratio 0", "scales per map", "a vector", "channels"],
)
def test_bad_anchors_are_diagnostics_at_their_place(head: str, where: int, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        _two(head)
    (diagnostic,) = caught.value.diagnostics
    assert says in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.col) == (7, where)


def test_ssd_with_branches_is_refused_with_what_it_needs() -> None:
    with pytest.raises(SpecError) as caught:
        _two("ssd {\n        a\n        b\n    }")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "E218" and "classes=" in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.col) == (7, 5)


def test_loss_ssd_and_an_ssd_head_go_together() -> None:
    assert target_of(_two(), Loss(name="ssd")).shape == (240, 8)
    with pytest.raises(DataError, match="it trains with loss ssd, not loss cross_entropy"):
        target_of(_two(), Loss(name="cross_entropy"))
    with pytest.raises(DataError, match="loss ssd trains an SSD head"):
        target_of(netspec.compile("network c(x: 1x8x8) {\n    dense 10\n}\n"), Loss(name="ssd"))
    yolo = "network y(x: 1x32x32) {\n    conv 7 1x1 | maxpool 4x4 | detect boxes=1 classes=2\n}\n"
    with pytest.raises(DataError, match="trains with loss yolo, not loss ssd"):
        target_of(netspec.compile(yolo), Loss(name="ssd"))


# ---- matching and the loss -----------------------------------------------------------------

# Four default boxes (cx, cy, w, h): the image's top-left quarter, its top-right quarter,
# the whole image and a small box in its bottom-right corner.
DEFAULT = torch.tensor(
    [[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.9, 0.9, 0.2, 0.2]]
)


def test_matching_takes_the_best_truth_from_the_threshold_and_each_truths_best_box() -> None:
    truth = torch.tensor(
        [
            [
                [0.0, 0.0, 0.5, 0.5],  # exactly default box 0
                [0.55, 0.55, 0.65, 0.65],  # small: no IoU of 0.5 anywhere; best is box 2
                [-1.0, -1.0, -1.0, -1.0],  # padding
            ]
        ]
    )
    real = torch.tensor([[True, True, False]])
    got = match(truth, real, DEFAULT, 0.5)
    assert got.positive.tolist() == [[True, False, True, False]]
    assert got.truth[0, 0] == 0 and got.truth[0, 2] == 1  # box 2 is truth 1's by force
    # above the threshold, a box matches without being any truth's best
    got = match(
        torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.55]]]), real[:, :2], DEFAULT, 0.5
    )
    assert got.positive.tolist() == [[True, True, False, False]]


def _head(**fields: object) -> Ssd:
    """Two maps of a 16x16 input, 2x2 and 1x1, one square default box a position (scales 0.5
    and 1): boxes 0-3 are the image's quarters, box 4 the whole image. Two classes."""
    base = Ssd(
        maps=((2, 2), (1, 1)),
        classes=2,
        scales=(0.5, 1.0),
        ratios=(1.0,),
        extra=False,
        score=0.3,
        floor=0.01,
        iou=0.45,
        keep=5,
        image=(16, 16),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def _loss(out: torch.Tensor, negatives: float = 3.0, alpha: float = 1.0) -> float:
    """The loss of one image whose one box, of class 1, is default box 0 exactly."""
    head = _head()
    y = torch.tensor([[[1.0, 0.0, 0.0, 8.0, 8.0], [-1.0, -1.0, -1.0, -1.0, -1.0]]])
    return float(ssd_loss(out, y, head, priors(head), 0.5, negatives, alpha))


def test_the_loss_on_cases_checked_by_hand() -> None:
    out = torch.zeros(1, 5, 4 + 1 + 2)
    # one match (box 0; the whole image overlaps by 0.25), three negatives: every one of
    # the four cross entropies of zero logits is ln 3; the offsets are right
    assert _loss(out) == pytest.approx(4 * math.log(3))
    out[0, 0, 0] = 1.0  # dx off by 1: smooth L1 of 1 is 0.5
    assert _loss(out) == pytest.approx(4 * math.log(3) + 0.5)
    assert _loss(out, alpha=2.0) == pytest.approx(4 * math.log(3) + 1.0)
    out[0, 0, 0] = 0.0
    out[0, 0, 4 + 2] = 3.0  # the match's own class (1, after the background and class 0)
    match_ce = math.log(2 + math.exp(3)) - 3
    assert _loss(out) == pytest.approx(match_ce + 3 * math.log(3))
    # hard negatives: box 3 says class 0 strongly; one negative per match keeps it alone
    out[0, 3, 4 + 1] = 5.0
    assert _loss(out, negatives=1.0) == pytest.approx(match_ce + math.log(2 + math.exp(5)))
    assert _loss(out, negatives=0.0) == pytest.approx(match_ce)


def test_encoded_offsets_decode_back_to_the_box() -> None:
    from netspec.lower.ssd import corners, decode_boxes

    boxes = torch.tensor([[0.1, 0.2, 0.4, 0.45], [0.5, 0.5, 0.9, 0.7], [0.0, 0.0, 1.0, 1.0]])
    default = DEFAULT[:3]
    back = corners(decode_boxes(encode(boxes, default), default))
    assert torch.allclose(back, boxes, atol=1e-6)


# ---- the choice the exported graph makes ---------------------------------------------------


def reference_choice(
    boxes: np.ndarray, scores: np.ndarray, floor: float, iou: float, keep: int
) -> Detections:
    """netspec's one NMS (`Detections.suppressed`) over the CANDIDATES * keep best (box,
    class) pairs (class by class, equal scores in order) of at least `floor`."""
    r, c = scores.shape
    flat = scores.T.reshape(-1)
    order = np.argsort(-flat, kind="stable")[: min(c * r, CANDIDATES * keep)]
    pairs = Detections(boxes[order % r], flat[order], (order // r).astype(np.int64))
    return pairs.at_least(floor).suppressed(iou, keep)


@pytest.mark.parametrize("seed", range(4))
def test_the_graphs_choice_is_netspecs_nms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, r, c, keep = 3, 60, 4, 8
    corner = rng.uniform(0, 20, (n, r, 2)).astype(np.float32)
    boxes = np.concatenate([corner, corner + rng.uniform(2, 12, (n, r, 2))], -1).astype(np.float32)
    scores = rng.choice([0.0, 0.005, 0.2, 0.5, 0.7, 1.0], (n, r, c)).astype(np.float32)
    scores[0] = rng.uniform(0, 1, (r, c))  # one image without ties
    got = choose(torch.from_numpy(boxes), torch.from_numpy(scores), 0.01, 0.45, keep).numpy()
    assert got.shape == (n, keep, 6)
    for i in range(n):
        want = reference_choice(boxes[i], scores[i], 0.01, 0.45, keep)
        held = got[i][got[i, :, 5] >= 0]
        assert len(held) == len(want) > 0
        assert np.array_equal(held[:, 5].astype(np.int64), want.classes)
        assert np.allclose(held[:, 4], want.scores) and np.allclose(held[:, :4], want.boxes)
        assert (got[i][len(held) :] == [0, 0, 0, 0, 0, -1]).all()  # the empty rows


# ---- an empty scene and an over-full one, through ONNX Runtime ---------------------------------


def _biased(compiled: Compiled, logits: list[float]) -> torch.nn.Module:
    """The network with its two head convolutions giving every default box no offset and
    these class logits (the background first), whatever the image."""
    module = to_torch(compiled).eval()
    with torch.no_grad():
        for name in ("a", "b"):
            conv = module.get_submodule(name)
            assert isinstance(conv, torch.nn.Conv2d)
            conv.weight.zero_()
            conv.bias.copy_(torch.tensor(([0.0] * 4 + logits) * 3))
    return module


@pytest.mark.parametrize(
    ("logits", "found"),
    [([8.0, 0.0, 0.0, 0.0], 0), ([0.0, 0.0, 0.0, 8.0], 6)],
    ids=["empty", "over-full"],
)
def test_an_empty_scene_and_an_over_full_one(
    tmp_path: Path, logits: list[float], found: int
) -> None:
    compiled = _two()
    module = _biased(compiled, logits)
    path = tmp_path / "two.onnx"
    report = export_compiled(compiled, path, weights=module, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)  # ONNX Runtime = PyTorch
    model = open_model(path)
    got = detect(model, np.zeros((1, 1, 32, 32), np.float32), DetectOptions())
    assert len(got) == found  # the background everywhere; class 2 everywhere, 6 rows kept
    assert (got.classes == 2).all() and (got.scores > 0.99).all()
    assert (got.boxes >= 0).all() and (got.boxes <= 32).all()


def test_the_decoder_refuses_a_file_its_rows_do_not_fit(tmp_path: Path) -> None:
    compiled = _two()
    path = tmp_path / "two.onnx"
    export_compiled(compiled, path, weights=to_torch(compiled).eval(), **QUIET)
    info = open_model(path).info
    assert info.decoding is not None
    params = dict(info.decoding.params)
    with pytest.raises(MetadataError, match=r"ssd: image 16x16 is not the input's size \(32x32\)"):
        detector(replace(info, decoding=Decoding("ssd", {**params, "image": (16, 16)})), "m")
    with pytest.raises(ModelError, match="its output is 6x6, but its ssd keeps 7 rows of 6"):
        detector(replace(info, decoding=Decoding("ssd", {**params, "keep": 7})), "m")
    with pytest.raises(MetadataError, match=r"ssd\.floor: Input should be less than or equal"):
        detector(replace(info, decoding=Decoding("ssd", {**params, "floor": 2.0})), "m")


# ---- a short training run on a few hundred scenes ----------------------------------------------

QUICK = """
network quick(image: 1x48x48) {
    conv 16 3x3 pad=same | batchnorm | leaky_relu 0.1 | maxpool 2x2
    conv 32 3x3 pad=same | batchnorm | leaky_relu 0.1 | maxpool 2x2
    fine = conv 48 3x3 pad=same | batchnorm | leaky_relu 0.1
    coarse = fine | maxpool 2x2 | conv 48 3x3 pad=same | batchnorm | leaky_relu 0.1
    a = fine | conv 30 3x3 pad=same
    b = coarse | conv 30 3x3 pad=same
    ssd(a, b, classes=10, scales=[0.35, 0.55], ratios=[0.6])
}

train quick on mnist_scenes {
    loss ssd match=0.5 negatives=3 alpha=1
    optimizer adam lr=0.004
    schedule onecycle
    epochs 10
    batch 32
}
"""
QUICK_MAP50_FLOOR = 0.5  # measured 0.89 on 40 test scenes after 12 epochs on 400


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


def _invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the person
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run of QUICK on 300 scenes (about 20 s on one thread), and its scenes."""
    root = tmp_path_factory.mktemp("ssd")
    data = _scene_dirs(root / "data", 300, 40)
    spec = root / "quick.net"
    spec.write_text(QUICK)
    result = _invoke("train", spec, "--data", data, "--out", root / "runs", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return root / "runs" / "quick", data


def test_a_short_run_lowers_the_loss(trained: tuple[Path, Path]) -> None:
    run, _ = trained
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 10
    assert float(rows[-1]["train_loss"]) < 0.4 * float(rows[0]["train_loss"])
    assert float(rows[-1]["test_loss"]) < 0.5 * float(rows[0]["test_loss"])


def test_onnx_runtime_chooses_what_pytorch_chooses_on_scenes(trained: tuple[Path, Path]) -> None:
    run, data = trained
    compiled = netspec.compile(QUICK)
    module = to_torch(compiled)
    load_weights(run / "weights" / "best.safetensors", module)
    scenes = read_scenes(data / "test").scenes
    x = (np.stack([s.image for s in scenes])[:, None] / 255.0).astype(np.float32)
    with torch.no_grad():
        want = decoded(compiled, module.eval())(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x})
    assert got.shape == want.shape == (len(x), 50, 6)
    assert np.array_equal(got[..., 5], want[..., 5])  # the same boxes of the same classes
    assert np.allclose(got[..., :5], want[..., :5], atol=1e-3)
    assert (got[..., 4] >= 0.3).sum() >= len(x)  # boxes netspec detect shows


def test_netspec_detect_finds_the_digits_with_onnx_runtime_alone(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data = trained
    model = open_model(run / "model.onnx")
    scenes = read_scenes(data / "test").scenes
    options = DetectOptions(threshold=0.05)
    found = [
        detect(model, (s.image[None, None] / 255.0).astype(np.float32), options) for s in scenes
    ]
    assert evaluate(scenes, found, 10).map50 >= QUICK_MAP50_FLOOR
    scene = tmp_path / "scene.png"
    Image.fromarray(scenes[0].image).save(scene)
    result = _invoke("detect", run / "model.onnx", scene, "-o", tmp_path / "found", "--json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["detections"] and all(d["score"] >= 0.3 for d in record["detections"])
    assert Image.open(tmp_path / "found" / "scene.png").size == (48, 48)
