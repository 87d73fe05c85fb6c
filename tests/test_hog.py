"""HOG as a spec (issue 24): specs/hog_features.net equals scikit-image's
`hog(image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
block_norm='L2-Hys', feature_vector=False)`, its (blocks down, blocks across, 2, 2, 9) array
laid out as (2*2*9, blocks down, blocks across) maps, within 1e-3 on a photograph and on a
random image, through PyTorch and through ONNX Runtime (one file for every size); its
shapes, receptive fields and costs; `orientation_bins`' conventions on hand-made gradients;
located diagnostics for a cell larger than the image, a block larger than the grid of
cells and no orientation bins. scikit-image is a test dependency only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from skimage import data, feature, transform, util

import netspec
from netspec.compiler import Compiled
from netspec.diagnostics import SpecError
from netspec.export import export_compiled
from netspec.lower import to_torch
from netspec.lower.hog import OrientationBins
from netspec.ops import RF

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread

SPEC = Path(__file__).resolve().parent.parent / "specs" / "hog_features.net"
TOLERANCE = 1e-3  # the bound on the max abs difference from scikit-image
SKIMAGE_METHOD = {"l2hys": "L2-Hys", "l2": "L2", "l1": "L1", "l1sqrt": "L1-sqrt"}


def camera() -> np.ndarray:
    """scikit-image's cameraman, 512x512, resized to 128x128: pixels in 0..1."""
    image = util.img_as_float(data.camera())
    return transform.resize(image, (128, 128), anti_aliasing=True)


def noise(h: int = 128, w: int = 128) -> np.ndarray:
    return np.random.default_rng(0).random((h, w))


def skimage_hog(image: np.ndarray, method: str = "l2hys") -> np.ndarray:
    """scikit-image's HOG of ``image`` as the spec lays it out: (2*2*9, down, across)."""
    blocks = feature.hog(
        image,
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(2, 2),
        block_norm=SKIMAGE_METHOD[method],
        feature_vector=False,
    )
    down, across = blocks.shape[:2]
    return blocks.reshape(down, across, 2 * 2 * 9).transpose(2, 0, 1)


def through_torch(compiled: Compiled, image: np.ndarray) -> np.ndarray:
    module = to_torch(compiled).eval()
    with torch.no_grad():
        out = module(torch.tensor(image, dtype=torch.float32)[None, None])
    return np.asarray(out[0].numpy(), dtype=np.float64)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    """The spec exported with H and W left symbolic: one file for every image size."""
    path = tmp_path_factory.mktemp("hog") / "hog_features.onnx"
    report = export_compiled(netspec.compile(SPEC), path, log=lambda _: None)
    assert report.checks and all(c.ok for c in report.checks)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("image", [camera, noise], ids=["camera", "noise"])
def test_pytorch_equals_skimage(image: object) -> None:
    pixels = image()  # type: ignore[operator]
    got = through_torch(netspec.compile(SPEC, H=128, W=128), pixels)
    want = skimage_hog(pixels)
    assert got.shape == want.shape == (36, 15, 15)
    assert np.abs(got - want).max() <= TOLERANCE
    assert want.max() > 0.1  # a textured image: the blocks are not empty


@pytest.mark.parametrize(
    "pixels",
    [camera(), noise(), noise(100, 76)],
    ids=["camera", "noise", "noise-100x76"],
)
def test_onnx_runtime_equals_skimage(session: ort.InferenceSession, pixels: np.ndarray) -> None:
    (got,) = session.run(None, {"image": pixels.astype(np.float32)[None, None]})
    want = skimage_hog(pixels)
    assert got[0].shape == want.shape
    assert np.abs(got[0] - want).max() <= TOLERANCE


@pytest.mark.parametrize("method", ["l2", "l1", "l1sqrt"])
def test_the_other_block_norms_equal_skimage(method: str) -> None:
    text = SPEC.read_text(encoding="utf-8").replace("method=l2hys", f"method={method}")
    got = through_torch(netspec.compile(text, H=128, W=128), camera())
    assert np.abs(got - skimage_hog(camera(), method)).max() <= TOLERANCE


