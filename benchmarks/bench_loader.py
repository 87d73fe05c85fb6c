"""The image-folder loader against the training step it feeds (issue 21): can a folder of
photographs keep a ResNet-18 at 224x224 busy on this machine?

A folder of `--images` JPEGs of 256x256 in 10 classes (photograph-like: a lit gradient
in the class's colours, grain, and a few shapes) is made once in a cache folder. Then,
in one run, on the threads netspec would choose:

1. the loader: one epoch's batches as `netspec train` streams them (netspec.data.stream:
   listed and header-checked, then each batch decoded, its shorter side brought to 256 and
   its centre kept, a random resized crop to 224 and a flip, in the loader's threads),
   nothing else running: images per second;
2. the step: specs/resnet18.net at 3x224x224, batch `--batch`, forward, backward and an
   SGD update on a batch held in memory: images per second (median of `--steps` steps);
3. the two together: the same steps, each fed a batch the loader streams meanwhile.

The ratio loader / step must be above 1 (data is not the bottleneck). The results
replace the section `## Image folders: the loader against the step` of
docs/benchmarks.md, with the CPU, the threads and the load averages before and after.

    .venv/bin/python benchmarks/bench_loader.py [--images 10000] [--batch 32] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from docsection import replace_section  # benchmarks/, beside this script
from machine import cpu_model, load_average  # benchmarks/, beside this script
from PIL import Image, ImageDraw

import netspec
from netspec.data.stream import STREAM_ENV, loader_threads
from netspec.lower import to_torch
from netspec.threads import choose_threads
from netspec.train.data import Streamed, Tensors
from netspec.train.loop import Place, streamed_batches
from netspec.train.setup import load_tensors

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Image folders: the loader against the step"
CLASSES = 10
SIDE = 256
TRAIN = """
train resnet18 on folders {{
    resize 256
    augment {{
        random_resized_crop
        flip
    }}
    batch {batch}
}}
"""


# ---- the folder ------------------------------------------------------------------------------


GRID = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE - 0.5  # (y, x) about the centre
GRAIN = np.random.default_rng(0).normal(0, 12, (8, SIDE, SIDE, 3)).astype(np.float32)


def photograph(rng: np.random.Generator, label: int) -> Image.Image:
    """A 256x256 picture a camera might take: a gradient lit from a random side in the
    class's two colours, film grain, and three shapes of other colours."""
    low = np.array([(label * 37 + k * 91) % 256 for k in range(3)], np.float32)
    high = 255 - low * 0.6
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + GRID[1] * np.cos(angle) + GRID[0] * np.sin(angle), 0, 1)[..., None]
    grain = GRAIN[int(rng.integers(len(GRAIN)))][:: int(rng.choice([-1, 1]))]
    pixels = low + (high - low) * t + grain
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = (int(v) for v in rng.integers(0, SIDE - 40, 2))
        x1, y1 = x0 + int(rng.integers(20, 120)), y0 + int(rng.integers(20, 120))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    return image


def make_folder(root: Path, images: int) -> Path:
    """``root/train/<class>/`` with ``images`` JPEGs in all (and a small ``test/``), made
    once, in threads (Pillow encodes without the GIL): a finished folder has a ``done``
    file. Image ``k`` is drawn from its own seed, so the folder is the same however made."""
    if (root / "done").is_file():
        return root

    def save(split: str, k: int) -> None:
        rng = np.random.default_rng([0, k, split == "test"])
        folder = root / split / f"class{k % CLASSES}"
        photograph(rng, k % CLASSES).save(folder / f"{k:06d}.jpg", quality=90)

    jobs = [("train", k) for k in range(images)] + [("test", k) for k in range(CLASSES * 2)]
    for split in ("train", "test"):
        for label in range(CLASSES):
            (root / split / f"class{label}").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(lambda job: save(*job), jobs))
    (root / "done").write_text(f"{images}\n")
    return root


# ---- the measurements ------------------------------------------------------------------------


