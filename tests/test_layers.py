"""Tests for netspec.lower.layers: slow loop references, LeNet-5 facts, and ONNX round trips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.lower.layers import (
    Add,
    Concat,
    Distance,
    EuclideanRBF,
    FixedConv2d,
    GlobalLPPool2d,
    LocallyConnected2d,
    ScaledTanh,
    Subsample2d,
    TableConv2d,
    lenet5_prototypes,
    random_prototypes,
)

# LeNet-5's C3 connection table (LeCun et al. 1998, Table I), one row per output map.
C3_TABLE = [
    [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 0], [5, 0, 1],
    [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 0], [4, 5, 0, 1], [5, 0, 1, 2],
    [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]  # fmt: skip

# (stride, padding) cases for the loop references: plain, strided, padded, both, uneven.
GEOMETRIES = [
    ((1, 1), (0, 0)),
    ((2, 2), (0, 0)),
    ((1, 1), (1, 1)),
    ((2, 2), (1, 1)),
    ((2, 1), (0, 2)),
]


def _window(xp: Tensor, i: int, j: int, stride: tuple[int, int], kernel: tuple[int, int]) -> Tensor:
    """The input window under output position (i, j) of a padded input: (B, C, kh, kw)."""
    top, left = i * stride[0], j * stride[1]
    return xp[:, :, top : top + kernel[0], left : left + kernel[1]]


def _locally_connected_reference(layer: LocallyConnected2d, x: Tensor) -> Tensor:
    """One explicit matmul per output position, each with its own kernel."""
    ph, pw = layer.padding
    xp = F.pad(x, (pw, pw, ph, ph))
    oh, ow = layer.out_size
    rows = []
    for i in range(oh):
        cols = []
        for j in range(ow):
            patch = _window(xp, i, j, layer.stride, layer.kernel).flatten(1)  # (B, C*kh*kw)
            y = patch @ layer.weight[i * ow + j].t()  # (B, O)
            cols.append(y if layer.bias is None else y + layer.bias[:, i, j])
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)  # (B, O, oh, ow)


def _table_conv_reference(layer: TableConv2d, x: Tensor) -> Tensor:
    """Explicit loops over output maps, positions and the table's connections."""
    ph, pw = layer.padding
    xp = F.pad(x, (pw, pw, ph, ph))
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    packed = iter(layer.weight)  # connections in table order
    maps = []
    for o, row in enumerate(layer.table):
        kernels = {c: next(packed) for c in row}
        rows = []
        for i in range(oh):
            cols = []
            for j in range(ow):
                win = _window(xp, i, j, layer.stride, layer.kernel)  # (B, C, kh, kw)
                terms = [(win[:, c] * w).sum((1, 2)) for c, w in kernels.items()]
                y = torch.stack(terms).sum(0)  # (B,)
                cols.append(y if layer.bias is None else y + layer.bias[o])
            rows.append(torch.stack(cols, dim=-1))
        maps.append(torch.stack(rows, dim=-2))
    return torch.stack(maps, dim=1)  # (B, O, oh, ow)


def _assert_same_forward_and_grads(
    layer: nn.Module, reference: Tensor, fast: Tensor, x: Tensor
) -> None:
    """Forward values match, and so do gradients w.r.t. the input and every parameter."""
    torch.testing.assert_close(fast, reference)
    upstream = torch.randn_like(fast)
    inputs = [x, *layer.parameters()]
    fast_grads = torch.autograd.grad((fast * upstream).sum(), inputs)
    ref_grads = torch.autograd.grad((reference * upstream).sum(), inputs)
    for got, want in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("stride", "padding"), GEOMETRIES)
@pytest.mark.parametrize("bias", [True, False])
def test_locally_connected_matches_loop_reference(
    stride: tuple[int, int], padding: tuple[int, int], bias: bool
) -> None:
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, (6, 7), (3, 2), stride, padding, bias).double()
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    _assert_same_forward_and_grads(layer, _locally_connected_reference(layer, x), layer(x), x)


def test_locally_connected_shapes_and_parameter_count() -> None:
    layer = LocallyConnected2d(3, 4, (8, 8), (3, 3), stride=(2, 2), padding=(1, 1))
    oh, ow = layer.out_size
    assert (oh, ow) == (4, 4)
    assert layer.weight.shape == (oh * ow, 4, 3 * 3 * 3)
    assert layer.bias is not None and layer.bias.shape == (4, oh, ow)
    n_params = sum(p.numel() for p in layer.parameters())
    assert n_params == oh * ow * 4 * 3 * 3 * 3 + 4 * oh * ow
    assert layer(torch.randn(5, 3, 8, 8)).shape == (5, 4, oh, ow)
    assert layer.weight.abs().max() <= 1 / math.sqrt(3 * 3 * 3)
    with pytest.raises(ValueError, match="input size"):
        layer(torch.randn(1, 3, 9, 8))


