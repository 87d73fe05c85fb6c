"""The operations of issue 10 against plain PyTorch: each lowered spec computes what the
functional PyTorch call (or the formula the docs give) computes with the same weights; the
parameter and multiply-add counts are the declared ones; and the receptive fields of
`deconv` and `upsample` are the windows that autograd finds in real modules."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

import netspec
from netspec.compiler import Compiled
from netspec.export import export_compiled
from netspec.lower import to_torch
from tests.test_lower import check_against_inference, spec

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread

Binary = Callable[[Tensor, Tensor], Tensor]
Ternary = Callable[[Tensor, Tensor, Tensor], Tensor]
X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _run(body: str, x: Tensor = X, train: bool = False) -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    compiled = spec(body, f"x: {'x'.join(str(d) for d in x.shape[1:])}")
    module = check_against_inference(compiled).train(train)
    with torch.no_grad():
        return module, module(x)


# ---- activations and scale: the functional call and the documented formula ----------------

ACTIVATIONS: list[tuple[str, Callable[[Tensor], Tensor]]] = [
    ("relu6", lambda x: x.clamp(0, 6)),
    ("hardtanh min=-0.5 max=2", lambda x: x.clamp(-0.5, 2)),
    ("hardtanh", lambda x: F.hardtanh(x)),
    ("silu", lambda x: x * torch.sigmoid(x)),
    ("hardswish", lambda x: x * F.relu6(x + 3) / 6),
    ("hardsigmoid", lambda x: F.relu6(x + 3) / 6),
    ("mish", lambda x: x * torch.tanh(F.softplus(x))),
    ("softplus beta=2", lambda x: torch.log1p(torch.exp(2 * x)) / 2),
    ("log_softmax", lambda x: torch.log(torch.softmax(x, 1))),
    ("scale -0.5", lambda x: -0.5 * x),
]


@pytest.mark.parametrize(("body", "formula"), ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_is_its_formula(body: str, formula: Callable[[Tensor], Tensor]) -> None:
    _, got = _run(f"scale 4 | {body}")  # spread the values past every clip and knee
    torch.testing.assert_close(got, formula(4 * X), rtol=1e-5, atol=1e-6)


def test_log_softmax_over_features_after_a_dense_stage() -> None:
    _, got = _run("dense 5 | log_softmax")
    torch.testing.assert_close(got.exp().sum(1), torch.ones(2))


def test_prelu_learns_one_slope_per_map() -> None:
    module, got = _run("prelu as p")
    slopes = module.get_submodule("p").weight
    assert slopes.shape == (3,) and torch.all(slopes == 0.25)
    torch.testing.assert_close(got, F.prelu(X, slopes))
    with torch.no_grad():
        slopes.copy_(torch.tensor([0.0, 0.5, -1.0]))
        a = slopes.view(1, 3, 1, 1)
        torch.testing.assert_close(module(X), torch.where(X > 0, X, a * X))
    assert spec("dense 6 | prelu").totals.trainable_params == 3 * 64 * 6 + 6 + 6


# ---- normalizations ---------------------------------------------------------------------------


def _affine(module: nn.Module, name: str) -> tuple[Tensor, Tensor]:
    """The layer's weight and bias, set to values that are not the identity's."""
    layer = module.get_submodule(name)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-1, 1)
    return layer.weight, layer.bias


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_normalizations_are_pytorchs(train: bool) -> None:
    module, _ = _run("layernorm eps=0.001 as n", train=train)
    w, b = _affine(module, "n")
    with torch.no_grad():
        torch.testing.assert_close(module(X), F.layer_norm(X, (3, 8, 8), w, b, 1e-3))
    module, _ = _run("conv 6 1x1 as c | groupnorm 3 as n", train=train)
    w, b = _affine(module, "n")
    with torch.no_grad():
        conv = module.get_submodule("c")(X)
        expected = F.group_norm(conv, 3, w, b, 1e-5)
        torch.testing.assert_close(module(X), expected)
        # by hand: each group of two maps over its maps and positions
        g = conv.view(2, 3, -1)
        mean, var = g.mean(2, keepdim=True), g.var(2, unbiased=False, keepdim=True)
        by_hand = ((g - mean) / (var + 1e-5).sqrt()).view_as(conv) * w.view(1, 6, 1, 1)
        torch.testing.assert_close(expected, by_hand + b.view(1, 6, 1, 1), rtol=1e-5, atol=1e-5)
    module, _ = _run("instancenorm as n", train=train)
    w, b = _affine(module, "n")
    with torch.no_grad():
        torch.testing.assert_close(module(X), F.instance_norm(X, weight=w, bias=b))
        torch.testing.assert_close(module(X), F.group_norm(X, 3, w, b))  # one map per group
    assert not any(buf.numel() for buf in module.buffers()), "no running statistics"


def test_normalization_parameters() -> None:
    assert spec("layernorm").totals.trainable_params == 2 * 3 * 8 * 8
    assert spec("conv 6 1x1 | groupnorm 2").layers[1].params == 12
    assert spec("instancenorm").layers[0].params == 6
    assert spec("dense 6 | layernorm").layers[1].params == 12
    assert spec("layernorm").layers[0].rf.whole  # the statistics span the whole sample


# ---- merges -------------------------------------------------------------------------------

SE = """
maps = conv 8 3x3 pad=same as c
gate = maps | avgpool global | conv 2 1x1 as squeeze | relu | conv 8 1x1 as excite | sigmoid
mul(maps, gate)
"""


def test_squeeze_and_excitation_is_a_gate_over_the_maps() -> None:
    module, got = _run(SE)
    c, squeeze, excite = (module.get_submodule(n) for n in ("c", "squeeze", "excite"))
    with torch.no_grad():
        maps = c(X)
        gate = torch.sigmoid(excite(F.relu(squeeze(maps.mean((2, 3), keepdim=True)))))
    assert gate.shape == (2, 8, 1, 1)
    torch.testing.assert_close(got, maps * gate)
    compiled = spec(SE)
    merge = compiled.layers[-1]
    assert merge.shape == (8, 8, 8) and merge.macs == 8 * 8 * 8 and merge.rf.whole


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("add(x, g)", lambda x, g: x + g),
        ("add(g, x)", lambda x, g: g + x),
        ("mul(g, x, g)", lambda x, g: g * x * g),
        ("mul(x, one)", lambda x, g: x * g.mean(1, keepdim=True)),
    ],
)
def test_add_and_mul_broadcast_a_gate(body: str, expected: Binary) -> None:
    prelude = "g = avgpool global\none = g | conv 1 1x1 as one_conv\n"
    module, got = _run(prelude + body)
    with torch.no_grad():
        g = X.mean((2, 3), keepdim=True)
        if "one" in body:
            conv = module.get_submodule("one_conv")
            nn.init.constant_(conv.weight, 1 / 3)
            nn.init.zeros_(conv.bias)
            got = module(X)
    torch.testing.assert_close(got, expected(X, g))


@pytest.mark.parametrize(
    ("op", "fn"),
    [
        ("sub", lambda a, b, c: a - b),
        ("mean", lambda a, b, c: (a + b + c) / 3),
        ("max", lambda a, b, c: torch.maximum(torch.maximum(a, b), c)),
        ("mul", lambda a, b, c: a * b * c),
    ],
)
def test_merges_call_and_group_forms(op: str, fn: Ternary) -> None:
    names = "a, b" if op == "sub" else "a, b, c"
    call = f"a = tanh\nb = sigmoid\nc = relu\n{op}({names})"
    group = f"{op} {{\n tanh\n sigmoid\n" + ("" if op == "sub" else " relu\n") + "}"
    expected = fn(torch.tanh(X), torch.sigmoid(X), F.relu(X) if op != "sub" else X)
    for body in (call, group):
        _, got = _run(body)
        torch.testing.assert_close(got, expected)


def test_merge_costs() -> None:
    three = "{\n tanh\n sigmoid\n relu\n}"
    n = 3 * 8 * 8
    assert [spec(f"{op} {three}").layers[-1].macs for op in ("mean", "max", "mul")] == [
        3 * n,
        0,
        2 * n,
    ]
    assert spec("sub {\n tanh\n relu\n}").layers[-1].macs == n


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "g = avgpool global | conv 2 1x1\nadd(x, g)",
            "cannot add tensors of shapes 3x8x8 and 2x1x1",
        ),
        # a C vector is a channel gate (tests/test_words_sizes.py); one of another width is not
        ("g = dense 2\nmul(x, g)", "cannot multiply tensors of shapes 3x8x8 and 2"),
        ("g = avgpool global\nsub(x, g)", "cannot subtract tensors of shapes 3x8x8 and 3x1x1"),
        ("g = maxpool 2x2\nmax(x, g)", "take the maximum of tensors of shapes 3x8x8 and 3x4x4"),
    ],
)
def test_a_mismatch_names_both_shapes(body: str, message: str) -> None:
    with pytest.raises(netspec.SpecError) as info:
        spec(body)
    diag = info.value.diagnostics[0]
    assert message in diag.message and diag.span.line >= 2


# ---- deconv and upsample: shapes, costs, and receptive fields from autograd ------------------


@pytest.mark.parametrize(
    "args",
    ["3x3 stride=2 pad=1 output_pad=1", "2x2 stride=2", "4x4 stride=2 pad=1", "3x2 stride=1x2"],
)
def test_deconv_is_conv_transpose2d(args: str) -> None:
    module, got = _run(f"deconv 5 {args} as d")
    layer = module.get_submodule("d")
    assert isinstance(layer, nn.ConvTranspose2d)
    expected = F.conv_transpose2d(
        X, layer.weight, layer.bias, layer.stride, layer.padding, layer.output_padding
    )
    torch.testing.assert_close(got, expected)
    compiled = spec(f"deconv 5 {args}")
    with FlopCounterMode(display=False) as flops:
        layer(X[:1])
    assert compiled.layers[0].macs * 2 == flops.get_total_flops()  # fvcore's count, x2 for FLOPs


def test_deconv_keeps_a_symbolic_size_symbolic() -> None:
    compiled = netspec.compile(
        "network t(x: 3xHxW) {\n deconv 4 2x2 stride=2 | deconv 4 3x3 pad=1\n}\n"
    )
    assert compiled.layers[-1].shape == (4, "2*H", "2*W")
    bound = netspec.compile("network t(x: 3xHxW) {\n deconv 4 3x3 stride=2\n}\n", H=5, W=7)
    assert bound.layers[0].shape == (4, 11, 15)


def _reads(compiled: Compiled) -> dict[int, tuple[int, int]]:
    """For each output row, the first and last input row its gradient reaches (over every
    column and map), by autograd in float64 with positive random weights, so that no
    dependency cancels by chance; rows that read no input (a deconv's `output_pad` ones,
    only a bias) are left out."""
    torch.manual_seed(0)
    module = to_torch(compiled).double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(0.5, 1.5)
    shape = tuple(int(d) for d in compiled.graph.inputs[0].shape)
    x = torch.rand(1, *shape, dtype=torch.float64, requires_grad=True)
    out = module(x)
    rows = {}
    for o in range(out.shape[2]):
        (grad,) = torch.autograd.grad(out[0, :, o].sum(), x, retain_graph=True)
        hit = grad[0].abs().sum((0, 2)).nonzero().flatten()
        if hit.numel():
            rows[o] = (int(hit.min()), int(hit.max()))
    return rows


def _check_window(compiled: Compiled, spread: float) -> None:
    """Every output row's inputs lie inside the static window [c - size/2, c + size/2],
    c = start + jump * o (input row n spans [n, n + 1]); the size is the smallest window
    so centred that holds them all, up to the borders; and it exceeds the widest set of
    rows any unit reads by at most the derived non-affine `spread`."""
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
    widest = max(hi - lo + 1 for lo, hi in rows.values())
    assert max(need) == pytest.approx(rf.size[0]), (need, rf)
    assert rf.size[0] - widest <= spread + 1e-9, (widest, rf)


UNET_LIKE = """network t(x: 1x40x40) {
    a = conv 1 3x3 | relu | conv 1 3x3 | relu
    b = a | maxpool 2x2 | conv 1 3x3 | relu | conv 1 3x3
    up = b | deconv 1 2x2 stride=2
    concat(a | crop 28x28, up) | conv 1 3x3 | relu | conv 1 1x1
}
"""


@pytest.mark.parametrize(
    ("body", "spread"),
    [
        ("deconv 1 2x2 stride=2", 1 / 2),
        ("deconv 1 3x3 stride=2 pad=1 output_pad=1", 0),
        ("deconv 1 4x4 stride=2 pad=1", 1 / 2),
        ("deconv 1 5x5 stride=3 pad=2", 1 / 3),
        ("deconv 1 3x3 stride=3 output_pad=2", 2 / 3),
        ("deconv 1 3x3 stride=2 | conv 1 3x3", 0),
        ("deconv 1 2x2 stride=2 | conv 1 3x3", 1 / 2),
        ("deconv 1 2x2 stride=2 | deconv 1 4x4 stride=2 pad=1", 1 / 2 + 1 / 4),
        ("conv 1 3x3 stride=2 | deconv 1 3x3 stride=2 pad=1", 0),
        ("upsample 2", 1 / 2),
        ("upsample 3", 2 / 3),
        ("upsample 2 | conv 1 3x3", 1 / 2),
        ("upsample 2 | upsample 2", 1 / 2 + 1 / 4),
        ("upsample 2 mode=bilinear", 1 / 2),
        ("upsample 3 mode=bilinear", 1 / 3),
        ("upsample 4 mode=bilinear", 3 / 4),
        ("upsample 2 mode=bilinear align_corners=true", 1),
        ("upsample 3 mode=bilinear align_corners=true", 5 / 3),
        ("upsample 2 mode=bilinear | conv 1 3x3", 1 / 2),
        ("upsample 2 mode=bilinear | upsample 2 mode=bilinear", 1 / 2 + 1 / 4 + 1 / 2),
        ("conv 1 3x3 stride=2 | upsample 2 mode=bilinear", 1),
    ],
)
def test_receptive_field_holds_everything_each_unit_reads(body: str, spread: float) -> None:
    """The static window contains every input row each output row depends on, and is the
    tightest window of its jump and start that does (borders aside)."""
    _check_window(spec(body, "x: 1x24x24"), spread)


def test_receptive_field_of_a_unet_like_stack() -> None:
    """conv, pool, deconv, crop, concat: the deconv (at input jump 2) adds 1/2 · 2."""
    _check_window(netspec.compile(UNET_LIKE), 1)


def test_receptive_field_of_unet_head() -> None:
    """specs/unet.net's head (only compiles at 572), with every map count 1: same RF;
    the 2x2 up-convolutions' period of 16 pixels makes units read 188 to 204 input rows,
    and the window around `start + o` that holds them all is 215 wide: the exact count's
    200 plus the spread of the four up-convolutions, half of each one's input jump
    (8 + 4 + 2 + 1)."""
    text = (Path(__file__).parent.parent / "specs" / "unet.net").read_text()
    thin = re.sub(r"double_conv\(\d+\)", "double_conv(1)", text)
    thin = re.sub(r"(deconv|conv) \d+ ", r"\1 1 ", thin)
    full, one = netspec.compile(text).layers[-1].rf, netspec.compile(thin)
    assert one.layers[-1].rf == full
    assert full.size == (215, 215)
    rows = _reads(one)
    widths = {hi - lo + 1 for o, (lo, hi) in rows.items() if 20 <= o < len(rows) - 20}
    assert (min(widths), max(widths)) == (188, 204)
    _check_window(one, 15)


def test_upsample_is_interpolate() -> None:
    _, got = _run("upsample 2x3")
    torch.testing.assert_close(got, F.interpolate(X, scale_factor=(2, 3), mode="nearest"))
    _, got = _run("upsample 2 mode=bilinear align_corners=true")
    expected = F.interpolate(X, scale_factor=2, mode="bilinear", align_corners=True)
    torch.testing.assert_close(got, expected)
    assert [spec(f"upsample 2{m}").layers[0].macs for m in ("", " mode=bilinear")] == [
        3 * 16 * 16,
        4 * 3 * 16 * 16,
    ]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("dense 4 | log_softmax", "logits"),  # log-probabilities: their softmax is themselves
        ("dense 1 | hardsigmoid", "sigmoid"),
        ("dense 4 | softmax | scale 2", "logits"),
        ("conv 2 1x1 | upsample 2", "logits"),
    ],
)
def test_output_kind_of_the_new_operations(body: str, kind: str) -> None:
    from netspec.kinds import output_kind

    compiled = spec(body)
    assert output_kind(compiled.graph, compiled.graph.outputs[0]) == kind


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        ("3x3 stride=2", "pad=1 output_pad=1 gives 2*H"),
        ("4x4 stride=2", "pad=1 output_pad=0 gives 2*H"),
        ("3x3", "pad=1 output_pad=0 gives H"),
        ("2x2", "no pad= gives H with a 2-wide kernel"),
    ],
)
def test_deconv_pad_same_is_refused_with_the_numbers_that_work(args: str, advice: str) -> None:
    with pytest.raises(netspec.SpecError, match="deconv has no pad=same") as info:
        spec(f"deconv 4 {args} pad=same")
    assert advice in info.value.diagnostics[0].message
    if "no pad=" not in advice:
        fixed = advice.split(" gives")[0]
        assert spec(f"deconv 4 {args} {fixed}").layers[0].shape[1:] == (
            (8, 8) if advice.endswith(" H") else (16, 16)
        )


def _new_ops_chain(rng: random.Random) -> str:
    stages = [
        "relu6",
        f"hardtanh min=-{rng.randint(1, 3)} max={rng.randint(1, 3)}",
        "silu",
        "hardswish",
        "hardsigmoid",
        "mish",
        "prelu",
        f"softplus beta={rng.choice([0.5, 1, 2])}",
        f"scale {rng.choice([-2, 0.5, 3])}",
        "layernorm",
        f"groupnorm {rng.choice([1, 3])}",
        "instancenorm",
        f"upsample {rng.choice([1, 2])} mode={rng.choice(['nearest', 'bilinear'])}",
        f"deconv 3 {rng.choice([2, 3])}x3 stride={rng.choice([1, 2])} pad=1",
        "mul {\n identity\n avgpool global | conv 3 1x1 | sigmoid\n}",
        "add {\n identity\n avgpool global\n}",
        f"{rng.choice(['mean', 'max', 'sub'])} {{\n tanh\n conv 3 3x3 pad=same\n}}",
    ]
    return " | ".join(
        [*rng.sample(stages, 5), rng.choice(["log_softmax", "dense 4 | log_softmax"])]
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
@pytest.mark.parametrize("seed", range(4))
def test_generated_chains_of_new_ops_match_inference_and_export(seed: int, tmp_path: Path) -> None:
    compiled = spec(_new_ops_chain(random.Random(seed)), "x: 3x6x6")
    check_against_inference(compiled)
    report = export_compiled(compiled, tmp_path / "chain.onnx", log=lambda _: None)
    assert report.checks and all(c.ok for c in report.checks)


ALL_NEW = """
maps = conv 8 3x3 pad=same | groupnorm 2 | prelu
gate = maps | avgpool global | conv 8 1x1 | hardsigmoid
mul(maps, gate) | relu6 | hardtanh min=-2 max=2 | silu | hardswish | mish | softplus beta=2
deconv 4 3x3 stride=2 pad=1 output_pad=1 | instancenorm | scale 0.5
a = maxpool 2x2 | upsample 2 mode=bilinear
b = conv 4 1x1 | layernorm
m = max(a, b)
s = sub(a, b)
mean(m, s, b) | add {
    identity
    avgpool global
}
dense 3 | log_softmax
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
def test_every_new_op_exports_to_standard_onnx(tmp_path: Path) -> None:
    import onnx

    compiled = spec(ALL_NEW)
    report = export_compiled(compiled, tmp_path / "all.onnx", log=lambda _: None)
    assert report.checks and all(c.ok for c in report.checks)
    graph = onnx.load(str(tmp_path / "all.onnx")).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}  # no custom operators
    ops = {n.op_type for n in graph.node}
    expected = {"ConvTranspose", "Resize", "PRelu", "HardSigmoid", "Max", "Sub", "LogSoftmax"}
    assert expected <= ops, ops - expected


def test_a_network_of_every_new_op_trains() -> None:
    torch.manual_seed(0)
    compiled = spec(ALL_NEW)
    module = to_torch(compiled).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)  # its gradients are large
    labels = torch.arange(8) % 3
    x = torch.randn(8, 3, 8, 8)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = F.nll_loss(module(x), labels)  # log_softmax's output is log-probabilities
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert all(p.grad is not None for p in module.parameters()), "every parameter learns"
