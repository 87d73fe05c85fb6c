"""`netspec serve` in the browser: how long one update of the page takes, timed by the page
itself in headless Chromium (Debian's, driven by Playwright). Goal: <= 50 ms per stroke
for LeNet, with ResNet-18 at 224x224 beside it.

    .venv/bin/python benchmarks/bench_serve.py [TARGET] [--strokes 40] [--images 30]
        [--update-docs]

Two pages, one after the other, each on a server of its own:
- TARGET (default runs/demo, `make demo`, else specs/lenet.net with untrained weights):
  strokes drawn with real mouse events; an update runs from reading the drawn canvas to
  every layer's maps drawn.
- specs/resnet18.net (3x224x224, weights from netspec's fixed seed: untrained) has no
  drawing pad and opens as an overview (one strip per layer from its maps' means): a
  sequence of different colour images is loaded through the page's own load path
  (window.netspecPage.load), first with the overview as the page shows it, then with the
  first convolution's maps opened.
The page times itself (window.netspec.timings: the whole update; window.netspec.waits: the
part spent on the request, the inference and reading the answer); the first updates of
each series are a warm-up and are left out. Each row gives the machine's 1-minute load
average before and after it.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from docsection import replace_section  # benchmarks/, beside this script
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Chromium as the tests start it
from tests.chromium import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## The page (netspec serve)"
RESNET = ROOT / "specs" / "resnet18.net"
WARMUP = 10  # updates left out: the first answers warm the server and the page's code
IMAGE_WARMUP = 3  # images left out of each ResNet-18 series, for the same reason
TIMEOUT_MS = 120_000  # the longest one answer may take (a slow first one on a busy machine)


@dataclass(frozen=True)
class Row:
    """One row of the table: a series of updates of one page."""

    target: str  # the target served, with its input shape and whether it is trained
    what: str  # what changed the input, and which layers' maps were drawn
    layers: int  # the layers whose maps the page drew
    timings: list[float]  # ms per update (window.netspec.timings), warm-up left out
    waits: list[float]  # ms of each spent on the server (window.netspec.waits)
    load: tuple[float, float]  # the 1-minute load average before and after

    def cells(self) -> str:
        draws = [t - w for t, w in zip(self.timings, self.waits, strict=True)]
        p90 = statistics.quantiles(self.timings, n=10)[-1]
        return (
            f"| {self.target} | {self.what} | {self.layers} | {len(self.timings)} | "
            f"{statistics.median(self.timings):.1f} | {p90:.1f} | "
            f"{statistics.median(self.waits):.1f} | {statistics.median(draws):.1f} | "
            f"{self.load[0]:.2f} → {self.load[1]:.2f} |"
        )


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


@contextmanager
def opened(target: Path) -> Iterator[Page]:
    """A page of `netspec serve TARGET` in headless Chromium, its first answer drawn; the
    browser and the server stop when the block ends."""
    process, url = start_server(target)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
            page.goto(url)
            page.wait_for_function("window.netspec.updates >= 1", timeout=TIMEOUT_MS)
            yield page
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def label(page: Page, target: Path) -> str:
    """The target as the table names it: its path, its input shape, trained or not."""
    shape = "x".join(map(str, page.evaluate("window.netspecPage.state.model.input_shape")))
    name = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
    weights = "untrained weights" if target.suffix == ".net" else "trained"
    return f"`{name}` ({shape}, {weights})"


def series(page: Page, start: int) -> tuple[list[float], list[float], int]:
    """The page's timings and waits from update `start` on, and the layers it draws."""
    timings: list[float] = page.evaluate("window.netspec.timings")[start:]
    waits: list[float] = page.evaluate("window.netspec.waits")[start:]
    layers: int = page.evaluate(  # the layers whose maps the page draws
        "new Set(Array.from(document.querySelectorAll('canvas.map'), c => c.dataset.layer)).size"
    )
    if len(timings) < 2:
        raise SystemExit(f"{len(timings)} updates after the warm-up: too few to time")
    return timings, waits, layers


def strokes(page: Page, count: int) -> None:
    """``count`` strokes across the drawing canvas, each 24 mouse moves, cleared between."""
    box = page.locator("#draw").bounding_box()
    assert box is not None, "the page has no drawing pad"
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


def measure_strokes(target: Path, count: int) -> Row:
    """The drawing page of TARGET: ``count`` strokes, every layer's maps on the page."""
    before = os.getloadavg()[0]
    with opened(target) as page:
        strokes(page, count)
        timings, waits, layers = series(page, WARMUP)
        name = label(page, target)
    return Row(name, "strokes, every layer", layers, timings, waits, (before, os.getloadavg()[0]))


