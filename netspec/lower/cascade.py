"""`integral` and `cascade` in torch (netspec.ops.cascade says what each computes).

`Integral` is two cumulative sums (ONNX CumSum) of the image and of its square, padded with
a row and a column of zeros. `Cascade` holds what boosting chose (netspec.tasks.cascade
sets it with `Cascade.set`): each stump's feature as the corners it reads, its threshold,
polarity and weight, and each stage's size and threshold. Its graph has a real early exit:
stage 1 runs on every window of every scale, and each later stage only on the windows the
stages before it passed (ONNX NonZero and Gather), so a scene where most windows fail stage
1 costs little more than stage 1. The survivors' scores are scattered back over every
window, and `netspec.lower.ssd.choose` keeps the best of them after suppression, as
``keep x 6`` rows. A cascade with no stage (not trained yet) passes every window at score 1.

The trained tensors are parameters that no gradient reaches (`requires_grad=False`: the
optimizer a run makes holds them, but boosting sets them) of the sizes training gave them;
loading weights resizes them first (`_load_from_state_dict`), so a file of weights says its
own cascade.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from netspec.ir import Shape
from netspec.lower.lowered import Builder, Call, Lowered
from netspec.lower.ssd import CANDIDATES, choose
from netspec.ops.cascade import (
    DEVIATION,
    STEP_LOOKUPS,
    CascadeParams,
    IntegralParams,
    scan_of,
    window_corners,
    window_side,
)

REJECTED = -1.0  # the score of a window a stage rejected
# Scenes one eager call evaluates together (each window's lookups are gathered at once: a
# batch of a thousand scenes would hold gigabytes); an exported graph takes any batch.
SCENES_AT_ONCE = 16
# The trained tensors (the state dict): name -> shape after the stump count T or stage count S
TRAINED: dict[str, tuple[int, ...]] = {
    "points": (STEP_LOOKUPS, 3),  # (T, 9, 3): each stump's corners dy, dx, weight
    "threshold": (),  # (T,)
    "polarity": (),  # (T,): +1 votes for small values, -1 for large ones
    "alpha": (),  # (T,): its vote's weight
    "stages": (2,),  # (S, 2): each stage's stump count and threshold
}


class Integral(nn.Module):
    """``(N, 1, H, W)`` to its summed-area tables ``(N, 2, H+1, W+1)``: sums, sums of squares,
    summed in float64 so that any order of summing gives the same tables."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.double()  # exact sums, rounded once: the same in torch and ONNX Runtime
        both = torch.cat([wide, wide * wide], 1).cumsum(2).cumsum(3)
        return functional.pad(both, (1, 0, 1, 0)).to(x.dtype)


