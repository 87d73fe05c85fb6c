"""`edge_windows` (issue 23, R-CNN's proposals): a spec's RoI set against a NumPy reference
(windows, edge-contrast scores, ranking and suppression) in PyTorch and, exported, in ONNX
Runtime; a flat image proposes nothing, a busy one its `keep` best; its cost, its kind and
its located mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import netspec
from netspec.diagnostics import SpecError
from netspec.export import export_compiled
from netspec.kinds import output_infos
from netspec.lower import to_torch
from tests.test_roi_words import iou

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the TorchScript exporter
]
QUIET = {"log": lambda _: None}
H, W = 40, 48
SPEC = """network t(image: {channels}x40x48) {{
    f = image | identity
    f | edge_windows {args}
}}
"""
ARGS = {"sizes": [8, 14], "ratios": [0.5, 1], "stride": 4, "keep": 12}


def text(args: dict[str, Any], channels: int = 3) -> str:
    words = " ".join(f"{k}={v}" for k, v in args.items())
    return SPEC.format(channels=channels, args=words)


# ---- the reference, one window at a time in float64 -------------------------------------------


def ref_windows(p: dict[str, Any]) -> list[list[np.ndarray]]:
    """Each window's boxes (x1, y1, x2, y2, whole pixels): itself and it grown, clipped, and
    the strips inside its left, right, top and bottom edges; centre by centre (row-major),
    size by size, ratio by ratio."""
    stride, ring, band = p["stride"], p.get("ring", 1.0), p.get("band", 0.2)
    rows, cols = H // stride, W // stride
    y0, x0 = (H - (rows - 1) * stride) / 2, (W - (cols - 1) * stride) / 2
    limit = np.array([W, H, W, H])
    found = []
    for i in range(rows):
        for j in range(cols):
            for s in p["sizes"]:
                for r in p["ratios"]:
                    side = np.floor(np.array([s * np.sqrt(r), s / np.sqrt(r)]) + 0.5)
                    low = np.floor(np.array([x0 + j * stride, y0 + i * stride]) - side / 2 + 0.5)
                    grow = np.floor(ring * side / 2 + 0.5)
                    inner = np.clip(np.concatenate([low, low + side]), 0, limit)
                    outer = np.clip(np.concatenate([low - grow, low + side + grow]), 0, limit)
                    x1, y1, x2, y2 = inner
                    tx, ty = np.maximum(np.floor(band * (inner[2:] - inner[:2]) + 0.5), 1)
                    strips = [[x1, y1, x1 + tx, y2], [x2 - tx, y1, x2, y2]]
                    strips += [[x1, y1, x2, y1 + ty], [x1, y2 - ty, x2, y2]]
                    found.append([inner, outer, *map(np.array, strips)])
    return found


def ref_edges(image: np.ndarray) -> np.ndarray:
    """C x H x W to H x W: central differences, the border pixel repeated, channels' mean."""
    padded = np.pad(image.astype(np.float64), ((0, 0), (1, 1), (1, 1)), mode="edge")
    dx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2
    dy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2
    return np.asarray(np.sqrt(dx**2 + dy**2).mean(0))


