"""Memory a training step gives back: `netspec train`'s loop with glibc's default malloc
settings against the same loop in a process that keeps the memory it frees
(netspec/train/heap.py, which `netspec train` calls).

For each spec, one epoch of `netspec.train.loop.train_epoch` (its own train section's
optimizer, schedule, batch and augmentation) over random inputs of the spec's input size
and random targets (labels, or boxes for a detector), in a fresh process per measurement,
the two settings taking turns (A B B A ...); medians of the steps after the first epoch
(the warm-up, which builds the heap and oneDNN's kernels). Reported per step: wall time,
CPU time in user and kernel mode, minor page faults; and the process's peak resident
memory. The ratio is default seconds / kept seconds. The results replace the section
`## Memory a training step gives back` of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_heap.py [--rounds 2] [--steps 40] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from docsection import replace_section  # benchmarks/, beside this script
from machine import cpu_model, load_average  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Memory a training step gives back"
SPECS = ("yolo_digits", "lenet", "mnist_fast")
MODES = ("default", "kept")


def child(spec: str, mode: str, steps: int) -> dict[str, float]:
    """One process's measurement (run as `bench_heap.py --child SPEC MODE`)."""
    kept = False
    if mode == "kept":
        from netspec.train.heap import keep_freed_memory

        kept = keep_freed_memory()
    import torch

    from netspec.tasks import target_of
    from netspec.train.data import Tensors
    from netspec.train.loop import make_parts, train_epoch
    from netspec.train.setup import (
        Request,
        build_module,
        compile_request,
        make_place,
        seeded_module,
        train_config,
    )

    compiled = compile_request(ROOT / "specs" / f"{spec}.net", None, {})
    config = train_config(compiled, {}, lambda _: None)
    config = config.model_copy(update={"epochs": 2})  # the schedule spans warm-up and measured
    place = make_place(Request(device="cpu"), compiled, lambda _: None)
    target = target_of(compiled, config.loss)
    shape = tuple(int(d) for d in compiled.graph.inputs[0].shape)
    n = steps * config.batch
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, *shape, generator=gen)
    if target.head is not None:  # a detector: two boxes a scene, inside the image
        h, w = target.head.image
        corner = torch.rand(n, 2, 2, generator=gen) * torch.tensor([w / 2, h / 2])
        size = 14 + torch.rand(n, 2, 2, generator=gen) * 28
        cls = torch.randint(0, target.head.classes, (n, 2, 1), generator=gen).float()
        y = torch.cat([cls, corner, corner + size], -1)
    else:
        y = torch.randint(0, int(target.shape[0]), (n,), generator=gen)
    data = Tensors(x, y, x[:1], y[:1], "random", tuple(str(i) for i in range(10)), target)
    module = seeded_module(compiled, build_module, config.seed)
    if place.channels_last:
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    parts = make_parts(module, module, config, n, place)
    train_epoch(parts, data, config, place, 1, lambda *_: None)  # warm-up
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    train_epoch(parts, data, config, place, 2, lambda *_: None)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "kept": float(kept),
        "batch": float(config.batch),
        "wall": wall / steps,
        "user": (after.ru_utime - before.ru_utime) / steps,
        "sys": (after.ru_stime - before.ru_stime) / steps,
        "faults": (after.ru_minflt - before.ru_minflt) / steps,
        "peak_mib": after.ru_maxrss / 1024,
    }


def measure(spec: str, mode: str, steps: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", spec, mode, "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{spec} ({mode}) failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="processes per spec and setting")
    parser.add_argument("--steps", type=int, default=40, help="training steps measured")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", nargs=2, metavar=("SPEC", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.steps)))
        return
    command = " ".join(["python", "benchmarks/bench_heap.py", *sys.argv[1:]])
    before = load_average()
    rows = []
    for spec in SPECS:
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                runs[mode].append(measure(spec, mode, args.steps))
        if not all(r["kept"] for r in runs["kept"]):
            raise SystemExit("this machine's malloc cannot keep freed memory (not glibc)")
        cells = []
        for mode in MODES:
            m = runs[mode]
            cells.append(
                f"{_median(m, 'wall') * 1000:.1f} ms ({_median(m, 'user') * 1000:.1f} + "
                f"{_median(m, 'sys') * 1000:.1f} ms CPU), {_median(m, 'faults'):,.0f} faults, "
                f"{_median(m, 'peak_mib'):,.0f} MiB"
            )
        ratio = _median(runs["default"], "wall") / _median(runs["kept"], "wall")
        batch = int(runs["kept"][0]["batch"])
        rows.append(f"| {spec} | {batch} | {cells[0]} | {cells[1]} | **{ratio:.2f}x** |")
    lines = [
        SECTION,
        "",
        "One training step of `netspec train`'s loop (each spec's own train section, random",
        f"inputs and targets), {args.steps} steps after a warm-up epoch, in a fresh process per",
        f"measurement, the two settings taking turns, {args.rounds} processes each; medians.",
        "Default: glibc's malloc as it comes, which maps each block above its mmap",
        "threshold afresh and unmaps it when freed, so every step faults its activations' pages",
        "in again and the kernel zeroes them. Kept: `netspec/train/heap.py` (called by",
        "`netspec train`) serves every block from the heap and keeps freed memory there.",
        "Each cell: wall time a step (user + kernel CPU time a step), minor page faults a",
        "step, peak resident memory. Ratio: default / kept wall time.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_model()}, nproc {os.cpu_count()}, Python "
        f"{platform.python_version()}; load average {before} before, {load_average()} after.",
        "",
        "| spec | batch | default | kept | speed-up |",
        "|---|---:|---|---|---:|",
        *rows,
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        replace_section(DOC, SECTION, section)


if __name__ == "__main__":
    main()
