"""Issue 22's normalization words: `layernorm channels`, `l2norm`, `layer_scale`, `drop_path`
and `gelu approximate=tanh`. Each one's shape, parameters, multiply-adds and receptive field;
its mistakes, reported at file:line:col; PyTorch's formula; ONNX Runtime against PyTorch;
drop_path in training and at inference; and specs/convnext_t.net against ConvNeXt-T in
plain PyTorch (tests/reference_convnext.py) with the same weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import Tensor

import netspec
from netspec.cli import main
from netspec.compiler import Compiled
from netspec.export import export_compiled
from netspec.export.fcn import fcn_module, fully_convolutional
from netspec.lower import to_torch
from netspec.lower.emit import emit_python
from netspec.ops import REGISTRY
from netspec.passes.infer import Layer
from tests.reference_convnext import ConvNeXtTiny, in_spec_order
from tests.test_emit import _load
from tests.test_lower import check_against_inference, spec
from tests.test_specs import TRAINABLE

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

SPECS = Path(__file__).resolve().parent.parent / "specs"
QUIET = {"log": lambda _: None}
X = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(0))


def _layer(compiled: Compiled, op: str) -> Layer:
    return next(layer for layer in compiled.layers if layer.op == op)


def _run(body: str, x: Tensor = X, train: bool = False) -> Tensor:
    torch.manual_seed(0)
    compiled = spec(body, f"x: {'x'.join(str(d) for d in x.shape[1:])}")
    module = check_against_inference(compiled).train(train)
    with torch.no_grad():
        out: Tensor = module(x)
    return out


# ---- shapes, parameters, multiply-adds, receptive fields -----------------------------------


@pytest.mark.parametrize(
    ("word", "params", "macs_per_output"),
    [
        ("layernorm channels", 2 * 8, 5),
        ("layernorm over=channels eps=1e-6", 2 * 8, 5),
        ("l2norm scale=20", 8, 3),
        ("layer_scale 1e-6", 8, 1),
        ("drop_path 0.3", 0, 0),
        ("gelu approximate=tanh", 0, 0),
    ],
)
def test_each_word_keeps_the_shape_and_the_receptive_field(
    word: str, params: int, macs_per_output: int
) -> None:
    compiled = spec(f"conv 8 3x3 stride=2 pad=1 | {word}", "x: 3x12x12")
    conv, layer = compiled.layers[0], compiled.layers[1]
    assert layer.shape == conv.shape == (8, 6, 6)
    assert layer.params == params
    assert layer.macs == macs_per_output * 8 * 6 * 6
    assert layer.rf == conv.rf and not layer.rf.whole  # exact: 3 wide, jump 2
    assert layer.rf.size == (3, 3) and layer.rf.jump == (2, 2)
    check_against_inference(compiled)


def test_layernorm_over_everything_is_unchanged() -> None:
    """Plain `layernorm` still normalizes the whole sample with a weight per element."""
    compiled = spec("conv 8 3x3 stride=2 pad=1 | layernorm", "x: 3x12x12")
    layer = _layer(compiled, "layernorm")
    assert layer.params == 2 * 8 * 6 * 6 and layer.rf.whole
    module = to_torch(compiled)
    assert isinstance(module.get_submodule(layer.name), torch.nn.LayerNorm)
    assert tuple(module.get_submodule(layer.name).weight.shape) == (8, 6, 6)


def test_channel_words_take_symbolic_sizes_signals_and_vectors() -> None:
    maps = spec("conv 8 3x3 pad=same | layernorm channels | l2norm | layer_scale", "x: 3xHxW")
    assert maps.layers[-1].shape == (8, "H", "W")
    assert maps.totals.trainable_params == 8 * 27 + 8 + 16 + 8 + 8
    signal = spec("conv 4 5 | layernorm channels | l2norm | layer_scale 0.1", "x: 2x16")
    assert [layer.shape for layer in signal.layers[1:]] == [(4, 12)] * 3
    check_against_inference(signal)
    vector = spec("dense 6 | layernorm channels | layer_scale | l2norm | drop_path 0.5")
    assert vector.totals.trainable_params == 3 * 64 * 6 + 6 + 12 + 6 + 6
    check_against_inference(vector)


@pytest.mark.parametrize("word", ["layernorm channels", "l2norm", "layer_scale"])
def test_a_symbolic_channel_count_is_refused(word: str) -> None:
    """After `permute 1 2 0` the channels are the symbolic height: no weight count."""
    with pytest.raises(netspec.SpecError, match=f"{word} needs a numeric channel count"):
        spec(f"permute 1 2 0 | {word}", "x: 3xHxW")


# ---- what they compute: PyTorch's formulas -----------------------------------------------


def test_layernorm_channels_normalizes_each_position_over_its_channels() -> None:
    got = _run("layernorm channels eps=1e-6")
    want = F.layer_norm(X.permute(0, 2, 3, 1), (8,), eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got.mean(1), torch.zeros(2, 6, 6), atol=1e-5, rtol=0)


def test_l2norm_is_unit_length_times_the_learned_scale() -> None:
    got = _run("l2norm scale=20")
    torch.testing.assert_close(got, 20 * F.normalize(X, dim=1))
    torch.testing.assert_close(got.norm(dim=1), torch.full((2, 6, 6), 20.0))


def test_layer_scale_multiplies_each_channel_by_its_learned_value() -> None:
    torch.manual_seed(0)
    module = to_torch(spec("layer_scale 1e-6 as ls", "x: 8x6x6")).eval()
    gamma = module.get_submodule("ls").gamma
    assert gamma.shape == (8,) and bool((gamma == 1e-6).all())
    with torch.no_grad():
        gamma.copy_(torch.arange(8.0))
        torch.testing.assert_close(module(X), X * torch.arange(8.0).view(1, 8, 1, 1))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_is_pytorchs(approximate: str) -> None:
    got = _run(f"scale 3 | gelu approximate={approximate}")
    torch.testing.assert_close(got, F.gelu(3 * X, approximate=approximate))
    if approximate == "tanh":  # the formula itself, and not the exact GELU
        x = 3 * X
        formula = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        torch.testing.assert_close(got, formula)
        assert not torch.allclose(got, F.gelu(x), rtol=0, atol=1e-6)


def test_gelu_defaults_to_the_exact_formula() -> None:
    torch.testing.assert_close(_run("gelu"), F.gelu(X))


def test_channel_words_are_pointwise_as_the_registry_says() -> None:
    """Each output position depends on the values at that position alone (autograd), as
    `locality` says; `layernorm` over the whole sample says nothing of the kind."""
    for body, locality in [
        ("layernorm channels", "pointwise"),
        ("l2norm", "pointwise"),
        ("layer_scale 0.5", "elementwise"),
        ("drop_path 0.5", "elementwise"),
        ("gelu approximate=tanh", "elementwise"),
    ]:
        compiled = spec(body, "x: 3x4x4")
        node = compiled.graph.nodes[0]
        assert REGISTRY[node.op].locality_for(node.params) == locality, body
        module = to_torch(compiled).eval().double()
        x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
        reaches = torch.autograd.functional.jacobian(module, x)[0, ..., 0, :, :, :].ne(0)
        h, w = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
        same = (h[:, :, None, None] == h) & (w[:, :, None, None] == w)  # (4, 4, 4, 4)
        allowed = same[None, :, :, None].expand_as(reaches)
        if locality == "elementwise":
            allowed = allowed & torch.eye(3, dtype=torch.bool)[:, None, None, :, None, None]
        assert reaches.any() and not (reaches & ~allowed).any(), body
    whole = spec("layernorm", "x: 3x4x4").graph.nodes[0]
    assert REGISTRY["layernorm"].locality_for(whole.params) is None


def test_a_classifier_with_the_new_words_converts_to_fully_convolutional() -> None:
    """Pointwise words slide: the converted network's first score is the classifier's on
    the first window; `layernorm` over the whole window is still refused."""
    words = "layernorm channels | l2norm scale=2 | layer_scale 0.5 | drop_path 0.1 | gelu"
    compiled = netspec.compile(
        f"network n(image: 1x8x8) {{\n    conv 4 3x3 | {words} | dense 3\n}}\n"
    )
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    net = fcn_module(fully_convolutional(compiled), module)
    image = torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores, first = net(image), module(image[:, :, :8, :8])
    torch.testing.assert_close(scores[0, :, 0, 0], first[0], rtol=1e-4, atol=1e-5)
    refused = netspec.compile(
        "network n(image: 1x8x8) {\n    conv 4 3x3 | layernorm | dense 3\n}\n"
    )
    with pytest.raises(netspec.errors.ExportError, match="normalizes over the whole window"):
        fully_convolutional(refused)


# ---- drop_path: training and inference ----------------------------------------------------


def test_drop_path_drops_whole_samples_while_training_and_rescales_the_rest() -> None:
    x = torch.randn(400, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    got = _run("drop_path 0.25", x, train=True)
    dropped = (got == 0).flatten(1).all(1)
    kept = ~dropped
    torch.testing.assert_close(got[kept], x[kept] / 0.75)  # rescaled by 1/(1-p)
    assert bool(((got == 0) == dropped.view(-1, 1, 1, 1)).all())  # whole samples, not units
    assert 0.18 < dropped.float().mean().item() < 0.32  # about p of them (100 expected)
    again = _run("drop_path 0.25", x, train=True)
    torch.testing.assert_close(again, got)  # the same seed drops the same samples


def test_drop_path_is_the_identity_at_inference_and_in_onnx(tmp_path: Path) -> None:
    compiled = spec("conv 4 1x1 | drop_path 0.9 | relu", "x: 3x5x5")
    module = to_torch(compiled).eval()
    drop = module.get_submodule(compiled.layers[1].name)
    assert drop(X) is X
    export_compiled(compiled, tmp_path / "d.onnx", weights=module, **QUIET)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "d.onnx")).graph.node]
    assert ops == ["Conv", "Relu"]


# ---- ONNX Runtime against PyTorch -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
def test_onnx_runtime_agrees_with_pytorch(tmp_path: Path) -> None:
    body = (
        "conv 8 3x3 pad=1 | layernorm channels eps=1e-6 | gelu approximate=tanh\n"
        "l2norm scale=20 | layer_scale 0.3 | drop_path 0.2 | gelu\n"
        "avgpool global | layernorm channels | dense 5"
    )
    compiled = spec(body, "x: 3x9x9")
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    report = export_compiled(compiled, tmp_path / "w.onnx", weights=module, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "w.onnx")).graph.node}
    assert "LayerNormalization" in ops and "Transpose" in ops
    session = ort.InferenceSession(str(tmp_path / "w.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).standard_normal((4, 3, 9, 9)).astype(np.float32)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_emitted_python_is_the_same_network() -> None:
    body = "layernorm channels | l2norm scale=2 | layer_scale 0.5 | drop_path 0.1 | gelu"
    compiled = spec(body, "x: 8x6x6")
    torch.manual_seed(0)
    generated = to_torch(compiled).eval()
    emitted = _load(emit_python(compiled))().eval()
    assert list(emitted.state_dict()) == list(generated.state_dict())
    emitted.load_state_dict(generated.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(emitted(X), generated(X))


# ---- mistakes: where, what and the hint -----------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "col", "message", "hint"),
    [
        ("drop_path 1", 28, "'drop_path' p must be less than 1, got 1", None),
        ("drop_path -0.1", 28, "'drop_path' p must be at least 0, got -0.1", None),
        (
            "gelu approximate=fast",
            23,
            "'gelu' approximate must be 'none' or 'tanh', got the name 'fast'",
            "write approximate=none or approximate=tanh",
        ),
        (
            "gelu approximate=tan",
            23,
            "'gelu' approximate must be 'none' or 'tanh'",
            "did you mean 'tanh'?",
        ),
        (
            "layernorm chanels",
            28,
            "'layernorm' over must be 'all' or 'channels'",
            "did you mean 'channels'?",
        ),
        ("l2norm scale=0", 25, "'l2norm' scale must be greater than 0, got 0", None),
        (
            "layer_scale 1e-6 gamma=2",
            35,
            "'layer_scale' has no parameter 'gamma'",
            "it takes: value",
        ),
    ],
)
def test_mistakes_are_reported_where_they_are_written(
    stage: str, col: int, message: str, hint: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "bad.net"
    path.write_text(f"network t(x: 8x6x6) {{\n    conv 8 3x3 | {stage}\n}}\n", encoding="utf-8")
    with pytest.raises(netspec.SpecError) as info:
        netspec.compile(path)
    (diag,) = info.value.diagnostics
    assert message in diag.message
    assert (Path(diag.span.file).name, diag.span.line, diag.span.col) == ("bad.net", 2, col)
    assert diag.hint == hint


def test_the_command_line_prints_the_place_and_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "bad.net"
    path.write_text("network t(x: 8x6x6) {\n    gelu approximate=erf\n}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["compile", str(path)])
    assert result.exit_code == 1
    assert "bad.net:2:10: error[E226]: 'gelu' approximate must be 'none' or 'tanh'" in result.output
    assert "write approximate=none or approximate=tanh" in result.output


# ---- specs/convnext_t.net against ConvNeXt-T in plain PyTorch ------------------------------


def _convnext(size: int = 64) -> Compiled:
    """The spec on a smaller image (3x64x64: 2x2 maps in the last stage), so parity is fast."""
    text = (SPECS / "convnext_t.net").read_text(encoding="utf-8")
    return netspec.compile(text.replace("3x224x224", f"3x{size}x{size}"))


def test_convnext_t_has_torchvisions_count() -> None:
    reference = sum(p.numel() for p in ConvNeXtTiny().parameters())
    compiled = netspec.compile(SPECS / "convnext_t.net")
    assert compiled.totals.trainable_params == reference == TRAINABLE["convnext_t.net"]
    assert [layer.shape for layer in compiled.layers if layer.op == "add"][-1] == (768, 7, 7)
    ops = {layer.op for layer in compiled.layers}
    assert {"layer_scale", "drop_path", "gelu", "layernorm"} <= ops


def _shared_weights(compiled: Compiled, ramp: bool) -> tuple[torch.nn.Module, ConvNeXtTiny]:
    """The compiled module, and the reference given its weights in order (a Linear's weight
    is the 1x1 convolution's, a (C, 1, 1) layer scale the C vector); every 1-D parameter
    is redrawn first, so that layer norms' ones and zeros and the 1e-6 layer scales hide
    no swap and no silent branch."""
    torch.manual_seed(0)
    generated, reference = to_torch(compiled), ConvNeXtTiny(ramp=ramp)
    ours, theirs = list(generated.parameters()), in_spec_order(reference)
    assert [p.squeeze().shape for p in ours] == [p.squeeze().shape for p in theirs]
    with torch.no_grad():
        for mine, other in zip(ours, theirs, strict=True):
            if mine.dim() == 1:
                mine.uniform_(-0.5, 0.5)
            other.copy_(mine.reshape(other.shape))
    return generated, reference


def test_convnext_t_gives_the_reference_outputs() -> None:
    compiled = _convnext()
    generated, reference = _shared_weights(compiled, ramp=True)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want, got = reference.eval()(x), generated.eval()(x)
    assert got.shape == want.shape == (2, 1000)
    assert want.abs().max() > 1e-2  # the numbers compared are not all nearly zero
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_convnext_t_drops_the_same_branches_as_torchvision_while_training() -> None:
    """With every block's rate 0.1 (the spec's; `ramp=False` in the reference) and the same
    seed, training-mode outputs agree too: the same draws, the same samples dropped."""
    compiled = _convnext(32)
    generated, reference = _shared_weights(compiled, ramp=False)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.manual_seed(6)
        want = reference.train()(x)
        torch.manual_seed(6)
        got = generated.train()(x)
        eval_out = generated.eval()(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, eval_out)  # some branch was dropped


def test_convnext_t_emits_and_exports(tmp_path: Path) -> None:
    compiled = _convnext(32)
    torch.manual_seed(0)
    generated = to_torch(compiled).eval()
    emitted = _load(emit_python(compiled))().eval()
    emitted.load_state_dict(generated.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(emitted(x), generated(x))
    report = export_compiled(compiled, tmp_path / "c.onnx", weights=generated, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)
