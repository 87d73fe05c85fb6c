"""Issue 22's block words: `slice`, `a, b = split / chunk`, blocks with several outputs,
and operations given to blocks as arguments; ShuffleNet-v2 and MobileNet-v3 small written
with them, against plain-PyTorch references of torchvision's layouts (tests/reference_*.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import netspec
from netspec.compiler import Compiled
from netspec.diagnostics import Diagnostic, SpecError
from netspec.export import export_compiled
from netspec.lower import to_torch
from netspec.lower.emit import emit_python
from netspec.ops import RF
from tests.reference_mobilenet_v3 import MobileNetV3Small
from tests.reference_shufflenet import ShuffleNetV2
from tests.test_specs import TRAINABLE

SPECS = Path(__file__).resolve().parent.parent / "specs"
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread


def net(body: str, inputs: str = "x: 8x4x4", prelude: str = "") -> Compiled:
    return netspec.compile(f"{prelude}\nnetwork t({inputs}) {{\n{body}\n}}\n")


def error(text: str) -> Diagnostic:
    """The first diagnostic compiling `text` gives."""
    with pytest.raises(SpecError) as caught:
        netspec.compile(text)
    return caught.value.diagnostics[0]


def where(d: Diagnostic) -> tuple[str, int, int]:
    return (d.code, d.span.line, d.span.col)


def run(compiled: Compiled, *xs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = to_torch(compiled).eval()(*xs)
    assert isinstance(out, torch.Tensor)
    return out


# ---- slice ----------------------------------------------------------------------------------


def test_slice_is_pythons_half_open_range_of_maps() -> None:
    compiled = net("conv 8 3x3 pad=1 | slice 2..5")
    layer = compiled.inferred.layer("slice1")
    assert layer.shape == (3, 4, 4)
    assert layer.rf == compiled.inferred.layer("conv1").rf  # the field is kept exactly
    x = torch.randn(2, 8, 4, 4)
    module = to_torch(compiled).eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), module.conv1(x)[:, 2:5], rtol=0, atol=0)


def test_slice_takes_the_features_of_a_vector_and_a_signals_channels() -> None:
    assert net("dense 10 | slice 0..4").inferred.layer("slice1").shape == (4,)
    assert net("slice 3..8", "x: 8x20").inferred.layer("slice1").shape == (5, 20)


@pytest.mark.parametrize(
    ("stage", "words"),
    [
        ("slice 2..9", ["slice 2..9 needs 9 maps, got 8", "the maps are 0..8"]),
        ("slice 5..5", ["keeps no maps", "a..b keeps maps a to b-1"]),
        ("slice 3", ["slice takes a range of maps, a..b", "slice 0..58 keeps maps 0 to 57"]),
    ],
)
def test_a_slice_that_does_not_fit_is_located(stage: str, words: list[str]) -> None:
    d = error(f"network t(x: 8x4x4) {{\n    relu | {stage}\n}}")
    assert (d.span.line, d.span.col) == (2, 12)
    text = f"{d.message} {d.hint}"
    assert all(w in text for w in words), text


# ---- split and chunk -----------------------------------------------------------------------


def test_split_and_chunk_equal_pytorchs_and_name_one_slice_each() -> None:
    compiled = net(
        "a, b, c = split 3\nd, e = split [2, 6]\nf, g = chunk 2\noutput a, b, c, d, e, f, g"
    )
    nodes = {n.name: (n.op, n.params.channels) for n in compiled.graph.nodes}
    assert nodes == {
        "a": ("slice", (0, 3)),
        "b": ("slice", (3, 6)),
        "c": ("slice", (6, 8)),  # torch.split's last piece is what remains
        "d": ("slice", (0, 2)),
        "e": ("slice", (2, 8)),
        "f": ("slice", (0, 4)),
        "g": ("slice", (4, 8)),
    }
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        got = to_torch(compiled).eval()(x)
    want = [*torch.split(x, 3, 1), *torch.split(x, [2, 6], 1), *torch.chunk(x, 2, 1)]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_the_name_underscore_drops_its_piece() -> None:
    compiled = net("a, _, b = split [2, 3, 3]\n_, c = chunk 2\nconcat(a, b, c)")
    nodes = [(n.name, n.params.channels) for n in compiled.graph.nodes if n.op == "slice"]
    assert nodes == [("a", (0, 2)), ("b", (5, 8)), ("c", (4, 8))]
    assert compiled.warnings == []


def test_a_split_is_a_branch_and_its_stages_before_it_run_once() -> None:
    compiled = net("conv 8 1x1 | relu\nleft, right = conv 6 1x1 | chunk 2\nrelu\nadd(left, right)")
    names = [n.name for n in compiled.graph.nodes]
    assert names == ["conv1", "relu1", "conv2", "left", "right", "relu2", "add1"]
    assert compiled.graph.node("relu2").inputs == ("relu1",)  # the cursor did not move
    assert compiled.graph.outputs == ("add1",)


@pytest.mark.parametrize(
    ("line", "code", "col", "words"),
    [
        ("a, b = split 3", "E241", 5, ["split gives 3 tensors here (3, 3, 2 maps)", "chunk 2"]),
        ("a, b, c = chunk 3", "E241", 15, ["chunk 3 needs a number of maps that 3 divides"]),
        ("a, b = split [2, 3]", "E241", 12, ["2 + 3 = 5 maps, but its input has 8", "add up"]),
        ("a, b = split 4 as s", "E241", 12, ["named on the left", "a, b = split"]),
        ("a, b = split size=4", "E225", 18, ["'split' has no parameter 'size'"]),
        ("a, b = split", "E213", 12, ["'split' takes one value, got 0"]),
        ("a, b = split half", "E201", 18, ["unknown name 'half'"]),
        ("a, a = chunk 2", "E210", 8, ["'a' is named twice"]),
        ("a, b = conv 8 1x1", "E241", 12, ["'conv' gives one tensor, but 2 names", "split, chunk"]),
        ("a, b = relu | concat { identity }", "E241", 19, ["'concat' gives one tensor"]),
        ("relu | split 4", "E241", 12, ["gives several tensors", "a, b = split"]),
    ],
)
def test_split_and_chunk_mistakes_are_located(
    line: str, code: str, col: int, words: list[str]
) -> None:
    d = error(f"network t(x: 8x4x4) {{\n    {line}\n    output a\n}}")
    assert where(d) == (code, 2, col), (d.message, d.span)
    text = f"{d.message} {d.hint}"
    assert all(w in text for w in words), text


def test_the_receptive_field_through_a_split_is_exact() -> None:
    compiled = net("conv 8 3x3 stride=2 pad=1\na, b = chunk 2\nconcat(b, a) | conv 4 3x3 pad=1")
    a, conv = compiled.inferred.layer("a").rf, compiled.inferred.layer("conv2").rf
    assert a == RF(size=(3, 3), jump=(2, 2), start=(0.5, 0.5))
    assert conv == RF(size=(7, 7), jump=(2, 2), start=(0.5, 0.5))


# ---- blocks with several outputs -------------------------------------------------------------

HALVES = """
block halves() {
    low, high = chunk 2
    up = high | conv in.c//2 1x1
    output low, up
}
"""


def test_a_block_gives_several_tensors_to_several_names() -> None:
    compiled = net(
        "lo, hi = halves()\nlo2, hi2 = halves() as second\nadd(lo, hi, lo2, hi2)", prelude=HALVES
    )
    names = [n.name for n in compiled.graph.nodes]
    assert names[:3] == ["halves1.low", "halves1.high", "halves1.up"]
    assert names[3:6] == ["second.low", "second.high", "second.up"]
    assert compiled.graph.node("add1").inputs == (
        "halves1.low",
        "halves1.up",
        "second.low",
        "second.up",
    )
    x = torch.randn(2, 8, 4, 4)
    module = to_torch(compiled).eval()
    with torch.no_grad():
        low, high = x.chunk(2, 1)
        want = 2 * low + module.halves1["up"](high) + module.second["up"](high)
        torch.testing.assert_close(module(x), want)


@pytest.mark.parametrize(
    ("body", "code", "at", "words"),
    [
        (
            "halves() | relu",
            "E220",
            (9, 5),
            ["gives 2 tensors, where one is expected", "low, up = halves(...)"],
        ),
        ("y = halves()", "E220", (9, 9), ["gives 2 tensors, where one is expected"]),
        ("concat(in, halves())", "E220", (9, 16), ["gives 2 tensors"]),
        (
            "a, b, c = halves()\noutput a",
            "E220",
            (9, 5),
            ["gives 2 tensors, but 3 names are given", "low, up = halves(...)"],
        ),
        ("a, b = halves()", "E220", (9, 5), ["no 'output' says which", "output a, b"]),
    ],
)
def test_several_outputs_where_one_is_expected_are_located(
    body: str, code: str, at: tuple[int, int], words: list[str]
) -> None:
    d = error(f"{HALVES}\nnetwork t(x: 8x4x4) {{\n    {body}\n}}")
    assert where(d) == (code, *at), (d.message, d.span)
    text = f"{d.message} {d.hint}"
    assert all(w in text for w in words), text


def test_a_second_output_statement_is_reported_where_it_is() -> None:
    text = "block b() {\n    x = relu\n    output x\n    y = tanh\n    output y\n}\n"
    d = error(text + "network t(x: 8x4x4) {\n    b()\n}")
    assert where(d) == ("E220", 5, 5)
    assert d.hint == "name them all in one: output x, y"
    assert [n.span.line for n in d.notes] == [3, 8]  # the first output, the call site


# ---- operations as block arguments ---------------------------------------------------------

BNECK = """
block bneck(c, act=relu) {
    conv c 1x1 | act
}
"""


def test_an_operation_given_to_a_block_is_used_as_its_stage() -> None:
    body = "bneck(8) | bneck(8, hardswish)\nbneck(8, act=leaky_relu 0.2)\n"
    body += "bneck(8, act=leaky_relu(0.3))"  # the call form
    compiled = net(body, prelude=BNECK)
    acts = [(n.name, n.op) for n in compiled.graph.nodes if n.op != "conv"]
    assert acts == [
        ("bneck1.relu1", "relu"),
        ("bneck2.hardswish1", "hardswish"),
        ("bneck3.leaky_relu1", "leaky_relu"),
        ("bneck4.leaky_relu1", "leaky_relu"),
    ]
    slopes = [n.params.slope for n in compiled.graph.nodes if n.op == "leaky_relu"]
    assert slopes == [0.2, 0.3]


def test_a_stage_argument_reads_its_names_where_it_was_written() -> None:
    prelude = BNECK + "block outer(slope) {\n    bneck(4, act=leaky_relu slope*2)\n}\n"
    compiled = net("outer(0.25)", prelude=prelude)
    (act,) = [n for n in compiled.graph.nodes if n.op == "leaky_relu"]
    assert act.params.slope == 0.5


def test_a_block_passes_a_stage_on_and_takes_a_block_as_one() -> None:
    prelude = (
        BNECK
        + "block twice(c, act, unit=bneck) {\n    unit(c, act=act) | unit(c, act=act)\n}\n"
        + "block pooled(pool=maxpool) {\n    pool 2x2\n}\n"
    )
    compiled = net("twice(4, tanh) | pooled() | pooled(pool=avgpool)", prelude=prelude)
    ops = [n.op for n in compiled.graph.nodes]
    assert ops == ["conv", "tanh", "conv", "tanh", "maxpool", "avgpool"]
    assert compiled.inferred.layer("pooled2.avgpool1").shape == (4, 1, 1)


def test_a_parameter_named_like_an_operation_leaves_that_operation_alone() -> None:
    prelude = "block b(pad=same) {\n    conv 4 3x3 pad=pad | pad 1\n}\n"
    ops = [n.op for n in net("b()", prelude=prelude).graph.nodes]
    assert ops == ["conv", "pad"]


@pytest.mark.parametrize(
    ("call", "code", "at", "words"),
    [
        (
            "bneck(8, act=hardswitch)",
            "E202",
            (7, 18),
            ["unknown operation 'hardswitch'", "hardswish"],
        ),
        ("bneck(8, act=os)", "E202", (7, 18), ["unknown operation 'os'"]),
        ("bneck(8, act=leaky_relu 0.2 slop=1)", "E225", (7, 33), ["no parameter 'slop'"]),
        ("bneck(8, act=leaky_relu -1)", "E242", (7, 18), ["reads as a subtraction", "(-...)"]),
    ],
)
def test_a_wrong_stage_argument_is_located_where_it_was_given(
    call: str, code: str, at: tuple[int, int], words: list[str]
) -> None:
    d = error(f"{BNECK}\nnetwork t(x: 8x4x4) {{\n    {call}\n}}")
    assert where(d) == (code, *at), (d.message, d.span)
    text = f"{d.message} {d.hint}"
    assert all(w in text for w in words), text


def test_a_stage_given_with_arguments_takes_no_more() -> None:
    prelude = "block b(act=leaky_relu 0.1) {\n    act 0.2\n}\n"
    d = error(prelude + "network t(x: 8x4x4) {\n    b()\n}")
    assert where(d) == ("E242", 2, 9)
    assert "given with its arguments" in d.message


# ---- the specs -------------------------------------------------------------------------------

REFERENCES: dict[str, type[nn.Module]] = {
    "shufflenet_v2.net": ShuffleNetV2,
    "mobilenet_v3_small.net": MobileNetV3Small,
}


def small(name: str) -> Compiled:
    """The spec on a 3x64x64 input: the same layers, a fraction of the cost."""
    return netspec.compile(
        (SPECS / name).read_text(encoding="utf-8").replace("3x224x224", "3x64x64")
    )


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_count_equals_the_reference(name: str) -> None:
    reference = sum(p.numel() for p in REFERENCES[name]().parameters())
    assert netspec.compile(SPECS / name).totals.trainable_params == reference == TRAINABLE[name]


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_same_outputs_as_the_reference(name: str) -> None:
    """The compiled module's weights and batchnorm statistics, copied in order into the
    reference (every tensor's shape must agree on the way), give the same outputs."""
    compiled = small(name)
    generated, reference = to_torch(compiled).eval(), REFERENCES[name]().eval()
    ours = [(k, v) for k, v in generated.state_dict().items() if "num_batches" not in k]
    theirs = [v for k, v in reference.state_dict().items() if "num_batches" not in k]
    assert [tuple(v.shape) for _, v in ours] == [tuple(v.shape) for v in theirs]
    torch.manual_seed(0)
    with torch.no_grad():
        for (key, mine), other in zip(ours, theirs, strict=True):
            if mine.dim() == 1 and not key.endswith("running_var"):
                mine.uniform_(-0.5, 0.5)  # batchnorm's ones and zeros would hide a swap
            other.copy_(mine)
        x = torch.rand(2, 3, 64, 64)
        want, got = reference(x), generated(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_shufflenets_receptive_fields_stay_numbers_through_its_splits() -> None:
    inferred = netspec.compile(SPECS / "shufflenet_v2.net").inferred
    fields = {
        name: (inferred.layer(name).rf.size[0], inferred.layer(name).rf.jump[0])
        for name in (
            "stage2.1.kept",
            "stage2.1.concat1",
            "stage3.7.kept",
            "stage4.3.channel_shuffle1",
        )
    }
    assert fields == {
        "stage2.1.kept": (15, 8),
        "stage2.1.concat1": (31, 8),
        "stage3.7.kept": (271, 16),  # 63 after stage 2, + 2*8 (stride 2), + 6 units of 2*16
        "stage4.3.channel_shuffle1": (527, 32),
    }
    assert not any(inferred.layer(n.name).rf.whole for n in inferred.graph.nodes if n.op == "slice")


def test_mobilenet_v3_gives_each_block_its_activation_and_gate() -> None:
    nodes = netspec.compile(SPECS / "mobilenet_v3_small.net").graph.nodes
    acts = [n.op for n in nodes if n.op in ("relu", "hardswish") and "se1." not in n.name]
    assert acts == ["hardswish"] + ["relu"] * 5 + ["hardswish"] * 18  # 2 per block, the head
    gates = [n.name for n in nodes if n.op == "mul"]
    assert len(gates) == 9  # the first block and the last eight have squeeze-and-excitation
    squeezes = [
        n.params.channels for n in nodes if re.search(r"(^|\.)se1\.mul1\.1\.conv1$", n.name)
    ]
    assert squeezes == [8, 24, 64, 64, 32, 40, 72, 144, 144]


def test_a_split_exports_to_onnx_and_emits_python(tmp_path: Path) -> None:
    """A unit with `chunk`, a two-output block and a stage argument: ONNX Runtime and the
    emitted Python compute what the lowered module does."""
    compiled = net(
        "lo, hi = halves()\nbneck(8, act=hardswish)\nconcat(lo, hi) | slice 1..3",
        prelude=HALVES + BNECK,
    )
    module = to_torch(compiled).eval()
    x = torch.randn(3, 8, 4, 4)
    with torch.no_grad():
        want = module(x).numpy()
    path = tmp_path / "t.onnx"
    export_compiled(compiled, path, log=lambda _: None)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    source = emit_python(compiled)
    assert "[:, 1:3]" in source
    space: dict[str, object] = {}
    exec(compile(source, "emitted.py", "exec"), space)
    emitted = space["T"]  # the network `t`'s class
    assert isinstance(emitted, type) and issubclass(emitted, nn.Module)
    copy = emitted()
    copy.load_state_dict(module.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(copy.eval()(x).numpy(), want, rtol=1e-5, atol=1e-6)