def box_sum(edges: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    x1, y1, x2, y2 = (int(v) for v in box)
    return float(edges[y1:y2, x1:x2].sum()), float((x2 - x1) * (y2 - y1))


def ref_edge_windows(image: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """One image's ``keep x 5`` rows by netspec.ops.windows' rule."""
    edges = ref_edges(image)
    scored = []
    for inner, outer, *strips in ref_windows(p):
        (s_in, a_in), (s_out, a_out) = box_sum(edges, inner), box_sum(edges, outer)
        density = s_in / a_in
        sides = min(s / a for s, a in (box_sum(edges, strip) for strip in strips))
        score = 0.0
        if a_out > a_in:  # the window has a ring
            ring = (s_out - s_in) / (a_out - a_in)
            score = density / (density + ring + 1e-6) * sides / (sides + ring + 1e-6)
        scored.append((score, inner))
    pre = min(len(scored), p.get("pre", 10 * p["keep"]))
    order = sorted(range(len(scored)), key=lambda m: -scored[m][0])[:pre]
    kept: list[tuple[float, np.ndarray]] = []
    for m in order:
        score, box = scored[m]
        fresh = all(iou(box, other) <= p.get("iou", 0.5) for _, other in kept)
        if score > 0 and len(kept) < p["keep"] and fresh:
            kept.append((score, box))
    out = np.tile([0, 0, 0, 0, -1.0], (p["keep"], 1))
    for r, (score, box) in enumerate(kept):
        out[r] = [*box, score]
    return out


def run_both(args: dict[str, Any], images: np.ndarray, tmp_path: Path) -> dict[str, Any]:
    """The spec's rows in PyTorch and in ONNX Runtime, the reference's, and the ONNX ops."""
    compiled = netspec.compile(text(args, images.shape[1]))
    module = to_torch(compiled).eval()
    with torch.no_grad():
        got = module(torch.from_numpy(images)).numpy()
    path = tmp_path / "windows.onnx"
    report = export_compiled(compiled, path, **QUIET)
    assert all(c.ok for c in report.checks)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"image": images})
    want = np.stack([ref_edge_windows(image, args) for image in images])
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    return {"torch": got, "onnx": onnx_out, "want": want, "ops": ops}


def same_rows(got: np.ndarray, want: np.ndarray) -> None:
    """The same boxes, in the same rows, and scores to float32's precision."""
    np.testing.assert_array_equal(got[..., :4], want[..., :4])
    np.testing.assert_allclose(got[..., 4], want[..., 4], atol=1e-6)


# ---- against the reference --------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{}, {"pre": 30, "iou": 0.3, "ring": 0.5, "band": 0.4}],
    ids=["defaults", "pre-iou-ring-band"],
)
def test_edge_windows_match_the_reference(extra: dict[str, Any], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, 3, H, W)).astype(np.float32)
    images[1, :, :20] = 0.2  # half of the second image flat
    out = run_both(ARGS | extra, images, tmp_path)
    same_rows(out["torch"], out["want"])
    same_rows(out["onnx"], out["want"])
    assert {"CumSum", "Gather", "TopK", "NonMaxSuppression", "ScatterND"} <= out["ops"]
    assert (out["want"][..., 4] > 0).sum() > 12  # rows that hold boxes were compared


def test_a_flat_image_proposes_nothing(tmp_path: Path) -> None:
    images = np.zeros((3, 1, H, W), np.float32)
    images[1] = 0.7
    images[2] = np.linspace(0, 1, W, dtype=np.float32)  # a ramp: the same edge everywhere
    out = run_both(ARGS, images[:2], tmp_path)
    empty = np.tile([0, 0, 0, 0, -1.0], (2, 12, 1))
    np.testing.assert_array_equal(out["torch"], empty)
    np.testing.assert_array_equal(out["onnx"], empty)
    ramp = run_both(ARGS, images[2:], tmp_path)["torch"]
    assert (ramp[..., 4] < 0.5 + 1e-3).all()  # no window stands out from its ring


def test_more_candidates_than_kept_keeps_the_best(tmp_path: Path) -> None:
    """Nine bright squares where windows fit them: far more than 4 windows have edges, and
    the 4 kept are squares, the first four of the nine at equal scores."""
    image = np.zeros((1, 1, H, W), np.float32)
    squares = [(x, y, x + 8, y + 8) for y in (2, 14, 26) for x in (2, 18, 34)]
    for x1, y1, x2, y2 in squares:
        image[0, 0, y1:y2, x1:x2] = 1.0
    out = run_both(ARGS | {"keep": 4, "sizes": [8], "ratios": [1]}, image, tmp_path)
    same_rows(out["torch"], out["want"])
    same_rows(out["onnx"], out["want"])
    rows = out["torch"][0]
    assert all(tuple(box) in squares for box in rows[:, :4].tolist())
    assert (rows[:, 4] > 0.2).all() and (np.diff(rows[:, 4]) <= 0).all()