def pictures(count: int, shape: list[int], seed: int) -> list[str]:
    """``count`` different colour images of the input's (C, H, W), each 8x8 blocks of
    random colours, as the page's load takes them: base64 of the H*W*C bytes."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    rows, cols = np.arange(h) * 8 // h, np.arange(w) * 8 // w
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (8, 8, c), dtype=np.uint8)
        out.append(base64.b64encode(coarse[rows][:, cols].tobytes()).decode("ascii"))
    return out


def load_images(page: Page, images: list[str]) -> None:
    """Each image through window.netspecPage.load, the next once its update is drawn."""
    for image in images:
        done: int = page.evaluate("window.netspec.updates") + 1
        page.evaluate("pixels => window.netspecPage.load({pixels})", image)
        page.wait_for_function(
            "n => (window.netspec.updates >= n && !window.netspecPage.state.busy)"
            " || document.querySelector('#status').textContent",
            arg=done,
            timeout=TIMEOUT_MS,
        )
        status: str = page.evaluate("document.querySelector('#status').textContent")
        if status:
            raise SystemExit(f"the page says: {status}")


def image_series(page: Page, name: str, what: str, images: list[str]) -> Row:
    """One row: ``images`` loaded in turn, the first IMAGE_WARMUP left out."""
    before = os.getloadavg()[0]
    start: int = page.evaluate("window.netspec.updates") + IMAGE_WARMUP
    load_images(page, images)
    timings, waits, layers = series(page, start)
    return Row(name, what, layers, timings, waits, (before, os.getloadavg()[0]))


def measure_images(target: Path, count: int) -> list[Row]:
    """ResNet-18's page: ``count`` new images with the overview as the page opens, then
    ``count`` more with the first convolution's maps opened."""
    with opened(target) as page:
        name = label(page, target)
        shape: list[int] = page.evaluate("window.netspecPage.state.model.input_shape")
        images = pictures(2 * (count + IMAGE_WARMUP), shape, seed=0)
        half = count + IMAGE_WARMUP
        overview = image_series(page, name, "new images, overview", images[:half])
        conv: str = page.evaluate(
            "window.netspecPage.state.model.layers.find(l => l.op === 'conv').name"
        )
        page.evaluate("name => window.netspecPage.open(name).then(() => true)", conv)
        opened_one = image_series(
            page, name, f"new images, overview + `{conv}` open", images[half:]
        )
    return [overview, opened_one]


def machine() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = re.search(r"Model name:\s*(.*)", text)
    version = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    cpu = model.group(1).strip() if model else platform.processor()
    python = platform.python_version()
    return f"{cpu}, {os.cpu_count()} cores; {version or 'Chromium'}; Python {python}"


def section(rows: list[Row], command: str, load: tuple[float, float]) -> str:
    first = rows[0]
    verdict = "within" if statistics.median(first.timings) <= 50 else "over"
    return "\n".join(
        [
            SECTION,
            "",
            "One update of the page of `netspec serve`, timed by the page itself in headless "
            "Chromium; one request in flight at a time. Strokes: drawn with real mouse "
            "events, from reading the drawn canvas to every layer's maps drawn (the request, "
            "the inference on the server, the 16-bit codes decoded and painted), the first "
            f"{WARMUP} updates left out. New images: different 224x224 colour images (8x8 "
            "blocks of random colours) loaded one after the other through the page's own "
            "load path (`window.netspecPage.load`), each once the last is drawn, the first "
            f"{IMAGE_WARMUP} of each series left out; ResNet-18 opens as an overview (one "
            "strip per layer, coloured by its maps' means), then its first convolution is "
            "opened and its maps are asked for and drawn too. A spec is served through "
            "PyTorch with weights from netspec's fixed seed (untrained: the timing does not "
            "depend on them).",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {machine()}. Load average (1 min) {load[0]:.2f} before, {load[1]:.2f} "
            "after; the machine is shared with other jobs.",
            "",
            "| target | input | layers drawn | updates | median ms | p90 ms "
            "| server wait ms | draw ms | load before → after |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            *(row.cells() for row in rows),
            "",
            f"The median stroke update is {verdict} the 50 ms goal for LeNet. `server wait` is "
            "the request's round trip (JSON in, inference, the asked-for layers' maps and "
            "every layer's means out, parsed); `draw` the rest (decoding and painting the "
            "maps, the strips and their legends).",
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
    parser.add_argument("--images", type=int, default=30, help="ResNet-18 images per series")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    if args.strokes < 1 or args.images < 2:
        parser.error("too few to time: --strokes at least 1, --images at least 2")
    target = args.target.resolve()
    load = os.getloadavg()[0]
    rows = [measure_strokes(target, args.strokes)]
    rows += measure_images(RESNET, args.images)
    shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
    command = (
        f"python benchmarks/bench_serve.py {shown} --strokes {args.strokes} --images {args.images}"
    )
    text = section(rows, command, (load, os.getloadavg()[0]))
    print(text)
    if args.update_docs:
        update_docs(text)


if __name__ == "__main__":
    main()
