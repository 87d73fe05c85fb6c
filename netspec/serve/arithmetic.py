"""One unit's value, recomputed in NumPy from its layer's real input and parameters, with
the numbers a person follows: the patch it reads, the kernel, the products, the sum.

Each rule takes an `Asked` (the layer's input tensors and its parameters as the network
holds them, the unit) and returns a `Worked`: the numbers to show, the value they give and
the scale of the terms summed (what a float tolerance is relative to). `netspec.serve.explain`
compares that value with the network's own output for the unit, so a rule that read the
wrong weights or window would be caught, not shown.

Sizes are bounded: a convolution over many channels shows every channel's partial sum and
the products of only the strongest `DETAILED` channels; a dense unit lists its `TOP`
strongest contributions and sums the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
DETAILED = 16  # channels of a convolution shown tap by tap (the strongest, by |partial sum|)
MAX_TAPS = 15 * 15  # a kernel larger than this shows only its channels' partial sums
TOP = 10  # a dense unit's strongest contributions listed; the rest are summed


class Unexplained(Exception):
    """The layer's computation has no worked form here (a 1-D convolution, an LP pool)."""


@dataclass(frozen=True)
class Asked:
    """One unit of a layer: its operation's parameters (the spec's, `params`), its weights
    and buffers by their module's names (`weights`), its input tensors without the batch
    axis (`inputs`, float64) and the unit's index in its output (`unit`)."""

    op: str
    params: Any
    weights: Mapping[str, Array]
    inputs: Sequence[Array]
    unit: tuple[int, ...]
    output_shape: tuple[int, ...]


@dataclass
class Worked:
    """What a rule found: `numbers` for the page, the `value` they give (None where the
    operation is not recomputed, only traced), the `scale` of the terms behind it, and the
    window it read on the input: channels and inclusive rows and columns (None for a vector)."""

    kind: str
    value: float | None
    numbers: dict[str, Any]
    channels: list[int]
    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None
    scale: float = 0.0
    marks: list[list[int]] = field(default_factory=list)  # single input units to point at


@dataclass(frozen=True)
class Rule:
    """How the page works out a unit of one operation (`RULES`): `work` does the arithmetic;
    `then` marks what a spec line's `then` goes on through from a unit of the layer before
    (a batchnorm, a layer scale, an activation); `window` names a pooling's window ("max",
    "mean" or "subsample"), in which `then` finds the pooled unit."""

    work: Callable[[Asked], Worked]
    then: bool = False
    window: str | None = None


def _grid(a: Array) -> list[Any]:
    """A NumPy array as nested lists of floats, NaN (a tap in the padding) as None."""
    return (
        [None if math.isnan(v) else float(v) for v in a] if a.ndim == 1 else [_grid(r) for r in a]
    )


def _taps(start: int, size: int, step: int, length: int) -> tuple[npt.NDArray[np.int64], Any]:
    """The positions a window reads along one axis and which of them lie inside the map."""
    at = start + step * np.arange(size)
    return at, (at >= 0) & (at < length)


def _window(
    x: Array, at: tuple[int, int], kernel: tuple[int, int], step: tuple[int, int]
) -> tuple[Array, tuple[int, int] | None, tuple[int, int] | None]:
    """``x`` (C, H, W) read by a window whose top left tap is ``at``: (C, kh, kw) with NaN
    for taps in the padding, and the inclusive rows and columns it covers inside the map."""
    rows, row_in = _taps(at[0], kernel[0], step[0], x.shape[1])
    cols, col_in = _taps(at[1], kernel[1], step[1], x.shape[2])
    patch = np.full((x.shape[0], kernel[0], kernel[1]), np.nan)
    inside = np.ix_(np.flatnonzero(row_in), np.flatnonzero(col_in))
    patch[:, inside[0], inside[1]] = x[:, rows[row_in]][:, :, cols[col_in]]
    return (
        patch,
        _span(at[0], kernel[0], step[0], x.shape[1]),
        _span(at[1], kernel[1], step[1], x.shape[2]),
    )


