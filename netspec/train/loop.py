"""The training loop: optimizer, schedule, loss, one epoch, evaluation.

Randomness is derived from (seed, epoch, rank) at the start of every epoch (the
shuffle, the augmentation, dropout), so an epoch run after a resume is the epoch an
uninterrupted run would have run. Under DDP each rank takes its contiguous slice of
every global batch, and its loss is scaled so that DDP's gradient average equals the
gradient of the global batch's mean loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from torch import nn

from netspec.errors import RunError
from netspec.tasks import CLASSIFIER, Target
from netspec.tasks.base import Outputs, as_outputs
from netspec.train.augment import augment, augment_boxes
from netspec.train.data import Streamed, Tensors, normalized
from netspec.trainspec import Augment, Loss, Optimizer, Schedule, TrainConfig

EVAL_BATCH = 1000


@dataclass(frozen=True)
class Place:
    """Where the loop runs: device, precision, and this process's rank among ``world``."""

    device: torch.device
    amp: torch.dtype | None = None  # bfloat16 or float16 under autocast; None: float32
    channels_last: bool = False
    rank: int = 0
    world: int = 1

    def autocast(self) -> AbstractContextManager[Any]:
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@dataclass
class Parts:
    """The mutable pieces of a training run, with their state for a checkpoint."""

    module: nn.Module  # what the loop calls: maybe compiled or wrapped in DDP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    steps_per_epoch: int

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        _match_layouts(self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Lay out each parameter's loaded state (momentum, Adam's moments) as the parameter:
    a checkpoint stores them contiguous, and a fused optimizer walks a channels-last weight
    and its buffers element by element in memory order, so a mismatch would update wrongly."""
    for param, slots in optimizer.state.items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                slots[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


@dataclass(frozen=True)
class Deform:
    """An epoch's deformations, drawn from its generator (netspec.tasks.base.Deform)."""

    spec: Augment
    gen: torch.Generator
    size: tuple[int, int] | None = None  # the input's (H, W): random resized crops' size

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.spec, self.gen, self.size)

    def boxes(self, x: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return augment_boxes(x, boxes, self.spec, self.gen)


@dataclass
class EpochResult:
    loss: float
    acc: float
    seconds: float = 0.0


@dataclass
class Evaluation:
    """The test loss, the accuracy (per sample, or per pixel; NaN for a map), and the
    predicted classes (empty for a map or a segmentation: nothing to confuse per sample)."""

    loss: float
    acc: float
    predictions: torch.Tensor = field(repr=False)

    @property
    def errors(self) -> int:
        return round((1 - self.acc) * len(self.predictions))


def steps_per_epoch(n: int, batch: int, world: int) -> int:
    """Full batches, plus the last partial one if every rank gets a sample of it."""
    return n // batch + (1 if n % batch >= world else 0)


def make_optimizer(params: Iterable[nn.Parameter], opt: Optimizer) -> torch.optim.Optimizer:
    """The optimizer, as one fused kernel per step where torch has one for every parameter
    (float tensors on the CPU or CUDA): the same update, without a loop over tensors in
    Python (about a tenth of a small network's step on the CPU)."""
    tensors = list(params)
    fused = bool(tensors) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors
    )
    if opt.name == "sgd":
        return torch.optim.SGD(
            tensors,
            lr=opt.lr,
            momentum=opt.momentum,
            nesterov=opt.nesterov and opt.momentum > 0,
            weight_decay=opt.weight_decay,
            fused=fused or None,
        )
    kind = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return kind(tensors, lr=opt.lr, weight_decay=opt.weight_decay, fused=fused or None)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, opt: Optimizer, epochs: int, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A schedule stepped once per batch, for ``epochs`` epochs of ``steps`` batches."""
    sched = torch.optim.lr_scheduler
    total = max(1, epochs * steps)
    if schedule.name == "step":
        return sched.StepLR(
            optimizer, step_size=schedule.step * max(1, steps), gamma=schedule.gamma
        )
    if schedule.name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total)
    if schedule.name == "onecycle":
        cycle = opt.name != "sgd" or opt.momentum > 0
        return sched.OneCycleLR(optimizer, max_lr=opt.lr, total_steps=total, cycle_momentum=cycle)
    return sched.LambdaLR(optimizer, lambda _: 1.0)


def make_parts(
    module: nn.Module, trained: nn.Module, config: TrainConfig, n: int, place: Place
) -> Parts:
    """``trained`` owns the parameters; ``module`` is what the loop calls (maybe wrapped)."""
    steps = steps_per_epoch(n, config.batch, place.world)
    optimizer = make_optimizer(trained.parameters(), config.optimizer)
    scheduler = make_scheduler(optimizer, config.schedule, config.optimizer, config.epochs, steps)
    scaler = torch.amp.GradScaler(place.device.type, enabled=place.amp == torch.float16)
    return Parts(module, optimizer, scheduler, scaler, steps)


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (the same on every platform and process)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    return h >> 1


def seed_epoch(seed: int, epoch: int, rank: int) -> tuple[torch.Generator, torch.Generator]:
    """Seed dropout for (seed, epoch, rank); return the epoch's order and augmentation RNG."""
    torch.manual_seed(_mix(seed, epoch, rank, 1))
    aug = torch.Generator().manual_seed(_mix(seed, epoch, rank, 2))
    order_gen = torch.Generator().manual_seed(_mix(seed, epoch, 3))  # the same on every rank
    return order_gen, aug


