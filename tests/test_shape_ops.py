"""The shape operations, the new pools, 1-D signals and lppool against plain PyTorch (and
ONNX Runtime's LpPool): same values, receptive fields that match where gradients reach,
and located errors for the mistakes a person makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import Tensor, nn

import netspec
from netspec.compiler import Compiled
from netspec.export import export_compiled
from netspec.lower import to_torch
from tests.test_lower import check_against_inference

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread

SPECS = Path(__file__).resolve().parent.parent / "specs"
QUIET = {"log": lambda _: None}


def net(body: str, inputs: str = "x: 3x8x8") -> Compiled:
    return netspec.compile(f"network t({inputs}) {{\n{body}\n}}\n")


def run(compiled: Compiled, x: Tensor) -> Tensor:
    module = to_torch(compiled).eval()
    with torch.no_grad():
        out = module(x)
    assert isinstance(out, Tensor)
    return out


def error(body: str, inputs: str = "x: 3x8x8") -> str:
    """The messages and hints of the diagnostics the spec gives."""
    with pytest.raises(netspec.SpecError) as e:
        net(body, inputs)
    return "\n".join(f"{d.message}\n{d.hint or ''}" for d in e.value.diagnostics)


# ---- against plain PyTorch ------------------------------------------------------------------

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("reshape 12x16", X.reshape(2, 12, 16)),
        ("reshape -1x4x2", X.reshape(2, -1, 4, 2)),
        ("reshape 192", X.reshape(2, 192)),
        ("permute 1 2 0", X.permute(0, 2, 3, 1)),
        ("permute 0 2 1", X.transpose(2, 3)),
        ("pad 1", F.pad(X, (1, 1, 1, 1))),
        ("pad 1 2", F.pad(X, (2, 2, 1, 1))),
        ("pad 1 2 3 4 value=-1.5", F.pad(X, (3, 4, 1, 2), value=-1.5)),
        ("pad 2 1 0 3 mode=reflect", F.pad(X, (0, 3, 2, 1), mode="reflect")),
        ("pad 3 mode=replicate", F.pad(X, (3, 3, 3, 3), mode="replicate")),
        ("crop 4x5", X[:, :, 2:6, 1:6]),
        ("crop 8x8", X),
        ("avgpool to 4x2", nn.AdaptiveAvgPool2d((4, 2))(X)),
        ("maxpool to 1x1", nn.AdaptiveMaxPool2d(1)(X)),
        ("maxpool 3x3 stride=1 dilation=2", nn.MaxPool2d(3, 1, dilation=2)(X)),
        (
            "maxpool 2x2 stride=2 pad=1 dilation=2 ceil=true",
            nn.MaxPool2d(2, 2, padding=1, dilation=2, ceil_mode=True)(X),
        ),
    ],
)
def test_values_equal_plain_pytorch(body: str, expected: Tensor) -> None:
    compiled = net(body)
    check_against_inference(compiled)
    torch.testing.assert_close(run(compiled, X), expected, rtol=0, atol=0)


def test_channel_shuffle_equals_pytorchs() -> None:
    x = torch.randn(2, 12, 4, 4)
    compiled = net("channel_shuffle 3", "x: 12x4x4")
    torch.testing.assert_close(run(compiled, x), nn.ChannelShuffle(3)(x), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
@pytest.mark.parametrize(
    ("body", "inputs"),
    [
        ("channel_shuffle 3 | pad 1 2 mode=replicate | crop 5x3", "x: 6x5x4"),
        ("permute 2 0 1 | reshape -1x2", "x: 6x5x4"),
        ("avgpool to 5x2 | maxpool 2x2 stride=1 pad=1 dilation=2 | lppool global p=3", "x: 6x5x4"),
        ("channel_shuffle 2 | pad 1 3 mode=reflect | crop 9 | lppool 3 p=3", "x: 6x10"),
        ("conv 4 3 stride=2 pad=1 dilation=2 groups=2 | maxpool to 2 | permute 1 0", "x: 6x10"),
    ],
)
def test_shape_operations_export_to_standard_onnx(body: str, inputs: str, tmp_path: Path) -> None:
    report = export_compiled(net(body, inputs), tmp_path / "m.onnx", **QUIET)
    assert report.checks and all(c.ok for c in report.checks)
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}


# ---- receptive fields: where the gradient of one unit reaches the input ---------------------


def _reached(compiled: Compiled, unit: tuple[int, ...]) -> list[tuple[int, int]]:
    """Along each spatial axis, the first and last input index unit's gradient reaches."""
    module = to_torch(compiled).double().eval()
    for p in module.parameters():
        nn.init.uniform_(p, 0.5, 1.5)  # positive weights: no gradient cancels by chance
    shape = tuple(int(d) for d in compiled.graph.inputs[0].shape)
    x = torch.rand(1, *shape, dtype=torch.float64, requires_grad=True)
    module(x)[(0, *unit)].backward()
    assert x.grad is not None
    hit = x.grad[0].abs().sum(0) > 0  # spatial axes only
    reached = []
    for axis in range(hit.dim()):
        other = tuple(a for a in range(hit.dim()) if a != axis)
        idx = (hit.any(dim=other) if other else hit).nonzero().flatten()
        reached.append((int(idx.min()), int(idx.max())))
    return reached


