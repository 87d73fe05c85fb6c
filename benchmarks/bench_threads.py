"""Training on a shared machine: `netspec train` beside two busy processes, with the
threads it chooses (netspec/threads.py) and with all the cores (what it did before), each
against the same run on the quiet machine.

For each spec, three runs of `netspec train SPEC --epochs 3 --limit N` in fresh
processes: quiet with the chosen threads; beside two `python -c 'while True: pass'` with the
chosen threads; beside them again with `--threads` set to every core. Measured on the
epochs after the first (which builds the heap and oneDNN's kernels), per epoch: wall time
(metrics.csv's `seconds`: training and evaluation) and the process's CPU time (user +
system, from /proc/PID/stat when the epoch lines are printed). Goal (issue 20): beside two busy
processes, CPU time at most 1.3x the quiet run's and epochs at most 3x as long. The
results replace the section `## Threads on a shared machine` of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_threads.py [--specs lenet,mnist_fast,yolo_digits]
                                                 [--no-write]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from docsection import replace_section  # benchmarks/, beside this script
from machine import cpu_model, load_average  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Threads on a shared machine"
LIMITS = {"lenet": 60000, "mnist_fast": 60000, "yolo_digits": 3000}
EPOCHS = 3  # the first builds the heap and oneDNN's kernels; the others are measured
TICKS = os.sysconf("SC_CLK_TCK")
CPU_GOAL, WALL_GOAL = 1.3, 3.0


@dataclass(frozen=True)
class Epoch:
    wall: float  # seconds of the second epoch (metrics.csv)
    cpu: float  # the process's CPU seconds over it
    threads: str  # what the run said it chose


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


@contextmanager
def busy(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU until the block ends."""
    spin = "import sys\nprint('spinning', flush=True)\nwhile True: pass\n"
    procs = [
        subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "spinning"
        time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def train(spec: str, out: Path, threads: int | None) -> Epoch:
    """One run: the mean wall and CPU seconds of its epochs after the first (CPU read from
    /proc when each epoch's line is printed)."""
    env = {k: v for k, v in os.environ.items() if k != "NETSPEC_THREADS"}
    command = [sys.executable, "-m", "netspec", "train", f"specs/{spec}.net"]
    command += ["--epochs", str(EPOCHS)]
    command += ["--limit", str(LIMITS[spec]), "--out", str(out), "--name", "r"]
    command += ["--threads", str(threads)] if threads else []
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    marks: dict[int, float] = {}
    said = ""
    for line in proc.stdout:
        if line.startswith("threads: "):
            said = line.strip().removeprefix("threads: ")
        found = re.match(rf"epoch (\d+)/{EPOCHS}:", line)
        if found:
            marks[int(found.group(1))] = cpu_seconds(proc.pid)
    if proc.wait() != 0:
        raise SystemExit(f"{spec}: netspec train failed")
    with (out / "r" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    wall = sum(float(row["seconds"]) for row in rows[1:])
    return Epoch(wall / (EPOCHS - 1), (marks[EPOCHS] - marks[1]) / (EPOCHS - 1), said)


def measure(spec: str, cores: int) -> dict[str, Epoch]:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        runs["quiet"] = train(spec, Path(tmp) / "quiet", None)
        with busy(2):
            runs["busy, chosen"] = train(spec, Path(tmp) / "chosen", None)
            runs["busy, every core"] = train(spec, Path(tmp) / "all", cores)
        return runs


def report(results: dict[str, dict[str, Epoch]], loads: list[str], cores: int) -> str:
    lines = [
        SECTION,
        "",
        f"`benchmarks/bench_threads.py`: `netspec train SPEC --epochs {EPOCHS} --limit N`, per "
        "epoch after the first, quiet and beside two busy processes "
        "(`python -c 'while True: pass'`), with the threads netspec chooses "
        "(netspec/threads.py) and with every core as before. "
        f"Goal: beside them, CPU time <= {CPU_GOAL}x and epoch <= {WALL_GOAL}x the quiet run's.",
        "",
        f"Machine: {cpu_model()}, {cores} cores, {platform.python_version()}; "
        f"load average before each spec: {'; '.join(loads)}.",
        "",
        "| spec (samples) | run | threads | epoch s | CPU s | epoch vs quiet | CPU vs quiet |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for spec, runs in results.items():
        quiet = runs["quiet"]
        for name, e in runs.items():
            lines.append(
                f"| {spec} ({LIMITS[spec]:,}) | {name} | {e.threads} | {e.wall:.1f} | "
                f"{e.cpu:.1f} | {e.wall / quiet.wall:.2f}x | {e.cpu / quiet.cpu:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", default="lenet,mnist_fast,yolo_digits")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    results, loads = {}, []
    for spec in args.specs.split(","):
        loads.append(f"{spec} {load_average()}")
        results[spec] = measure(spec, cores)
        print(report({spec: results[spec]}, loads[-1:], cores), flush=True)
    section = report(results, loads, cores)
    print(section)
    if not args.no_write:
        replace_section(DOC, SECTION, section)


if __name__ == "__main__":
    main()
