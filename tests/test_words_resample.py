"""Issue 22's resampling words: `pixel_shuffle r` and `pixel_unshuffle r` (PyTorch's
nn.PixelShuffle and nn.PixelUnshuffle), `upsample to HxW`, and `resize(x, like)` (x at
another tensor's H x W, the FPN's top-down path, symbolic sizes included).

Each against PyTorch and ONNX Runtime: the shapes the compiler infers, receptive fields as
exact numbers and as the windows autograd finds, located errors for bad factors, specs/
espcn.net against the same network written in plain PyTorch (tests/reference_espcn.py), and
its emitted standalone Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import netspec
from netspec.compiler import Compiled
from netspec.export import export_compiled
from netspec.lower import to_torch
from netspec.lower.emit import emit_python
from netspec.ops.synonyms import op_hint
from tests.reference_espcn import ESPCN
from tests.test_emit import _load
from tests.test_export import QUIET, invoke
from tests.test_lower import check_against_inference, spec
from tests.test_ops_issue10 import _reads
from tests.test_specs import TRAINABLE

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

SPECS = Path(__file__).resolve().parent.parent / "specs"
X = torch.randn(2, 8, 6, 4, generator=torch.Generator().manual_seed(0))


def _run(body: str, x: Tensor = X) -> Tensor:
    compiled = spec(body, f"x: {'x'.join(str(d) for d in x.shape[1:])}")
    module = check_against_inference(compiled).eval()
    with torch.no_grad():
        out = module(x)
    assert isinstance(out, Tensor)
    return out


# ---- pixel_shuffle and pixel_unshuffle: PyTorch's, in shapes and values ------------------------


def test_pixel_shuffle_is_depth_to_space() -> None:
    got = _run("pixel_shuffle 2")  # 8x6x4 -> 2x12x8
    torch.testing.assert_close(got, F.pixel_shuffle(X, 2), rtol=0, atol=0)
    # output unit (c, y, x) is input unit (c*r*r + (y % r)*r + x % r, y // r, x // r)
    assert got[0, 1, 5, 3] == X[0, 1 * 4 + 1 * 2 + 1, 2, 1]


def test_pixel_unshuffle_is_space_to_depth_and_undoes_the_shuffle() -> None:
    got = _run("pixel_unshuffle 2")  # 8x6x4 -> 32x3x2
    torch.testing.assert_close(got, F.pixel_unshuffle(X, 2), rtol=0, atol=0)
    torch.testing.assert_close(_run("pixel_unshuffle 2 | pixel_shuffle 2"), X, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("body", "inputs", "shape"),
    [
        ("pixel_shuffle 3", "x: 18xHxW", (2, "3*H", "3*W")),
        ("conv 4 3x3 | pixel_shuffle 2", "x: 1xHxW", (1, "2*(H-2)", "2*(W-2)")),
        ("pixel_unshuffle 2", "x: 3xHxW", (12, "H//2", "W//2")),
        ("pixel_unshuffle 2 | pixel_shuffle 2", "x: 3x8x6", (3, 8, 6)),
        ("pixel_shuffle 1", "x: 5x7x9", (5, 7, 9)),
    ],
)
def test_shapes_and_symbolic_sizes(body: str, inputs: str, shape: tuple[object, ...]) -> None:
    compiled = spec(body, inputs)
    assert compiled.layers[-1].shape == shape
    assert compiled.layers[-1].params == 0 and compiled.layers[-1].macs in (0, None)


# ---- receptive fields: exact numbers, and the windows autograd finds ------------------------


@pytest.mark.parametrize(
    ("body", "size", "jump", "start"),
    [
        # the jump divides by r; the size grows as after a nearest upsample, (r-1)/r jumps
        ("conv 4 3x3 | pixel_shuffle 2", 3.5, 0.5, 1.25),
        ("conv 9 3x3 | pixel_shuffle 3", 3 + 2 / 3, 1 / 3, 1.5 - 1 / 3),
        # an r x r window, stride r: exact
        ("conv 4 3x3 | pixel_unshuffle 2", 4, 2, 2),
        ("pixel_unshuffle 4", 4, 4, 2),
        # to a size: the jump times n/m; 24 -> 36 nearest reads floor(2o/3), at most 1/2 off
        ("upsample to 36x36", 2, 2 / 3, 1 / 3),
        ("upsample to 16x16", 2.5, 1.5, 0.75),  # down: floor(1.5o), at most 3/4 off
        ("upsample to 48x48", 1.5, 0.5, 0.25),  # = upsample 2
        ("upsample to 48x48 mode=bilinear", 2.5, 0.5, 0.25),  # = upsample 2 mode=bilinear
        ("upsample to 47x47 mode=bilinear align_corners=true", 2, 0.5, 0.5),
        ("upsample to 24x24 mode=bilinear", 1, 1, 0.5),  # the same size: unchanged
    ],
)
def test_receptive_field_numbers(body: str, size: float, jump: float, start: float) -> None:
    rf = spec(body, "x: 1x24x24").layers[-1].rf
    assert rf.size == pytest.approx((size, size))
    assert rf.jump == pytest.approx((jump, jump))
    assert rf.start == pytest.approx((start, start))
    assert not rf.whole


def test_espcn_receptive_field() -> None:
    """Three padded convolutions (5, 7, 9 pixels), then the shuffle: a third of a pixel
    apart, centred from 1/6, each seeing 9 + 2/3 pixels."""
    rf = netspec.compile(SPECS / "espcn.net", H=12, W=12).inferred.layer("upscaled").rf
    assert rf.size == pytest.approx((9 + 2 / 3,) * 2)
    assert rf.jump == pytest.approx((1 / 3,) * 2)
    assert rf.start == pytest.approx((1 / 6,) * 2)


def _holds_every_read(compiled: Compiled) -> None:
    """Every output row's input rows (by autograd) lie inside the static window centred at
    start + jump * o, and the window is the tightest so centred (rows a border clips aside)."""
    rf = compiled.layers[-1].rf
    n = int(compiled.graph.inputs[0].shape[1])
    rows = _reads(compiled)
    need = []
    for o, (lo, hi) in rows.items():
        centre = rf.start[0] + rf.jump[0] * o
        assert centre - rf.size[0] / 2 <= lo + 1e-9, (o, lo, hi, rf)
        assert hi + 1 <= centre + rf.size[0] / 2 + 1e-9, (o, lo, hi, rf)
        if lo > 0 and hi < n - 1:
            need.append(2 * max(hi + 1 - centre, centre - lo))
    assert max(need) == pytest.approx(rf.size[0]), (need, rf)


@pytest.mark.parametrize(
    "body",
    [
        "conv 4 3x3 | pixel_shuffle 2",
        "conv 9 1x1 | pixel_shuffle 3 | conv 1 3x3",
        "conv 1 3x3 | pixel_unshuffle 2",
        "pixel_unshuffle 3 | conv 1 3x3",
        "upsample to 36x36",
        "upsample to 16x16",
        "upsample to 31x31",
        "upsample to 36x36 mode=bilinear",
        "upsample to 16x16 mode=bilinear",
        "upsample to 10x10 mode=bilinear",
        "upsample to 40x40 mode=bilinear align_corners=true",
        "upsample to 17x17 mode=bilinear align_corners=true",
        "avgpool 3x3 stride=2 as top\nresize(top, in)",  # 11 -> 24
        "avgpool 3x3 stride=2 as top\nresize(top, in, mode=bilinear) | conv 1 3x3",
    ],
)
def test_receptive_field_is_the_window_autograd_finds(body: str) -> None:
    _holds_every_read(spec(body, "x: 1x24x24"))


# ---- resize(x, like) and upsample to: values, and the FPN on a symbolic input -----------------


@pytest.mark.parametrize("mode", ["", " mode=bilinear", " mode=bilinear align_corners=true"])
def test_upsample_to_and_resize_are_interpolate(mode: str) -> None:
    opts = {"mode": "nearest"} if not mode else {"mode": "bilinear"}
    if "align" in mode:
        opts["align_corners"] = True
    elif mode:
        opts["align_corners"] = False
    got = _run(f"upsample to 9x5{mode}")
    torch.testing.assert_close(got, F.interpolate(X, size=(9, 5), **opts))  # type: ignore[arg-type]
    got = _run(f"top = maxpool 2x2\nresize(top, in{mode.replace(' ', ', ')})")
    want = F.interpolate(F.max_pool2d(X, 2), size=(6, 4), **opts)  # type: ignore[arg-type]
    torch.testing.assert_close(got, want)


FPN = """
network fpn(image: 3xHxW) {
    c3 = conv 8 3x3 stride=2 pad=1 | relu
    c4 = c3 | conv 16 3x3 stride=2 pad=1 | relu
    c5 = c4 | conv 32 3x3 stride=2 pad=1 | relu
    p5 = c5 | conv 8 1x1
    l4 = c4 | conv 8 1x1
    p4 = add(l4, resize(p5, l4))
    l3 = c3 | conv 8 1x1
    p3 = add(l3, resize(p4, l3, mode=bilinear))
    output p3, p4, p5
}
"""


def test_fpn_on_a_symbolic_input_takes_each_lateral_shape_exactly() -> None:
    compiled = netspec.compile(FPN)
    layer = compiled.inferred.layer
    assert layer("p4").shape == layer("l4").shape == (8, *layer("c4.1").shape[1:])
    assert layer("p3").shape == layer("l3").shape
    assert isinstance(layer("p3").shape[1], str)  # symbolic, and proven equal
    # the size ratio of two symbolic sizes is not known: the field is the bound that holds
    assert layer("p4").rf.whole and not layer("l4").rf.whole
    # bound: 37 -> c3 19, c4 10, c5 5: p5 doubles, p4 goes 10 -> 19 (jump 4 * 10/19)
    bound = netspec.compile(FPN, H=37, W=37).inferred
    assert [bound.layer(n).shape[1] for n in ("p3", "p4", "p5")] == [19, 10, 5]
    assert bound.layer("resize2").rf.jump == pytest.approx((40 / 19, 40 / 19))
    assert not bound.layer("p3").rf.whole


def _fpn_outputs(module: nn.Module, x: Tensor) -> list[Tensor]:
    with torch.no_grad():
        out = module(x)
    return list(out)


def test_fpn_runs_at_any_size_as_inferred() -> None:
    """One module for every H x W: resize reads like's size at run time."""
    torch.manual_seed(0)
    module = to_torch(netspec.compile(FPN)).eval()
    for h, w in [(37, 50), (64, 48), (19, 23)]:
        bound = netspec.compile(FPN, H=h, W=w).inferred
        outputs = _fpn_outputs(module, torch.randn(2, 3, h, w))
        assert [tuple(o.shape) for o in outputs] == [
            (2, *bound.layer(n).shape) for n in ("p3", "p4", "p5")
        ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
def test_fpn_exports_and_runs_in_onnx_runtime(tmp_path: Path) -> None:
    compiled = netspec.compile(FPN, H=37, W=50)  # 19x25, 10x13, 5x7: ratios of 1.9 and 2
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    report = export_compiled(compiled, tmp_path / "fpn.onnx", weights=module, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)
    x = torch.randn(2, 3, 37, 50)
    got = _session(tmp_path / "fpn.onnx").run(None, {"image": x.numpy()})
    for g, want in zip(got, _fpn_outputs(module, x), strict=True):
        assert g.shape == want.shape
        np.testing.assert_allclose(g, want.numpy(), rtol=1e-4, atol=1e-5)


# ---- ONNX Runtime agrees with PyTorch ----------------------------------------------------------


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _agree(compiled: Compiled, path: Path, sizes: list[tuple[int, int]]) -> None:
    """Exported (and verified by export), then run by ONNX Runtime at each size: PyTorch's
    outputs."""
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    report = export_compiled(compiled, path, weights=module, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)
    session = _session(path)
    image = compiled.graph.inputs[0]
    for h, w in sizes:
        x = torch.randn(3, int(image.shape[0]), h, w)
        with torch.no_grad():
            want = module(x).numpy()
        (got,) = session.run(None, {image.name: x.numpy()})
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("body", "inputs"),
    [
        ("conv 12 3x3 pad=same | pixel_shuffle 2", "x: 3x5x7"),
        ("pixel_unshuffle 2 | conv 4 1x1", "x: 3x6x10"),
        ("pixel_unshuffle 3 | pixel_shuffle 3", "x: 2x9x6"),
        ("upsample to 13x7 mode=bilinear", "x: 3x5x9"),
        ("upsample to 13x7", "x: 3x8x8"),
        ("upsample to 5x5 mode=bilinear align_corners=true", "x: 3x8x12"),
        ("top = avgpool 3x3 stride=2\nresize(top, in)", "x: 3x11x9"),
    ],
)
def test_onnx_runtime_matches_pytorch(body: str, inputs: str, tmp_path: Path) -> None:
    compiled = spec(body, inputs)
    shape = compiled.graph.inputs[0].shape
    _agree(compiled, tmp_path / "m.onnx", [(int(shape[1]), int(shape[2]))])


