"""Viola-Jones (issue 24): specs/viola_jones_digits.net's pool of Haar-like features equals
scikit-image's `haar_like_feature` for the same rectangles; a boosted stage keeps its
declared share of its training positives; the cascade's graph agrees with NumPy window by
window and ONNX Runtime with PyTorch (every survivor, an empty scene, more candidates than
the rows kept); the train section's `cascade` and the head's pool get located diagnostics;
and `netspec train` boosts a tiny cascade that `netspec detect` runs from its ONNX file.
scikit-image is a test dependency only."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image
from skimage import feature, transform

import netspec
from netspec.cli import main
from netspec.compiler import Compiled
from netspec.data import MnistData, load_mnist
from netspec.data.scenefiles import write_scenes
from netspec.data.scenes import DigitPool, SceneConfig, Split, make_scenes
from netspec.diagnostics import SpecError
from netspec.export.onnx_export import export_compiled
from netspec.kinds import head_site
from netspec.lower import to_torch
from netspec.lower.cascade import Cascade, Integral
from netspec.ops.cascade import CascadeParams, pool
from netspec.tasks import boost
from netspec.tasks.cascade import cascade_of, crop, trained
from tests.conftest import REAL_MNIST, synthetic_digits
from tests.test_haar import rectangles

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread

SPEC = Path(__file__).resolve().parent.parent / "specs" / "viola_jones_digits.net"
QUIET = {"log": lambda _: None}
# scikit-image's name of each of the spec's kernels
TYPES = {
    ((-1.0, 1.0),): "type-2-x",
    ((-1.0,), (1.0,)): "type-2-y",
    ((-1.0, 1.0, -1.0),): "type-3-x",
    ((-1.0,), (1.0,), (-1.0,)): "type-3-y",
    ((-1.0, 1.0), (1.0, -1.0)): "type-4",
}
SMALL = """
kernel edge_x = [-1 1]
kernel line_y = [-1; 1; -1]
kernel diagonal = [-1 1; 1 -1]