def _sliding(
    channels: list[int], patch: Array, kernels: Array, bias: float
) -> tuple[dict[str, Any], float, float]:
    """A kernel bank over a patch, both (k, kh, kw), one per connected input channel: each
    channel's products and partial sum (tap by tap for the `DETAILED` strongest), their sum,
    the bias, the result; and the scale of the terms."""
    products = np.nan_to_num(patch) * kernels
    partial = products.sum(axis=(1, 2))
    total = float(partial.sum())
    taps = kernels.shape[1] * kernels.shape[2]
    strongest = set(np.argsort(-np.abs(partial), kind="stable")[:DETAILED].tolist())
    rows = []
    for k, c in enumerate(channels):
        row: dict[str, Any] = {"channel": c, "sum": float(partial[k])}
        if k in strongest and taps <= MAX_TAPS:
            row |= {
                "patch": _grid(patch[k]),
                "kernel": _grid(kernels[k]),
                "products": _grid(products[k]),
            }
        rows.append(row)
    numbers = {"terms": rows, "sum": total, "bias": bias, "pre_activation": total + bias}
    scale = float(np.abs(products).sum()) + abs(bias)
    return numbers, total + bias, scale


def _spatial(a: Asked, what: str) -> tuple[Array, int, int, int]:
    x = a.inputs[0]
    if x.ndim != 3 or len(a.unit) != 3:
        raise Unexplained(f"a {what} is explained on 2-D feature maps only")
    o, oy, ox = a.unit
    return x, o, oy, ox


def conv(a: Asked) -> Worked:
    """A convolution: the connected input channels (every one, its group's, or its row of
    the connection table), each window under its kernel, summed, plus the bias."""
    x, o, oy, ox = _spatial(a, "convolution")
    p = a.params
    channels, kernels = _conv_kernels(a, x.shape[0], o)
    kernel = (kernels.shape[1], kernels.shape[2])
    (top, _), (left, _) = p.pads()
    at = (oy * p.stride[0] - top, ox * p.stride[1] - left)
    patch, rows, cols = _window(x[channels], at, kernel, tuple(p.dilation))
    bias = float(a.weights["bias"][o]) if "bias" in a.weights else 0.0
    numbers, value, scale = _sliding(channels, patch, kernels, bias)
    return Worked("conv", value, numbers, channels, rows, cols, scale)


