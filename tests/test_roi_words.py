"""The R-CNN family's words (issue 23): `proposals`, `roi_pool`, `roi_align`, `ps_roi_pool`,
each through a compiled spec against a NumPy reference, in PyTorch and, exported, in ONNX
Runtime; the regions axis that follows a RoI pooling; and the located diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import netspec
from netspec.compiler import Compiled
from netspec.diagnostics import SpecError
from netspec.export import export_compiled
from netspec.lower import to_torch
from netspec.report import rf_text
from tests.test_roi import ref_roi_align, ref_roi_pool

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the TorchScript exporter
]
TOL = 1e-5
QUIET = {"log": lambda _: None}


def run_both(compiled: Compiled, inputs: list[np.ndarray], tmp_path: Path) -> tuple[Any, Any]:
    """The network's output in PyTorch and in ONNX Runtime, and the ONNX graph."""
    module = to_torch(compiled).eval()
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in inputs)).numpy()
    path = tmp_path / "net.onnx"
    report = export_compiled(compiled, path, **QUIET)
    assert all(c.ok for c in report.checks)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    onnx_out = session.run(None, dict(zip(names, inputs, strict=True)))[0]
    return (got, onnx_out), onnx.load(str(path)).graph


# ---- roi_pool, roi_align, ps_roi_pool through a spec -----------------------------------------

K = 6


def roi_inputs(channels: int, seed: int = 0) -> list[np.ndarray]:
    """Images 2 x C x 10 x 12 and K boxes each in input pixels, some past the image."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, channels, 10, 12)).astype(np.float32)
    corners = rng.uniform(-3, 15, (2, K, 2, 2)).astype(np.float32)
    boxes = np.concatenate([corners.min(2), corners.max(2)], -1)
    boxes[0, 0] = [0, 0, 11, 9]  # the whole image
    return [x, boxes]


def pooled_maps(x: np.ndarray) -> np.ndarray:
    """`maxpool 2x2`: the maps the spec pools from, at stride 2."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max((3, 5))


def rows(boxes: np.ndarray) -> np.ndarray:
    """Each image's boxes as (image, x1, y1, x2, y2) rows."""
    index = np.repeat(np.arange(len(boxes), dtype=np.float32), boxes.shape[1])[:, None]
    return np.concatenate([index, boxes.reshape(-1, 4)], 1)


def roi_spec(channels: int, op: str) -> Compiled:
    return netspec.compile(
        f"network t(x: {channels}x10x12, rois: {K}x4) {{\n    f = x | maxpool 2x2\n    {op}\n}}\n"
    )


def test_roi_pool_is_max_roi_pool_at_the_maps_stride(tmp_path: Path) -> None:
    compiled = roi_spec(3, "roi_pool(f, rois, 3x3)")
    x, boxes = roi_inputs(3)
    want = ref_roi_pool(pooled_maps(x), rows(boxes), (3, 3), 0.5).reshape(2, K, 3, 3, 3)
    (torch_out, onnx_out), graph = run_both(compiled, [x, boxes], tmp_path)
    np.testing.assert_allclose(torch_out, want, atol=TOL)
    np.testing.assert_allclose(onnx_out, want, atol=TOL)
    ops = {n.op_type for n in graph.node}
    assert "MaxRoiPool" in ops and "RoiAlign" not in ops  # never RoiAlign mode=max


@pytest.mark.parametrize(("aligned", "mode"), [(True, "half_pixel"), (False, "output_half_pixel")])
def test_roi_align_in_both_coordinate_modes(aligned: bool, mode: str, tmp_path: Path) -> None:
    flag = str(aligned).lower()
    compiled = roi_spec(3, f"roi_align(f, rois, 3x2, sampling=2, aligned={flag})")
    x, boxes = roi_inputs(3, seed=1)
    want = ref_roi_align(pooled_maps(x), rows(boxes), (3, 2), 0.5, 2, aligned)
    (torch_out, onnx_out), graph = run_both(compiled, [x, boxes], tmp_path)
    np.testing.assert_allclose(torch_out, want.reshape(2, K, 3, 3, 2), atol=TOL)
    np.testing.assert_allclose(onnx_out, want.reshape(2, K, 3, 3, 2), atol=TOL)
    (align,) = [n for n in graph.node if n.op_type == "RoiAlign"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in align.attribute}
    assert attrs["mode"] == b"avg" and attrs["coordinate_transformation_mode"] == mode.encode()


