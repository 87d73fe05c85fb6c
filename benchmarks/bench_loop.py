"""The training loop's own overhead: `netspec train`'s epoch against a hand-written PyTorch
loop over the same module, and what evaluation and checkpointing add to each epoch.

Both loops train a module that netspec.lower.to_torch made from the same spec, drawn from
the same seed, in the memory format netspec picks for it, on the spec's MNIST in memory,
with the spec's batch, the same torch optimizer (fused, as netspec builds it) and the
same per-step schedule. The hand-written loop is the one a person writes: the whole
training set normalized once, then index, forward, loss, backward, step. netspec's epoch
is `netspec.train.loop.train_epoch` as `netspec train` calls it (its progress bar shown
as when the output is not a terminal). The loops take turns, one whole epoch each
(A B B A ...), so drift in the machine's load hits both alike; images/s are medians and the
ratio is netspec / hand-written (goal: >= 0.97). The results replace the section
`## Training loop overhead` of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_loop.py [--rounds 4] [--data DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from docsection import replace_section  # benchmarks/, beside this script
from machine import cpu_model, load_average  # benchmarks/, beside this script
from rich.console import Console
from torch import nn

from netspec.compiler import Compiled
from netspec.train.data import Tensors
from netspec.train.heap import keep_freed_memory
from netspec.train.loop import Bar, Place, evaluate, make_parts, normalize_once, train_epoch
from netspec.train.session import Run, checkpoint, metrics_row
from netspec.train.setup import (
    Request,
    build_module,
    compile_request,
    load_tensors,
    make_place,
    seeded_module,
    train_config,
)
from netspec.trainspec import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Training loop overhead"
SPECS = (("LeNet", ROOT / "specs" / "lenet.net"), ("mnist_fast", ROOT / "specs" / "mnist_fast.net"))


def _quiet(_: str) -> None:
    """netspec's log lines are not the benchmark's output."""


@dataclass
class Case:
    """One spec, its train section, where netspec trains it, and its data in memory."""

    name: str
    compiled: Compiled
    config: TrainConfig
    place: Place
    data: Tensors

    def module(self) -> nn.Module:
        module = seeded_module(self.compiled, build_module, self.config.seed)
        if self.place.channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return module


def case(name: str, spec: Path, data: Path | None) -> Case:
    compiled = compile_request(spec, None, {})
    config = train_config(compiled, {}, _quiet)
    place = make_place(Request(device="cpu"), compiled, _quiet)
    tensors = load_tensors(compiled, config, data, None, place.device, _quiet)
    return Case(name, compiled, config, place, tensors)


def netspec_epoch(c: Case) -> Callable[[], float]:
    """One epoch of `train_epoch` on a fresh module; returns its seconds. The training set
    is prepared as `netspec train` prepares it once per run (normalized, when nothing
    deforms it), outside the timer as the hand-written loop's is."""
    data = normalize_once(c.data, c.config)

    def run() -> float:
        module = c.module()
        parts = make_parts(module, module, c.config, len(c.data.train_x), c.place)
        with Bar(Console(file=io.StringIO()), enabled=False) as bar:
            start = time.perf_counter()
            train_epoch(parts, data, c.config, c.place, 1, bar.show)
            return time.perf_counter() - start

    return run


