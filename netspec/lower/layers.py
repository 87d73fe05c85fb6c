"""Layers that PyTorch lacks, used when lowering a spec to ``torch.nn`` modules.

Most come from LeNet-5 (LeCun et al., 1998). A layer with weights that `init=` may redraw
says how with `fans()` (and `fan_in_groups()` where output maps differ in fan-in); see
`netspec.lower.init`. Each is built only from operators that the
TorchScript ONNX exporter (``dynamo=False``, opset 17) maps to standard ONNX ops, so a lowered
network runs unchanged in ONNX Runtime: no ``F.unfold``, no in-place scatter, no Python loop
whose length depends on the data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Pair = int | tuple[int, int]


def _pair(value: Pair) -> tuple[int, int]:
    """Accept ``3`` or ``(3, 5)``, the way ``nn.Conv2d`` does."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis (padding counted on both sides)."""
    return (size + 2 * padding - kernel) // stride + 1


def _uniform_(tensor: Tensor, fan_in: int) -> None:
    """PyTorch's conv default init, in place: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    This is exactly what ``kaiming_uniform_(a=sqrt(5))`` gives (gain sqrt(1/3) times
    sqrt(3/fan_in)), written out because our weights are not laid out as (out, in, ...)
    and ``kaiming_uniform_`` would infer the wrong fan-in from their shape.
    """
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        tensor.uniform_(-bound, bound)


def _as_float(tensor: Tensor) -> Tensor:
    """A detached copy of constant data from a spec, as floats (integer masks are common)."""
    copy = tensor.detach().clone()
    return copy if copy.is_floating_point() else copy.to(torch.get_default_dtype())


class LocallyConnected2d(nn.Module):
    """A convolution whose kernels are not shared: one kernel per output position.

    Patches are gathered with one strided slice per kernel offset (kh*kw slices, not one per
    output position) and contracted with all the kernels in one einsum. ``weight`` is
    ``(out_h*out_w, out_channels, in_channels*kh*kw)``, position-major in row order, its last
    axis ordered like a conv weight's ``(in_channels, kh, kw)``; ``bias`` is
    ``(out_channels, out_h, out_w)``. The input size is fixed because the weights are.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_size: Pair,
        kernel: Pair,
        stride: Pair = (1, 1),
        padding: Pair = (0, 0),
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.kernel = _pair(in_size), _pair(kernel)
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.out_size = (
            _conv_out(self.in_size[0], self.kernel[0], self.stride[0], self.padding[0]),
            _conv_out(self.in_size[1], self.kernel[1], self.stride[1], self.padding[1]),
        )
        if min(self.out_size) < 1:
            raise ValueError(f"kernel {self.kernel} does not fit input {self.in_size} padded")
        (kh, kw), (oh, ow) = self.kernel, self.out_size
        self.fan_in = in_channels * kh * kw
        self.weight = nn.Parameter(torch.empty(oh * ow, out_channels, self.fan_in))
        self.bias: nn.Parameter | None = (
            nn.Parameter(torch.empty(out_channels, oh, ow)) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like ``nn.Conv2d`` with fan-in ``in_channels*kh*kw``."""
        _uniform_(self.weight, self.fan_in)
        if self.bias is not None:
            _uniform_(self.bias, self.fan_in)

    def fans(self) -> tuple[float, float, bool]:
        """(fan-in, fan-out, convolutional?) for `init=`, as one position's kernel sees them."""
        kh, kw = self.kernel
        return self.fan_in, self.out_channels * kh * kw, True

    def forward(self, x: Tensor) -> Tensor:
        # The exporter pins the spatial size in the graph, so only eager calls need the check.
        if not torch.onnx.is_in_onnx_export() and tuple(x.shape[-2:]) != self.in_size:
            raise ValueError(f"expected input size {self.in_size}, got {tuple(x.shape[-2:])}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        oh, ow = self.out_size
        x = F.pad(x, (pw, pw, ph, ph))  # (B, C, H + 2ph, W + 2pw)
        span_h, span_w = sh * (oh - 1) + 1, sw * (ow - 1) + 1
        taps = [
            x[:, :, i : i + span_h : sh, j : j + span_w : sw]  # (B, C, oh, ow)
            for i in range(kh)
            for j in range(kw)
        ]
        patches = torch.stack(taps, dim=2).flatten(1, 2).flatten(2)  # (B, C*kh*kw, oh*ow)
        y = torch.einsum("bfl,lof->bol", patches, self.weight)  # (B, O, oh*ow)
        y = y.reshape(-1, self.out_channels, oh, ow)  # (B, O, oh, ow)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, "
            f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
            f"bias={self.bias is not None}"
        )