def test_ps_roi_pool_takes_each_bins_own_map(tmp_path: Path) -> None:
    compiled = roi_spec(8, "ps_roi_pool(f, rois, 2x2, classes=2, aligned=false)")
    x, boxes = roi_inputs(8, seed=2)
    every = ref_roi_align(pooled_maps(x), rows(boxes), (2, 2), 0.5, 2, False)  # (2K, 8, 2, 2)
    want = np.zeros((2 * K, 2, 2, 2), np.float32)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                want[:, c, i, j] = every[:, c * 4 + i * 2 + j, i, j]
    (torch_out, onnx_out), _ = run_both(compiled, [x, boxes], tmp_path)
    np.testing.assert_allclose(torch_out, want.reshape(2, K, 2, 2, 2), atol=TOL)
    np.testing.assert_allclose(onnx_out, want.reshape(2, K, 2, 2, 2), atol=TOL)


# ---- proposals ------------------------------------------------------------------------------

RPN = """network rpn(image: 1x24x24) {{
    f = image | maxpool 4x4
    obj = f | conv {a} 1x1
    d = f | conv {d} 1x1
    proposals(obj, d, {args})
}}
"""
ANCHORS = "sizes=[4, 8], ratios=[1, 2]"  # 4 anchors a cell: 4 and 16 maps


def rpn_text(args: str, a: int = 4) -> str:
    return RPN.format(a=a, d=4 * a, args=args)


def ref_proposals(
    obj: np.ndarray, deltas: np.ndarray, start: float, jump: float, p: dict[str, Any]
) -> np.ndarray:
    """netspec.ops.proposals' rule, one anchor at a time, in float64."""
    n, _, h, w = obj.shape
    sides = [(s * np.sqrt(r), s / np.sqrt(r)) for s in p["sizes"] for r in p["ratios"]]
    out = np.zeros((n, p["keep"], 5))
    out[..., 4] = -1
    for b in range(n):
        found = []
        for i in range(h):
            for j in range(w):
                for k, (aw, ah) in enumerate(sides):
                    dx, dy, dw, dh = deltas[b, 4 * k : 4 * k + 4, i, j].astype(np.float64)
                    cx, cy = start + j * jump + dx * aw, start + i * jump + dy * ah
                    bw = aw * np.exp(min(dw, np.log(1000 / 16)))
                    bh = ah * np.exp(min(dh, np.log(1000 / 16)))
                    box = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0, 24)
                    big = min(box[2] - box[0], box[3] - box[1]) >= p["min_size"]
                    score = 1 / (1 + np.exp(-float(obj[b, k, i, j]))) if big else -1.0
                    found.append((score, box))
        order = sorted(range(len(found)), key=lambda m: -found[m][0])[: p["pre"]]
        kept: list[tuple[float, np.ndarray]] = []
        for m in order:
            score, box = found[m]
            fresh = all(iou(box, other) <= p["iou"] for _, other in kept)
            if score > p["score"] and len(kept) < p["keep"] and fresh:
                kept.append((score, box))
        for r, (score, box) in enumerate(kept):
            out[b, r] = [*box, score]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def rpn(tmp_path: Path, args: dict[str, Any], setup: Any = None, seed: int = 0) -> dict[str, Any]:
    """The RPN spec's proposals in PyTorch and ONNX Runtime, and the reference's from the
    maps PyTorch computed."""
    text = ", ".join(f"{k}={v}" for k, v in args.items())
    compiled = netspec.compile(rpn_text(f"{ANCHORS}, {text}"))
    torch.manual_seed(seed)
    module = to_torch(compiled).eval()
    if setup is not None:
        setup(module)
    maps: dict[str, np.ndarray] = {}
    for name in ("obj", "d"):
        module.get_submodule(name).register_forward_hook(
            lambda _m, _a, out, name=name: maps.__setitem__(name, out.detach().numpy())
        )
    image = np.random.default_rng(seed).uniform(0, 1, (2, 1, 24, 24)).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(image)).numpy()
    rf = compiled.inferred.layer("obj").rf
    assert rf.start == (2.0, 2.0) and rf.jump == (4, 4)  # cells of 4 px, the first centred at 2
    p = {"score": 0.0, "iou": 0.7, "min_size": 1.0, "pre": 10 * args["keep"]} | args
    p |= {"sizes": [4, 8], "ratios": [1, 2], "pre": min(p["pre"], 144)}
    want = ref_proposals(maps["obj"], maps["d"], 2.0, 4.0, p)
    path = tmp_path / "rpn.onnx"
    export_compiled(compiled, path, weights=module, **QUIET)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"image": image})[0]
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    return {"torch": got, "onnx": onnx_out, "want": want, "ops": ops}


