"""A two-stage detector's stages drawn (issue 23): `netspec show RUN --input SCENE` writes
proposals.png, the RPN's best anchors, the proposals shaded by score and the detections side
by side, on a Faster R-CNN run trained here for seconds (tests/test_faster_rcnn.py's QUICK
and its `trained` fixture); each box is checked in the picture's pixels against the run's
PyTorch module (anchors, RoI rows, decoded detections). `netspec serve` on the run sends the
same proposals and anchors with every answer (a real server on 127.0.0.1), and the page
draws them in headless Chromium.
"""

from __future__ import annotations

import base64
import doctest
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import netspec
from netspec.data.scenefiles import read_scenes
from netspec.detection.paint import class_colour
from netspec.export.detection import decoded
from netspec.export.layers import Taps
from netspec.lower import to_torch
from netspec.lower.proposals import Proposals
from netspec.lower.weights import load_weights
from netspec.probe.regions import TOP_ANCHORS, regions_of
from netspec.show import proposals as drawing
from netspec.show.proposals import GAP, PANEL, TITLE, WIDTH, shade
from tests.chromium import open_page
from tests.test_faster_rcnn import QUICK, _invoke, trained
from tests.test_serve import Server, serving
from tests.test_serve_browser import browser

__all__ = ["browser", "trained"]  # module fixtures, shared with the modules they come from

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
SIZE = 48  # QUICK's scenes
COLOUR_SLACK = 3  # a shade's channels: ONNX Runtime's scores against PyTorch's


class Truth:
    """What the run's PyTorch module computes for one scene: the RoI rows that hold a box,
    the RPN's best anchors (their corners as the module places them, and scores) and the
    decoded detections of at least QUICK's threshold."""

    def __init__(self, run: Path, pixels: np.ndarray) -> None:
        compiled = netspec.compile(QUICK)
        module = to_torch(compiled)
        load_weights(run / "weights" / "best.safetensors", module)
        module.eval()
        x = torch.from_numpy((pixels / 255.0).astype(np.float32)[None, None])
        with torch.no_grad():
            _, layers = Taps(module, compiled.graph)(x)
            found = decoded(compiled, module)(x)[0].numpy()
        rows = layers["rois"][0].numpy()
        self.rois = rows[rows[:, 4] >= 0]
        (rpn,) = [m for m in module.modules() if isinstance(m, Proposals)]
        cx, cy, w, h = rpn.anchors.numpy().T
        corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        logits = layers["objectness"][0].numpy().transpose(1, 2, 0).reshape(-1)
        scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
        self.best = np.argsort(-scores, kind="stable")[:TOP_ANCHORS]
        self.anchors, self.anchor_scores = corners[self.best], scores[self.best]
        self.detections = found[(found[:, 5] >= 0) & (found[:, 4] >= 0.05)]


@pytest.fixture(scope="module")
def scene(trained: tuple[Path, Path]) -> np.ndarray:
    """The first test scene with two digits (its boxes are the most to see)."""
    scenes = read_scenes(trained[1] / "test").scenes
    return next((s.image for s in scenes if len(s.classes) == 2), scenes[0].image)


@pytest.fixture(scope="module")
def truth(trained: tuple[Path, Path], scene: np.ndarray) -> Truth:
    return Truth(trained[0], scene)


# ---- netspec show ---------------------------------------------------------------------------


def _panel(sheet: np.ndarray, k: int, zoom: int) -> np.ndarray:
    side = SIZE * zoom
    left, top = GAP + k * (side + GAP), GAP + TITLE
    return sheet[top : top + side, left : left + side]


def _ring(box: np.ndarray, zoom: int, shape: tuple[int, ...], slack: int = 1) -> np.ndarray:
    """The pixels of a box's outline as the painter draws it (`WIDTH` wide, inside the
    box's pixel edges), give or take ``slack``."""
    x1, y1, x2, y2 = (float(v) * zoom for v in box)
    outer = np.zeros(shape[:2], bool)
    inner = np.zeros(shape[:2], bool)
    top, bottom = max(math.floor(y1) - slack, 0), max(math.ceil(y2) + slack, 0)
    left, right = max(math.floor(x1) - slack, 0), max(math.ceil(x2) + slack, 0)
    outer[top:bottom, left:right] = True
    a, b = math.ceil(y1) + WIDTH + slack, math.floor(y2) - 1 - WIDTH - slack
    c, d = math.ceil(x1) + WIDTH + slack, math.floor(x2) - 1 - WIDTH - slack
    if a <= b and c <= d:
        inner[max(a, 0) : max(b + 1, 0), max(c, 0) : max(d + 1, 0)] = True
    return outer & ~inner