def _predicted(compiled: Compiled, index: tuple[int, ...]) -> list[tuple[int, int]]:
    """The window the static size/jump/start give for the unit at `index`, clipped."""
    layer = compiled.layers[-1]
    rf, dims = layer.rf, [int(d) for d in compiled.graph.inputs[0].shape[1:]]
    window = []
    for slot, i, n in zip(rf.axes, index, dims, strict=True):
        centre = rf.start[slot] + i * rf.jump[slot]
        low, high = centre - rf.size[slot] / 2, centre + rf.size[slot] / 2
        window.append((max(int(np.ceil(low - 1e-9)), 0), min(int(np.floor(high - 1e-9)), n - 1)))
    return window


@pytest.mark.parametrize(
    ("body", "inputs", "index"),
    [
        ("pad 2 | conv 1 3x3 | crop 4x4", "x: 1x9x9", (0, 0)),
        ("pad 1 2 3 0 | conv 1 3x3 stride=2", "x: 1x9x9", (1, 2)),
        ("conv 1 3x3 | crop 3x5 | avgpool 2x2 stride=1", "x: 1x11x11", (1, 0)),
        ("avgpool 3x3 stride=1 | avgpool to 3x3", "x: 1x11x11", (2, 1)),
        ("avgpool 3x3 stride=1 | crop 5x6 | reshape 1x5x6", "x: 1x9x12", (2, 1)),
        ("conv 1 3 dilation=2 | avgpool 3 stride=2 | pad 2 1 | crop 6", "x: 1x40", (3,)),
        ("conv 1 5 stride=2 pad=2 | avgpool to 4", "x: 2x32", (2,)),
    ],
)
def test_receptive_field_is_where_the_gradient_reaches(
    body: str, inputs: str, index: tuple[int, ...]
) -> None:
    compiled = net(body, inputs)
    assert _reached(compiled, (0, *index)) == _predicted(compiled, index)


def test_permute_swapping_h_and_w_swaps_the_receptive_field() -> None:
    """After `permute 0 2 1` the layer's H runs along the input's W: the RF swaps with it."""
    compiled = net("avgpool 3x3 stride=1 | permute 0 2 1 | avgpool 2x3 stride=1", "x: 1x9x12")
    assert compiled.layers[-1].rf.size == (4, 5)  # along its H (the input's W), its W
    assert _reached(compiled, (0, 2, 1)) == _predicted(compiled, (2, 1))[::-1]


def test_reshapes_that_mix_channels_into_positions_see_the_whole_input() -> None:
    layers = net("conv 4 3x3 | reshape 2x-1x6 | permute 1 2 0").layers
    assert [la.rf.whole for la in layers] == [False, True, True]
    kept = net("conv 4 3x3 | channel_shuffle 2 | reshape 4x6x6 | reshape 144").layers
    assert not any(la.rf.whole for la in kept)
    from netspec.report import rf_text

    assert rf_text(layers[-1]) == "all"


def test_reshaping_the_input_itself_starts_the_receptive_field_afresh() -> None:
    flat = net("reshape 1x28x28 | conv 2 5x5 | maxpool 2x2", "x: 784").layers
    assert (flat[-1].rf.size, flat[-1].rf.jump, flat[-1].rf.whole) == ((6, 6), (2, 2), False)
    channels_last = net("permute 2 0 1 | conv 2 3x3", "x: 8x8x3").layers[-1]
    assert (channels_last.shape, channels_last.rf.size) == ((2, 6, 6), (3, 3))
    signal = net("reshape 1x-1 | conv 2 9", "x: 100").layers[-1]
    assert (signal.rf.line, signal.rf.size[1]) == (True, 9)


def test_maxpool_dilation_widens_the_receptive_field() -> None:
    layer = net("maxpool 3x3 stride=1 dilation=2").layers[-1]
    assert (layer.rf.size, layer.rf.jump, layer.rf.start) == ((5, 5), (1, 1), (2.5, 2.5))
    assert layer.shape == (3, 4, 4)


def test_adaptive_pooling_is_an_even_window_and_global_at_one() -> None:
    layer = net("avgpool to 2x4").layers[-1]
    assert (layer.rf.size, layer.rf.jump, layer.rf.whole) == ((4, 2), (4, 2), False)
    assert net("maxpool to 1x1").layers[-1].rf.whole
    assert net("avgpool to 2x2", "x: 3xHxW").layers[-1].rf.whole  # windows depend on H, W