@pytest.mark.parametrize(("stride", "padding"), GEOMETRIES)
def test_table_conv_matches_loop_reference(
    stride: tuple[int, int], padding: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    table = [[0, 2], [1], [0, 1, 2], [2, 0]]
    layer = TableConv2d(3, 4, (3, 2), table, stride, padding).double()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    _assert_same_forward_and_grads(layer, _table_conv_reference(layer, x), layer(x), x)


def test_table_conv_lenet5_c3_parameters_and_zeros_survive_training() -> None:
    torch.manual_seed(0)
    c3 = TableConv2d(6, 16, (5, 5), C3_TABLE)
    assert c3.weight.shape == (60, 5, 5)
    assert sum(p.numel() for p in c3.parameters()) == 60 * 25 + 16 == 1516
    connected = torch.zeros(16, 6, dtype=torch.bool)
    for o, row in enumerate(C3_TABLE):
        connected[o, row] = True
    optimizer = torch.optim.SGD(c3.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        loss = c3(torch.randn(4, 6, 14, 14)).pow(2).mean()
        loss.backward()
        optimizer.step()
    dense = c3.dense_weight()
    assert dense.shape == (16, 6, 5, 5)
    assert torch.all(dense[~connected] == 0)
    assert torch.all(dense[connected].abs().sum((1, 2)) > 0)


def test_table_conv_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="rows"):
        TableConv2d(3, 2, 3, [[0]])
    with pytest.raises(ValueError, match="outside"):
        TableConv2d(3, 1, 3, [[3]])
    with pytest.raises(ValueError, match="twice"):
        TableConv2d(3, 1, 3, [[1, 1]])
    with pytest.raises(ValueError, match="no input"):
        TableConv2d(3, 1, 3, [[]])


def test_subsample_has_two_parameters_per_map_and_scales_window_sums() -> None:
    layer = Subsample2d(6)
    assert sum(p.numel() for p in layer.parameters()) == 2 * 6
    layer = Subsample2d(1)
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.bias.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # window sums: 0+1+4+5=10, 2+3+6+7=18, 8+9+12+13=42, 10+11+14+15=50
    expected = torch.tensor([[[[6.0, 10.0], [22.0, 26.0]]]])
    torch.testing.assert_close(layer(x), expected)


def test_scaled_tanh_value_at_one() -> None:
    y = ScaledTanh()(torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
    want = 1.7159 * math.tanh(2 / 3)
    torch.testing.assert_close(y, torch.tensor([want, -want, 0.0], dtype=torch.float64))
    assert abs(want - 1.0) < 1e-3  # LeCun's choice: f(1) = 1 almost exactly


def test_euclidean_rbf_is_squared_distance_with_fixed_prototypes() -> None:
    torch.manual_seed(0)
    prototypes = lenet5_prototypes()
    rbf = EuclideanRBF(84, prototypes)
    assert list(rbf.parameters()) == []
    assert "prototypes" in rbf.state_dict()
    x = torch.randn(3, 84, dtype=torch.float64)
    want = ((x[:, None, :] - prototypes.double()[None]) ** 2).sum(-1)
    torch.testing.assert_close(rbf.double()(x), want)

    head = EuclideanRBF(84, prototypes)
    model = nn.Sequential(nn.Linear(5, 84), ScaledTanh(), head)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 5)).min(1).values.sum().backward()
    optimizer.step()
    assert torch.equal(head.prototypes, prototypes)


def test_lenet5_prototypes_are_deterministic_distinct_bitmaps() -> None:
    p = lenet5_prototypes()
    assert p.shape == (10, 84)
    assert set(torch.unique(p).tolist()) == {-1.0, 1.0}
    assert torch.equal(p, lenet5_prototypes())
    assert len({tuple(row.tolist()) for row in p}) == 10
    one = p[1].view(12, 7)
    assert torch.all(one[:, 0] == -1) and torch.all(one[0] == -1)  # paper margin
    more = lenet5_prototypes(12)
    assert torch.equal(more[:10], p) and more.shape == (12, 84)


def test_fixed_conv_is_not_trainable_and_identity_kernel_copies_input() -> None:
    identity = torch.zeros(1, 3, 3)
    identity[0, 1, 1] = 1.0
    layer = FixedConv2d(identity, in_channels=2, padding=(1, 1))
    assert list(layer.parameters()) == []
    assert "kernels" in dict(layer.named_buffers())
    x = torch.randn(2, 2, 5, 6)
    torch.testing.assert_close(layer(x), x)


