"""`netspec serve` in the browser: how long one update of the page takes, from reading the
drawn canvas to every layer's maps drawn, while strokes are drawn with real mouse events
in headless Chromium (Debian's, driven by Playwright). Goal: <= 50 ms for LeNet.

    .venv/bin/python benchmarks/bench_serve.py [TARGET] [--strokes 40] [--update-docs]

TARGET defaults to runs/demo (`make demo`), else specs/lenet.net (untrained weights).
The page times itself (window.netspec.timings: the whole update; window.netspec.waits:
the part spent on the request, the inference and reading the answer); the first updates
are a warm-up and are left out. The machine's load average is reported beside the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from docsection import replace_section  # benchmarks/, beside this script
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Chromium as the tests start it
from tests.chromium import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## The page (netspec serve)"
WARMUP = 10  # updates left out: the first answers warm the server and the page's code


def start_server(target: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "netspec", "serve", str(target), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    line = process.stdout.readline() if process.stdout else ""
    found = re.search(r"http://\S+", line)
    if found is None:
        process.kill()
        raise SystemExit(f"netspec serve printed no URL: {line!r}")
    return process, found.group()


def strokes(page: Any, count: int) -> None:
    """``count`` strokes across the drawing canvas, each 24 mouse moves, cleared between."""
    box = page.locator("#draw").bounding_box()
    for i in range(count):
        page.click("#clear")
        x0 = box["x"] + box["width"] * (0.3 + 0.4 * (i % 5) / 4)
        page.mouse.move(x0, box["y"] + box["height"] * 0.15)
        page.mouse.down()
        for k in range(24):
            t = (k + 1) / 24
            page.mouse.move(
                x0 + box["width"] * 0.15 * t * (1 if i % 2 else -1),
                box["y"] + box["height"] * (0.15 + 0.7 * t),
            )
            page.wait_for_timeout(8)  # a hand's pace: about 125 moves a second
        page.mouse.up()
        page.wait_for_function("!document.querySelector('#status').textContent")
    page.wait_for_timeout(300)


def measure(target: Path, count: int) -> dict[str, Any]:
    process, url = start_server(target)
    load_before = os.getloadavg()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
            page.goto(url)
            page.wait_for_function("window.netspec.updates >= 1", timeout=120_000)
            strokes(page, count)
            timings = page.evaluate("window.netspec.timings")[WARMUP:]
            waits = page.evaluate("window.netspec.waits")[WARMUP:]
            layers = page.evaluate("document.querySelectorAll('canvas.maps').length")
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    return {
        "target": str(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target),
        "updates": len(timings),
        "layers": layers,
        "median": statistics.median(timings),
        "p90": statistics.quantiles(timings, n=10)[-1],
        "wait": statistics.median(waits),
        "draw": statistics.median([t - w for t, w in zip(timings, waits, strict=True)]),
        "load": (load_before, os.getloadavg()),
    }


def machine() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = re.search(r"Model name:\s*(.*)", text)
    version = subprocess.run(
        ["/usr/bin/chromium", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    cpu = model.group(1).strip() if model else platform.processor()
    python = platform.python_version()
    return f"{cpu}, {os.cpu_count()} cores; {version or 'Chromium'}; Python {python}"


def section(result: dict[str, Any]) -> str:
    (b1, b5, _), (a1, a5, _) = result["load"]
    verdict = "within" if result["median"] <= 50 else "over"
    return "\n".join(
        [
            SECTION,
            "",
            "One update of the page of `netspec serve`: from reading the drawn canvas to every "
            "layer's maps drawn (the request, the inference on the server, the 16-bit codes "
            "decoded and painted), timed by the page itself while strokes are drawn with real "
            "mouse events in headless Chromium; one request in flight at a time, the first "
            f"{WARMUP} updates left out.",
            "",
            f"Command: `python benchmarks/bench_serve.py {result['target']}`",
            "",
            f"Machine: {machine()}. Load average {b1:.2f} / {b5:.2f} (1 / 5 min) before, "
            f"{a1:.2f} / {a5:.2f} after; the machine is shared with other jobs.",
            "",
            "| target | layers | updates | median ms | p90 ms | server wait ms | draw ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| {result['target']} | {result['layers']} | {result['updates']} | "
            f"{result['median']:.1f} | {result['p90']:.1f} | {result['wait']:.1f} | "
            f"{result['draw']:.1f} |",
            "",
            f"The median update is {verdict} the 50 ms goal for LeNet. `server wait` is the "
            "request's round trip (JSON in, inference through the probe, every layer's maps "
            "out, parsed); `draw` the rest (decoding and painting every layer's maps and "
            "legends).",
            "",
        ]
    )


def update_docs(text_of_section: str) -> None:
    """Replace only this section of docs/benchmarks.md (others own the rest)."""
    replace_section(DOCS, SECTION, text_of_section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    demo = ROOT / "runs" / "demo"
    default = demo if (demo / "model.onnx").is_file() else ROOT / "specs" / "lenet.net"
    parser.add_argument("target", nargs="?", type=Path, default=default)
    parser.add_argument("--strokes", type=int, default=40)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    result = measure(args.target.resolve(), args.strokes)
    text = section(result)
    print(text)
    if args.update_docs:
        update_docs(text)


if __name__ == "__main__":
    main()