@pytest.mark.parametrize(
    ("gx", "gy", "bin"),
    [
        (1.0, 0.0, 0),  # 0 degrees
        (-1.0, 0.0, 0),  # 180 degrees is 0 again: unsigned
        (0.0, 1.0, 4),  # 90 degrees: [80, 100)
        (0.0, -1.0, 4),
        (1.0, 1.0, 2),  # 45 degrees: [40, 60)
        (-1.0, 1.0, 6),  # 135 degrees: [120, 140)
        (1.0, -1.0, 6),  # -45 degrees is 135
        (math.cos(math.radians(19.9)), math.sin(math.radians(19.9)), 0),
        (math.cos(math.radians(20.1)), math.sin(math.radians(20.1)), 1),
        (math.cos(math.radians(179.9)), math.sin(math.radians(179.9)), 8),
    ],
)
def test_orientation_bins_votes_the_magnitude_into_one_bin(gx: float, gy: float, bin: int) -> None:
    gradient = torch.tensor([gx, gy]).view(1, 2, 1, 1) * 3
    votes = OrientationBins(9)(gradient).flatten()
    want = torch.zeros(9)
    want[bin] = math.hypot(gx, gy) * 3
    torch.testing.assert_close(votes, want)


def test_shapes_receptive_fields_and_costs() -> None:
    compiled = netspec.compile(SPEC, H=128, W=128)
    layers = {layer.name: layer for layer in compiled.layers}
    shapes = {name: layer.shape for name, layer in layers.items()}
    assert shapes == {
        "gx.0": (1, 128, 126),
        "gx.1": (1, 128, 128),
        "gy.0": (1, 126, 128),
        "gy.1": (1, 128, 128),
        "concat1": (2, 128, 128),
        "orientation_bins1": (9, 128, 128),
        "avgpool1": (9, 16, 16),  # cells of 8x8
        "block_norm1": (36, 15, 15),  # a block at every cell but the last row and column
    }
    # the gradients see a pixel's neighbours; a cell 8 pixels and theirs; a block 2 cells
    assert layers["gx.1"].rf == RF(size=(1, 3), start=(0.5, 0.5))
    assert layers["gy.1"].rf == RF(size=(3, 1), start=(0.5, 0.5))
    assert layers["orientation_bins1"].rf == RF(size=(3, 3), start=(0.5, 0.5))
    assert layers["avgpool1"].rf == RF(size=(10, 10), jump=(8, 8), start=(4.0, 4.0))
    assert layers["block_norm1"].rf == RF(size=(18, 18), jump=(8, 8), start=(8.0, 8.0))
    assert layers["orientation_bins1"].macs == 128 * 128 * 2 * (9 + 1)
    assert layers["block_norm1"].macs == 36 * 15 * 15 * 4
    totals = compiled.totals
    assert (totals.trainable_params, totals.fixed_params) == (0, 6)
    assert totals.macs == 2 * 128 * 126 * 3 + 128 * 128 * 20 + 36 * 15 * 15 * 4


def test_any_size_stays_symbolic() -> None:
    compiled = netspec.compile(SPEC)
    assert compiled.inferred.layer("concat1").shape == (2, "H", "W")  # W-2, padded back to W
    assert compiled.inferred.layer("block_norm1").shape == (36, "(H-8)//8", "(W-8)//8")
    assert netspec.compile(SPEC, H=100, W=76).inferred.layer("block_norm1").shape == (36, 11, 8)


def _refusal(text: str, **sizes: int) -> tuple[str, int, int]:
    with pytest.raises(SpecError) as caught:
        netspec.compile(text, **sizes)
    first = caught.value.diagnostics[0]
    return first.message, first.span.line, first.span.col


def test_a_cell_larger_than_the_image_is_refused_at_the_pooling() -> None:
    message, line, col = _refusal(SPEC.read_text(encoding="utf-8"), H=6, W=6)
    assert "the window (8 wide, reach 8) is larger than the input (6)" in message
    assert (line, col) == (18, 5)


def test_a_block_larger_than_the_grid_of_cells_is_refused_at_block_norm() -> None:
    message, line, col = _refusal(SPEC.read_text(encoding="utf-8"), H=12, W=40)
    assert "a block of 2x2 cells is larger than the grid of cells (1x5)" in message
    assert (line, col) == (19, 5)


def test_no_orientation_bins_is_refused_at_the_count() -> None:
    text = SPEC.read_text(encoding="utf-8").replace("orientation_bins 9", "orientation_bins 0")
    message, line, col = _refusal(text)
    assert "bins must be greater than 0, got 0" in message
    assert (line, col) == (17, 39)


def test_orientation_bins_reads_two_gradient_maps() -> None:
    text = SPEC.read_text(encoding="utf-8").replace("concat(gx, gy) |", "gx |")
    message, line, col = _refusal(text)
    assert "orientation_bins reads 2 gradient maps (gx, then gy), got 1xHxW" in message
    assert (line, col) == (17, 10)
