"""`netspec detect` and netspec.runtime.detect: score maps to boxes (hand-made maps), and a
detector whose answer is known (a window classifier built by hand to score bright 8x8
squares, made fully convolutional) run on synthetic images: its JSON, its drawn boxes'
pixels, the pyramid's mapping back, bad inputs, and no torch at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import netspec
from netspec.cli import main
from netspec.detection.paint import PALETTE
from netspec.errors import UsageError
from netspec.export.fcn import export_fcn
from netspec.lower import to_torch
from netspec.runtime.decoders.sliding_window import SlidingWindow, decode_map
from netspec.runtime.detect import DetectOptions

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
# One dense stage straight on an 8x8 window: as an FCN, a window at every pixel.
BRIGHT = "network bright(image: 1x8x8) {\n    dense 2\n}\n"
SLOPE = 0.1  # logit of "square" = SLOPE * (white pixels - 32); background's is 0


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An FCN that scores a window by how much of it is white: a full 8x8 white square
    gets sigmoid(3.2) = 0.961, half of one 0.5, black 0.04."""
    compiled = netspec.compile(BRIGHT)
    module = to_torch(compiled)
    with torch.no_grad():
        dense = module.get_submodule("dense1")
        assert isinstance(dense, torch.nn.Linear)
        dense.weight.zero_()
        dense.weight[0] = SLOPE
        dense.bias.copy_(torch.tensor([-32 * SLOPE, 0.0]))
    path = tmp_path_factory.mktemp("detector") / "bright.onnx"
    export_fcn(compiled, path, module, labels=("square", "background"), log=lambda _: None)
    return path


def scene(tmp_path: Path, squares: list[tuple[int, int, int]], name: str = "scene.png") -> Path:
    """A black 48x64 image with white squares (x, y, side), as a PNG."""
    pixels = np.zeros((48, 64), np.uint8)
    for x, y, side in squares:
        pixels[y : y + side, x : x + side] = 255
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


# ---- score maps to boxes, by hand -------------------------------------------------------

WINDOW = SlidingWindow(
    window=(8, 8), size=(8, 8), jump=(4, 4), start=(4, 4), scores="probabilities", background=2
)


def test_a_score_map_becomes_boxes_through_start_jump_and_scale() -> None:
    probs = np.zeros((3, 2, 3), np.float32)
    probs[2] = 1.0  # background everywhere ...
    probs[:, 1, 2] = (0.9, 0.05, 0.05)  # ... but class 0 at row 1, column 2
    probs[:, 0, 0] = (0.3, 0.1, 0.6)  # class 0 likelier than class 1, below threshold
    found = decode_map(probs, WINDOW, (1.0, 1.0), threshold=0.5)
    assert found.boxes.tolist() == [[8.0, 4.0, 16.0, 12.0]]  # centre: x 4 + 2*4, y 4 + 1*4
    assert found.classes.tolist() == [0] and found.scores.tolist() == pytest.approx([0.9])


def test_a_smaller_scale_maps_boxes_back_larger() -> None:
    probs = np.zeros((3, 2, 3), np.float32)
    probs[2] = 1.0
    probs[:, 1, 2] = (0.1, 0.8, 0.1)
    found = decode_map(probs, WINDOW, (0.5, 0.25), threshold=0.5)
    # centre at scale: y = 4 + 1*4 = 8, x = 4 + 2*4 = 12; back: y 16, x 48; 16 x 32 across
    assert found.boxes.tolist() == [[32.0, 8.0, 64.0, 24.0]]
    assert found.classes.tolist() == [1]


def test_logits_are_made_probabilities_and_the_background_is_never_a_box() -> None:
    logits = np.zeros((3, 1, 2), np.float32)
    logits[:, 0, 0] = (0.0, 0.0, 9.0)  # background wins: no box, whatever the threshold
    logits[:, 0, 1] = (np.log(3.0), 0.0, 0.0)  # softmax: 3/5 for class 0
    window = SlidingWindow((8, 8), (8, 8), (4, 4), (4, 4), "logits", background=2)
    found = decode_map(logits, window, (1.0, 1.0), threshold=0.0)
    assert found.classes.tolist() == [0, 0]
    assert found.scores.tolist() == pytest.approx([1 / (2 + np.exp(9.0)), 0.6], rel=1e-5)
    assert len(decode_map(logits, window, (1.0, 1.0), threshold=0.59)) == 1


def test_detect_options_refuse_what_makes_no_sense() -> None:
    for bad in (dict(threshold=1.5), dict(iou=-0.1), dict(scales=()), dict(scales=(0.0,))):
        with pytest.raises(UsageError):
            DetectOptions(**bad)  # type: ignore[arg-type]


# ---- the known detector, end to end ----------------------------------------------------


def test_detect_prints_the_square_exactly_as_json(detector: Path, tmp_path: Path) -> None:
    image = scene(tmp_path, [(20, 12, 8)])
    result = invoke("detect", detector, image, "--json", "--scales", "1", "--threshold", "0.6")
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)
    assert record["input"] == str(image) and record["size"] == [48, 64]
    assert record["file"] is None  # --json alone draws nothing
    [box] = record["detections"]
    assert box["xyxy"] == [20.0, 12.0, 28.0, 20.0]
    assert box["label"] == "square" and box["class"] == 0
    assert box["score"] == pytest.approx(1 / (1 + np.exp(-32 * SLOPE)), abs=1e-4)


def test_the_pyramid_finds_a_square_twice_the_window(detector: Path, tmp_path: Path) -> None:
    image = scene(tmp_path, [(24, 20, 16)])
    result = invoke("detect", detector, image, "--json", "--scales", "0.5", "--threshold", "0.6")
    assert result.exit_code == 0, result.output
    boxes = [d["xyxy"] for d in json.loads(result.stdout)[0]["detections"]]
    assert boxes == [[24.0, 20.0, 40.0, 36.0]]