def _conv_kernels(a: Asked, cin: int, o: int) -> tuple[list[int], Array]:
    """The input channels output map ``o`` reads and its kernel for each, (k, kh, kw)."""
    p, w = a.params, a.weights
    if p.fixed is not None:  # FixedConv2d: input map c under kernel k is output c*n + k
        n = w["kernels"].shape[0]
        return [o // n], w["kernels"][o % n][None]
    if p.connect is not None:  # TableConv2d: kernels packed row by row, in table order
        start = sum(len(row) for row in p.connect[:o])
        row = list(p.connect[o])
        return row, w["weight"][start : start + len(row)]
    per = cin // p.groups
    group = o // (w["weight"].shape[0] // p.groups)
    return list(range(group * per, (group + 1) * per)), w["weight"][o]


def local(a: Asked) -> Worked:
    """A locally connected layer: a convolution whose kernel is this position's own."""
    x, o, oy, ox = _spatial(a, "locally connected layer")
    p = a.params
    kh, kw = p.kernel
    ow = a.output_shape[2]
    kernels = a.weights["weight"][oy * ow + ox, o].reshape(x.shape[0], kh, kw)
    (top, _), (left, _) = p.pads()
    at = (oy * p.stride[0] - top, ox * p.stride[1] - left)
    patch, rows, cols = _window(x, at, (kh, kw), (1, 1))
    bias = float(a.weights["bias"][o, oy, ox]) if "bias" in a.weights else 0.0
    channels = list(range(x.shape[0]))
    numbers, value, scale = _sliding(channels, patch, kernels, bias)
    numbers["position_kernel"] = oy * ow + ox
    return Worked("local", value, numbers, channels, rows, cols, scale)


def _flat_terms(
    x: Array, terms: Array, shown: dict[str, Array]
) -> tuple[dict[str, Any], list[list[int]]]:
    """The `TOP` strongest of ``terms`` (one per input unit), each with its input unit's
    place in ``x``'s shape and the numbers ``shown`` for it, and the rest summed."""
    order = np.argsort(-np.abs(terms), kind="stable")[:TOP]
    top, marks = [], []
    for i in order.tolist():
        at = [int(v) for v in np.unravel_index(i, x.shape)]
        marks.append(at)
        top.append({"index": i, "at": at, **{k: float(v[i]) for k, v in shown.items()}})
    rest = np.delete(terms, order)
    return {"top": top, "rest": {"count": int(rest.size), "sum": float(rest.sum())}}, marks


def _whole(x: Array, channels: list[int] | None = None) -> tuple[Any, ...]:
    """The window of a layer that reads all of its input: every channel, row and column."""
    if x.ndim != 3:
        return list(range(x.shape[0])) if x.ndim == 2 else [], None, None
    every = list(range(x.shape[0])) if channels is None else channels
    return every, (0, x.shape[1] - 1), (0, x.shape[2] - 1)


def dense(a: Asked) -> Worked:
    """A dense unit: a weighted sum over every input unit (its maps flattened, C order),
    plus the bias; the strongest contributions listed by |w * x|."""
    x = a.inputs[0]
    (o,) = a.unit
    w = a.weights["weight"][o]
    products = x.reshape(-1) * w
    bias = float(a.weights["bias"][o]) if "bias" in a.weights else 0.0
    total = float(products.sum())
    listed, marks = _flat_terms(x, products, {"x": x.reshape(-1), "w": w, "product": products})
    numbers = {**listed, "inputs": int(x.size), "sum": total, "bias": bias}
    numbers["pre_activation"] = total + bias
    channels, rows, cols = _whole(x, sorted({m[0] for m in marks}) if x.ndim == 3 else None)
    scale = float(np.abs(products).sum()) + abs(bias)
    return Worked("dense", total + bias, numbers, channels, rows, cols, scale, marks)


def rbf(a: Asked) -> Worked:
    """LeNet-5's output unit: the squared distance of its input to the class's prototype,
    a sum of (x - p)^2 over every input unit."""
    x = a.inputs[0]
    (o,) = a.unit
    prototype = a.weights["prototypes"][o]
    terms = (x.reshape(-1) - prototype) ** 2
    listed, marks = _flat_terms(
        x, terms, {"x": x.reshape(-1), "prototype": prototype, "term": terms}
    )
    total = float(terms.sum())
    numbers = {**listed, "inputs": int(x.size), "sum": total}
    channels, rows, cols = _whole(x)
    return Worked("rbf", total, numbers, channels, rows, cols, total, marks)


def pool_axis(kind: str, p: Any, axis: int, o: int, n_in: int, n_out: int) -> tuple[int, ...]:
    """Along one axis (0: rows, 1: columns), the window pooled into output position ``o``:
    its first tap (maybe in the padding), taps, step, and PyTorch's divisor for an average
    (the window within the padded map: padding counts, beyond it does not)."""
    if kind == "subsample":  # LeNet's: non-overlapping windows unless a stride is given
        stride = (p.stride or p.kernel)[axis]
        return o * stride, p.kernel[axis], 1, p.kernel[axis]
    if p.kernel == "global" or p.output_size() is not None:  # adaptive: floor to ceil
        first, end = (o * n_in) // n_out, -((-(o + 1) * n_in) // n_out)
        return first, end - first, 1, end - first
    pad, size, step = p.pads()[axis][0], p.window[axis], p.dilations()[axis]
    first = o * p.strides[axis] - pad
    return first, size, step, min(first + size, n_in + pad) - first


def pool(a: Asked, kind: str) -> Worked:
    """A pooled unit: its window on the same channel, then the largest value (max: which
    tap won), the mean (avg), or the sum times the map's coefficient plus its bias
    (LeNet's trainable `subsample`)."""
    x, c, oy, ox = _spatial(a, "pooling")
    along = [
        pool_axis(kind, a.params, axis, o, x.shape[axis + 1], a.output_shape[axis + 1])
        for axis, o in ((0, oy), (1, ox))
    ]
    (y0, kh, sy, dy), (x0, kw, sx, dx) = along
    window = _window(x[c : c + 1], (y0, x0), (kh, kw), (sy, sx))[0][0]
    rows, cols = _span(y0, kh, sy, x.shape[1]), _span(x0, kw, sx, x.shape[2])
    numbers: dict[str, Any] = {"window": _grid(window), "top_left": [y0, x0]}
    total = float(np.nansum(window))
    if kind == "max":
        i, j = np.unravel_index(int(np.nanargmax(window)), window.shape)
        numbers["winner"] = [y0 + sy * int(i), x0 + sx * int(j)]
        value = float(window[i, j])
    elif kind == "mean":
        numbers |= {"sum": total, "divisor": dy * dx}
        value = total / (dy * dx)
    else:
        coefficient, bias = float(a.weights["weight"][c]), float(a.weights["bias"][c])
        numbers |= {"sum": total, "coefficient": coefficient, "bias": bias}
        value = total * coefficient + bias
    scale = float(np.nansum(np.abs(window))) * abs(numbers.get("coefficient", 1.0))
    return Worked(a.op, value, numbers, [c], rows, cols, scale + abs(numbers.get("bias", 0.0)))


def _span(at: int, size: int, step: int, length: int) -> tuple[int, int] | None:
    """The first and last of a window's taps that lie inside the map (inclusive)."""
    taps, inside = _taps(at, size, step, length)
    return (int(taps[inside].min()), int(taps[inside].max())) if inside.any() else None


def _here(
    a: Asked, kind: str, value: float | None, numbers: dict[str, Any], scale: float
) -> Worked:
    """What an elementwise operation read: the input unit at the unit's own place (a unit
    of a vector is marked, having no channel)."""
    if a.inputs[0].ndim == 3:
        c, y, x = a.unit
        return Worked(kind, value, numbers, [c], (y, y), (x, x), scale)
    return Worked(kind, value, numbers, [], None, None, scale, [list(a.unit)])


def batchnorm(a: Asked) -> Worked:
    """Batch normalization at inference: (x - running mean) / sqrt(running var + eps),
    times gamma, plus beta, the channel's own numbers."""
    c, w = a.unit[0], a.weights  # a map's channel, or a vector's own unit
    x = float(a.inputs[0][a.unit])
    mean, var = float(w["running_mean"][c]), float(w["running_var"][c])
    gamma = float(w["weight"][c]) if "weight" in w else 1.0
    beta = float(w["bias"][c]) if "bias" in w else 0.0
    eps = float(a.params.eps)
    normalized = (x - mean) / math.sqrt(var + eps)
    value = normalized * gamma + beta
    numbers = {"x": x, "mean": mean, "var": var, "eps": eps, "gamma": gamma, "beta": beta}
    numbers["normalized"] = normalized
    return _here(a, "batchnorm", value, numbers, abs(normalized * gamma) + abs(beta) + abs(x))


def _flat_position(a: Asked) -> int:
    """The unit's place within its channel, in C order (0 for a vector)."""
    return int(np.ravel_multi_index(a.unit[1:], a.output_shape[1:])) if len(a.unit) > 1 else 0


def layernorm(a: Asked) -> Worked:
    """Layer normalization: over the channels at this position (`over=channels`, the
    ConvNeXt form) or over the whole sample; then this unit's weight and bias."""
    x, w = a.inputs[0], a.weights
    over_channels = a.params.over == "channels"
    group = x.reshape(x.shape[0], -1)[:, _flat_position(a)] if over_channels else x.reshape(-1)
    mean, var = float(group.mean()), float(group.var())
    at = a.unit[0] if over_channels else a.unit
    gamma = float(w["weight"][at]) if "weight" in w else 1.0
    beta = float(w["bias"][at]) if "bias" in w else 0.0
    value_in = float(x[a.unit])
    normalized = (value_in - mean) / math.sqrt(var + float(a.params.eps))
    numbers = {"x": value_in, "mean": mean, "var": var, "eps": float(a.params.eps)}
    numbers |= {"count": int(group.size), "normalized": normalized, "gamma": gamma, "beta": beta}
    channels, rows, cols = _whole(x)
    if over_channels and x.ndim == 3:  # every channel, at this position only
        rows, cols = (a.unit[1], a.unit[1]), (a.unit[2], a.unit[2])
    value = normalized * gamma + beta
    return Worked("layernorm", value, numbers, channels, rows, cols, abs(value) + abs(value_in))


def layer_scale(a: Asked) -> Worked:
    """Layer scale: the unit's input times its channel's learned gamma."""
    x, gamma = float(a.inputs[0][a.unit]), float(a.weights["gamma"][a.unit[0]])
    return _here(a, "layer_scale", x * gamma, {"x": x, "gamma": gamma}, abs(x * gamma))


def _gelu(v: float, p: Any) -> float:
    if p.approximate == "tanh":
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def _softplus(v: float, beta: float) -> float:
    return v if beta * v > 20 else math.log1p(math.exp(beta * v)) / beta


Rate = Callable[[float, Any], float]  # an activation's value of x, given its parameters


def activation(a: Asked, formula: str | None = None, rate: Rate | None = None) -> Worked:
    """An elementwise nonlinearity: the unit's input, the formula, its output (recomputed
    where the formula is known here: `RULES`)."""
    x = float(a.inputs[0][a.unit])
    value = rate(x, a.params) if rate is not None else None
    numbers = {"x": x, "formula": formula or f"{a.op}(x)"}
    return _here(a, "activation", value, numbers, abs(x))


def prelu(a: Asked) -> Worked:
    """PReLU: a learned slope for the negative side, one per channel or one for all."""
    x = float(a.inputs[0][a.unit])
    slope = a.weights["weight"]
    k = float(slope[a.unit[0]] if slope.size > 1 else slope[0])
    numbers = {"x": x, "formula": "x if x > 0, else a * x"}
    return _here(a, "activation", x if x > 0 else k * x, numbers, abs(x))


def _activation(formula: str, rate: Rate) -> Rule:
    return Rule(partial(activation, formula=formula, rate=rate), then=True)


def softmax(a: Asked, log: bool) -> Worked:
    """Softmax (or its log) over a vector: e^(x_i - max) / sum_j e^(x_j - max)."""
    x = a.inputs[0]
    if x.ndim != 1:
        raise Unexplained("a softmax is explained over a vector only")
    (i,) = a.unit
    top = float(x.max())
    shifted = np.exp(x - top)
    total = float(shifted.sum())
    value = float(x[i] - top - math.log(total)) if log else float(shifted[i] / total)
    numbers = {"x": float(x[i]), "max": top, "exp": float(shifted[i]), "sum_exp": total}
    return Worked(a.op, value, numbers, [], None, None, 1.0 + abs(value), [[i]])


def upsample(a: Asked) -> Worked:
    """Upsampling: where the unit's value came from, one input unit (nearest) or four
    weighted neighbours (bilinear), as PyTorch's `Upsample` samples them."""
    x, c, oy, ox = _spatial(a, "upsampling")
    p = a.params
    sources = _bilinear if p.mode == "bilinear" else _nearest
    ys = sources(oy, x.shape[1], a.output_shape[1], p.align_corners)
    xs = sources(ox, x.shape[2], a.output_shape[2], p.align_corners)
    taps = [(y, xx, wy * wx) for y, wy in ys for xx, wx in xs if wy * wx != 0]
    value = sum(float(x[c, y, xx]) * w for y, xx, w in taps)
    numbers = {
        "sources": [{"at": [c, y, xx], "x": float(x[c, y, xx]), "w": w} for y, xx, w in taps]
    }
    rows = (min(t[0] for t in taps), max(t[0] for t in taps))
    cols = (min(t[1] for t in taps), max(t[1] for t in taps))
    marks = [[c, y, xx] for y, xx, _ in taps]
    return Worked("upsample", value, numbers, [c], rows, cols, abs(value) + 1, marks)


def _nearest(o: int, n_in: int, n_out: int, corners: bool) -> list[tuple[int, float]]:
    return [(min((o * n_in) // n_out, n_in - 1), 1.0)]


def _bilinear(o: int, n_in: int, n_out: int, corners: bool) -> list[tuple[int, float]]:
    if corners:
        src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
    lo = min(int(src), n_in - 1)
    hi = min(lo + 1, n_in - 1)
    frac = src - lo
    return [(lo, 1.0 - frac)] if hi == lo else [(lo, 1.0 - frac), (hi, frac)]


def pixel_shuffle(a: Asked, unshuffle: bool) -> Worked:
    """Pixel shuffle (or unshuffle): the one input unit this unit's value was moved from."""
    x, c, oy, ox = _spatial(a, "pixel shuffle")
    r = a.params.factor
    if not unshuffle:
        at = [c * r * r + (oy % r) * r + ox % r, oy // r, ox // r]
    else:
        k, rest = divmod(c, r * r)
        at = [k, oy * r + rest // r, ox * r + rest % r]
    value = float(x[tuple(at)])
    numbers = {"from": at, "x": value}
    return Worked(a.op, value, numbers, [at[0]], (at[1], at[1]), (at[2], at[2]), abs(value), [at])


def copy(a: Asked) -> Worked:
    """A layer that only moves values (flatten, reshape, dropout at inference): the unit
    is the input unit at the same place in C order."""
    x = a.inputs[0]
    flat = int(np.ravel_multi_index(a.unit, a.output_shape))
    at = [int(v) for v in np.unravel_index(flat, x.shape)]
    value = float(x[tuple(at)])
    rows = (at[1], at[1]) if x.ndim == 3 else None
    cols = (at[2], at[2]) if x.ndim == 3 else None
    return Worked("copy", value, {"from": at, "x": value}, [at[0]], rows, cols, abs(value), [at])


def merge(a: Asked, product: bool) -> Worked:
    """`add` or `mul` of same-shaped inputs: each input's value at the unit, then their sum
    or product. (`netspec.serve.explain` gives the input names.)"""
    if any(x.shape != a.output_shape for x in a.inputs):
        raise Unexplained(f"an {a.op} of differently shaped inputs is not traced here")
    values = [float(x[a.unit]) for x in a.inputs]
    value = float(np.prod(values)) if product else float(sum(values))
    return _here(a, a.op, value, {"values": values}, sum(abs(v) for v in values) + 1)


# The registry's arithmetic half, keyed by operation name as netspec.lower's BUILDERS is its
# PyTorch half (tests/test_registry_facts.py allows this one table by name, and checks that
# each key is a registered operation). An activation missing here is still explained, its
# value traced and its formula named, not recomputed (`netspec.serve.explain`).
RULES: dict[str, Rule] = {
    "conv": Rule(conv),
    "local": Rule(local),
    "dense": Rule(dense),
    "rbf": Rule(rbf),
    "maxpool": Rule(partial(pool, kind="max"), window="max"),
    "avgpool": Rule(partial(pool, kind="mean"), window="mean"),
    "subsample": Rule(partial(pool, kind="subsample"), window="subsample"),
    "batchnorm": Rule(batchnorm, then=True),
    "layernorm": Rule(layernorm),
    "layer_scale": Rule(layer_scale, then=True),
    "softmax": Rule(partial(softmax, log=False)),
    "log_softmax": Rule(partial(softmax, log=True)),
    "upsample": Rule(upsample),
    "pixel_shuffle": Rule(partial(pixel_shuffle, unshuffle=False)),
    "pixel_unshuffle": Rule(partial(pixel_shuffle, unshuffle=True)),
    "add": Rule(partial(merge, product=False)),
    "mul": Rule(partial(merge, product=True)),
    "prelu": Rule(prelu, then=True),
    "relu": _activation("max(0, x)", lambda v, p: max(0.0, v)),
    "relu6": _activation("min(max(0, x), 6)", lambda v, p: min(max(0.0, v), 6.0)),
    "tanh": _activation("tanh(x)", lambda v, p: math.tanh(v)),
    "sigmoid": _activation("1 / (1 + e^-x)", lambda v, p: _sigmoid(v)),
    "scaled_tanh": _activation("1.7159 tanh(2x/3)", lambda v, p: 1.7159 * math.tanh(2 * v / 3)),
    "leaky_relu": _activation(
        "x if x > 0, else slope * x", lambda v, p: v if v > 0 else p.slope * v
    ),
    "elu": _activation(
        "x if x > 0, else alpha (e^x - 1)",
        lambda v, p: v if v > 0 else p.alpha * math.expm1(v),
    ),
    "silu": _activation("x * sigmoid(x)", lambda v, p: v * _sigmoid(v)),
    "hardswish": _activation(
        "x * min(max(x + 3, 0), 6) / 6", lambda v, p: v * min(max(v + 3, 0.0), 6.0) / 6
    ),
    "hardsigmoid": _activation(
        "min(max(x / 6 + 1/2, 0), 1)", lambda v, p: min(max(v / 6 + 0.5, 0.0), 1.0)
    ),
    "mish": _activation("x tanh(softplus(x))", lambda v, p: v * math.tanh(_softplus(v, 1.0))),
    "gelu": _activation("x * Phi(x)", _gelu),
    "hardtanh": _activation("min(max(x, min), max)", lambda v, p: min(max(v, p.min), p.max)),
    "softplus": _activation("log(1 + e^(beta x)) / beta", lambda v, p: _softplus(v, p.beta)),
}
