"""Issue 22's sizes: computed sizes in `AxB` (`(B*5 + C)x7x7`, `3x(k)`), `project` on a
1-D signal and on a vector, and a dense vector of C as a channel gate over C x H x W maps
(`mul(maps, gate)`): parsed, inferred, refused where they should be (at file:line:col),
formatted byte for byte, lowered, emitted and exported alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import netspec
from netspec.compiler import Compiled
from netspec.diagnostics import SpecError
from netspec.export import export_compiled
from netspec.fmt import format_text
from netspec.lower import to_torch
from netspec.lower.emit import emit_python
from netspec.syntax import ast
from netspec.syntax.parser import parse

pytestmark = pytest.mark.usefixtures("one_thread")


def _size(text: str) -> ast.Size:
    """The value of `const s = TEXT`, parsed."""
    const = parse(f"const s = {text}\n").items[0]
    assert isinstance(const, ast.Const) and isinstance(const.value, ast.Size), const
    return const.value


def _shapes(compiled: Compiled) -> dict[str, tuple[int | str, ...]]:
    return {layer.name: layer.shape for layer in compiled.layers}


def _error(tmp_path: Path, text: str) -> tuple[str, str, str, str | None]:
    """(code, where, message, hint) of the first mistake in `text`, written to a file."""
    spec = tmp_path / "bad.net"
    spec.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        netspec.compile(spec)
    first = caught.value.diagnostics[0]
    return first.code, first.span.where, first.message, first.hint


# ---- computed sizes --------------------------------------------------------------------


def test_a_computed_size_is_one_value() -> None:
    size = _size("(B*5 + C)x7x7")
    assert len(size.dims) == 3 and size.dims[1:] == (7, 7)
    assert isinstance(size.dims[0], ast.BinOp) and size.dims[0].op == "+"
    assert _size("3x(k)").dims == (3, ast.Name(name="k"))
    assert _size("-1x(h)x(w)").dims == (-1, ast.Name(name="h"), ast.Name(name="w"))
    assert _size("(a)x-1").dims == (ast.Name(name="a"), -1)
    assert _size("3 x 3") == _size("3x3") == ast.Size(dims=(3, 3))


def test_a_name_after_a_parenthesis_is_still_a_name_elsewhere() -> None:
    """`x` is a size's only where a size may go on: a block named `x`, an input named `x`
    and a name `x1` elsewhere are what they were."""
    text = (
        "block x(c) {\n    conv c 1x1\n}\n"
        "network n(x: 1x8x8, x1: 1x8x8) {\n    a = x | conv 2 3x3\n"
        "    repeat (2) x(2)\n    concat(x1, a)\n}\n"
    )
    network = parse(text).items[1]
    assert isinstance(network, ast.Network)
    assert [i.name for i in network.inputs] == ["x", "x1"]


SIZES = """\
const B = 2
const C = 20

block square(c, k) {
    conv c (k)x(k) pad=(k - 1)//2
}

