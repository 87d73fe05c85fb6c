"""What resampling feature maps shares, with no operation of its own: PyTorch's
interpolation parameters, symbolic sizes scaled, and the receptive field of maps grown by
whole factors (`upsample 2`, `pixel_shuffle 2`) or resized from one size to another
(`upsample to 64x64`, `resize(x, like)`); `upsampling` and `depth` register the operations.

s output units stand where one input unit stood, so the jump divides by s. Those units do
not read evenly spaced input units, so no size/jump/start is exact: the size is that of the
smallest window, centred where the affine start and jump put each unit, that holds
everything every unit reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from math import gcd
from typing import Literal

from pydantic import model_validator

from netspec.ir import Dim, OpParams, Shape
from netspec.ops.registry import RF, Cost, macs_of, rf_whole


def _sym(d: str) -> str:
    return d if d.isidentifier() else f"({d})"


def stretched(size: Dim, factor: int, extra: int = 0) -> Dim:
    """`factor * size + extra`, kept symbolic for a symbolic size (`2*H`, `2*H-1`)."""
    if isinstance(size, int):
        return factor * size + extra
    scaled = size if factor == 1 else f"{factor}*{_sym(size)}"
    return scaled if extra == 0 else f"{scaled}{extra:+d}"


class Interpolation(OpParams):
    """How values between input units are made, as PyTorch's `nn.Upsample` and
    `F.interpolate` take it: `mode`, and `align_corners` (bilinear only)."""

    mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool = False

    @model_validator(mode="after")
    def _corners_need_bilinear(self) -> Interpolation:
        if self.align_corners and self.mode != "bilinear":
            raise ValueError("align_corners=true needs mode=bilinear")
        return self


def upsampled_rf(rf: RF, factors: tuple[int, int], p: Interpolation) -> RF:
    """Each input unit becomes s output units: the jump is divided by s, and the size is
    that of the smallest window, centred on `start + o * jump`, that holds every input
    unit output unit o reads (in input jumps j, r the input's size; `_upsample_spread`).

    Output unit o stands at input position x = (o + 1/2)/s - 1/2 (PyTorch's half-pixel
    rule), so the first unit's centre moves back by (1 - 1/s)/2 input jumps; with
    `align_corners=true` output unit 0 sits on input unit 0 and the start stays (its
    true step j(n-1)/(sn-1) is taken as j/s: this rule does not see sizes, and the
    size below covers the drift). A pixel shuffle by s reads as a nearest upsample does
    (output unit o of a map reads input position o // s), and has this field too.
    """
    if rf.whole:
        return rf
    size, jump, start = [], [], []
    for i, s in enumerate(factors):
        size.append(rf.size[i] + _upsample_spread(p, s) * rf.jump[i])
        jump.append(rf.jump[i] / s)
        back = 0 if p.align_corners else (1 - 1 / s) / 2 * rf.jump[i]
        start.append(rf.start[i] - back)
    return replace(rf, size=(size[0], size[1]), jump=(jump[0], jump[1]), start=(start[0], start[1]))


def _upsample_spread(p: Interpolation, s: int) -> float:
    """How many input jumps an upsample by s adds to the size (see `upsampled_rf`).

    The units an output reads are not evenly spaced over the input (o reads floor(o/s)
    for nearest), so no affine centre is exact; the size is twice the farthest reach
    of o's input units from its centre c(o), over all o, in input jumps:

    - nearest: o = sq + t reads unit q; c(o) = q + ((t - (s-1)/2))/s, within (s-1)/(2s)
      of q either way: + (s-1)/s (U-Net-like nets: 2x2 upsample adds j/2).
    - bilinear: c(o) = x and o reads floor(x) and floor(x)+1, the latter with weight
      f = frac(x) (none at f = 0): half-width max(f, 1-f). f takes the values
      (2o + 1 - s mod 2s)/(2s): odd numerators for even s, whose worst is 1 - 1/(2s),
      giving + (2s-1)/s; even ones for odd s (f = 0 reads one unit), worst 1 - 1/s,
      giving + 2(s-1)/s.
    - bilinear, align_corners: x = o(n-1)/(sn-1) lags c(o) = o/s by up to (s-1)/s
      near the far end; c(o) - floor(x) = (s-1)/s - u/s + ceil(u(n-1)/(sn-1)) for
      u = sn-1-o units from the end, at most 2(s-1)/s (reached at u = 1);
      floor(x) + 1 - c(o) <= 1. So + 4(s-1)/s.

    Float rounding of x at exact grid points (which can add a weight of 1e-16 on one
    more unit) is not counted, as it is not a dependency of the formula.
    """
    if s == 1:
        return 0.0
    if p.mode == "nearest":
        return (s - 1) / s
    if p.align_corners:
        return 4 * (s - 1) / s
    return (2 * s - 1) / s if s % 2 == 0 else 2 * (s - 1) / s


def resized_rf(rf: RF, p: Interpolation, sizes: Shape, out: Sequence[Dim]) -> RF:
    """The field after resizing maps of `sizes` (H, W) to `out`: per axis, the jump times
    n/m, the start and size from `_resized_axis`. Exact where both sizes are numbers; a
    symbolic size that changes leaves the ratio unknown, and the field is `whole` (the
    bound that holds, as for pooling a symbolic size `to` a fixed one)."""
    if rf.whole:
        return rf
    size, jump, start = list(rf.size), list(rf.jump), list(rf.start)
    for i, (n, m) in enumerate(zip(sizes, out, strict=True)):
        if n == m:
            continue  # the same size, numeric or symbolic: every unit reads its own
        if not isinstance(n, int) or not isinstance(m, int):
            return rf_whole(p, [rf])
        ratio, shift, spread = _resized_axis(n, m, p)
        size[i] += 2 * spread * rf.jump[i]
        start[i] += shift * rf.jump[i]
        jump[i] *= ratio
    return replace(rf, size=(size[0], size[1]), jump=(jump[0], jump[1]), start=(start[0], start[1]))


def _resized_axis(n: int, m: int, p: Interpolation) -> tuple[float, float, float]:
    """(jump ratio, start shift, spread) of resizing n units to m along one axis, the last
    two in input jumps: the spread is the farthest any output unit o reads from its centre
    c(o), over every o whose reads no border clips (a border only drops units).

    With PyTorch's half-pixel rule, c(o) = (o + 1/2)·n/m - 1/2; counted in 1/(2m), that is
    C = (2o + 1)·n - m, and with g = gcd(n, m) the values C takes modulo 2m are those
    congruent to n - m modulo 2g (o·n mod m runs through the multiples of g).

    - nearest reads unit floor(o·n/m): C - 2m·floor(o·n/m) = 2(o·n mod m) + n - m, at most
      |n - m| or n + m - 2g away: spread max(|n - m|, n + m - 2g) / 2m (for m = s·n,
      (s-1)/(2s), `_upsample_spread`'s nearest).
    - bilinear reads floor(x) and the next unit, weighted by f = frac(x) (none at f = 0):
      half-width max(f, 1 - f). With f0 = (n - m) mod 2g, the f nearest 0 or 1 that is
      not 0 is f0 or 2g - f0 (2g if f0 is 0), in 1/(2m): spread 1 - that / 2m.
    - bilinear, align_corners: c(o) = x = o·(n-1)/(m-1), counted in 1/(m-1) a multiple
      of g' = gcd(n-1, m-1): spread 1 - g'/(m-1), and the start stays.

    Rounding of x in floats (PyTorch computes it so) is not counted, as in
    `_upsample_spread`.
    """
    if p.align_corners:
        if m == 1:
            return (n, 0.0, 0.0)  # one output unit, on input unit 0
        g = gcd(n - 1, m - 1)
        return ((n - 1) / (m - 1), 0.0, 1 - g / (m - 1) if g < m - 1 else 0.0)
    g = gcd(n, m)
    shift = (n / m - 1) / 2
    if p.mode == "nearest":
        return (n / m, shift, max(abs(n - m), n + m - 2 * g) / (2 * m))
    f0 = (n - m) % (2 * g)
    nearest_edge = 2 * g if f0 == 0 else min(f0, 2 * g - f0)
    return (n / m, shift, 1 - nearest_edge / (2 * m) if g < m or f0 else 0.0)


def interpolation_cost(p: Interpolation, ins: Sequence[Shape], out: Shape) -> Cost:
    """fvcore's count: nearest one per output (a copy), bilinear four (the 2x2 it weighs);
    ptflops counts one per output for both."""
    return Cost(macs=macs_of(out, 4 if p.mode == "bilinear" else 1))