def window_grid(
    image: tuple[int, int], window: int, scales: tuple[float, ...], stride: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every window over every scale: its top-left corner's offset in a flattened table
    (W+1 wide), its scale's index and its (top, left, side), in scan order."""
    width = image[1] + 1
    bases, scale_of, frames = [], [], []
    for k, scale in enumerate(scales):
        tops, lefts = window_corners(image, window, scale, stride)
        side = window_side(window, scale)
        for top in tops:
            for left in lefts:
                bases.append(top * width + left)
                scale_of.append(k)
                frames.append((top, left, side))
    return (
        torch.tensor(bases, dtype=torch.int64),
        torch.tensor(scale_of, dtype=torch.int64),
        torch.tensor(frames, dtype=torch.float32).reshape(-1, 3),
    )


class Cascade(nn.Module):
    """A trained cascade over summed-area tables ``(N, 2, H+1, W+1)``; ``(N, keep, 6)`` rows."""

    points: torch.Tensor
    threshold: torch.Tensor
    polarity: torch.Tensor
    alpha: torch.Tensor
    stages: torch.Tensor
    base: torch.Tensor  # (Wn,) each window's top-left offset in a flattened table
    scale_of: torch.Tensor  # (Wn,) its scale's index
    boxes: torch.Tensor  # (Wn, 4) the object's box in it, x1, y1, x2, y2 in pixels
    factor: torch.Tensor  # (scales,) each scale's window side over the trained window's
    frame: torch.Tensor  # (scales, 4) the window's corners' offsets (its mean, its variance)
    offsets: torch.Tensor  # (scales, T, 9) each stump's corners' offsets at each scale
    masses: torch.Tensor  # (scales, T) its kernel's weight sum over its pixels at each scale
    weights: torch.Tensor  # (T, 9) their weights

    def __init__(
        self,
        image: tuple[int, int],
        window: int,
        scales: tuple[float, ...],
        stride: int,
        box: tuple[int, int],
        keep: int,
        iou: float,
    ) -> None:
        super().__init__()
        self.image, self.window, self.scales = image, window, scales
        self.keep, self.iou = keep, iou
        for name, tail in TRAINED.items():
            self._take(name, torch.zeros((0, *tail)))
        base, scale_of, frames = window_grid(image, window, scales, stride)
        self.register_buffer("base", base, persistent=False)
        self.register_buffer("scale_of", scale_of, persistent=False)
        top, left, side = frames.unbind(1)
        bh, bw = (side * box[0] / window, side * box[1] / window)
        cy, cx = top + side / 2, left + side / 2
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        self.register_buffer("boxes", boxes, persistent=False)
        sides = torch.tensor([window_side(window, s) for s in scales], dtype=torch.int64)
        self.register_buffer("factor", sides.float() / window, persistent=False)
        width = image[1] + 1
        frame = torch.stack([0 * sides, sides, sides * width, sides * width + sides], 1)
        self.register_buffer("frame", frame, persistent=False)
        self.sizes: tuple[int, ...] = ()
        self._derive()

    def set(self, trained: Mapping[str, torch.Tensor]) -> None:
        """Take a trained cascade: the tensors of `TRAINED`, by name."""
        for name in TRAINED:
            self._take(name, trained[name].to(torch.float32).clone())
        self._derive()

    def _take(self, name: str, value: torch.Tensor) -> None:
        """A trained tensor, as a parameter no gradient reaches (boosting sets it)."""
        setattr(self, name, nn.Parameter(value, requires_grad=False))

    def _derive(self) -> None:
        """The stage sizes and each stump's corners at every scale, from the trained tensors."""
        self.sizes = tuple(int(n) for n in self.stages[:, 0].tolist())
        width = self.image[1] + 1
        dy = torch.round(self.points[None, :, :, 0] * self.factor[:, None, None])
        dx = torch.round(self.points[None, :, :, 1] * self.factor[:, None, None])
        offsets = dy.long() * width + dx.long()
        weights = self.points[:, :, 2]
        # the corners' weights summed over a constant image's table (y * x at (y, x)): the
        # kernel's weights over its pixels, as its rectangles are rounded at this scale
        masses = (weights * dy * dx).sum(-1)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("weights", weights.clone(), persistent=False)
        self.register_buffer("masses", masses, persistent=False)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Resize the trained tensors to the stored ones before they are copied."""
        for name in TRAINED:
            stored = state_dict.get(prefix + name)
            if isinstance(stored, torch.Tensor):
                self._take(name, torch.zeros_like(stored, dtype=torch.float32))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._derive()

    def _moments(
        self, sums: torch.Tensor, squares: torch.Tensor, base: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each window's mean and deviation from its 4 corners on both tables."""
        at = base[:, None] + self.frame[scale]  # (M, 4)
        sign = torch.tensor([1.0, -1.0, -1.0, 1.0], device=sums.device, dtype=sums.dtype)
        pixels = (self.factor[scale].double() * self.window) ** 2
        mean = (sums[at] * sign).sum(1) / pixels
        power = (squares[at] * sign).sum(1) / pixels
        deviation = torch.sqrt((power - mean * mean).clamp(min=0) + DEVIATION**2)
        return mean, deviation

    def _stage(
        self,
        k: int,
        sums: torch.Tensor,
        base: torch.Tensor,
        scale: torch.Tensor,
        moments: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Stage k's weighted votes ``(M,)`` for windows at ``base`` of scales ``scale``."""
        first = sum(self.sizes[:k])
        last = first + self.sizes[k]
        at = base[:, None, None] + self.offsets[:, first:last][scale]  # (M, T_k, 9)
        raw = (sums[at] * self.weights[first:last].double()).sum(-1)
        mean, deviation = moments
        area = (self.factor[scale].double() ** 2)[:, None]
        mass = self.masses[:, first:last][scale].double()  # (M, T_k)
        value = (raw - mean[:, None] * mass) / (area * deviation[:, None])
        sign = self.polarity[first:last].double()
        votes = (sign * value < sign * self.threshold[first:last].double()).to(value.dtype)
        return (votes * self.alpha[first:last].double()).sum(1)

    def survivors(
        self, tables: torch.Tensor, counts: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows that pass every stage, as indices into (image, window) flattened, and
        their scores (0.5 at the last stage's threshold, 1 with every vote); ``counts``, when
        given, gets the number of windows alive before the first stage and after each."""
        n, windows = tables.shape[0], self.base.shape[0]
        plane = tables.shape[2] * tables.shape[3]
        sums = tables[:, 0].reshape(-1).double()
        squares = tables[:, 1].reshape(-1).double()
        index = torch.arange(n * windows, device=tables.device)
        window = index % windows
        base = torch.div(index, windows, rounding_mode="floor") * plane + self.base[window]
        scale = self.scale_of[window]
        mean, deviation = self._moments(sums, squares, base, scale)
        score = torch.ones_like(mean)
        if counts is not None:
            counts.append(len(index))
        for k in range(len(self.sizes)):
            votes = self._stage(k, sums, base, scale, (mean, deviation))
            cut = self.stages[k, 1].double()
            alive = torch.nonzero(votes >= cut).reshape(-1)
            top = self.alpha[sum(self.sizes[:k]) : sum(self.sizes[: k + 1])].double().sum()
            score = 0.5 + 0.5 * (votes - cut) / (top - cut).clamp(min=1e-6)
            index, base, scale = index[alive], base[alive], scale[alive]
            mean, deviation, score = mean[alive], deviation[alive], score[alive]
            if counts is not None:
                counts.append(len(index))
        return index, score

    def alive(self, tables: torch.Tensor) -> list[int]:
        """The windows alive before the first stage and after each, over the batch."""
        counts: list[int] = []
        self.survivors(tables, counts)
        return counts

    def stage_votes(self, tables: torch.Tensor) -> torch.Tensor:
        """Every stage's weighted votes at every window, without the early exit:
        ``(N, Wn, S)`` (what a test compares window by window)."""
        n, windows = tables.shape[0], self.base.shape[0]
        plane = tables.shape[2] * tables.shape[3]
        sums, squares = tables[:, 0].reshape(-1).double(), tables[:, 1].reshape(-1).double()
        index = torch.arange(n * windows, device=tables.device)
        window = index % windows
        base = torch.div(index, windows, rounding_mode="floor") * plane + self.base[window]
        scale = self.scale_of[window]
        moments = self._moments(sums, squares, base, scale)
        stages = [self._stage(k, sums, base, scale, moments) for k in range(len(self.sizes))]
        votes = torch.stack(stages, 1) if stages else moments[0][:, None][:, :0]
        return votes.reshape(n, windows, len(stages))

    def forward(self, tables: torch.Tensor) -> torch.Tensor:
        tracing = torch.jit.is_tracing()  # type: ignore[attr-defined, no-untyped-call]
        if len(tables) > SCENES_AT_ONCE and not tracing:
            return torch.cat([self(part) for part in torch.split(tables, SCENES_AT_ONCE)])
        n, windows = tables.shape[0], self.base.shape[0]
        index, score = self.survivors(tables)
        every = torch.full((n * windows,), REJECTED, device=tables.device, dtype=tables.dtype)
        every = every.scatter(0, index, score.to(tables.dtype)).reshape(n, windows, 1)
        # rows of no window after them, so that suppression always ranks a fixed number
        every = functional.pad(every, (0, 0, 0, CANDIDATES * self.keep), value=REJECTED)
        boxes = functional.pad(self.boxes, (0, 0, 0, CANDIDATES * self.keep))
        return choose(boxes[None].expand(n, -1, 4), every, 0.5, self.iou, self.keep)


def _integral(p: IntegralParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(Integral))


def _cascade(p: CascadeParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    scan = scan_of(p, ins[0])
    args = (scan.image, p.window, p.scales, p.stride, p.object_box, p.keep, p.iou)
    return Lowered(Call(Cascade, args))


BUILDERS: dict[str, Builder] = {"integral": _integral, "cascade": _cascade}