# ---- located errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("reshape 10x7", ["192 values", "70 values", "3x8x8"]),
        ("reshape -1x5", ["192 values", "not a multiple of 5"]),
        ("reshape -1x-1", ["one size (-1)"]),
        ("permute 0 1", ["3 axes"]),
        ("channel_shuffle 2", ["got 3"]),
        ("pad 1 2 3", ["1, 2 or 4 numbers", "got 3"]),
        ("pad 8 mode=reflect", ["reflect padding of 8", "has 8"]),
        ("pad 1 mode=reflect value=2", ["value= is the constant"]),
        ("crop 9x4", ["larger than the input"]),
        ("avgpool to 3x3", ["multiple of 3x3", "got 8x8", "crop to 6x6 or pad to 9x9"]),
        ("maxpool 2x2 3x3", ["a window or 'to' an output size"]),
        ("avgpool to", ["'to' needs the output size"]),
        ("maxpool to 2x2 stride=2", ["leave out stride"]),
        ("lppool to 2x2", ["lppool"]),
        ("maxpool global dilation=2", ["dilation= spaces the taps of a window"]),
    ],
)
def test_mistakes_are_located_errors(body: str, words: list[str]) -> None:
    text = error(body)
    for word in words:
        assert word in text, (word, text)


def test_signal_errors() -> None:
    assert "one number, got 3x5" in error("conv 4 3x5", "x: 1x100")
    assert "2-D feature maps only" in error("local 4 3", "x: 1x100")
    assert "1 or 2 numbers" in error("pad 1 2 3 4", "x: 1x100")
    assert "crop needs a numeric input size" in error("crop 4", "x: 1xL")


# ---- 1-D signals -----------------------------------------------------------------------------


class HandSignal1d(nn.Module):
    """specs/signal1d.net written by hand in PyTorch."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.MaxPool1d(3, stride=2, padding=1),
            nn.Conv1d(16, 32, 5, padding=2, bias=False),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 64, 3, padding=2, dilation=2, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(5),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 5, 5))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def test_signal1d_spec_equals_a_hand_written_module() -> None:
    compiled = netspec.compile(SPECS / "signal1d.net")
    hand = HandSignal1d().eval()
    count = sum(p.numel() for p in hand.parameters())
    assert compiled.totals.trainable_params == count == 10_645
    module = check_against_inference(compiled).eval()
    ours, theirs = list(module.state_dict().values()), list(hand.state_dict().values())
    assert [t.shape for t in ours] == [t.shape for t in theirs]
    hand.load_state_dict(dict(zip(hand.state_dict(), ours, strict=True)))
    x = torch.randn(3, 1, 1000)
    with torch.no_grad():
        torch.testing.assert_close(module(x), hand(x))


def test_signal_receptive_fields_are_along_the_one_axis() -> None:
    compiled = netspec.compile(SPECS / "signal1d.net")
    from netspec.report import rf_text, to_json

    conv3 = compiled.inferred.layer("conv3")
    assert rf_text(conv3) == "63 /8"
    row = next(r for r in to_json(compiled)["layers"] if r["name"] == "conv3")
    assert row["receptive_field"]["size"] == [63] and row["receptive_field"]["jump"] == [8]


# ---- lppool: (sum |x|^p)^(1/p), as ONNX's LpPool ---------------------------------------------


def _ort_lppool(x: np.ndarray, p: int, kernel: int) -> np.ndarray:
    """ONNX Runtime's own LpPool on x: the definition netspec's lppool follows."""
    node = helper.make_node(
        "LpPool", ["x"], ["y"], kernel_shape=[kernel, kernel], strides=[kernel, kernel], p=p
    )
    graph = helper.make_graph(
        [node],
        "lppool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": x})[0]
    assert isinstance(out, np.ndarray)
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
@pytest.mark.parametrize("p", [1, 2, 3])
def test_lppool_matches_ort_lppool_on_negative_inputs(p: int, tmp_path: Path) -> None:
    x = -torch.rand(2, 3, 8, 8) - 0.1  # every value negative: an odd p gave NaN before
    compiled = net(f"lppool 2x2 p={p}")
    ours = run(compiled, x)
    assert not ours.isnan().any()
    by_hand = F.avg_pool2d(x.abs() ** p, 2) * 4
    torch.testing.assert_close(ours, by_hand ** (1 / p))
    np.testing.assert_allclose(ours.numpy(), _ort_lppool(x.numpy(), p, 2), rtol=1e-5, atol=1e-6)
    export_compiled(compiled, tmp_path / "m.onnx", **QUIET)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(exported, ours.numpy(), rtol=1e-5, atol=1e-6)


def test_global_and_signal_lppool_take_the_absolute_value() -> None:
    x = -torch.rand(2, 3, 8, 8) - 0.1
    got = run(net("lppool global p=3"), x)
    torch.testing.assert_close(got, (x.abs() ** 3).sum((2, 3), keepdim=True) ** (1 / 3))
    s = -torch.rand(2, 3, 12)
    got = run(net("lppool 3 p=3", "x: 3x12"), s)
    torch.testing.assert_close(got, (F.avg_pool1d(s.abs() ** 3, 3) * 3) ** (1 / 3))