network small(image: 1x48x48) {
    tables = image | integral
    detections = tables | cascade(window=12, haar=[edge_x, line_y, diagonal], sizes=[6, 12],
                                  step=2, scales=[1], stride=2, keep=KEEP, iou=IOU)
    output detections
}
"""


def _small(keep: int = 100, iou: float = 1.0) -> Compiled:
    return netspec.compile(SMALL.replace("KEEP", str(keep)).replace("IOU", str(iou)))


def _params(compiled: Compiled) -> CascadeParams:
    site = head_site(compiled)
    assert site is not None and isinstance(site.params, CascadeParams)
    return site.params


def _scene(seed: int, size: int = 48) -> np.ndarray:
    """Noise with a bright vertical bar or two: windows that differ."""
    rng = np.random.default_rng(seed)
    scene = rng.random((size, size)).astype(np.float32) * 0.5
    for left in rng.integers(0, size - 4, 2):
        scene[4:-4, left : left + 3] = 1.0
    return scene


def _boosted(compiled: Compiled, stages: int = 2) -> torch.nn.Module:
    """The small network with a cascade boosted on bar windows against noise windows."""
    p = _params(compiled)
    rng = np.random.default_rng(1)
    bars = rng.random((200, 12, 12)).astype(np.float32) * 0.5
    bars[:, 2:10, 5:8] = 1.0
    noise = rng.random((200, 12, 12)).astype(np.float32)
    features = boost.Pool.of(p)
    x = boost.values(np.concatenate([bars, noise]), features)
    positive = np.arange(len(x)) < len(bars)
    found = [boost.train_stage(x, positive, 3, 0.9, 0.5) for _ in range(stages)]
    module = to_torch(compiled).eval()
    cascade_of(module).set(trained(found, features))
    return module


# ---- the pool is scikit-image's ----------------------------------------------------------


def test_the_spec_s_pool_equals_scikit_image() -> None:
    p = _params(netspec.compile(SPEC))
    features = boost.Pool.of(p)
    window = np.random.default_rng(0).random((24, 24))
    sums, _ = boost.tables(window[None].astype(np.float32))
    ours = sums.reshape(1, -1) @ features.corners.astype(np.float64)
    kinds = np.empty(len(features), dtype=object)
    coords = np.empty(len(features), dtype=object)
    for f, feat in enumerate(pool(p)):
        kinds[f] = TYPES[p.haar[feat.kind]]
        coords[f] = rectangles(kinds[f], feat.top, feat.left, feat.height, feat.width)
    theirs = feature.haar_like_feature(
        transform.integral_image(window), 0, 0, 24, 24, feature_type=kinds, feature_coord=coords
    )
    assert len(features) == 2420
    np.testing.assert_allclose(ours[0], theirs, rtol=0, atol=1e-5)


def test_a_boosted_stage_keeps_its_declared_share_of_the_positives() -> None:
    p = _params(_small())
    rng = np.random.default_rng(2)
    bars = rng.random((150, 12, 12)).astype(np.float32) * 0.6
    bars[:, 1:11, rng.integers(3, 6) : 8] += 0.5  # a bar, not always in one place
    noise = rng.random((300, 12, 12)).astype(np.float32)
    x = boost.values(np.concatenate([bars, noise]), boost.Pool.of(p))
    positive = np.arange(len(x)) < len(bars)
    stage = boost.train_stage(x, positive, 10, 0.97, 0.2)
    passed = boost.stage_votes(stage, x) >= stage.threshold
    assert stage.detection >= 0.97  # the declared rate, on its training windows
    assert passed[positive].mean() == pytest.approx(stage.detection)
    assert passed[~positive].mean() == pytest.approx(stage.false_positive)
    assert stage.false_positive <= 0.2 and 1 <= len(stage.stumps) < 10  # stopped when reached


# ---- the graph: NumPy, PyTorch and ONNX Runtime agree ----------------------------------


def test_the_graph_votes_as_numpy_does_window_by_window() -> None:
    compiled = _small()
    module = _boosted(compiled)
    cascade = cascade_of(module)
    scene = _scene(3)
    votes = cascade.stage_votes(Integral()(torch.from_numpy(scene)[None, None]))[0].numpy()
    features = boost.Pool.of(_params(compiled))
    stages = _stages(cascade, features)
    width = 49
    for w in range(cascade.base.shape[0]):
        top, left = divmod(int(cascade.base[w]), width)
        window = crop(scene, top, left, 12, 12)[None]
        x = boost.values(window, features)
        want = [boost.stage_votes(stage, x)[0] for stage in stages]
        np.testing.assert_allclose(votes[w], want, atol=1e-5)


def _stages(cascade: Cascade, features: boost.Pool) -> list[boost.Stage]:
    """The module's stages as boost's, each stump's feature found again by its corners."""
    index = {features.points[f].tobytes(): f for f in range(len(features))}
    stumps = [
        boost.Stump(
            index[cascade.points[t].detach().numpy().tobytes()], float(th), float(po), float(al)
        )
        for t, (th, po, al) in enumerate(
            zip(
                cascade.threshold.tolist(),
                cascade.polarity.tolist(),
                cascade.alpha.tolist(),
                strict=True,
            )
        )
    ]
    out, first = [], 0
    for size, cut in cascade.stages.tolist():
        out.append(boost.Stage(tuple(stumps[first : first + int(size)]), cut, 1.0, 1.0))
        first += int(size)
    return out


def _export(tmp_path: Path, compiled: Compiled, module: torch.nn.Module) -> ort.InferenceSession:
    path = tmp_path / "cascade.onnx"
    report = export_compiled(compiled, path, weights=module, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)  # ONNX Runtime = PyTorch
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_runtime_keeps_every_survivor_pytorch_keeps(tmp_path: Path) -> None:
    """With room for every window and no suppression (iou=1), the file's rows are the
    cascade's survivors, window by window, with PyTorch's scores."""
    compiled = _small(keep=100, iou=1.0)
    module = _boosted(compiled)
    session = _export(tmp_path, compiled, module)
    scenes = np.stack([_scene(s) for s in range(4)])[:, None]
    (rows,) = session.run(None, {"image": scenes})
    cascade = cascade_of(module)
    index, score = cascade.survivors(Integral()(torch.from_numpy(scenes)))
    windows = cascade.base.shape[0]
    for n in range(len(scenes)):
        mine = index // windows == n
        want = {
            tuple(np.round(cascade.boxes[i % windows].numpy(), 3)) for i in index[mine].tolist()
        }
        held = rows[n][rows[n][:, 5] >= 0]
        assert 0 < len(held) < windows  # some windows pass, not all
        assert {tuple(np.round(b, 3)) for b in held[:, :4]} == want
        np.testing.assert_allclose(np.sort(held[:, 4]), np.sort(score[mine].numpy()), atol=1e-6)