def normalize_once(data: Tensors, config: TrainConfig) -> Tensors:
    """The training set normalized once for the whole run, when every epoch would
    feed it unchanged: no augmentation (which deforms raw images, padding with raw zeros) and
    not its own target. The same floats as normalizing each batch, without an elementwise
    pass over every batch of every epoch (about 1% of a small network's step on the CPU)."""
    if isinstance(data.train_x, Streamed):
        return data  # decoded batch by batch: normalized so
    if data.normalized or config.augment.enabled or data.target.reconstruct:
        return data
    return replace(data, train_x=normalized(data.train_x, config.normalize), normalized=True)


def train_epoch(
    parts: Parts,
    data: Tensors,
    config: TrainConfig,
    place: Place,
    epoch: int,
    show: Callable[[int, float, float, int], None],
) -> EpochResult:
    """One pass over the (shuffled, augmented) training set; ``show(step, loss, acc, seen)``."""
    n = len(data.train_x)
    order_gen, aug_gen = seed_epoch(config.seed, epoch, place.rank)
    order = torch.randperm(n, generator=order_gen)
    parts.module.train()
    tally = Tally(place.device, config.loss, data.target)
    per_sample = Scales(place)
    start = time.perf_counter()
    steps = parts.steps_per_epoch
    if isinstance(data.train_x, Streamed):
        batches = streamed_batches(data.train_x, order, data, config, place, epoch, steps)
    else:
        deform = Deform(config.augment, aug_gen, data.size)
        batches = _held(data.train_x, order, data, config, place, deform, steps)
    for step, (x, y, samples) in enumerate(batches):
        x = place.batch(x if data.normalized else normalized(x, config.normalize))
        with place.autocast():
            outs = data.target.task.forward(parts.module, x, y, config.loss, data.target)
        summed = data.target.task.loss_sum(outs, y, config.loss, data.target)
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.scaler.is_enabled():
            scaled: torch.Tensor = parts.scaler.scale(summed * (place.world / samples))
            scaled.backward()  # type: ignore[no-untyped-call]
        else:  # the mean's gradient without a multiplication each way: 1/B given as d(sum)
            summed.backward(per_sample.get(samples))  # type: ignore[no-untyped-call]
        if config.clip is not None:
            parts.scaler.unscale_(parts.optimizer)
            nn.utils.clip_grad_norm_(parts.module.parameters(), config.clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        tally.add(summed.detach(), tuple(o.detach() for o in outs), y)
        if step % 10 == 0 or step == steps - 1:  # read back every 10 steps
            _stop_if_diverged(tally.settle(), epoch)
            if place.rank == 0:
                show(
                    step + 1, tally.loss / max(tally.count, 1), tally.acc, tally.count * place.world
                )
    _stop_if_diverged(tally.settle(), epoch)  # a streamed epoch may pass over its last step
    total = tally.totals()
    if place.world > 1:
        torch.distributed.all_reduce(total)
    loss, correct, count = total.tolist()
    return EpochResult(loss / max(count, 1), correct / max(count, 1), time.perf_counter() - start)


Batch = tuple[torch.Tensor, torch.Tensor, int]  # inputs, targets, the global batch's samples


def _mine(batch: torch.Tensor, place: Place) -> torch.Tensor:
    """This rank's contiguous slice of a global batch's indices."""
    return batch if place.world == 1 else batch.tensor_split(place.world)[place.rank]


def _held(
    x: torch.Tensor,
    order: torch.Tensor,
    data: Tensors,
    config: TrainConfig,
    place: Place,
    deform: Deform,
    steps: int,
) -> Iterator[Batch]:
    """Each step's images and targets, cut from the held training set and deformed on its
    device by the epoch's one generator."""
    order = order.to(place.device)
    for step in range(steps):
        batch = order[step * config.batch : (step + 1) * config.batch]
        idx = _mine(batch, place)
        images, y = data.target.task.augment(x[idx], data.train_y[idx], deform, data.target)
        yield images, y, len(batch)


def streamed_batches(
    streamed: Streamed,
    order: torch.Tensor,
    data: Tensors,
    config: TrainConfig,
    place: Place,
    epoch: int,
    steps: int,
) -> Iterator[Batch]:
    """Each step's images, decoded and deformed in the loader's threads, each batch by a
    generator of its own drawn from (seed, epoch, rank, step): the same batches whatever
    the threads do. A file found unreadable leaves its batch one sample short (a batch
    left empty is passed over)."""
    batches = [order[s * config.batch : (s + 1) * config.batch] for s in range(steps)]
    picks = [_mine(b, place).numpy() for b in batches]
    task, target = data.target.task, data.target

    def make(step: int, x: torch.Tensor, y: torch.Tensor) -> Batch:
        gen = torch.Generator().manual_seed(_mix(config.seed, epoch, place.rank, 4, step))
        x, y = task.augment(x, y, Deform(config.augment, gen, data.size), target)
        return x, y, len(batches[step]) - (len(picks[step]) - len(y))

    for x, y, count in streamed.batches(picks, make):
        if len(y):
            yield x.to(place.device), y.to(place.device), count


class Scales:
    """The gradient of a batch's summed loss that makes it its mean over the global batch,
    ``world / B`` as a tensor on the device, made once per batch size."""

    def __init__(self, place: Place) -> None:
        self.place = place
        self._made: dict[int, torch.Tensor] = {}

    def get(self, batch: int) -> torch.Tensor:
        if batch not in self._made:
            value = self.place.world / batch
            self._made[batch] = torch.tensor(value, dtype=torch.float32, device=self.place.device)
        return self._made[batch]


class Tally:
    """An epoch's running loss, hits and sample count, read back every few steps.

    A step only keeps its (detached) loss, and its outputs and labels (a task whose
    predictions are per sample) or its hits (another task with a metric); ``settle`` reads
    the pending ones back (one transfer for the losses, one for the hits) and adds them up
    in float64 in step order, per-sample hits counted over all pending steps at once.
    Per-step tensor work on metrics (a dozen tiny kernels a step) cost 2-3% of a small
    network's epoch on the CPU, while the totals, the divergence check and their timing
    stay as they were."""

    def __init__(self, device: torch.device, loss: Loss, target: Target) -> None:
        self.device = device
        self.criterion = loss
        self.target = target
        self.loss = 0.0
        self.correct = 0.0
        self.count = 0
        self.first_bad = 0  # the step (from 1) whose loss first was not finite; 0: none
        self._steps = 0
        self._losses: list[torch.Tensor] = []
        self._hits: list[torch.Tensor] = []  # per-step hits (e.g. pixel accuracy)
        self._outs: list[Outputs] = []  # per-sample predictions' outputs and labels
        self._labels: list[torch.Tensor] = []

    @property
    def acc(self) -> float:
        return self.correct / max(self.count, 1)

    def add(self, loss: torch.Tensor, outs: Outputs, y: torch.Tensor) -> None:
        """One step's summed loss, and its outputs and targets (all detached)."""
        self._losses.append(loss)
        self.count += len(y)
        task = self.target.task
        if task.per_sample:
            self._outs.append(outs)
            self._labels.append(y)
        elif task.metric is not None:
            pred = task.predict(outs, self.criterion, self.target)
            self._hits.append(task.hits(pred, y, self.target))

    def settle(self) -> int:
        """Fold in the pending steps; return the first step whose loss was not finite."""
        if self._losses:
            for loss in torch.stack(self._losses).tolist():
                self._steps += 1
                if not self.first_bad and not math.isfinite(loss):
                    self.first_bad = self._steps
                self.loss += loss
            self._losses.clear()
        if self._hits:
            for correct in torch.stack(self._hits).tolist():
                self.correct += correct
            self._hits.clear()
        if self._outs:
            outs = self._outs[0]
            if len(self._outs) > 1:
                outs = tuple(torch.cat(o) for o in zip(*self._outs, strict=True))
            y = torch.cat(self._labels) if len(self._labels) > 1 else self._labels[0]
            task = self.target.task
            pred = task.predict(outs, self.criterion, self.target)
            self.correct += int(task.hits(pred, y, self.target))
            self._outs.clear()
            self._labels.clear()
        return self.first_bad

    def totals(self) -> torch.Tensor:
        """Loss, hits and count as one float64 tensor on the device (for an all-reduce)."""
        return torch.tensor(
            [self.loss, self.correct, float(self.count)], dtype=torch.float64, device=self.device
        )


def _stop_if_diverged(step: int, epoch: int) -> None:
    """Stop a run whose loss went NaN or infinite (at ``step``; 0: it did not)."""
    if step:
        kept = f"its checkpoint of epoch {epoch - 1}" if epoch > 1 else "no checkpoint yet"
        raise RunError(
            f"epoch {epoch}, step {step}: the loss is not finite (NaN or infinite); training "
            f"stopped, and the run keeps {kept}",
            hint="lower the learning rate, or clip the gradients (--set clip=1)",
        )


@torch.no_grad()
def evaluate(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    place: Place,
    target: Target = CLASSIFIER,
) -> Evaluation:
    """Loss, accuracy and every per-sample prediction on ``(x, y)``, without augmentation."""
    module.eval()
    task = target.task
    loss = correct = 0.0
    preds: list[torch.Tensor] = []
    for i in range(0, len(x), EVAL_BATCH):
        xb = place.batch(normalized(x[i : i + EVAL_BATCH], config.normalize))
        yb = y[i : i + EVAL_BATCH]
        with place.autocast():
            outs = as_outputs(module(xb))
        loss += float(task.loss_sum(outs, yb, config.loss, target))
        pred = task.predict(tuple(o.float() for o in outs), config.loss, target)
        correct += float(task.hits(pred, yb, target))
        if task.per_sample:
            preds.append(pred)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=y.device)
    acc = correct / len(y) if len(y) and task.metric else math.nan
    return Evaluation(loss / max(len(y), 1), acc, pred)


class Bar:
    """A rich progress bar for one epoch at a time: step, loss, accuracy (none for a map),
    images/s, ETA."""

    def __init__(self, console: Console, enabled: bool, accuracy: bool = True) -> None:
        scores = "loss {task.fields[loss]:.4f}" + (
            " acc {task.fields[acc]:.2%}" if accuracy else ""
        )
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(scores),
            TextColumn("{task.fields[rate]:,.0f} img/s"),
            TimeRemainingColumn(),
        )
        self.progress = Progress(*columns, console=console, disable=not enabled, transient=True)
        self.task = self.progress.add_task("", total=1, loss=0.0, acc=0.0, rate=0.0)
        self.start = time.perf_counter()

    def __enter__(self) -> Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def begin(self, epoch: int, epochs: int, steps: int) -> None:
        self.start = time.perf_counter()
        self.progress.reset(
            self.task,
            total=steps,
            description=f"epoch {epoch}/{epochs}",
            loss=0.0,
            acc=0.0,
            rate=0.0,
        )

    def show(self, step: int, loss: float, acc: float, seen: int) -> None:
        rate = seen / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, completed=step, loss=loss, acc=acc, rate=rate)