def hand_epoch(c: Case) -> Callable[[], float]:
    """The same epoch, written by hand: cross entropy with the spec's smoothing."""
    cfg = c.config
    x_all = c.place.batch((c.data.train_x - cfg.normalize.mean) / cfg.normalize.std)
    y_all, n = c.data.train_y, len(c.data.train_x)

    def run() -> float:
        model = c.module()
        parts = make_parts(model, model, cfg, n, c.place)  # netspec's optimizer and schedule
        optimizer, scheduler = parts.optimizer, parts.scheduler
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
        for i in range(0, n, cfg.batch):
            idx = order[i : i + cfg.batch]
            loss = F.cross_entropy(
                model(x_all[idx]), y_all[idx], label_smoothing=cfg.loss.smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
        return time.perf_counter() - start

    return run


def interleaved(
    a: Callable[[], float], b: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds of each round of ``a`` and of ``b``, taking turns (ABBA) after one warm-up
    each: round r of one ran right beside round r of the other."""
    a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            times[k].append((a, b)[k]())
    return times


def epoch_extras(c: Case, rounds: int) -> tuple[float, float]:
    """Median seconds of what `netspec train` does after each epoch's training: evaluate
    the test set, then write metrics, best weights, state and the committing checkpoint."""
    module = c.module()
    parts = make_parts(module, module, c.config, len(c.data.train_x), c.place)
    evals: list[float] = []
    saves: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), c.compiled, c.config, c.data, c.place, module, parts, [])
        for epoch in range(1, rounds + 1):
            start = time.perf_counter()
            test = evaluate(module, c.data.test_x, c.data.test_y, c.config, c.place)
            evals.append(time.perf_counter() - start)
            row = {**metrics_row(epoch, 0.0, 0.0, test, c.data.target), "lr": 0.0, "seconds": 0.0}
            run.rows.append(row)
            run.best_acc = -1.0  # every epoch writes best weights too, as an improving run does
            start = time.perf_counter()
            checkpoint(run, epoch, test, row)
            saves.append(time.perf_counter() - start)
    return statistics.median(evals), statistics.median(saves)


def _machine() -> str:
    cpu = cpu_model()
    return (
        f"CPU: {cpu}, nproc {os.cpu_count()}, torch threads {torch.get_num_threads()}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def _row(c: Case, rounds: int) -> str:
    ours_all, hand_all = interleaved(netspec_epoch(c), hand_epoch(c), rounds)
    ours, hand = statistics.median(ours_all), statistics.median(hand_all)
    pairs = sorted(h / o for o, h in zip(ours_all, hand_all, strict=True))
    ev, save = epoch_extras(c, rounds)
    n = len(c.data.train_x)
    o = c.config.optimizer
    return (
        f"| {c.name} | {o.name} lr={o.lr:g}, {c.config.schedule.name}, batch {c.config.batch} | "
        f"{n / ours:,.0f} ({ours:.2f} s) | {n / hand:,.0f} ({hand:.2f} s) | "
        f"**{hand / ours:.3f}** ({pairs[0]:.3f}-{pairs[-1]:.3f}) | {ev:.3f} s | {save:.3f} s |"
    )


def tiny(c: Case) -> Case:
    """The same loop and train section around a negligible network (dense 10 on 2x2
    inputs): what is left of an epoch is the loop's own work per step."""
    from netspec.compiler import compile_text

    compiled = compile_text("network tiny(image: 1x2x2) {\n    dense 10\n}\n")
    small = replace(
        c.data, train_x=c.data.train_x[:, :, :2, :2].clone(), train_y=c.data.train_y.clone()
    )
    return Case(f"{c.name}, its loop alone", compiled, c.config, replace(c.place), small)


def overhead_row(c: Case, rounds: int) -> str:
    ours_all, hand_all = interleaved(netspec_epoch(c), hand_epoch(c), rounds)
    ours, hand = statistics.median(ours_all), statistics.median(hand_all)
    steps = -(-len(c.data.train_x) // c.config.batch)
    extra = (ours - hand) / steps * 1e6
    return (
        f"Each step's own work, from `{c.name}` (dense 10 on 2x2 inputs, the same loops, "
        f"data and train section): netspec {ours / steps * 1e6:.1f} us a step, hand-written "
        f"{hand / steps * 1e6:.1f} us, so netspec's loop adds **{extra:.1f} us a step**."
    )


def _write(section: str) -> None:
    """Replace only this section of docs/benchmarks.md (others own the rest)."""
    replace_section(DOC, SECTION, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="epochs of each loop")
    parser.add_argument("--data", type=Path, help="MNIST's IDX files (default: netspec's cache)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    command = " ".join(["python", "benchmarks/bench_loop.py", *sys.argv[1:]])
    kept = keep_freed_memory()  # as `netspec train` does; one process, so both loops
    cases = [case(name, spec, args.data) for name, spec in SPECS]
    before = load_average()
    rows = [_row(c, args.rounds) for c in cases]
    alone = overhead_row(tiny(cases[0]), args.rounds)
    lines = [
        SECTION,
        "",
        "One epoch of MNIST (60,000 images, in memory) by `netspec train`'s loop and by a",
        "hand-written PyTorch loop over the same module, optimizer and schedule, taking turns",
        f"(ABBA), {args.rounds} epochs each after a warm-up; medians. Ratio = netspec images/s /",
        "hand-written images/s (goal: >= 0.97). Evaluation (10,000 test images) and the",
        "checkpoint (metrics, best weights, state, last weights) are what each epoch adds",
        "after its training, timed apart. Both loops run in one process that keeps the",
        "memory it frees for the next step, as `netspec train` does (netspec/train/heap.py): "
        + ("on." if kept else "not available here."),
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {_machine()}; load average {before} before, {load_average()} after.",
        "",
        "| spec | train section | netspec img/s | hand-written img/s | ratio (rounds' "
        "range) | evaluation | checkpoint |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        alone,
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        _write(section)


if __name__ == "__main__":
    main()