def open_data(data: Path, batch: int) -> tuple[netspec.Compiled, Tensors]:
    """specs/resnet18.net with a train section on ``data``, its training images streamed
    whatever their size (as a folder over the limit is)."""
    text = (ROOT / "specs" / "resnet18.net").read_text() + TRAIN.format(batch=batch)
    compiled = netspec.compile_text(text)
    assert compiled.train is not None
    os.environ[STREAM_ENV] = "1"
    tensors = load_tensors(compiled, compiled.train, data, None, torch.device("cpu"), print)
    assert isinstance(tensors.train_x, Streamed)
    return compiled, tensors


def epoch(compiled: netspec.Compiled, tensors: Tensors, steps: int | None = None) -> Iterator:
    """One epoch's batches as training streams them (the first ``steps``)."""
    config = compiled.train
    assert config is not None and isinstance(tensors.train_x, Streamed)
    n = len(tensors.train_x)
    count = -(-n // config.batch) if steps is None else steps
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    place = Place(torch.device("cpu"))
    return streamed_batches(tensors.train_x, order, tensors, config, place, 1, count)


def loader_rate(compiled: netspec.Compiled, tensors: Tensors) -> float:
    """Images per second of one epoch through the loader alone."""
    start = time.perf_counter()
    seen = sum(len(y) for _, y, _ in epoch(compiled, tensors))
    return seen / (time.perf_counter() - start)


def step_rates(compiled: netspec.Compiled, tensors: Tensors, steps: int) -> tuple[float, float]:
    """Images per second of ResNet-18's training step on a held batch (median of
    ``steps``), and of the same steps fed by the loader."""
    config = compiled.train
    assert config is not None
    torch.manual_seed(0)
    model = to_torch(compiled).to(memory_format=torch.channels_last)  # as training lays it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
        optimizer.step()

    held = torch.rand(config.batch, 3, 224, 224), torch.randint(0, CLASSES, (config.batch,))
    step(*held)  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(*held)
        times.append(time.perf_counter() - start)
    start, seen = time.perf_counter(), 0
    for x, y, _ in epoch(compiled, tensors, steps):
        step(x, y)
        seen += len(y)
    return config.batch / statistics.median(times), seen / (time.perf_counter() - start)


def report(images: int, loader: float, alone: float, fed: float, loads: tuple[str, str]) -> str:
    threads = torch.get_num_threads()
    torch_threads = f"{threads} torch thread{'s' * (threads != 1)}"
    verdict = "not the bottleneck" if loader > alone else "THE BOTTLENECK"
    return "\n".join(
        [
            SECTION,
            "",
            f"`benchmarks/bench_loader.py --images {images}`: {images:,} JPEGs of 256x256 in "
            f"{CLASSES} classes, streamed as `netspec train` streams a folder over the held "
            "limit (decoded, shorter side 256, centre kept, random resized crop to 224, flip), "
            "against specs/resnet18.net's training step at 3x224x224 (SGD, fp32, channels-last).",
            "",
            "| what | images/s |",
            "|---|---|",
            f"| loader alone ({loader_threads()} decoding threads) | {loader:,.1f} |",
            f"| ResNet-18 step on a held batch ({torch_threads}) | {alone:,.1f} |",
            f"| ResNet-18 step fed by the loader | {fed:,.1f} |",
            "",
            f"Loader / step: **{loader / alone:.1f}x**: the data is {verdict}; fed by the "
            f"loader, a step runs at {fed / alone:.2f} of its speed on a held batch.",
            "",
            f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; "
            f"load average before {loads[0]}, after {loads[1]}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="JPEGs in the folder")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="training steps timed, each way")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "netspec-bench-loader"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    before = load_average()
    choice = choose_threads()
    torch.set_num_threads(choice.threads)
    print(choice.describe(), flush=True)
    started = time.perf_counter()
    data = make_folder(args.cache / f"{args.images}", args.images)
    print(f"folder: {data} ({time.perf_counter() - started:.0f} s)", flush=True)
    compiled, tensors = open_data(data, args.batch)
    loader = loader_rate(compiled, tensors)
    print(f"loader: {loader:,.1f} images/s", flush=True)
    alone, fed = step_rates(compiled, tensors, args.steps)
    section = report(args.images, loader, alone, fed, (before, load_average()))
    print(section)
    if not args.no_write:
        replace_section(DOC, SECTION, section)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