def test_detect_draws_each_box_in_its_class_colour(detector: Path, tmp_path: Path) -> None:
    first = scene(tmp_path, [(20, 30, 8)], "a.png")
    second = scene(tmp_path, [], "b.png")
    out = tmp_path / "drawn"
    result = invoke("detect", detector, first, second, "-o", out, "--scales", "1")
    assert result.exit_code == 0, result.output
    assert f"{first}: 1 box -> {out / 'a.png'}" in result.stdout
    assert f"{second}: 0 boxes" in result.stdout
    assert "square 0.961 at (20, 30)-(28, 38)" in result.stdout
    drawn = np.asarray(Image.open(out / "a.png").convert("RGB"))
    assert drawn.shape == (48, 64, 3)
    colour = list(PALETTE[0])
    assert (drawn[37, 20:28] == colour).all()  # the bottom edge, x 20..27
    assert (drawn[30:38, 27] == colour).all()  # the right edge
    assert (drawn[33, 23] == 255).all()  # inside: the white square as it was
    assert (drawn[5, 60] == 0).all() and (drawn[45, 5] == 0).all()  # black far away
    assert (drawn[30 - 3, 22] == colour).all()  # the label's background, above the box
    plain = np.asarray(Image.open(out / "b.png").convert("RGB"))
    assert (plain == 0).all()  # nothing found, nothing drawn


def test_bad_inputs_are_clear_errors(detector: Path, tmp_path: Path) -> None:
    image = scene(tmp_path, [(20, 12, 8)])
    out = tmp_path / "out"
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    classifier = tmp_path / "classifier.onnx"
    spec = tmp_path / "bright.net"
    spec.write_text(BRIGHT)
    assert invoke("export", spec, "-o", classifier).exit_code == 0
    cases = [
        ((detector, tmp_path / "missing.png"), 1, "no such file"),
        ((detector, tmp_path / "broken.png"), 1, "cannot read image"),
        ((classifier, image), 1, "not a detector (its output is logits)"),
        ((tmp_path / "none.onnx", image), 1, "no such file"),
        ((image, image), 1, "not a valid ONNX model"),
        ((detector, image, "--threshold", "1.5"), 2, "--threshold"),
        ((detector, image, "--threshold", "nan"), 2, "threshold nan"),
        ((detector, image, "--scales", "1,x"), 2, "--scales"),
        ((detector, image, "--scales", "0"), 2, "above 0"),
        ((detector, image, "--scales", "100"), 2, "at most 16"),
    ]
    for args, code, says in cases:
        result = invoke("detect", *args, "-o", out)
        assert result.exit_code == code, (args, result.output)
        assert says in result.output, (args, result.output)
    assert not out.exists()


def test_detect_imports_no_torch(detector: Path, tmp_path: Path) -> None:
    image = scene(tmp_path, [(20, 12, 8)])
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['netspec', 'detect', {str(detector)!r}, {str(image)!r}, '--json']\n"
        "try:\n"
        "    runpy.run_module('netspec', run_name='__main__')\n"
        "finally:\n"
        "    assert 'torch' not in sys.modules, 'detect imported torch'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["detections"][0]["label"] == "square"


# ---- netspec eval on scenes -------------------------------------------------------------


def square_scenes(directory: Path) -> Path:
    """Four 48x64 scenes of white squares of class 0 (8 and 16 pixels), written as
    `netspec scenes` writes them."""
    from netspec.data.scenefiles import write_scenes
    from netspec.data.scenes import Scene

    made = []
    for squares in ([(4, 4, 8)], [(30, 20, 8), (8, 28, 8)], [(40, 6, 16)], []):
        pixels = np.zeros((48, 64), np.uint8)
        for x, y, side in squares:
            pixels[y : y + side, x : x + side] = 255
        boxes = np.array([[x, y, x + s, y + s] for x, y, s in squares], np.float32).reshape(-1, 4)
        made.append(Scene(pixels, boxes, np.zeros(len(squares), np.int64)))
    write_scenes(directory, made, None)
    return directory


def test_eval_on_scenes_writes_the_metrics_and_the_pictures(detector: Path, tmp_path: Path) -> None:
    scenes = square_scenes(tmp_path / "scenes")
    result = invoke("eval", detector, "--scenes", scenes)
    assert result.exit_code == 0, result.output
    out = detector.parent / f"{detector.stem}-eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["count"] == 4 and set(metrics["per_class"]) == {"square"}
    # every square is found at scale 1, but the pyramid's scale 2 adds quarter-size boxes
    # inside the 8-pixel squares that score as high (a window full of white): AP about 0.53
    assert 0.4 < metrics["mAP@0.5"] < 1 and metrics["mAP@0.5:0.95"] <= metrics["mAP@0.5"]
    assert f"mAP@0.5 {metrics['mAP@0.5']:.3f}" in result.stdout
    grid = np.asarray(Image.open(out / "detections.png").convert("RGB"))
    assert (grid == (0, 150, 255)).all(axis=2).any()  # a detection that matched (blue)
    pr = np.asarray(Image.open(out / "pr.png").convert("RGB"))
    assert pr.shape[:2] == (500, 600) and (pr != 255).any()


def test_eval_of_a_detector_needs_scenes(detector: Path, tmp_path: Path) -> None:
    result = invoke("eval", detector)
    assert result.exit_code == 2 and "--scenes DIR" in result.output
    result = invoke("eval", detector, "--scenes", tmp_path)
    assert result.exit_code == 1 and "no images/ directory" in result.output