def test_the_window_on_an_object_beats_those_on_one_of_its_edges() -> None:
    """A bright box of 7 x 13 pixels, where a window of size 10 and ratio 0.55 fits it: that
    window scores above those a stride left and right (each on one of its edges, with a
    side that has none), and the proposals find the box."""
    image = torch.zeros(1, 1, H, W)
    image[..., 12:25, 23:30] = 1.0
    compiled = netspec.compile(text(ARGS | {"sizes": [10, 14], "ratios": [0.55]}, 1))
    module = to_torch(compiled).eval()
    windows = module.get_submodule("edge_windows1")
    with torch.no_grad():
        rows = module(image)[0].numpy()
        scores = windows.scores(image)[0]
    at = {tuple(b): k for k, b in enumerate(windows.boxes.tolist())}
    fits, left, right = (at[(x, 12.0, x + 7, 25.0)] for x in (23.0, 19.0, 27.0))
    assert scores[fits] > 0.5 and scores[left] == scores[right] == 0  # a side without edges
    # the larger window around it, whose ring is empty, is first; the one that fits second
    assert rows[0, :4].tolist() == [21, 9, 31, 28] and rows[1, :4].tolist() == [23, 12, 30, 25]


# ---- what the compiler says -------------------------------------------------------------------


def test_its_cost_kind_and_field() -> None:
    compiled = netspec.compile(text(ARGS))
    layer = compiled.inferred.layer("edge_windows1")
    assert layer.shape == (12, 5) and layer.params == 0 and layer.rf.whole
    windows = 10 * 12 * 4  # 10x12 centres, 2 sizes x 2 ratios
    assert layer.macs == 4 * 3 * H * W + 2 * H * W + 36 * windows
    assert [(i.kind, i.shape) for i in output_infos(compiled)] == [("tensor", (12, 5))]


def diagnostic(source: str) -> Any:
    with pytest.raises(SpecError) as caught:
        netspec.compile(source)
    (diag,) = caught.value.diagnostics
    return diag


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keep": 0}, "keep must be greater than 0"),
        ({"stride": 0}, "stride must be greater than 0"),
        ({"keep": 500}, "keeps 500 boxes of 480 windows (10x12 centres x 4)"),
        ({"keep": 20, "pre": 10}, "keeps 20 boxes of its pre=10 best candidates"),
        ({"sizes": [50]}, "window of size 50 and ratio 0.5 is 35.36x70.71 pixels (w x h), larger"),
        ({"sizes": [1], "ratios": [4]}, "is 2x0.5 pixels (w x h): a side under a pixel"),
        ({"stride": 41}, "stride 41 is larger than the 40x48 image"),
        ({"ring": 0}, "ring must be greater than 0"),
        ({"band": 0.6}, "band must be at most 0.5"),
    ],
)
def test_mistakes_are_located(change: dict[str, Any], message: str) -> None:
    diag = diagnostic(text(ARGS | change))
    assert message in diag.message
    assert diag.span.line == 3 and diag.span.col >= 9  # the operation, or its argument


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("image | maxpool 2x2", "not at the network input's (3x40x48) positions"),
        ("image | conv 2 3x3", "its input (2x38x46) is not at the network input's"),
        ("image | dense 4", "reads an image of known size (C x H x W), got 4"),
    ],
)
def test_an_input_that_is_not_the_image_is_refused(source: str, message: str) -> None:
    diag = diagnostic(text(ARGS).replace("image | identity", source))
    assert message in diag.message
    assert (diag.span.line, diag.span.col) == (3, 9)