def _check_table(table: list[list[int]], in_channels: int, out_channels: int) -> None:
    """Reject a connection table that cannot describe ``out_channels`` maps over the inputs."""
    if len(table) != out_channels:
        raise ValueError(f"table has {len(table)} rows, expected one per output ({out_channels})")
    for o, row in enumerate(table):
        if not row:
            raise ValueError(f"output map {o} is connected to no input map")
        if len(set(row)) != len(row):
            raise ValueError(f"output map {o} lists an input map twice: {row}")
        if not all(0 <= c < in_channels for c in row):
            raise ValueError(f"output map {o} lists an input outside 0..{in_channels - 1}: {row}")


def _dense_index(table: tuple[tuple[int, ...], ...], in_channels: int) -> Tensor:
    """For each dense (out, in) slot, its row in the packed weight; ``n`` (a zero row) if absent."""
    slots = [o * in_channels + c for o, row in enumerate(table) for c in row]
    index = torch.full((len(table) * in_channels,), len(slots), dtype=torch.long)
    index[slots] = torch.arange(len(slots))
    return index  # (out*in,)


class TableConv2d(nn.Module):
    """A convolution where output map ``o`` sees only the input maps listed in ``table[o]``.

    LeNet-5's C3 uses this to break symmetry and save parameters. Only connected kernels are
    parameters: ``weight`` is ``(n_connections, kh, kw)``, packed in table order (row by row,
    each row in the order listed). The dense ``(out, in, kh, kw)`` weight is gathered from it
    plus a zero row at forward time, so unconnected kernels are exactly zero, through training.
    Each kernel is initialised with the true fan-in of its output map, ``len(table[o])*kh*kw``.
    """

    index: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Pair,
        table: list[list[int]],
        stride: Pair = (1, 1),
        padding: Pair = (0, 0),
        bias: bool = True,
        dilation: Pair = (1, 1),
    ) -> None:
        super().__init__()
        _check_table(table, in_channels, out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.padding = _pair(kernel), _pair(stride), _pair(padding)
        self.dilation = _pair(dilation)
        self.table = tuple(tuple(row) for row in table)
        n_connections = sum(len(row) for row in table)
        self.weight = nn.Parameter(torch.empty(n_connections, *self.kernel))
        self.bias: nn.Parameter | None = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("index", _dense_index(self.table, in_channels), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like ``nn.Conv2d``, but with each output map's own fan-in."""
        kh, kw = self.kernel
        start = 0
        for o, row in enumerate(self.table):
            fan_in = len(row) * kh * kw
            _uniform_(self.weight[start : start + len(row)], fan_in)
            if self.bias is not None:
                _uniform_(self.bias[o : o + 1], fan_in)
            start += len(row)

    def fans(self) -> tuple[float, float, bool]:
        """(fan-in, fan-out, convolutional?) for `init=`: the table's average connections."""
        links, taps = self.weight.shape[0], self.kernel[0] * self.kernel[1]
        return links / self.out_channels * taps, links / self.in_channels * taps, True

    def fan_in_groups(self) -> Iterator[tuple[Tensor, Tensor | None, float]]:
        """(weights, bias, fan-in) of each output map: LeCun's rule uses each map's own fan-in."""
        taps = self.kernel[0] * self.kernel[1]
        start = 0
        for o, row in enumerate(self.table):
            bias = None if self.bias is None else self.bias[o : o + 1]
            yield self.weight[start : start + len(row)], bias, len(row) * taps
            start += len(row)

    def dense_weight(self) -> Tensor:
        """The full ``(out, in, kh, kw)`` kernel bank, zero where the table has no connection."""
        kh, kw = self.kernel
        packed = self.weight.flatten(1)  # (n, kh*kw)
        padded = torch.cat([packed, packed.new_zeros(1, kh * kw)])  # (n + 1, kh*kw)
        dense = torch.index_select(padded, 0, self.index)  # (out*in, kh*kw)
        return dense.view(self.out_channels, self.in_channels, kh, kw)

    def forward(self, x: Tensor) -> Tensor:
        w = self.dense_weight()
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel={self.kernel}, "
            f"connections={self.weight.shape[0]}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}"
        )


class Subsample2d(nn.Module):
    """LeNet's trainable subsampling: each window's sum, times a per-map weight, plus a bias.

    Two parameters per map, ``weight`` and ``bias``, both ``(channels,)``. ``stride`` defaults
    to the kernel, giving non-overlapping windows as in LeNet-5's S2 and S4.
    """

    def __init__(self, channels: int, kernel: Pair = (2, 2), stride: Pair | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.kernel = _pair(kernel)
        self.stride = self.kernel if stride is None else _pair(stride)
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like a conv with fan-in ``kh*kw`` (one shared coefficient per window)."""
        fan_in = self.kernel[0] * self.kernel[1]
        _uniform_(self.weight, fan_in)
        _uniform_(self.bias, fan_in)

    def fans(self) -> tuple[float, float, bool]:
        """(fan-in, fan-out, convolutional?) for `init=`: one coefficient per window."""
        taps = self.kernel[0] * self.kernel[1]
        return taps, taps, False

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel
        sums = F.avg_pool2d(x, self.kernel, self.stride) * (kh * kw)  # (B, C, H', W')
        return sums * self.weight.view(-1, 1, 1) + self.bias.view(-1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel={self.kernel}, stride={self.stride}"


class ScaledTanh(nn.Module):
    """LeNet's squashing function ``a * tanh(s * x)``; the defaults make f(±1) = ±1."""

    def __init__(self, a: float = 1.7159, s: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.a, self.s = a, s

    def forward(self, x: Tensor) -> Tensor:
        return self.a * torch.tanh(self.s * x)

    def extra_repr(self) -> str:
        return f"a={self.a}, s={self.s}"


class EuclideanRBF(nn.Module):
    """LeNet-5's output layer: ``y_j = sum_i (x_i - w_ji)^2``, the squared distance to class j.

    The prototypes are a buffer: saved with the model, moved with it, never trained. The
    differences are taken one by one (Sub, Mul, ReduceSum in ONNX), not expanded as
    ``|x|^2 - 2 x.w + |w|^2``: near a prototype that expansion cancels terms of about
    ``2F`` down to a small distance, and float32 keeps little of it.
    """

    prototypes: Tensor

    def __init__(self, in_features: int, prototypes: Tensor) -> None:
        super().__init__()
        if prototypes.dim() != 2 or prototypes.shape[1] != in_features:
            raise ValueError(
                f"prototypes must be (n_classes, {in_features}), got {tuple(prototypes.shape)}"
            )
        self.in_features, self.out_features = in_features, prototypes.shape[0]
        self.register_buffer("prototypes", _as_float(prototypes))

    def forward(self, x: Tensor) -> Tensor:
        diff = x.unsqueeze(1) - self.prototypes  # (B, N, F)
        return (diff * diff).sum(2)  # (B, N)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


# A 5x7 font for the digits 0-9, one string of rows per digit ("1" is ink).
_DIGITS_5X7 = (
    "01110 10001 10011 10101 11001 10001 01110",
    "00100 01100 00100 00100 00100 00100 01110",
    "01110 10001 00001 00010 00100 01000 11111",
    "11111 00010 00100 00010 00001 10001 01110",
    "00010 00110 01010 10010 11111 00010 00010",
    "11111 10000 11110 00001 00001 10001 01110",
    "00110 01000 10000 11110 10001 10001 01110",
    "11111 00001 00010 00100 01000 01000 01000",
    "01110 10001 10001 01110 10001 10001 01110",
    "01110 10001 10001 01111 00001 00010 01100",
)


def _glyph(rows: str, height: int, width: int) -> Tensor:
    """A 5x7 glyph as a ±1 bitmap (ink +1, paper -1), scaled into a 1-pixel paper margin."""
    bits = torch.tensor([[float(ch) for ch in row] for row in rows.split()])  # (7, 5)
    inner = F.interpolate(bits[None, None], size=(height - 2, width - 2), mode="nearest")
    return F.pad(inner[0, 0] * 2 - 1, (1, 1, 1, 1), value=-1.0)  # (height, width)


def lenet5_prototypes(n_classes: int = 10, height: int = 12, width: int = 7) -> Tensor:
    """Fixed ±1 prototypes for :class:`EuclideanRBF`, one flattened bitmap per class.

    Classes 0-9 get stylized digit bitmaps (a 5x7 font scaled nearest-neighbour into the
    frame, standing in for LeNet-5's hand-drawn 7x12 ones); classes from 10 on get a ±1
    pattern drawn from ``torch.Generator`` seed 0. Both are deterministic.

    >>> lenet5_prototypes().shape
    torch.Size([10, 84])
    """
    if n_classes < 1 or height < 3 or width < 3:
        raise ValueError(f"need n_classes >= 1 and a frame of at least 3x3, got {n_classes}")
    digits = [_glyph(rows, height, width).flatten() for rows in _DIGITS_5X7[:n_classes]]
    extra = random_prototypes(max(n_classes - len(_DIGITS_5X7), 0), height * width)
    return torch.cat([torch.stack(digits), extra])  # (n_classes, height*width)


def random_prototypes(n_classes: int, features: int, seed: int = 0) -> Tensor:
    """Fixed ±1 prototypes of any length, drawn from ``torch.Generator`` ``seed``: deterministic.

    >>> random_prototypes(3, 5).shape
    torch.Size([3, 5])
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n_classes, features), generator=generator) * 2.0 - 1.0


class FixedConv2d(nn.Module):
    """Fixed kernels from the spec (edge detectors, masks), applied to every input map.

    ``kernels`` ``(n, kh, kw)`` is a buffer, so no optimizer sees it. The result has
    ``in_channels * n`` maps, input-major: input map c under kernel k is output ``c*n + k``.
    It is a grouped cross-correlation (like ``F.conv2d``), one group per input map.
    """

    kernels: Tensor

    def __init__(
        self,
        kernels: Tensor,
        in_channels: int,
        padding: Pair = (0, 0),
        stride: Pair = (1, 1),
        dilation: Pair = (1, 1),
    ) -> None:
        super().__init__()
        if kernels.dim() != 3:
            raise ValueError(f"kernels must be (n, kh, kw), got {tuple(kernels.shape)}")
        self.in_channels = in_channels
        self.out_channels = in_channels * kernels.shape[0]
        self.padding, self.stride, self.dilation = _pair(padding), _pair(stride), _pair(dilation)
        self.register_buffer("kernels", _as_float(kernels))

    def forward(self, x: Tensor) -> Tensor:
        w = self.kernels.repeat(self.in_channels, 1, 1).unsqueeze(1)  # (C*n, 1, kh, kw)
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.in_channels)

    def extra_repr(self) -> str:
        n, kh, kw = self.kernels.shape
        return (
            f"{n} kernels {kh}x{kw}, in_channels={self.in_channels}, "
            f"padding={self.padding}, stride={self.stride}, dilation={self.dilation}"
        )


class GlobalLPPool2d(nn.Module):
    """Power-average pooling of each whole map (or signal) to one value: ``(sum |x|^p)^(1/p)``."""

    def __init__(self, norm_type: float = 2.0) -> None:
        super().__init__()
        self.norm_type = norm_type

    def forward(self, x: Tensor) -> Tensor:
        p, axes = self.norm_type, tuple(range(2, x.dim()))
        return x.abs().pow(p).sum(axes, keepdim=True).pow(1.0 / p)  # (B, C, 1, 1) or (B, C, 1)


class LPPool(nn.Module):
    """Power-average pooling over each window, ``(sum |x|^p)^(1/p)``, as ONNX's LpPool.

    ``nn.LPPool2d`` raises x to the power p without the absolute value, so an odd p gives
    NaN wherever a window's sum is negative; here the absolute value comes first. Zero
    padding adds nothing to a sum. ``dims`` is 2 for feature maps, 1 for a signal.
    """

    def __init__(
        self,
        norm_type: float,
        kernel: Pair,
        stride: Pair | None = None,
        padding: tuple[int, ...] = (),
        ceil_mode: bool = False,
        dims: int = 2,
    ) -> None:
        super().__init__()
        self.norm_type, self.kernel, self.stride = norm_type, kernel, stride
        self.padding, self.ceil_mode, self.dims = padding, ceil_mode, dims

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x.abs(), self.padding) if self.padding else x.abs()  # |x|: odd p stays real
        pool = F.lp_pool2d if self.dims == 2 else F.lp_pool1d
        return pool(x, self.norm_type, self.kernel, self.stride, self.ceil_mode)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return (
            f"norm_type={self.norm_type}, kernel={self.kernel}, stride={self.stride}, "
            f"padding={self.padding}, ceil_mode={self.ceil_mode}, dims={self.dims}"
        )


# ---- merges: modules so that hooks, names and spans cover them like any other layer ----------


def _per_map(xs: tuple[Tensor, ...]) -> list[Tensor]:
    """A ``(B, C)`` vector among ``(B, C, H, W)`` maps (or ``(B, C, L)`` signals) as
    ``(B, C, 1, 1)``: one value per map, where PyTorch would line it up with W."""
    rank = max(x.dim() for x in xs)
    spread = []
    for x in xs:
        while x.dim() < rank:
            x = x.unsqueeze(-1)
        spread.append(x)
    return spread


class Add(nn.Module):
    """Elementwise sum of two or more tensors of one shape (a residual connection); a gate
    of one value per map is added at every position."""

    def forward(self, *xs: Tensor) -> Tensor:
        x, *others = _per_map(xs)
        for y in others:
            x = x + y
        return x


class Concat(nn.Module):
    """Stacks feature maps (or features): ``torch.cat`` along dim 1."""

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, 1)


class Distance(nn.Module):
    """Elementwise absolute difference ``|a - b|`` (the siamese head's input)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).abs()


# ---- shape: moving values without computing on them ------------------------------------------


class Permute(nn.Module):
    """Reorders each sample's axes: output axis i is input axis ``order[i]`` (batch stays 0)."""

    def __init__(self, order: tuple[int, ...]) -> None:
        super().__init__()
        self.order = tuple(order)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, *(i + 1 for i in self.order))

    def extra_repr(self) -> str:
        return f"order={self.order}"


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle: maps as ``groups`` groups of C/groups, interleaved.

    Written as reshape, transpose, reshape (ONNX Reshape and Transpose), for feature maps
    and for signals alike.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        b, c, *rest = x.shape
        x = x.reshape(b, self.groups, c // self.groups, *rest)  # (B, G, C/G, ...)
        return x.transpose(1, 2).reshape(b, c, *rest)  # (B, C, ...): map g*C/G+i -> i*G+g

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class CenterCrop(nn.Module):
    """Keeps ``sizes`` units from ``offsets`` on along each spatial axis (ONNX Slice)."""

    def __init__(self, offsets: tuple[int, ...], sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.offsets, self.sizes = tuple(offsets), tuple(sizes)

    def forward(self, x: Tensor) -> Tensor:
        for axis, (start, size) in enumerate(zip(self.offsets, self.sizes, strict=True), 2):
            x = x.narrow(axis, start, size)
        return x

    def extra_repr(self) -> str:
        return f"offsets={self.offsets}, sizes={self.sizes}"


# ---- merges and a constant scale (issue 10): elementwise, broadcasting a Cx1x1 gate ----------


class Mul(nn.Module):
    """Elementwise product of two or more tensors; a ``(B, C, 1, 1)`` gate, or a ``(B, C)``
    vector, scales each map."""

    def forward(self, *xs: Tensor) -> Tensor:
        x, *others = _per_map(xs)
        for y in others:
            x = x * y
        return x


class Sub(nn.Module):
    """Elementwise difference ``a - b``."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a - b


class Mean(nn.Module):
    """Elementwise average of two or more tensors of one shape."""

    def forward(self, *xs: Tensor) -> Tensor:
        total = xs[0]
        for y in xs[1:]:
            total = total + y
        return total / len(xs)


class Max(nn.Module):
    """Elementwise maximum of two or more tensors of one shape (ONNX ``Max``)."""

    def forward(self, x: Tensor, *others: Tensor) -> Tensor:
        for y in others:
            x = torch.maximum(x, y)
        return x


class Scale(nn.Module):
    """Multiplies by a constant ``factor`` (not learned)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


# ---- issue 22: ConvNeXt's and SSD's normalizations, layer scale, stochastic depth -------------


def _per_channel(values: Tensor, x: Tensor) -> Tensor:
    """A ``(C,)`` tensor shaped to broadcast over ``x``'s channels: ``(C, 1, 1)`` for maps."""
    return values.reshape(-1, *(1,) * (x.dim() - 2))


class ChannelLayerNorm(nn.LayerNorm):
    """Layer normalization over the channels at each position (ConvNeXt's ``LayerNorm2d``).

    ``weight`` and ``bias`` are ``(C,)``. The channels are moved last for ``F.layer_norm``
    and back (ONNX Transpose, LayerNormalization, Transpose), for maps, signals and vectors;
    the axes are counted from the front, as ONNX's Transpose takes them.
    """

    def forward(self, x: Tensor) -> Tensor:
        last = x.dim() - 1
        x = x.permute(0, *range(2, last + 1), 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, last, *range(1, last))  # (B, C, H, W)


class LayerScale(nn.Module):
    """Each channel times its own learned ``gamma`` (``(C,)``), which starts at ``value``
    (ConvNeXt's and CaiT's layer scale: a residual branch starts nearly silent)."""

    def __init__(self, channels: int, value: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * _per_channel(self.gamma, x)

    def extra_repr(self) -> str:
        return f"{self.gamma.shape[0]}"


class L2Norm(nn.Module):
    """``x / ||x||_2`` over the channels at each position, times a learned ``weight`` per
    channel that starts at ``scale`` (SSD's conv4_3 norm, as torchvision writes it:
    ``F.normalize``, whose norm is at least 1e-12)."""

    def __init__(self, channels: int, scale: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * _per_channel(self.weight, x)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}"


class DropPath(nn.Module):
    """Stochastic depth (torchvision's ``StochasticDepth``, mode "row"): while training, each
    sample's whole input is zeroed with probability ``p`` and the others scaled by
    ``1 / (1 - p)``; the identity in eval mode, so the ONNX export has no node for it."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)  # (B, 1, ...)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ChannelSlice(nn.Module):
    """Keeps maps ``start`` to ``stop - 1`` of each sample: ``x[:, start:stop]`` (ONNX Slice),
    one of the pieces `split` and `chunk` give."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.start : self.stop]

    def extra_repr(self) -> str:
        return f"{self.start}:{self.stop}"


# ---- issue 22: resizing to another tensor's size ---------------------------------------------


class Resize(nn.Module):
    """``resize(x, like)``: x interpolated to like's H x W (FPN's top-down path). The size is
    read from ``like`` at run time, so a traced export sizes it by ONNX Shape (any H, W)."""

    def __init__(self, mode: str = "nearest", align_corners: bool | None = None) -> None:
        super().__init__()
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(
            x, size=like.shape[-2:], mode=self.mode, align_corners=self.align_corners
        )

    def extra_repr(self) -> str:
        corners = "" if self.align_corners is None else f", align_corners={self.align_corners}"
        return f"mode={self.mode!r}{corners}"
