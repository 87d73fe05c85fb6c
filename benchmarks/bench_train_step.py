"""Training-step time of generated modules against hand-written ones, and the locally
connected layer against a convolution of the same shape.

A step is forward, backward and an SGD update. The generated and hand-written modules are
timed alternately (A, B, B, A, ...) in one run, so drift in the machine's load hits both
alike; the table gives medians and the ratio generated / hand-written (goal: <= 1.00).
The results replace the section `## Training step (PyTorch)` of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_train_step.py [--rounds 60] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from docsection import replace_section  # benchmarks/, beside this script
from machine import cpu_model  # benchmarks/, beside this script
from torch import Tensor, nn

import netspec
from netspec.lower import to_torch
from netspec.lower.layers import LocallyConnected2d

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the hand-written references live beside the tests

from tests.handwritten import HandLeNet, HandResNet18  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Training step (PyTorch)"


# ---- hand-written references ---------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def interleaved(
    a: Callable[[], None], b: Callable[[], None], rounds: int, warmup: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds of `a` and of `b`, timed alternately (ABBA) after a warm-up."""
    for _ in range(warmup):
        a()
        b()
    times: dict[int, list[float]] = {0: [], 1: []}
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            fn = a if k == 0 else b
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _compare(
    name: str, spec: str | Path, hand: nn.Module, batch: int, rounds: int, device: torch.device
) -> list[str]:
    torch.manual_seed(0)
    compiled = netspec.compile(spec)
    generated = to_torch(compiled).to(device)
    hand = hand.to(device)
    shape = tuple(int(d) for d in compiled.graph.inputs[0].shape)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    gen_t, hand_t = interleaved(
        train_step(generated, x, y), train_step(hand, x, y), rounds, max(3, rounds // 10), device
    )
    shape_text = "x".join(str(d) for d in shape)
    return [
        f"| {name} | {batch}x{shape_text} | {gen_t * 1e3:.2f} | {hand_t * 1e3:.2f} | "
        f"{gen_t / hand_t:.3f} |"
    ]


def _local_vs_conv(rounds: int, device: torch.device) -> list[str]:
    """Locally connected layer vs a conv of the same shape: training throughput (images/s)."""
    torch.manual_seed(0)
    batch, cin, cout, size, k = 32, 8, 16, 28, 5
    local = LocallyConnected2d(cin, cout, size, k).to(device)
    conv = nn.Conv2d(cin, cout, k).to(device)
    x = torch.randn(batch, cin, size, size, device=device)

    def step(layer: nn.Module) -> Callable[[], None]:
        def run() -> None:
            layer.zero_grad(set_to_none=True)
            layer(x).square().mean().backward()

        return run

    local_t, conv_t = interleaved(step(local), step(conv), rounds, 3, device)
    n_local = sum(p.numel() for p in local.parameters())
    n_conv = sum(p.numel() for p in conv.parameters())
    return [
        "| layer | parameters | ms / step | images / s |",
        "|---|---:|---:|---:|",
        f"| local {cout} {k}x{k} on {cin}x{size}x{size} | {n_local:,} | {local_t * 1e3:.2f} | "
        f"{batch / local_t:,.0f} |",
        f"| conv {cout} {k}x{k} on {cin}x{size}x{size} | {n_conv:,} | {conv_t * 1e3:.2f} | "
        f"{batch / conv_t:,.0f} |",
        "",
        f"The locally connected layer runs at {conv_t / local_t:.2f}x the convolution's "
        f"throughput (batch {batch}, forward + backward).",
    ]


def _machine(device: torch.device) -> str:
    cpu = cpu_model()
    where = f"CPU: {cpu}, nproc {os.cpu_count()}, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        where += f"; GPU: {torch.cuda.get_device_name(device)}"
    return f"{where}; torch {torch.__version__}, Python {platform.python_version()}"


def _write(section: str) -> None:
    """Replace only this section of docs/benchmarks.md (others own the rest)."""
    replace_section(DOC, SECTION, section)


def _results(device: torch.device, rounds: int) -> list[str]:
    """The two tables for one device."""
    resnet_spec = (ROOT / "specs" / "resnet18.net").read_text().replace("3x224x224", "3x32x32")
    lenet = ("LeNet (specs/lenet.net)", ROOT / "specs" / "lenet.net", HandLeNet(), 64)
    resnet = ("ResNet-18 (specs/resnet18.net at 32x32)", resnet_spec, HandResNet18(), 32)
    return [
        f"Device: {device}. Machine: {_machine(device)}.",
        "",
        "| network | input | generated ms | hand-written ms | ratio |",
        "|---|---|---:|---:|---:|",
        *_compare(*lenet, rounds, device),
        *_compare(*resnet, rounds, device),
        "",
        *_local_vs_conv(rounds, device),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", action="append", help="cpu (default), cuda; repeatable")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = " ".join(["python", "benchmarks/bench_train_step.py", *sys.argv[1:]])
    lines = [
        SECTION,
        "",
        "Median time of one training step (forward, backward, SGD with momentum, cross-entropy",
        "loss) of the generated module and of a hand-written one, alternated (ABBA) for",
        f"{args.rounds} rounds in one run; ratio = generated / hand-written (goal: <= 1.00). Then",
        "a locally connected layer against a convolution of the same shape.",
        "",
        f"Command: `{command}`",
        "",
    ]
    for name in args.device or ["cpu"]:
        lines += _results(torch.device(name), args.rounds)
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        _write(section)


if __name__ == "__main__":
    main()
