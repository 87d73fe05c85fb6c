"""How long `netspec compile` takes: ResNet-152, and chains long enough to show growth is linear.

    .venv/bin/python benchmarks/bench_compile.py [--runs 20] [--profile]

In-process times are the median of `--runs` compiles after one warm-up (the
grammar is built and the modules imported by then), measured as netspec runs
and again with Python's cyclic garbage collector paused, which shows how much
of the growth past linear is the collector's; the cold time is one
`netspec compile --json` process, start to exit, imports included. Prints a
markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/, beside this script

import netspec

ROOT = Path(__file__).resolve().parent.parent
RESNET152 = ROOT / "specs" / "resnet152.net"
NETSPEC = Path(sys.executable).parent / "netspec"
CHAIN_LAYERS = (100, 1_000, 10_000)
GOAL_S = 0.3


def chain_spec(layers: int) -> str:
    """A network of `layers` lines of `conv 8 3x3 pad=same | relu`, written out (no repeat)."""
    lines = ["network chain(image: 8x32x32) {"]
    lines += ["    conv 8 3x3 pad=same | relu"] * layers
    lines.append("}")
    return "\n".join(lines) + "\n"


def _timed_compile(source: str | Path, gc_paused: bool) -> float:
    if gc_paused:
        gc.collect()
        gc.disable()
    try:
        start = time.perf_counter()
        netspec.compile(source)
        return time.perf_counter() - start
    finally:
        gc.enable()


def median_compile(source: str | Path, runs: int, gc_paused: bool = False) -> float:
    """Median seconds of one in-process compile, after a warm-up."""
    netspec.compile(source)
    return statistics.median(_timed_compile(source, gc_paused) for _ in range(runs))


def cold_compile(path: Path) -> float:
    """Seconds for one `netspec compile --json` process, start to exit."""
    start = time.perf_counter()
    subprocess.run(
        [str(NETSPEC), "compile", str(path), "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return time.perf_counter() - start


def _cells(nodes: int, seconds: float | None) -> str:
    if seconds is None:
        return "| | "
    return f"| {seconds * 1e3:,.1f} ms | {seconds / nodes * 1e6:,.1f} µs "


def _row(case: str, source: str | Path, runs: int) -> tuple[str, float]:
    nodes = netspec.compile(source).totals.layers
    seconds = median_compile(source, runs)
    paused = median_compile(source, runs, gc_paused=True)
    cells = _cells(nodes, seconds) + _cells(nodes, paused)
    return f"| {case} (median of {runs}) | {nodes:,} {cells}|", seconds


def table(runs: int) -> tuple[str, float]:
    """The markdown table, and ResNet-152's in-process median in seconds."""
    resnet_row, resnet_s = _row("resnet152.net, in-process", RESNET152, runs)
    nodes = netspec.compile(RESNET152).totals.layers
    rows = [
        "| spec | nodes | compile time | per node | GC paused | per node |",
        "|---|---:|---:|---:|---:|---:|",
        resnet_row,
        f"| resnet152.net, one cold `netspec compile --json` process | {nodes:,} "
        f"{_cells(nodes, cold_compile(RESNET152))}{_cells(nodes, None)}|",
    ]
    for layers in CHAIN_LAYERS:
        chain_runs = min(runs, max(3, runs * 100 // layers))
        row, _ = _row(
            f"chain of {layers:,} `conv 8 3x3 pad=same \\| relu` lines",
            chain_spec(layers),
            chain_runs,
        )
        rows.append(row)
    return "\n".join(rows), resnet_s


def machine() -> str:
    """CPU count, model and load, which the numbers depend on."""
    model = cpu_model("unknown CPU")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs ({model}), load average {load:.2f}, Python {sys.version.split()[0]}"
    )


def profile(source: str | Path, top: int = 25) -> None:
    """Print where one compile spends its time."""
    netspec.compile(source)
    profiler = cProfile.Profile()
    profiler.enable()
    netspec.compile(source)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="compiles per median")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one compile of resnet152.net and of the longest chain",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    text, resnet_s = table(args.runs)
    print(text)
    verdict = "met" if resnet_s <= GOAL_S else "MISSED"
    print(
        f"\nresnet152.net in-process: {resnet_s * 1e3:.1f} ms "
        f"(goal <= {GOAL_S * 1e3:.0f} ms: {verdict})"
    )
    if args.profile:
        profile(RESNET152)
        profile(chain_spec(CHAIN_LAYERS[-1]))


if __name__ == "__main__":
    main()