def test_proposals_match_the_reference(tmp_path: Path) -> None:
    out = rpn(tmp_path, {"keep": 12, "pre": 60, "iou": 0.5, "min_size": 2})
    np.testing.assert_allclose(out["torch"], out["want"], atol=1e-4)
    np.testing.assert_allclose(out["onnx"], out["want"], atol=1e-4)
    assert {"TopK", "NonMaxSuppression", "ScatterND"} <= out["ops"]
    assert (out["want"][..., 4] > 0).all()  # all twelve rows hold a box


def _silent(module: torch.nn.Module) -> None:
    with torch.no_grad():
        module.get_submodule("obj").bias.fill_(-30.0)  # every score far under 0.5


def test_no_box_above_the_threshold_gives_empty_rows(tmp_path: Path) -> None:
    out = rpn(tmp_path, {"keep": 5, "score": 0.5}, setup=_silent)
    empty = np.tile([0, 0, 0, 0, -1.0], (2, 5, 1))
    np.testing.assert_array_equal(out["torch"], empty)
    np.testing.assert_array_equal(out["onnx"], empty)


def _anchors_as_they_are(module: torch.nn.Module) -> None:
    with torch.no_grad():
        module.get_submodule("d").weight.zero_()
        module.get_submodule("d").bias.zero_()


def test_more_candidates_than_kept_keeps_the_best(tmp_path: Path) -> None:
    """Deltas of zero: the boxes are the anchors, 144 of them, and NMS at IoU 0.9 leaves far
    more than the 8 kept: each image's 8 best scores, best first."""
    out = rpn(tmp_path, {"keep": 8, "iou": 0.9}, setup=_anchors_as_they_are, seed=3)
    np.testing.assert_allclose(out["torch"], out["want"], atol=1e-5)
    np.testing.assert_allclose(out["onnx"], out["want"], atol=1e-5)
    scores = out["torch"][..., 4]
    assert (scores > 0).all() and (np.diff(scores, axis=1) <= 0).all()


# ---- a two-stage spec, the regions axis, receptive fields ---------------------------------

TWO_STAGE = """network two(image: 1x32x32) {
    f = image | conv 8 3x3 pad=same | relu | maxpool 2x2
    obj = f | conv 3 1x1
    d = f | conv 12 1x1
    r = proposals(obj, d, sizes=[8], ratios=[0.5, 1, 2], keep=6)
    pooled = roi_pool(f, r, 4x4)
    hidden = pooled | dense 10 | relu
    scores = hidden | dense 3
    output r, scores
}
"""


def test_proposals_roi_pool_dense_compiles_and_runs() -> None:
    compiled = netspec.compile(TWO_STAGE)
    layers = {layer.name: layer for layer in compiled.layers}
    assert layers["r"].shape == (6, 5)
    assert layers["pooled"].shape == (6, 8, 4, 4) and layers["pooled"].regions == 6
    assert layers["hidden.0"].shape == (6, 10) and layers["hidden.0"].per_region
    assert layers["hidden.0"].params == 8 * 4 * 4 * 10 + 10  # one region's 128 values
    assert compiled.totals.trainable_params == 80 + 27 + 108 + 1290 + 33
    module = to_torch(compiled).eval()
    with torch.no_grad():
        r, scores = module(torch.rand(3, 1, 32, 32))
    assert r.shape == (3, 6, 5) and scores.shape == (3, 6, 3)
    assert sum(p.numel() for p in module.parameters()) == compiled.totals.trainable_params