def test_an_empty_scene_and_more_candidates_than_rows(tmp_path: Path) -> None:
    compiled = _small(keep=5, iou=0.3)
    module = _boosted(compiled, stages=1)
    cascade = cascade_of(module)
    never = {**_trained_of(cascade), "stages": torch.tensor([[3.0, 1e9]])}  # no window reaches it
    cascade.set(never)
    session = _export(tmp_path, compiled, module)
    (rows,) = session.run(None, {"image": _scene(0)[None, None]})
    assert (rows[0][:, 5] == -1).all()  # no box
    cascade.set({k: v[:0] for k, v in _trained_of(cascade).items()})  # no stage: every window
    (rows,) = _export(tmp_path, compiled, module).run(None, {"image": _scene(0)[None, None]})
    assert rows.shape == (1, 5, 6) and (rows[0][:, 5] == 0).all()  # 361 windows, 5 rows
    assert (rows[0][:, 4] == 1.0).all()


def _trained_of(cascade: Cascade) -> dict[str, torch.Tensor]:
    return {
        k: getattr(cascade, k).detach()
        for k in ("points", "threshold", "polarity", "alpha", "stages")
    }


# ---- located diagnostics -----------------------------------------------------------------


TRAIN = """
network small(image: 1x48x48) {
    tables = image | integral
    detections = tables | cascade(window=12, haar=[[-1 1]], sizes=[6, 12], step=2)
    output detections
}

train small on mnist_scenes {
    cascade SETTING
}
"""


@pytest.mark.parametrize(
    ("setting", "col", "says"),
    [
        ("stages=0 features=[1]", 13, "cascade stages must be greater than 0"),
        ("stages=2 features=[2, 4, 8]", 22, "cascade features must be 2 counts (one per stage)"),
        ("stages=1 features=[2] detection=1.5", 35, "cascade detection must be less than 1"),
        ("stages=1 features=[2] false_positive=0", 35, "false_positive must be greater than 0"),
        ("stages=2 features=[]", 22, "cascade features must be at least 1"),
    ],
    ids=["no stage", "counts", "detection", "false positive", "no counts"],
)
def test_a_bad_cascade_setting_is_located(setting: str, col: int, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        netspec.compile(TRAIN.replace("SETTING", setting))
    first = caught.value.diagnostics[0]
    assert says in first.message
    assert (first.span.line, first.span.col) == (9, col)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ("sizes=[6, 30]", "a Haar feature of 30 pixels is larger than the window (12)"),
        ("sizes=[6], scales=[1, 5]", "at scale 5 the window (60 pixels) is larger than the image"),
        ("sizes=[5]", "haar kernel 1 (1x2) divides none of the sizes 5"),
    ],
)
def test_a_bad_pool_is_located_at_the_head(args: str, says: str) -> None:
    text = TRAIN.split("train")[0].replace("sizes=[6, 12]", args)
    with pytest.raises(SpecError) as caught:
        netspec.compile(text)
    first = caught.value.diagnostics[0]
    assert says in first.message
    assert (first.span.line, first.span.col) == (4, 27)


# ---- netspec train, export and detect ------------------------------------------------------


QUICK = """
kernel edge_x = [-1 1]
kernel edge_y = [-1; 1]
kernel line_x = [-1 1 -1]

network quick(image: 1x48x48) {
    tables = image | integral
    detections = tables | cascade(window=16, haar=[edge_x, edge_y, line_x], sizes=[6, 12],
                                  step=2, scales=[1, 1.5], stride=2, box=11x8, keep=10)
    output detections
}

train quick on mnist_scenes {
    cascade stages=2 features=[3, 6] detection=0.95 false_positive=0.5 negatives=300
}
"""


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


def test_netspec_trains_exports_and_detects_a_cascade(tmp_path: Path) -> None:
    data = _scene_dirs(tmp_path / "data", 60, 10)
    spec = tmp_path / "quick.net"
    spec.write_text(QUICK)
    result = _invoke("train", spec, "--data", data, "--out", tmp_path / "runs", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "stage 2:" in result.output and "class-agnostic" in result.output
    run = tmp_path / "runs" / "quick"
    (row,) = list(csv.DictReader((run / "metrics.csv").open()))
    assert float(row["test_loss"]) >= 0  # errors per scene
    fitted = json.loads((run / "fitted.json").read_text())
    assert fitted["stage1_detection"] >= 0.95 and fitted["stage2_detection"] >= 0.95
    assert 0 <= fitted["stage1_rejected"] <= 1 and 0 <= fitted["map50"] <= 1
    scene = tmp_path / "scene.png"
    Image.fromarray((_scene(5) * 255).astype(np.uint8)).save(scene)
    found = _invoke("detect", run / "model.onnx", scene, "-o", tmp_path / "found", "--json")
    assert found.exit_code == 0, found.output
    (record,) = json.loads(found.stdout)
    assert all(d["score"] >= 0.5 for d in record["detections"])
    assert Image.open(tmp_path / "found" / "scene.png").size == (48, 48)
