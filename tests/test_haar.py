"""Viola-Jones' Haar-like features as fixed kernels (issue 24): specs/haar_features.net
equals scikit-image's `haar_like_feature(integral_image(window), 0, 0, 24, 24,
feature_type=..., feature_coord=...)` for the same rectangles, each of the 5 types at every
place its box fits in the window, within 1e-5, on a random window and on a photograph's,
through PyTorch and through ONNX Runtime; its shapes, receptive fields and costs; a feature
larger than the window refused where its convolution is. scikit-image is a test dependency
only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from skimage import data, feature, transform, util

import netspec
from netspec.diagnostics import SpecError
from netspec.export import export_compiled
from netspec.lower import to_torch
from netspec.ops import RF

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread

SPEC = Path(__file__).resolve().parent.parent / "specs" / "haar_features.net"
TOLERANCE = 1e-5  # the bound
WINDOW = 24
# each output's channels: scikit-image's type and the box (height, width) of its kernel
OUTPUTS = {
    "square": [(t, (6, 6)) for t in ("type-2-x", "type-2-y", "type-3-x", "type-3-y", "type-4")],
    "wide": [(t, (4, 12)) for t in ("type-2-x", "type-2-y", "type-3-x", "type-4")],
}


def rectangles(kind: str, r: int, c: int, h: int, w: int) -> list[list[tuple[int, int]]]:
    """scikit-image's rectangles (inclusive corners) of a feature of type ``kind`` whose
    h x w box has its top-left corner at (r, c), in scikit-image's order."""
    if kind == "type-4":
        hh, hw = h // 2, w // 2
        tops = [(r, c), (r, c + hw), (r + hh, c + hw), (r + hh, c)]
        return [[top, (top[0] + hh - 1, top[1] + hw - 1)] for top in tops]
    parts = int(kind[5])
    along_x = kind.endswith("x")
    step = w // parts if along_x else h // parts
    tops = [(r, c + k * step) if along_x else (r + k * step, c) for k in range(parts)]
    size = (h - 1, step - 1) if along_x else (step - 1, w - 1)
    return [[top, (top[0] + size[0], top[1] + size[1])] for top in tops]


def skimage_map(window: np.ndarray, kind: str, box: tuple[int, int]) -> np.ndarray:
    """The feature at every place its box fits in the window: scikit-image's values for
    the rectangles at each top-left corner (r, c), as a map."""
    h, w = box
    down, across = WINDOW - h + 1, WINDOW - w + 1
    coords = np.empty(down * across, dtype=object)
    coords[:] = [rectangles(kind, r, c, h, w) for r in range(down) for c in range(across)]
    kinds = np.array([kind] * len(coords), dtype=object)
    integral = transform.integral_image(window)
    values = feature.haar_like_feature(
        integral, 0, 0, WINDOW, WINDOW, feature_type=kinds, feature_coord=coords
    )
    return np.asarray(values, dtype=np.float64).reshape(down, across)


def photograph() -> np.ndarray:
    """A 24x24 crop of scikit-image's astronaut in grey (her face), pixels in 0..1."""
    grey = util.img_as_float(data.astronaut()).mean(axis=2)
    return grey[100:148, 180:228][::2, ::2].copy()


def noise() -> np.ndarray:
    return np.random.default_rng(0).random((WINDOW, WINDOW))


WINDOWS = {"photograph": photograph, "noise": noise}


def check(outputs: dict[str, np.ndarray], window: np.ndarray) -> None:
    for name, channels in OUTPUTS.items():
        for channel, (kind, box) in enumerate(channels):
            got = outputs[name][channel]
            np.testing.assert_allclose(got, skimage_map(window, kind, box), rtol=0, atol=TOLERANCE)


def test_the_rectangles_are_scikit_images_own() -> None:
    """`rectangles` lays boxes out as `haar_like_feature_coord` does for each type."""
    for kind in ("type-2-x", "type-2-y", "type-3-x", "type-3-y", "type-4"):
        coords, _ = feature.haar_like_feature_coord(6, 6, kind)
        listed = [[tuple(map(tuple, rect)) for rect in c] for c in coords]
        assert [tuple(map(tuple, rect)) for rect in rectangles(kind, 0, 0, 6, 6)] in listed


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_pytorch_equals_skimage(name: str) -> None:
    window = WINDOWS[name]()
    module = to_torch(netspec.compile(SPEC)).eval()
    with torch.no_grad():
        square, wide = module(torch.tensor(window, dtype=torch.float32)[None, None])
    check({"square": square[0].double().numpy(), "wide": wide[0].double().numpy()}, window)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    path = tmp_path_factory.mktemp("haar") / "haar_features.onnx"
    report = export_compiled(netspec.compile(SPEC), path, log=lambda _: None)
    assert report.checks and all(c.ok for c in report.checks)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_onnx_runtime_equals_skimage(session: ort.InferenceSession, name: str) -> None:
    window = WINDOWS[name]()
    feed = {session.get_inputs()[0].name: window.astype(np.float32)[None, None]}
    names = [o.name for o in session.get_outputs()]
    assert names == ["square", "wide"]
    square, wide = session.run(None, feed)
    check({"square": square[0].astype(np.float64), "wide": wide[0].astype(np.float64)}, window)


def test_shapes_receptive_fields_and_costs() -> None:
    compiled = netspec.compile(SPEC)
    layers = {layer.name: layer for layer in compiled.layers}
    assert {name: layer.shape for name, layer in layers.items()} == {
        "square": (5, 19, 19),  # a 6x6 box fits at 19x19 places of the window
        "wide": (4, 21, 13),
    }
    # a feature sees its box; a kernel reads every pixel of it
    assert layers["square"].rf == RF(size=(6, 6), start=(3.0, 3.0))
    assert layers["wide"].rf == RF(size=(4, 12), start=(2.0, 6.0))
    assert layers["square"].macs == 5 * 19 * 19 * 36
    assert layers["wide"].macs == 4 * 21 * 13 * 48
    totals = compiled.totals
    assert (totals.trainable_params, totals.fixed_params) == (0, 5 * 36 + 4 * 48)


def test_a_feature_larger_than_the_window_is_refused_at_its_convolution() -> None:
    row = " ".join(["-1"] * 13 + ["1"] * 13)
    text = (
        f"kernel huge = [{row}]\n"
        "network haar(window: 1x24x24) {\n"
        "    window | conv fixed=[huge]\n"
        "}\n"
    )
    with pytest.raises(SpecError) as caught:
        netspec.compile(text)
    first = caught.value.diagnostics[0]
    assert "larger than the input (24)" in first.message
    assert (first.span.line, first.span.col) == (3, 14)