def test_a_pooled_unit_sees_its_bin_plus_the_backbones_field() -> None:
    compiled = netspec.compile(TWO_STAGE)
    assert rf_text(compiled.inferred.layer("f.2")) == "4 /2"
    assert rf_text(compiled.inferred.layer("pooled")) == "bin+4 /2"
    assert rf_text(compiled.inferred.layer("scores")) == "region+4 /2"


def test_a_conv_head_slides_over_each_regions_bins() -> None:
    compiled = netspec.compile(TWO_STAGE.replace("dense 10", "conv 5 3x3 | dense 10"))
    assert compiled.inferred.layer("hidden.0").shape == (6, 5, 2, 2)
    module = to_torch(compiled).eval()
    with torch.no_grad():
        _, scores = module(torch.rand(2, 1, 32, 32))
    assert scores.shape == (2, 6, 3)


def test_init_redraws_a_per_region_layers_weights() -> None:
    compiled = netspec.compile(
        "network t(x: 3x10x12, rois: 5x4) {\n    f = x | maxpool 2x2\n"
        "    roi_pool(f, rois, 2x2) | conv 4 1x1 init=lecun | dense 400 init=kaiming\n}\n"
    )
    torch.manual_seed(0)
    module = to_torch(compiled)
    conv, dense = module.get_submodule("conv1"), module.get_submodule("dense1")
    assert conv.weight.abs().max() <= 2.4 / 3  # LeCun's U(±2.4/fan-in), fan-in 3
    assert abs(float(dense.weight.detach().std()) - (2 / 16) ** 0.5) < 0.02  # N(0, 2/fan-in)
    assert float(dense.bias.detach().abs().max()) == 0.0


def test_region_outputs_and_roi_sets_are_tensors() -> None:
    from netspec.kinds import output_infos

    infos = output_infos(netspec.compile(TWO_STAGE))
    assert [(i.name, i.kind, i.shape) for i in infos] == [
        ("r", "tensor", (6, 5)),
        ("scores", "tensor", (6, 3)),
    ]


# ---- located diagnostics ------------------------------------------------------------------


def diagnostic(text: str) -> Any:
    with pytest.raises(SpecError) as caught:
        netspec.compile(text)
    (diag,) = caught.value.diagnostics
    return diag


ROI = """network t(x: 3x10x12, rois: 5x4) {{
    f = x | maxpool 2x2
    {line}
}}
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("sizes=[40], ratios=[1], keep=4", "anchor of size 40 and ratio 1 is 40x40 pixels"),
        (f"{ANCHORS}, keep=200", "keeps 200 boxes of 144 anchors (6x6 cells x 4)"),
        (f"{ANCHORS}, keep=0", "keep"),
        (f"{ANCHORS}, keep=4, pre=2", "keeps 4 boxes of its pre=2 best candidates"),
        (
            "sizes=[4], ratios=[1, 2], keep=4",
            "place 2 anchors per cell, 1 logit each: input 1 needs 2 maps, has 4",
        ),
    ],
)
def test_proposals_mistakes_are_located(args: str, message: str) -> None:
    a = 1 if "sizes=[40]" in args else 4
    diag = diagnostic(rpn_text(args, a))
    assert message in diag.message
    assert diag.span.line == 5 and diag.span.col >= 5  # the call, or the argument


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("roi_pool(f, rois, 7x7)", "grid of 7x7 bins is larger than its 5x6 maps"),
        ("roi_pool(f, x, 2x2)", "reads a RoI set as its last input; 'x' is not a RoI set"),
        ("ps_roi_pool(f, rois, 2x2, classes=2)", "need 8 input maps, got 3"),
        ("p = roi_pool(f, rois, 2x2)\n    roi_align(p, rois, 1x1)", "'p' holds 5 regions"),
        ("p = roi_pool(f, rois, 2x2)\n    roi_pool(f, p, 1x1)", "'p' is 5 regions"),
        (
            "a = roi_pool(f, rois, 2x2) | dense 4\n    b = f | dense 4\n    add(a, b)",
            "merges tensors of different leading axes: 'a.1' 5 regions of each image, 'b' images",
        ),
    ],
)
def test_roi_mistakes_are_located(line: str, message: str) -> None:
    diag = diagnostic(ROI.format(line=line))
    assert message in diag.message
    assert diag.span.line == 2 + line.count("\n") + 1 and diag.span.col == 5
