"""A two-stage detector's whole exported pipeline in ONNX Runtime against PyTorch (issue 23),
small: benchmarks/parity_two_stage.py's comparison, row by row, on tests/test_faster_rcnn.py's
short run (conftest.py's `quick_two_stage`, trained once a session) over randomized, empty,
over-full and constant scenes (near-ties explained), and on the same network made to find
nothing (no proposal at all; no class up to the floor). And a detector file whose netspec
metadata was crafted (absurd counts, negative sizes, more rows than the graph gives, a wrong
output name, a missing field): `netspec detect` and `netspec eval --scenes` exit 1 with a
message that names the mistake, never a traceback, for a two-stage file and an SSD file
alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import netspec
from benchmarks.parity_two_stage import TOLERANCE, Pair, compare, scene_sets
from netspec.cli import main
from netspec.data import MnistData, load_mnist
from netspec.data.scenefiles import read_scenes
from netspec.data.scenes import DigitPool, SceneConfig
from netspec.export.onnx_export import ExportOptions, export_compiled
from netspec.lower import to_torch
from netspec.lower.weights import load_weights
from netspec.runtime.session import open_model
from netspec.train.opening import open_run
from tests.conftest import REAL_MNIST, synthetic_digits

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

# The short run's scenes (48x48, one or two digits of 20 to 30 pixels), with every
# randomization and a seed its data never used; over-full: 8 to 12 smaller digits, more
# candidates than its proposal layer (16) and its output (20 rows) keep.
BASE = SceneConfig.randomized(size=48, digits=(1, 2), scale=(20, 30), split="test", seed=1)
CROWDED: dict[str, Any] = {"digits": (8, 12), "scale": (12, 16)}
LABELS = tuple("0123456789")


def _pool() -> DigitPool:
    """MNIST's test digits where they are here, else synthetic ones."""
    if REAL_MNIST.is_dir():
        return DigitPool.of(load_mnist(REAL_MNIST), "test")
    x, y = synthetic_digits(200, 1)
    return DigitPool.of(
        MnistData(x, y.astype(np.int64), x, y.astype(np.int64), "synthetic"), "test"
    )


def _invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the person
    return result


# ---- ONNX Runtime gives PyTorch's rows ------------------------------------------------------


def test_every_row_agrees_on_randomized_empty_and_over_full_scenes(
    quick_two_stage: tuple[Path, Path],
) -> None:
    pair = Pair.of_run(quick_two_stage[0])
    sets = scene_sets(BASE, _pool(), (24, 4, 4), CROWDED)
    # a constant image ties every inner position's scores: either engine may rank either
    # first, and where one does, the rows are explained as a near-tie, not failed
    sets["constant"] = [(np.full((48, 48), v, np.uint8), 0) for v in (0, 128, 255)]
    found = {p.name: p for p in compare(pair, sets)}
    assert list(found) == ["randomized", "empty", "over-full", "constant"]
    for parity in found.values():
        assert parity.within(TOLERANCE), (parity.name, parity.box, parity.score_diff, parity.failed)
        assert parity.rows == 20 * parity.scenes  # every row of every scene compared
        assert parity.ties == len(parity.notes) and all("a near-tie" in n for n in parity.notes)
    assert found["randomized"].held >= 24  # rows holding boxes, not only empty ones
    assert set(found["empty"].digits) == {0}
    crowded = found["over-full"]
    assert min(crowded.digits) > 2  # more digits than the run's scenes ever hold
    assert crowded.full_proposals == crowded.scenes  # each proposal layer kept 16 of more
    assert crowded.full_output >= 1  # an output of 20 rows, each holding a box


def _finding_nothing(run: Path, layer: str, bias: list[float], path: Path) -> Pair:
    """The run's network with `layer` giving `bias` whatever the image, exported to `path`
    (the export checks ONNX Runtime against PyTorch on its own samples)."""
    compiled, weights = open_run(run)
    assert weights is not None
    module = to_torch(compiled)
    load_weights(weights, module)
    with torch.no_grad():
        made = module.get_submodule(layer)
        assert isinstance(made, torch.nn.Conv2d | torch.nn.Linear)
        made.weight.zero_()
        made.bias.copy_(torch.tensor(bias))
    report = export_compiled(
        compiled, path, ExportOptions(labels=LABELS), weights=module, log=lambda _: None
    )
    assert report.checks and all(c.ok for c in report.checks)
    return Pair(compiled, module, open_model(path, "cpu", threads=1))


