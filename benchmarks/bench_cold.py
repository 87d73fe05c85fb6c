"""Cold start: how long a fresh process takes, start to exit, for what a user types.

    .venv/bin/python benchmarks/bench_cold.py [--runs 21] [--model M.onnx --image D.png]
                                              [--update-docs]

Four commands, each in a new Python process, interleaved round by round (the order
rotates every round, so that none always runs first or after the same neighbour); the
table gives medians and ratios measured side by side in this one run:

- `python -c pass`: the interpreter's own start, the floor;
- the bare script: onnxruntime and Pillow, the argmax of one PNG, six lines;
- `netspec run MODEL.onnx DIGIT.png`, which does the same through netspec;
- `netspec compile specs/lenet.net`.

It trains nothing: without --model it exports an untrained LeNet with
`netspec compile specs/lenet.net -o` into a temporary directory (the weights do not
change the time), and without --image it draws a digit-like 28x28 PNG there. Goals
(issue 14): `run` at most 1.5x the bare script, `compile` at most 0.35 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from docsection import replace_section  # benchmarks/, beside this script
from machine import cpu_model  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Cold start"
RUN_GOAL = 1.5  # netspec run / bare script
COMPILE_GOAL_S = 0.35

BARE = """\
import sys, numpy as np, onnxruntime as ort
from PIL import Image
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.asarray(Image.open(sys.argv[2]).convert("L"), np.float32)[None, None] / 255
scores = session.run(None, {session.get_inputs()[0].name: x})[0]
print(int(scores.argmax()))
"""


def commands(model: Path, image: Path, bare: Path) -> dict[str, list[str]]:
    """What is timed, by its row name; netspec runs from this checkout (PYTHONPATH)."""
    py, netspec = sys.executable, [sys.executable, "-m", "netspec"]
    return {
        "python -c pass (floor)": [py, "-c", "pass"],
        "bare script (onnxruntime + Pillow)": [py, str(bare), str(model), str(image)],
        "netspec run model.onnx digit.png": [*netspec, "run", str(model), str(image)],
        "netspec compile specs/lenet.net": [*netspec, "compile", str(ROOT / "specs/lenet.net")],
    }


def child_env() -> dict[str, str]:
    """The environment as it is, with this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def cold(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds from starting `argv` to its exit; a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return seconds


def interleaved(cmds: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """`runs` rounds, every command once per round, the order rotated each round, after
    one untimed round that brings every file into the page cache."""
    env = child_env()
    names = list(cmds)
    for name in names:
        cold(cmds[name], env)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(cold(cmds[name], env))
    return times


def prepare(tmp: Path, model: Path | None, image: Path | None) -> tuple[Path, Path, Path]:
    """The model (an untrained LeNet exported here unless given), a PNG, the bare script."""
    if model is None:
        model = tmp / "lenet.onnx"
        argv = [sys.executable, "-m", "netspec", "compile", str(ROOT / "specs/lenet.net")]
        subprocess.run([*argv, "-o", str(model)], env=child_env(), check=True, capture_output=True)
    if image is None:
        image = tmp / "digit.png"
        draw_digit(image)
    bare = tmp / "bare.py"
    bare.write_text(BARE, encoding="utf-8")
    return model, image, bare


def draw_digit(path: Path) -> None:
    """A white 7 on black, 28x28, as MNIST's digits are."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (28, 28))
    pen = ImageDraw.Draw(img)
    pen.line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
    img.save(path)


def machine() -> str:
    cpu = cpu_model("unknown CPU")
    return f"`nproc` = {os.cpu_count()}, {cpu}, Python {platform.python_version()}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def table(times: dict[str, list[float]]) -> list[str]:
    """One row per command: median, spread, and ratios to the bare script and the floor."""
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    floor, bare = list(medians.values())[:2]
    rows = [
        "| command | median s | min s | max s | / bare script | minus floor s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, ts in times.items():
        rows.append(
            f"| `{name}` | {medians[name]:.3f} | {min(ts):.3f} | {max(ts):.3f} "
            f"| {medians[name] / bare:.2f}x | {medians[name] - floor:.3f} |"
        )
    return rows


def report(times: dict[str, list[float]], runs: int, before: str, after: str) -> str:
    medians = [statistics.median(ts) for ts in times.values()]
    ratio, compile_s = medians[2] / medians[1], medians[3]
    verdict = (
        f"`netspec run` is **{ratio:.2f}x** the bare script (goal <= {RUN_GOAL}x: "
        f"{'met' if ratio <= RUN_GOAL else 'not met'}); `netspec compile specs/lenet.net` "
        f"takes **{compile_s:.3f} s** (goal <= {COMPILE_GOAL_S} s: "
        f"{'met' if compile_s <= COMPILE_GOAL_S else 'not met'})."
    )
    return "\n".join(
        [
            SECTION,
            "",
            "A new process per command, start to exit, as a user meets it: the interpreter's "
            "floor, a six-line onnxruntime + Pillow script that prints the argmax of one PNG, "
            "`netspec run` on the same file and PNG (an untrained LeNet exported by "
            "`netspec compile specs/lenet.net -o`), and `netspec compile`. Interleaved round "
            f"by round in one run (the order rotated each round), {runs} runs each after an "
            "untimed round, medians.",
            "",
            "```sh",
            f"flock /tmp/netspec-heavy.lock nice -n 10 .venv/bin/python benchmarks/bench_cold.py "
            f"--runs {runs}",
            "```",
            "",
            f"Machine: {machine()}; load average (1, 5, 15 min) {before} before, {after} after.",
            "",
            *table(times),
            "",
            verdict,
            "",
            "What `netspec run` loads beyond the bare script: click, pydantic-core (the checks "
            "of the file's metadata, netspec/artifact.py), netspec's CLI and runtime modules; "
            "rich only to print an error. Never torch, kornia, matplotlib or pydantic, and no "
            "other command's module (tests/test_cold_start.py checks each command's modules). "
            "`netspec compile` is mostly imports and set-up: pydantic and the models of the AST "
            "and of the operation registry, then Lark building its LALR tables from the "
            "grammar; the compile itself takes about 10 ms (`python -X importtime -m netspec "
            "compile specs/lenet.net` shows the rest).",
            "",
        ]
    )


def update_docs(section: str) -> None:
    """Replace only this section of docs/benchmarks.md (others own the rest)."""
    replace_section(DOCS, SECTION, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21, help="timed processes per command")
    parser.add_argument("--model", type=Path, help="an ONNX file (default: untrained LeNet)")
    parser.add_argument("--image", type=Path, help="a PNG (default: a drawn 7)")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, image, bare = prepare(Path(tmp), args.model, args.image)
        before = load()
        times = interleaved(commands(model, image, bare), args.runs)
        after = load()
    section = report(times, args.runs, before, after)
    print(section)
    if args.update_docs:
        update_docs(section)


if __name__ == "__main__":
    main()