ANY_SIZE = """network any_size(image: 3xHxW) {
    small = pixel_unshuffle 2 | conv 12 3x3 pad=same | relu | pixel_shuffle 2
    coarse = conv 8 3x3 stride=2 pad=1 | relu | conv 8 3x3 stride=2 pad=1
    concat(resize(small, in), resize(coarse, in, mode=bilinear))  # 11 x H x W
}
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_one_onnx_file_runs_at_any_size(tmp_path: Path) -> None:
    """Outputs at the input's own H x W (a DeepLab head's last resize): one file for every
    size (even ones: pixel_unshuffle 2 needs them, PyTorch's and ONNX's alike)."""
    compiled = netspec.compile(ANY_SIZE)
    assert compiled.layers[-1].shape == (11, "H", "W")
    _agree(compiled, tmp_path / "any.onnx", [(8, 6), (10, 14), (22, 18)])


# ---- located errors ----------------------------------------------------------------------------

BAD = """network bad(image: 3x10x10) {{
    conv 8 3x3 pad=same | relu
    {stage}
}}
"""


@pytest.mark.parametrize(
    ("stage", "at", "message", "hint"),
    [
        (
            "pixel_shuffle 3",
            "pixel_shuffle",
            "error[E301]: pixel_shuffle 'pixel_shuffle1': pixel_shuffle 3 makes each 9 feature "
            "maps (r x r = 3x3) into one map 3 times larger: it needs a multiple of 9 maps, got 8",
            "give the layer before 9 maps (ESPCN ends in conv C*3*3 before pixel_shuffle 3)",
        ),
        (
            "conv 20 1x1 | pixel_shuffle 3",
            "pixel_shuffle",
            "it needs a multiple of 9 maps, got 20",
            "give the layer before 18 or 27 maps",
        ),
        (
            "pixel_unshuffle 3",
            "pixel_unshuffle",
            "error[E301]: pixel_unshuffle 'pixel_unshuffle1': pixel_unshuffle 3 makes each 3x3 "
            "block of a map into 9 maps: it needs sizes that are multiples of 3, got 10x10",
            "crop to 9x9 or pad to 12x12 first",
        ),
        ("pixel_shuffle 0", "0", "'pixel_shuffle' factor must be greater than 0, got 0", None),
        (
            "upsample like image",
            "upsample",
            "upsample takes a factor or 'to' a size, not another tensor",
            "to take another tensor's H x W, write resize(x, other)",
        ),
        ("upsample to", "upsample", "'to' needs the output size, e.g. 'upsample to 64x64'", None),
        (
            "resize(image, image, mode=bicubic)",
            "mode",
            "'resize' mode must be 'nearest' or 'bilinear'",
            None,
        ),
    ],
)
def test_bad_factors_are_reported_where_written(
    stage: str, at: str, message: str, hint: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "bad.net"
    path.write_text(BAD.format(stage=stage), encoding="utf-8")
    result = invoke("compile", path)
    assert result.exit_code == 1
    column = 5 + stage.index(at)
    assert f"{path}:3:{column}: error[E" in result.output
    assert message in result.output
    assert f"\n        {' ' * stage.index(at)}^" in result.output  # the caret under it
    if hint is not None:
        assert hint in result.output
    assert "netspec calls it 'upsample'" not in result.output


def test_other_frameworks_words_name_the_new_operations() -> None:
    names = list(netspec.ops.REGISTRY)
    assert op_hint("depth_to_space", names) == "netspec calls it 'pixel_shuffle'"
    assert op_hint("space_to_depth", names) == "netspec calls it 'pixel_unshuffle'"
    assert op_hint("interpolate", names) == "netspec calls it 'upsample' or 'resize'"


# ---- ESPCN: the spec, the same network in plain PyTorch, ONNX and emitted Python -------------


def test_espcn_counts_the_plain_networks_parameters() -> None:
    plain = sum(p.numel() for p in ESPCN().parameters())
    compiled = netspec.compile(SPECS / "espcn.net")
    assert compiled.totals.trainable_params == plain == TRAINABLE["espcn.net"] == 22_729
    assert compiled.layers[-1].shape == (1, "3*H", "3*W")


def _espcn_pair() -> tuple[nn.Module, nn.Module]:
    """The compiled ESPCN and the plain one, with the compiled one's weights (redrawn, so
    that no default hides a swap) copied in order, every shape agreeing on the way."""
    torch.manual_seed(0)
    generated, plain = to_torch(netspec.compile(SPECS / "espcn.net")).eval(), ESPCN().eval()
    ours, theirs = list(generated.state_dict().values()), list(plain.state_dict().values())
    assert [tuple(v.shape) for v in ours] == [tuple(v.shape) for v in theirs]
    with torch.no_grad():
        for mine, other in zip(ours, theirs, strict=True):
            mine.uniform_(-0.3, 0.3)
            other.copy_(mine)
    return generated, plain


@pytest.mark.parametrize(("h", "w"), [(8, 8), (11, 17)])
def test_espcn_equals_the_plain_network(h: int, w: int) -> None:
    generated, plain = _espcn_pair()
    x = torch.rand(2, 1, h, w)
    with torch.no_grad():
        want, got = plain(x), generated(x)
    assert got.shape == want.shape == (2, 1, 3 * h, 3 * w)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("sizes", [{}, {"H": 13, "W": 21}], ids=["symbolic", "bound"])
def test_espcn_runs_in_onnx_runtime(sizes: dict[str, int], tmp_path: Path) -> None:
    """As written (1xHxW: one file for any size, its output's sizes named 3*H and 3*W in the
    graph and the metadata) and at a given size (`--set H=13 --set W=21`)."""
    generated, plain = _espcn_pair()
    compiled = netspec.compile(SPECS / "espcn.net", **sizes)
    path = tmp_path / "espcn.onnx"
    report = export_compiled(compiled, path, weights=generated, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)
    session = _session(path)
    dims = [
        d.dim_param or d.dim_value
        for d in onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
    ]
    assert dims[1:] == ([1, "3*H", "3*W"] if not sizes else [1, 39, 63])
    for h, w in [(13, 21)] if sizes else [(13, 21), (8, 30)]:
        x = torch.rand(2, 1, h, w)
        (got,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            want = plain(x).numpy()
        assert got.shape == (2, 1, 3 * h, 3 * w)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_espcn_emits_standalone_python_that_matches() -> None:
    """`netspec compile --emit python` writes a file that needs torch alone and loads the
    compiled module's weights, giving its outputs."""
    result = invoke("compile", SPECS / "espcn.net", "--emit", "python")
    assert result.exit_code == 0, result.output
    source = result.stdout
    assert "import netspec" not in source and "from netspec" not in source
    assert "nn.PixelShuffle(3)" in source
    assert source == emit_python(netspec.compile(SPECS / "espcn.net"))
    generated, _ = _espcn_pair()
    emitted = _load(source)().eval()
    emitted.load_state_dict(generated.state_dict())
    x = torch.rand(2, 1, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(emitted(x), generated(x))


def test_resize_is_written_inline_in_emitted_python() -> None:
    compiled = netspec.compile(FPN)
    source = emit_python(compiled)
    assert "nn.functional.interpolate(" in source and ".shape[-2:]" in source
    torch.manual_seed(0)
    generated = to_torch(compiled).eval()
    emitted = _load(source)().eval()
    emitted.load_state_dict(generated.state_dict())
    x = torch.randn(1, 3, 37, 29)
    for a, b in zip(_fpn_outputs(emitted, x), _fpn_outputs(generated, x), strict=True):
        torch.testing.assert_close(a, b)