network sizes(image: 1x28x28) {
    dense 1470
    reshape (B*5 + C)x7x7
    square(8, 3)
    conv 4 (B + 1)x1 pad=1x0
    reshape -1x(C//5)x(7)
}
"""


def test_computed_sizes_infer_as_their_values() -> None:
    shapes = _shapes(netspec.compile(SIZES))
    assert shapes["reshape1"] == (30, 7, 7)
    assert shapes["square1.conv1"] == (8, 7, 7)
    assert shapes["conv1"] == (4, 7, 7)
    assert shapes["reshape2"] == (7, 4, 7)


def test_the_list_form_is_the_same_size() -> None:
    listed = SIZES.replace("(B*5 + C)x7x7", "[B*5 + C, 7, 7]").replace("(k)x(k)", "[k, k]")
    one, other = netspec.compile(SIZES), netspec.compile(listed)
    assert _shapes(one) == _shapes(other)
    assert one.totals == other.totals


def test_sizes_are_bound_by_set() -> None:
    shapes = _shapes(netspec.compile(SIZES, B=4, C=10))
    assert (shapes["reshape1"], shapes["reshape2"]) == ((30, 7, 7), (10, 2, 7))


@pytest.mark.parametrize(
    ("line", "code", "col", "words"),
    [
        ("conv 8 (k/2)x3", "E205", 13, "a size needs whole numbers, got 1.5"),
        ("conv 8 3x(q)", "E201", 15, "unknown name 'q'"),
        ("reshape (k)x(k)x7", "E301", 5, "cannot reshape 1x8x8 (64 values) to 3x3x7"),
        ("conv 8 (0)x3", "E226", 12, "kernel"),
    ],
)
def test_a_wrong_computed_size_is_reported_where_it_is(
    tmp_path: Path, line: str, code: str, col: int, words: str
) -> None:
    text = f"const k = 3\n\nnetwork n(x: 1x8x8) {{\n    {line}\n}}\n"
    got_code, where, message, _ = _error(tmp_path, text)
    assert (got_code, where) == (code, f"{tmp_path / 'bad.net'}:4:{col}")
    assert words in message


FORMATTED = """\
const n = 4

block b(k) {
    conv 8 (k)x(k) pad=same | reshape -1x(k*k)x(n*2 + 1)
    conv 8 3x(k) | conv 8 (k - 1)x1 | conv 8 (k*2)x7x(k)
}

network n2(x: 1x8x8) {
    reshape (n + 1 - 1)x(n*4)
}
"""


def test_fmt_keeps_computed_sizes_byte_for_byte() -> None:
    assert format_text(FORMATTED) == FORMATTED


def test_fmt_joins_a_spaced_size() -> None:
    loose = "network n(x: 1x8x8) {\n    conv 8 3 x 3 | reshape -1 x (4)x( 2 * 98 )\n}\n"
    tight = "network n(x: 1x8x8) {\n    conv 8 3x3 | reshape -1x(4)x(2 * 98)\n}\n"
    assert format_text(loose) == tight
    assert format_text(tight) == tight


# ---- project on a signal and on a vector ------------------------------------------------

PROJECT = """\
block res1d(c, stride=1) {
    body = conv c 3 stride=stride pad=1 | batchnorm | relu | conv c 3 pad=1 | batchnorm
    add(body, project(c, stride)) | relu
}

block resmlp(c) {
    add(in | dense c | relu | dense c, project(c)) | relu
}

network kws(signal: 4x50) {
    res1d(8, stride=2) | res1d(8)
    avgpool global | flatten | resmlp(6) | dense 3
}
"""


def test_project_on_a_signal_and_a_vector() -> None:
    compiled = netspec.compile(PROJECT)
    layers = {layer.name: layer for layer in compiled.layers}
    down, same, flat = (
        layers["res1d1.project1"],
        layers["res1d2.project1"],
        layers["resmlp1.project1"],
    )
    assert down.shape == (8, 25) and down.params == 4 * 8 + 2 * 8
    assert down.macs == 8 * 25 * (4 + 1)
    assert (down.rf.size[1], down.rf.jump[1]) == (1, 2)
    assert same.shape == (8, 25) and same.params == 0  # the identity: the shapes agree
    assert flat.shape == (6,) and flat.params == 8 * 6 + 2 * 6
    module = to_torch(compiled)
    conv, norm = module.get_submodule("res1d1.project1")
    assert isinstance(conv, nn.Conv1d) and conv.stride == (2,) and conv.bias is None
    assert isinstance(norm, nn.BatchNorm1d)
    linear, norm = module.get_submodule("resmlp1.project1")
    assert isinstance(linear, nn.Linear) and linear.bias is None
    assert isinstance(module.get_submodule("res1d2.project1"), nn.Identity)
    assert module(torch.randn(2, 4, 50)).shape == (2, 3)


def test_project_on_a_vector_has_no_stride(tmp_path: Path) -> None:
    text = "network n(x: 10) {\n    dense 8\n    add(in, project(4, 2))\n}\n"
    code, where, message, hint = _error(tmp_path, text)
    assert (code, where) == ("E301", f"{tmp_path / 'bad.net'}:3:13")
    assert "project on a vector (8) has no positions to stride over" in message
    assert hint == "leave the stride out: project(4)"


# ---- a vector of C as a channel gate -----------------------------------------------------

GATE = """\
block se(c, r=4) {
    maps = identity
    gate = maps | avgpool global | dense c//r | relu | dense c | sigmoid
    mul(maps, gate)
}

network gated(image: 3x12x12, signal: 6x20) {
    a = image | conv 8 3x3 pad=1 | relu | se(8) | avgpool global | flatten
    bias = signal | avgpool global | dense 6
    waves = signal | conv 6 3 pad=1
    b = add(bias, waves) | res1d(8, stride=2) | avgpool global | flatten
    concat(a, b) | resmlp(6) | dense 4
}
"""


def _gated() -> Compiled:
    """The gates beside the shortcuts on a signal and on a vector (PROJECT's blocks)."""
    return netspec.compile(PROJECT + "\n" + GATE, "gated")


def test_a_vector_gate_infers_as_per_map() -> None:
    compiled = _gated()
    layers = {layer.name: layer for layer in compiled.layers}
    mul, add = layers["a.2.mul1"], layers["b.0"]
    assert mul.in_shapes == ((8, 12, 12), (8,)) and mul.shape == (8, 12, 12)
    assert mul.macs == 8 * 12 * 12
    assert mul.rf.whole  # the gate read every position
    assert add.in_shapes == ((6,), (6, 20)) and add.shape == (6, 20)


def test_a_vector_gate_lowers_as_view_then_multiply() -> None:
    torch.manual_seed(0)
    module = to_torch(_gated())
    mul, add = module.get_submodule("a.2.mul1"), module.get_submodule("b.0")
    maps, gate = torch.randn(2, 8, 5, 5), torch.randn(2, 8)
    want = maps * gate.view(2, 8, 1, 1)  # every SE tutorial's y.view(b, c, 1, 1)
    torch.testing.assert_close(mul(maps, gate), want)
    torch.testing.assert_close(mul(gate, maps), want)
    signal, bias = torch.randn(2, 6, 7), torch.randn(2, 6)
    torch.testing.assert_close(add(bias, signal), signal + bias.view(2, 6, 1))


def test_the_emitted_module_writes_the_view() -> None:
    torch.manual_seed(0)
    compiled = _gated()
    module = to_torch(compiled).eval()
    source = emit_python(compiled)
    assert ".view(-1, 8, 1, 1)" in source and ".view(-1, 6, 1)" in source
    namespace: dict[str, object] = {"__name__": "emitted"}
    exec(compile(source, "<emitted>", "exec"), namespace)
    emitted = [v for v in namespace.values() if isinstance(v, type) and v.__module__ == "emitted"]
    twin = emitted[-1]()
    assert isinstance(twin, nn.Module)
    twin.load_state_dict(module.state_dict())
    x = [torch.randn(2, 3, 12, 12), torch.randn(2, 6, 20)]
    with torch.no_grad():
        torch.testing.assert_close(twin.eval()(*x), module(*x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter
def test_a_vector_gate_runs_alike_in_onnx_runtime(tmp_path: Path) -> None:
    torch.manual_seed(0)
    compiled = _gated()
    module = to_torch(compiled).eval()
    path = tmp_path / "gated.onnx"
    export_compiled(compiled, path, weights=module, log=lambda _: None)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = [
        np.random.default_rng(0).standard_normal((3, *s), np.float32)
        for s in [(3, 12, 12), (6, 20)]
    ]
    (got,) = session.run(None, {"image": x[0], "signal": x[1]})
    with torch.no_grad():
        want = module(*(torch.from_numpy(a) for a in x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_vector_of_the_wrong_width_is_refused(tmp_path: Path) -> None:
    text = (
        "network n(image: 3x8x8) {\n    maps = conv 8 3x3\n"
        "    gate = maps | avgpool global | dense 4 | sigmoid\n    mul(maps, gate)\n}\n"
    )
    code, where, message, hint = _error(tmp_path, text)
    assert (code, where) == ("E301", f"{tmp_path / 'bad.net'}:4:5")
    assert message.endswith("cannot multiply tensors of shapes 8x6x6 and 4")
    assert hint == "a gate of one value per map has 8 values here (dense 8), or 1"
