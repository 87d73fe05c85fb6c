"""HOG and a linear classifier (issue 24): specs/hog_digits.net, the lecture's pedestrian
detector on digits, made a sliding window by the fully convolutional conversion (the
orientation bins and block norms slide as they are); specs/hog_mnist.net, whose features
are scikit-image's `hog` with cells of 4x4 pixels; `netspec show`'s HOG pictures (the
gradients and the glyphs, read back from the PNG's pixels); located diagnostics for a cell
larger than the image and a block larger than the grid of cells, through the command."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import feature

import netspec
from netspec.export.fcn import ATOL, fcn_module, fully_convolutional, windows
from netspec.lower import to_torch
from netspec.ops import RF
from netspec.probe import open_probe
from netspec.show import hog

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
DIGITS = SPECS / "hog_digits.net"
MNIST = SPECS / "hog_mnist.net"


def _netspec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netspec", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _digit_like() -> np.ndarray:
    """A 28x28 "7" in [0, 1]: a bar across the top and a slanted stroke down."""
    image = np.zeros((28, 28))
    image[5:8, 6:22] = 1.0
    for row in range(8, 24):
        col = 21 - (row - 8) // 2
        image[row, col - 1 : col + 2] = 1.0
    return image


# ---- specs/hog_digits.net: HOG + one dense layer, a sliding window ----------------------


def test_hog_digits_is_hog_and_one_dense_layer() -> None:
    compiled = netspec.compile(DIGITS)
    layers = {layer.name: layer for layer in compiled.layers}
    assert {name: layer.shape for name, layer in layers.items()} == {
        "conv1": (2, 26, 26),  # gx, gy where the central difference is defined
        "orientation_bins1": (9, 26, 26),
        "avgpool1": (9, 6, 6),  # cells of 6x6 gradients every 4: all 26 covered
        "block_norm1": (36, 5, 5),  # 900 features
        "dense1": (11,),
    }
    # a cell sees 8x8 pixels (6 and the kernel's reach); a block 12x12 every 4
    assert layers["avgpool1"].rf == RF(size=(8, 8), jump=(4, 4), start=(4.0, 4.0))
    assert layers["block_norm1"].rf == RF(size=(12, 12), jump=(4, 4), start=(6.0, 6.0))
    totals = compiled.totals
    assert (totals.trainable_params, totals.fixed_params) == (900 * 11 + 11, 18)


def test_hog_digits_slides_as_its_classifier_on_a_scene() -> None:
    """The FCN's scores at each position equal the classifier's on that 28x28 window of a
    randomized scene: the bins and the block norms convert as they are."""
    from netspec.data.scenes import DigitPool, SceneConfig, make_scene

    digits = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    pool = DigitPool(digits, np.arange(20, dtype=np.int64) % 10)
    scene = make_scene(SceneConfig.randomized(), pool, 0)
    compiled = netspec.compile(DIGITS)
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    fcn = fully_convolutional(compiled)
    assert fcn.converted == ("dense1",)
    assert (fcn.window, fcn.jump, fcn.rf.size) == ((28, 28), (4, 4), (28, 28))
    image = (scene.image.astype(np.float32) / 255)[None, None]
    with torch.no_grad():
        scores = fcn_module(fcn, module)(torch.from_numpy(image)).numpy()[0]
        crops = windows(image, fcn.window, fcn.jump)
        rows, cols = crops.shape[:2]
        flat = torch.from_numpy(crops.reshape(rows * cols, *crops.shape[2:]))
        want = module(flat).numpy().T.reshape(-1, rows, cols)
    assert want.shape == scores.shape == (11, 26, 26)
    assert np.abs(scores - want).max() <= ATOL * max(1.0, float(np.abs(want).max()))


def test_hog_digits_converts_through_the_command(tmp_path: Path) -> None:
    out = tmp_path / "fcn.onnx"
    result = _netspec("convert", str(DIGITS), "--fully-convolutional", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "dense stages as convolutions: dense1; window 28x28, stride 4x4" in result.stderr
    assert "the FCN against the classifier on each of 676 windows" in result.stderr
    assert out.is_file()


# ---- specs/hog_mnist.net: scikit-image's HOG with 4x4 cells, and a linear classifier ------


@pytest.mark.parametrize(
    "image",
    [_digit_like(), np.random.default_rng(1).random((28, 28))],
    ids=["digit", "noise"],
)
def test_hog_mnist_features_are_skimages_hog(image: np.ndarray) -> None:
    text = MNIST.read_text(encoding="utf-8")
    features = "\n".join(line for line in text.splitlines() if "dense 10" not in line)
    module = to_torch(netspec.compile(features)).eval()
    with torch.no_grad():
        got = module(torch.tensor(image, dtype=torch.float32)[None, None])[0].numpy()
    blocks = feature.hog(
        image,
        orientations=9,
        pixels_per_cell=(4, 4),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        feature_vector=False,
    )
    want = blocks.reshape(6, 6, 36).transpose(2, 0, 1)
    assert got.shape == want.shape == (36, 6, 6)
    assert np.abs(got - want).max() <= 1e-3
    compiled = netspec.compile(MNIST)
    assert (compiled.totals.trainable_params, compiled.totals.fixed_params) == (12_970, 6)


# ---- netspec show: the gradients and the glyphs ------------------------------------------


def _edge(vertical: bool) -> np.ndarray:
    """64x64: dark left (top) half, bright right (bottom) half."""
    image = np.zeros((64, 64), np.float32)
    image[:, 32:] = 1.0
    return image if vertical else np.ascontiguousarray(image.T)


def _glyphs(tmp_path: Path, image: np.ndarray) -> tuple[np.ndarray, dict[str, object]]:
    """hog-glyphs.png for hog_features.net on `image`: the glyph panel's pixels as the file
    has them (lit: brighter than half), and what the picture says it drew."""
    probe = open_probe(SPECS / "hog_features.net", overrides={"H": 64, "W": 64})
    outputs = probe.run(probe.prepare(image))
    stage = hog.hog_stage(probe)
    assert stage is not None and stage.cells is not None
    assert (stage.bins.name, stage.cells.name) == ("orientation_bins1", "avgpool1")
    drawn = hog.draw_glyphs(stage, outputs, image, tmp_path)
    assert drawn is not None and drawn.path.name == "hog-glyphs.png"
    top, left = drawn.data["origin"]  # type: ignore[misc]
    scale = int(drawn.data["scale"])  # type: ignore[call-overload]
    pixels = np.asarray(Image.open(drawn.path).convert("L"), np.float32) / 255
    side = 64 * scale
    panel = pixels[top : top + side, left : left + side] > 0.5
    np.testing.assert_array_equal(panel, drawn.data["glyphs"] > 0.5)  # placed pixel for pixel
    return panel, drawn.data


def _segment_angle(lit: np.ndarray) -> float:
    """The direction of the lit pixels' principal axis, degrees from the rows' axis (0:
    vertical, 90: horizontal)."""
    rows, cols = np.nonzero(lit)
    cov = np.cov(np.stack([rows, cols]).astype(np.float64))
    values, vectors = np.linalg.eigh(cov)
    dr, dc = vectors[:, int(np.argmax(values))]
    return math.degrees(math.atan2(abs(dc), abs(dr)))


@pytest.mark.parametrize("vertical", [True, False], ids=["vertical", "horizontal"])
def test_an_edge_gives_glyphs_along_it_in_its_cells_only(tmp_path: Path, vertical: bool) -> None:
    panel, data = _glyphs(tmp_path, _edge(vertical))
    scale = int(data["scale"])  # type: ignore[call-overload]
    cell = 8 * scale  # 8x8-pixel cells, no overlap
    found = {}
    for i in range(8):
        for j in range(8):
            lit = panel[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell]
            if lit.any():
                found[(i, j)] = _segment_angle(lit)
    # the edge's gradient is at pixels 31 and 32 across it: cells 3 and 4 of every row
    across = {(i, j) if vertical else (j, i) for i in range(8) for j in (3, 4)}
    assert set(found) == across
    # along the edge, at its bin's centre: a gradient across (0 degrees) is in bin 0, [0, 20),
    # drawn 10 degrees off the vertical; one downwards (90) in bin 4, [80, 100): horizontal
    for angle in found.values():
        assert abs(angle - (10.0 if vertical else 90.0)) < 3.0, found


def test_overlapping_cells_put_their_glyphs_at_their_fields(tmp_path: Path) -> None:
    """hog_digits' cells (6x6 gradients every 4, unpadded): an edge at column 14 has its
    gradient at image columns 13 and 14, inside cells 2 and 3 (image columns 8..15 and
    12..19 with the kernel's reach), whose stars are centred at columns 12 and 16."""
    image = np.zeros((28, 28), np.float32)
    image[:, 14:] = 1.0
    probe = open_probe(DIGITS)
    stage = hog.hog_stage(probe)
    assert stage is not None and stage.cells is not None
    drawn = hog.draw_glyphs(stage, probe.run(probe.prepare(image)), image, tmp_path)
    assert drawn is not None
    scale = int(drawn.data["scale"])  # type: ignore[call-overload]
    rows, cols = np.nonzero(drawn.data["glyphs"])
    assert rows.min() < 4 * scale and rows.max() > 24 * scale  # every row of cells
    near = np.minimum(np.abs(cols / scale - 12), np.abs(cols / scale - 16))
    assert near.max() <= 0.4  # 1.8 pixels each way, 10 degrees off the vertical
    assert {12, 16} == {round(c / scale) for c in cols}


def test_the_gradients_picture_shows_gx_gy_and_the_orientation(tmp_path: Path) -> None:
    image = _edge(vertical=True)
    probe = open_probe(SPECS / "hog_features.net", overrides={"H": 64, "W": 64})
    outputs = probe.run(probe.prepare(image))
    stage = hog.hog_stage(probe)
    assert stage is not None and stage.gradients is not None
    drawn = hog.draw_gradients(stage, outputs, tmp_path)
    assert drawn is not None and drawn.path.name == "hog-gradients.png"
    gx, gy = drawn.data["gx"], drawn.data["gy"]
    assert np.nonzero(gx.any(axis=0))[0].tolist() == [31, 32]  # I[c+1] - I[c-1]
    np.testing.assert_array_equal(gx[:, 31:33], 1.0)
    assert not gy.any()
    assert drawn.data["orientation"][:, 31:33].max() == 0.0  # a horizontal gradient


def test_show_draws_the_hog_pictures_of_hog_digits(tmp_path: Path) -> None:
    image = tmp_path / "seven.png"
    Image.fromarray((_digit_like() * 255).astype(np.uint8)).save(image)
    out = tmp_path / "pics"
    result = _netspec("show", str(DIGITS), "--input", str(image), "-o", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("hog-gradients.png", "hog-glyphs.png"):
        assert f"wrote {out / name}" in result.stdout
        pixels = np.asarray(Image.open(out / name).convert("L"))
        assert pixels.std() > 5, name  # drawn, not blank


def test_no_orientation_bins_no_hog_pictures() -> None:
    assert hog.hog_stage(open_probe(SPECS / "lenet.net")) is None


# ---- bad input: located diagnostics through the command -----------------------------------


def _place(text: str, at: str) -> tuple[int, int]:
    """The line and column (from 1) where `at` starts in the spec's code, not a comment."""
    for line, row in enumerate(text.splitlines(), 1):
        code = row.split("#")[0]
        if at in code:
            return line, code.index(at) + 1
    raise AssertionError(f"{at!r} is not in the spec")


@pytest.mark.parametrize(
    ("spec", "change", "sets", "at", "says"),
    [
        (
            "hog_features.net",
            None,
            ("H=6", "W=6"),
            "avgpool 8x8",
            "the window (8 wide, reach 8) is larger than the input (6)",
        ),
        (
            "hog_features.net",
            None,
            ("H=12", "W=40"),
            "block_norm 2x2",
            "a block of 2x2 cells is larger than the grid of cells (1x5)",
        ),
        (
            "hog_digits.net",
            ("avgpool 6x6 stride=4", "avgpool 32x32"),
            (),
            "avgpool 32x32",
            "the window (32 wide, reach 32) is larger than the input (26)",
        ),
        (
            "hog_digits.net",
            ("block_norm 2x2", "block_norm 7x7"),
            (),
            "block_norm 7x7",
            "a block of 7x7 cells is larger than the grid of cells (6x6)",
        ),
    ],
    ids=["cell-over-image", "block-over-grid", "digits-cell", "digits-block"],
)
def test_a_cell_or_block_too_large_is_a_located_error(
    tmp_path: Path,
    spec: str,
    change: tuple[str, str] | None,
    sets: tuple[str, ...],
    at: str,
    says: str,
) -> None:
    """`netspec compile` exits 1 with the error at the pooling (the cell) or at `block_norm`
    (FILE:LINE:COL of the operation), and no traceback."""
    path = SPECS / spec
    text = path.read_text(encoding="utf-8")
    if change is not None:
        assert change[0] in text
        text = text.replace(change[0], change[1])
        path = tmp_path / spec
        path.write_text(text, encoding="utf-8")
    line, col = _place(text, at)
    args = [arg for value in sets for arg in ("--set", value)]
    result = _netspec("compile", str(path), *args)
    assert result.returncode == 1
    assert f"{spec}:{line}:{col}: error[E301]" in result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