def test_fixed_conv_worked_example() -> None:
    image = torch.tensor(
        [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
    )
    mask = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    layer = FixedConv2d(mask[None], in_channels=1)
    got = layer(image.float()[None, None])
    assert torch.equal(got, torch.tensor([[[[4.0, 3, 4], [2, 4, 3], [2, 3, 4]]]]))


def test_fixed_conv_orders_outputs_input_major() -> None:
    kernels = torch.tensor([[[1.0]], [[10.0]]])  # 1x1 kernels: scale by 1, by 10
    layer = FixedConv2d(kernels, in_channels=2)
    x = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 2.0)])[None]  # (1, 2, 2, 2)
    corners = layer(x)[0, :, 0, 0]
    assert corners.tolist() == [1.0, 10.0, 2.0, 20.0]  # (c0 k0, c0 k1, c1 k0, c1 k1)


def test_table_conv_with_a_full_table_and_dilation_is_a_dilated_conv() -> None:
    torch.manual_seed(0)
    layer = TableConv2d(2, 3, 3, [[0, 1]] * 3, padding=(2, 2), dilation=(2, 2))
    x = torch.randn(1, 2, 7, 7)
    want = F.conv2d(x, layer.dense_weight(), layer.bias, padding=2, dilation=2)
    torch.testing.assert_close(layer(x), want)


def test_fixed_conv_dilation_spreads_the_kernel() -> None:
    layer = FixedConv2d(torch.ones(1, 2, 2), in_channels=1, dilation=(2, 2))
    x = torch.arange(9.0).view(1, 1, 3, 3)
    assert layer(x).flatten().tolist() == [0.0 + 2 + 6 + 8]


def test_global_lp_pool_is_the_p_norm_of_each_map() -> None:
    x = torch.randn(2, 3, 5, 4).abs()
    want = x.pow(3).sum((2, 3), keepdim=True).pow(1 / 3)
    torch.testing.assert_close(GlobalLPPool2d(3.0)(x), want)
    torch.testing.assert_close(GlobalLPPool2d(2.0)(x), nn.LPPool2d(2.0, (5, 4))(x))


def test_merges() -> None:
    a, b, c = torch.randn(3, 2, 4, 3, 3)
    torch.testing.assert_close(Add()(a, b, c), a + b + c)
    assert Concat()(a, b).shape == (2, 8, 3, 3)
    torch.testing.assert_close(Distance()(a, b), (a - b).abs())


def test_random_prototypes_are_deterministic_signs() -> None:
    p = random_prototypes(5, 30)
    assert p.shape == (5, 30) and set(p.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(p, random_prototypes(5, 30))
    assert not torch.equal(p, random_prototypes(5, 30, seed=1))


def _onnx_cases() -> list[object]:
    """One pytest case per layer: the layer and its input shape without the batch axis."""
    edges = torch.tensor(
        [[[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], [[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]]]
    )
    with torch.random.fork_rng():  # seeded layers, without touching the global RNG at import
        torch.manual_seed(0)
        return [
            pytest.param(
                LocallyConnected2d(3, 4, (8, 8), (3, 3), (2, 2), (1, 1)), (3, 8, 8), id="lc"
            ),
            pytest.param(
                TableConv2d(6, 16, (5, 5), C3_TABLE, padding=(1, 1)), (6, 14, 14), id="c3"
            ),
            pytest.param(Subsample2d(6), (6, 28, 28), id="subsample"),
            pytest.param(ScaledTanh(), (4, 5, 5), id="scaled_tanh"),
            pytest.param(EuclideanRBF(84, lenet5_prototypes()), (84,), id="rbf"),
            pytest.param(GlobalLPPool2d(2.0), (3, 5, 5), id="global_lppool"),
            pytest.param(
                FixedConv2d(edges, 3, padding=(1, 1), stride=(2, 2)), (3, 9, 9), id="fixed"
            ),
        ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter, on purpose
@pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")  # strided slices of the input
@pytest.mark.parametrize(("layer", "shape"), _onnx_cases())
def test_onnx_export_matches_pytorch(
    layer: nn.Module, shape: tuple[int, ...], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    layer.eval()
    path = tmp_path / "layer.onnx"
    torch.onnx.export(
        layer,
        (torch.randn(2, *shape),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    x = torch.randn(3, *shape)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = layer(x).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_rbf_is_accurate_next_to_a_prototype() -> None:
    """A trained LeNet-5 puts its output close to the right prototype: the distance there is
    small, and computing it must not cancel large terms (float32 against float64)."""
    layer = EuclideanRBF(84, lenet5_prototypes())
    torch.manual_seed(0)
    x = layer.prototypes[:4] + 1e-3 * torch.randn(4, 84)  # (4, 84), each near a prototype
    exact = EuclideanRBF(84, lenet5_prototypes().double())(x.double())
    got = layer(x).double()
    near = exact < 1.0  # the distances to the prototypes each x sits next to
    assert near.sum() == 4
    assert torch.allclose(got[near], exact[near], rtol=1e-5, atol=0)