@pytest.mark.parametrize(
    ("layer", "bias"),
    [("objectness", [-200.0] * 2), ("scores.op", [60.0] + [0.0] * 10)],
    ids=["no proposal", "no class up to the floor"],
)
def test_a_scene_with_no_detection_gives_empty_rows_in_both(
    quick_two_stage: tuple[Path, Path],
    tmp_path: Path,
    layer: str,
    bias: list[float],
) -> None:
    # a sigmoid of -200 is 0 in float32: no anchor scores above the proposals' 0, and
    # NonMaxSuppression chooses nothing; a background logit 60 above the digits' leaves
    # each digit a score under 1e-26, below the head's floor of 0.01
    pair = _finding_nothing(quick_two_stage[0], layer, bias, tmp_path / "nothing.onnx")
    for parity in compare(pair, scene_sets(BASE, _pool(), (4, 2, 2), CROWDED)):
        assert parity.within(TOLERANCE), (parity.name, parity.failed)
        assert parity.no_box == parity.scenes and parity.held == 0
    scene = tmp_path / "scene.png"
    Image.fromarray(read_scenes(quick_two_stage[1] / "test").scenes[0].image).save(scene)
    result = _invoke("detect", tmp_path / "nothing.onnx", scene, "--json", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["detections"] == []


# ---- crafted metadata at detect and eval ---------------------------------------------------

SSD = """network small_ssd(image: 1x48x48) {
    conv 8 3x3 pad=same | relu | maxpool 2x2 | maxpool 2x2
    fine = conv 8 3x3 pad=same | relu
    coarse = fine | maxpool 2x2
    a = fine | conv 45 3x3 pad=same
    b = coarse | conv 45 3x3 pad=same
    ssd(a, b, classes=10, scales=[0.3, 0.6], ratios=[1, 0.5], keep=20)
}
"""
DROP = object()  # a field taken out of the metadata
Change = dict[str, Callable[[Any], Any]]  # metadata key -> its new value from the old one


def _first(**change: Any) -> Callable[[Any], Any]:
    """The first entry of a list (of inputs or outputs) changed; a DROP value drops a key."""

    def edit(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        first = {**entries[0], **change}
        return [{k: v for k, v in first.items() if v is not DROP}, *entries[1:]]

    return edit


def _set(**change: Any) -> Callable[[Any], Any]:
    """The decoding with these parameters changed; a DROP value drops a parameter."""
    return lambda d: {k: v for k, v in {**d, **change}.items() if v is not DROP}


# (what was crafted, how, what `detect` and `eval --scenes` say, or a pair where they differ:
# None where the command runs); `{decoder}`, `{head}` and `{output}` name the file's own.
Says = str | tuple[str | None, str]
CRAFTED: list[tuple[str, Change, Says]] = [
    ("absurd keep", {"decoding": _set(keep=10**12)}, "{decoder}.keep: Input should be less"),
    (
        "absurd classes",
        {"decoding": _set(classes=10**9)},
        "{decoder}.classes: Input should be less than or equal to 100000",
    ),
    ("negative image", {"decoding": _set(image=[-48, 48])}, "{decoder}.image[0]: Input"),
    (
        "negative input size",
        {"inputs": _first(shape=[1, -48, 48])},
        "bad netspec metadata: inputs[0].shape[1]: expected positive sizes",
    ),
    (
        "negative output size",
        {"outputs": _first(shape=[-20, 6])},
        "bad netspec metadata: outputs[0].shape[0]: expected positive sizes",
    ),
    (
        "keep above the rows",
        {"decoding": _set(keep=25)},
        "its output is 20x6, but its {head} keeps 25 rows of 6",
    ),
    (
        "keep above the rows, the output's shape too",
        {"decoding": _set(keep=25), "outputs": _first(shape=[25, 6])},
        "the metadata declares output '{output}' as 25x6 per sample; the graph gives 20x6",
    ),
    (
        "keep above the rows, the output's shape dropped",
        {"decoding": _set(keep=25), "outputs": _first(shape=DROP)},
        "its output is 20x6, but its {head} keeps 25 rows of 6",
    ),
    (
        "a wrong output name",
        {"outputs": _first(name="boxes")},
        "the metadata names output 'boxes' where the graph has '{output}'",
    ),
    (
        "an output the graph lacks",
        {"outputs": lambda o: [*o, {**o[0], "name": "more"}]},
        "the metadata declares 2 outputs; the graph has 1",
    ),
    ("a missing parameter", {"decoding": _set(keep=DROP)}, "{decoder}.keep: Field required"),
    (
        "a missing decoding",
        {"decoding": lambda _: DROP},
        "detections without their decoding (no ssd or two_stage)",
    ),
    (
        "labels of another count",
        {"labels": lambda labels: [*labels, "ten"]},
        "its {head} has 10 classes but it has 11 labels",
    ),
    (
        "fewer classes than the graph gives",
        {"decoding": _set(classes=1), "labels": lambda _: ["digit"]},
        ("its output holds a row of class", "its scenes hold class"),
    ),
    ("no labels", {"labels": lambda _: DROP}, (None, "its metadata names no class labels")),
    ("a score of NaN", {"decoding": _set(score=float("nan"))}, "decoding.score: expected"),
]
HEADS = {"two_stage": "two_stage head", "ssd": "ssd"}


@pytest.fixture(scope="module")
def files(
    quick_two_stage: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """A two-stage file (the short run's) and an SSD file (untrained), both 48x48 with 10
    labels and 20 rows."""
    compiled = netspec.compile(SSD)
    ssd = tmp_path_factory.mktemp("ssd") / "ssd.onnx"
    export_compiled(compiled, ssd, ExportOptions(labels=LABELS), log=lambda _: None)
    return {"two_stage": quick_two_stage[0] / "model.onnx", "ssd": ssd}


def _craft(source: Path, path: Path, change: Change) -> dict[str, str]:
    """`source` written to `path` with its metadata changed; the names the messages use."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    decoder = json.loads(props["decoding"])["decoder"]
    for key, edit in change.items():
        value = edit(json.loads(props[key]) if key in props else None)
        if value is DROP:
            del props[key]
        else:
            props[key] = json.dumps(value)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return {"decoder": decoder, "head": HEADS[decoder], "output": model.graph.output[0].name}


@pytest.mark.parametrize("kind", ["two_stage", "ssd"])
@pytest.mark.parametrize(
    ("change", "says"), [pytest.param(change, says, id=name) for name, change, says in CRAFTED]
)
def test_crafted_metadata_is_a_clear_error_at_detect_and_eval(
    files: dict[str, Path],
    quick_two_stage: tuple[Path, Path],
    tmp_path: Path,
    kind: str,
    change: Change,
    says: Says,
) -> None:
    crafted = tmp_path / "crafted.onnx"
    names = _craft(files[kind], crafted, change)
    scenes = quick_two_stage[1] / "test"
    image = scenes / "images" / sorted(p.name for p in (scenes / "images").iterdir())[0]
    at_detect, at_eval = says if isinstance(says, tuple) else (says, says)
    for message, args in (
        (at_detect, ("detect", crafted, image, "--json", "-o", tmp_path / "drawn")),
        (at_eval, ("eval", crafted, "--scenes", scenes)),
    ):
        result = _invoke(*args)
        assert "Traceback" not in result.output
        if message is None:
            assert result.exit_code == 0, result.output
            continue
        assert result.exit_code == 1, result.output
        assert message.format(**names) in result.output


def test_run_on_an_output_the_graph_lacks_is_an_error_not_a_traceback(
    files: dict[str, Path], tmp_path: Path
) -> None:
    # `run` read each output beside the metadata's entry for it: one entry too many was a
    # ValueError from zip() before the graph's outputs were checked when the file opens
    crafted = tmp_path / "crafted.onnx"
    _craft(files["ssd"], crafted, {"outputs": lambda o: [*o, {**o[0], "name": "more"}]})
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 48, 48), np.float32))
    result = _invoke("run", crafted, tmp_path / "x.npy")
    assert result.exit_code == 1, result.output
    assert "the metadata declares 2 outputs; the graph has 1" in result.output