def _coloured(panel: np.ndarray) -> np.ndarray:
    """Pixels that are not grey: boxes on a grey scene."""
    p = panel.astype(int)
    return (p[..., 0] != p[..., 1]) | (p[..., 1] != p[..., 2])


def _near(panel: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> int:
    """How many of the pixels at ``where`` have ``colour``, give or take COLOUR_SLACK."""
    close = (np.abs(panel.astype(int) - np.asarray(colour)) <= COLOUR_SLACK).all(-1)
    return int((close & where).sum())


def _check_shaded(panel: np.ndarray, boxes: np.ndarray, scores: np.ndarray, zoom: int) -> None:
    """Every coloured pixel lies on one of the boxes' outlines; every box shows in its
    score's shade; the best one (drawn last) along all its edges in the panel."""
    rings = [_ring(b, zoom, panel.shape) for b in boxes]
    union = np.logical_or.reduce(rings)
    assert not (_coloured(panel) & ~union).any(), "a box drawn that is not in the rows"
    for k, (ring, score) in enumerate(zip(rings, scores, strict=True)):
        assert _near(panel, ring, shade(float(score))) > 0, f"box {k} not drawn"
    exact = _ring(boxes[0], zoom, panel.shape, slack=0)
    assert _near(panel, exact, shade(float(scores[0]))) >= 0.4 * exact.sum()


def test_show_draws_the_anchors_the_proposals_and_the_detections(
    trained: tuple[Path, Path], scene: np.ndarray, truth: Truth, tmp_path: Path
) -> None:
    Image.fromarray(scene).save(tmp_path / "scene.png")
    result = _invoke("show", trained[0], "--input", tmp_path / "scene.png", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'out' / 'proposals.png'}" in result.output
    sheet = np.asarray(Image.open(tmp_path / "out" / "proposals.png").convert("RGB"))
    zoom = math.ceil(PANEL / SIZE)
    side = SIZE * zoom
    assert sheet.shape[1] == 4 * GAP + 3 * side  # three panels
    anchors, rois, found = (_panel(sheet, k, zoom) for k in range(3))
    assert len(truth.rois) > 0 and len(truth.best) == TOP_ANCHORS
    _check_shaded(rois, truth.rois[:, :4], truth.rois[:, 4], zoom)
    # the anchors as placed (drawn where they fit the panel), before the deltas move them
    _check_shaded(anchors, truth.anchors, truth.anchor_scores, zoom)
    assert not np.array_equal(_coloured(anchors), _coloured(rois))
    # the detections: only their classes' colours, the best one's (drawn last) along its edge
    assert len(truth.detections) > 0, "no detection to see drawn"
    classes = {int(c) for c in truth.detections[:, 5]}
    everywhere = np.ones(found.shape[:2], bool)
    drawn = {c for c in range(10) if _near(found, everywhere, class_colour(c)) > 0}
    assert int(truth.detections[0, 5]) in drawn and drawn <= classes
    best = truth.detections[0]
    bottom = np.zeros(found.shape[:2], bool)
    y2 = math.floor(best[3] * zoom)
    x1, x2 = math.ceil(best[0] * zoom) + 2 * WIDTH, math.floor(best[2] * zoom) - 2 * WIDTH
    bottom[max(y2 - WIDTH - 1, 0) : y2 + 1, x1:x2] = True
    assert _near(found, bottom, class_colour(int(best[5]))) >= (x2 - x1) * WIDTH // 2


def test_the_anchors_drawn_are_where_the_module_places_them() -> None:
    for compiled in (
        netspec.compile(QUICK),
        netspec.compile(Path(__file__).parents[1] / "specs" / "faster_rcnn_digits.net"),
    ):
        regions = regions_of(compiled)
        assert regions is not None and regions.objectness == "objectness"
        (rpn,) = [m for m in to_torch(compiled).modules() if isinstance(m, Proposals)]
        cx, cy, w, h = rpn.anchors.numpy().T
        placed = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        np.testing.assert_allclose(regions.anchors, placed, atol=1e-4)
    assert regions_of(netspec.compile(Path(__file__).parents[1] / "specs" / "lenet.net")) is None
    assert doctest.testmod(drawing).failed == 0


# ---- netspec serve --------------------------------------------------------------------------


def _image(pixels: np.ndarray) -> dict[str, Any]:
    h, w = pixels.shape
    return {"height": h, "width": w, "channels": 1, "pixels": base64.b64encode(pixels).decode()}


@pytest.fixture(scope="module")
def server(trained: tuple[Path, Path]) -> Iterator[Server]:
    with serving(trained[0]) as s:
        yield s


def _same(got: list[dict[str, Any]], boxes: np.ndarray, scores: np.ndarray) -> None:
    assert len(got) == len(boxes)
    assert np.allclose([g["xyxy"] for g in got], boxes, atol=0.02)
    assert np.allclose([g["score"] for g in got], scores, atol=2e-3)


def test_serve_sends_the_proposals_and_the_best_anchors(
    server: Server, scene: np.ndarray, truth: Truth
) -> None:
    status, info = server.get("/api/detector")
    assert status == 200 and info["decoder"] == "two_stage"
    assert info["threshold"] == 0.05  # the head's own score=, as `netspec detect`'s default
    assert info["proposals"] == {
        "layer": "rois",
        "keep": 16,
        "objectness": "objectness",
        "anchors": 12 * 12 * 2,  # 48 / 4 cells a side, two ratios
        "best": TOP_ANCHORS,
    }
    status, found = server.post("/api/detect", {**_image(scene), "threshold": 0.05})
    assert status == 200
    proposals = found["proposals"]
    assert proposals["layer"] == "rois"
    _same(proposals["boxes"], truth.rois[:, :4], truth.rois[:, 4])
    assert [b["row"] for b in proposals["boxes"]] == list(range(len(truth.rois)))
    assert [a["index"] for a in proposals["anchors"]] == truth.best.tolist()
    _same(proposals["anchors"], truth.anchors, truth.anchor_scores)
    _same(found["boxes"], truth.detections[:, :4], truth.detections[:, 4])
    status, ran = server.post("/api/run", _image(scene))
    assert status == 200 and ran["detection"]["proposals"] == proposals


# ---- the page in headless Chromium ----------------------------------------------------------

COUNT_COLOURED = """c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) n++;
    return n;
}"""


def test_the_page_draws_the_stages_beside_the_boxes(
    browser: Any, server: Server, scene: np.ndarray, truth: Truth, tmp_path: Path
) -> None:
    context, page, errors = open_page(browser, server.url + "/", 1400, 1000)
    answered = "Number(document.querySelector('#detector')?.dataset.answers || 0)"
    page.wait_for_function(f"{answered} >= 1", timeout=60_000)
    before = int(page.evaluate(answered))
    pixels = base64.b64encode(scene.tobytes()).decode()
    page.evaluate(f"window.netspecPage.load({{pixels: '{pixels}'}})")
    page.wait_for_function(f"{answered} > {before}", timeout=60_000)
    assert page.get_attribute("#det-rois", "data-boxes") == str(len(truth.rois))
    assert page.get_attribute("#det-rpn", "data-boxes") == str(TOP_ANCHORS)
    assert page.eval_on_selector("#det-rois", COUNT_COLOURED) > 0
    assert page.eval_on_selector("#det-rpn", COUNT_COLOURED) > 0
    caption = page.text_content("#det-rois-caption") or ""
    assert caption.startswith(f"proposals of rois: {len(truth.rois)} RoIs")
    page.screenshot(path=str(tmp_path / "proposals-page.png"))
    print(f"screenshot: {tmp_path / 'proposals-page.png'}")
    # the three views side by side, in one row: anchors, proposals, then the boxes
    rects = [
        page.eval_on_selector(
            s, "e => { const r = e.getBoundingClientRect(); return [r.left, r.top]; }"
        )
        for s in ("#det-rpn", "#det-rois", "#det-boxes")
    ]
    assert [r[0] for r in rects] == sorted({r[0] for r in rects}), rects
    assert len({r[1] for r in rects}) == 1, rects
    # the page's boxes are those of the head's own threshold
    assert len(page.query_selector_all(".det-item")) == len(truth.detections)
    context.close()
    assert not errors, errors
