"""`netspec scenes`: draw detection scenes of MNIST digits into a directory (PNG images,
YOLO labels, COCO JSON, a preview grid), plain or domain-randomized.

numpy and Pillow are imported inside the command only.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from netspec.cli.console import say
from netspec.cli.options import MAX_SEED, command
from netspec.data.registry import FAMILIES, SCENE_SWITCHES
from netspec.errors import UsageError

SWITCHES = SCENE_SWITCHES
MAX_COUNT = 1_000_000


def parse_range(flag: str, text: str) -> tuple[int, int]:
    """``LOW..HIGH`` (or one number N, meaning N..N) as two whole numbers.

    >>> parse_range("--digits", "1..4"), parse_range("--digits", "3")
    ((1, 4), (3, 3))
    """
    match = re.fullmatch(r"\s*(\d{1,6})\s*(?:\.\.\s*(\d{1,6})\s*)?", text)
    if match is None:
        raise UsageError(f"{flag} {text}: expected LOW..HIGH, e.g. {flag} 1..4")
    low = int(match.group(1))
    return low, int(match.group(2) or low)


def parse_switches(text: str | None, plain: bool, background: str | None) -> tuple[str, ...]:
    """The randomizations on: none for --plain, every one for a bare --randomize, the
    named ones for --randomize a,b; --background FAMILY turns backgrounds on."""
    if plain and text is not None:
        raise UsageError("--plain and --randomize: give one of them")
    names: list[str] = []
    if text == "all":
        names = list(SWITCHES)
    elif text is not None:
        names = [n.strip() for n in text.split(",") if n.strip()]
        for n in names:
            if n not in SWITCHES:
                raise UsageError(
                    f"--randomize {text}: unknown '{n}'; expected some of {','.join(SWITCHES)}"
                )
    if background is not None and "backgrounds" not in names:
        names.append("backgrounds")
    return tuple(s for s in SWITCHES if s in names)


@command("scenes")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the directory to write (new, or empty)",
)
@click.option("--count", type=click.IntRange(1, MAX_COUNT), default=16, show_default=True)
@click.option("--size", type=click.IntRange(16, 2048), default=128, show_default=True)
@click.option("--digits", default="1..5", show_default=True, help="digits per scene, LOW..HIGH")
@click.option(
    "--scale",
    default="14..56",
    show_default=True,
    help="pixels a digit's 28x28 MNIST frame is scaled to, LOW..HIGH",
)
@click.option(
    "--max-iou", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True
)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option(
    "--split",
    type=click.Choice(["train", "test"]),
    default="train",
    show_default=True,
    help="draw MNIST's training digits or its test digits (no digit is in both)",
)
@click.option(
    "--plain", is_flag=True, help="black ground, white digits, nothing else (the default)"
)
@click.option(
    "--randomize",
    is_flag=False,
    flag_value="all",
    default=None,
    metavar="[SWITCHES]",
    help=f"domain randomization: all, or some of {','.join(SWITCHES)}",
)
@click.option(
    "--background",
    type=click.Choice(FAMILIES),
    help="draw only this background family (cells: the one no training setting uses)",
)
@click.option(
    "--mnist",
    type=click.Path(file_okay=False, path_type=Path),
    help="read MNIST from this directory (default: fetched, verified and cached)",
)
def scenes_cmd(
    output: Path,
    count: int,
    size: int,
    digits: str,
    scale: str,
    max_iou: float,
    seed: int,
    split: str,
    plain: bool,
    randomize: str | None,
    background: str | None,
    mnist: Path | None,
) -> None:
    """Draw COUNT scenes of MNIST digits with their boxes into OUTPUT: images/*.png,
    labels/*.txt (YOLO), annotations.json (COCO), scenes.json and preview.png."""
    from netspec.data.mnist import load_mnist
    from netspec.data.scenefiles import write_scenes
    from netspec.data.scenes import TRAINING_FAMILIES, DigitPool, SceneConfig, make_scenes

    config = SceneConfig(
        size=size,
        digits=parse_range("--digits", digits),
        scale=parse_range("--scale", scale),
        max_iou=max_iou,
        split="test" if split == "test" else "train",
        seed=seed,
        switches=parse_switches(randomize, plain, background),
        families=(background,) if background else TRAINING_FAMILIES,
    )
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(
            f"-o {output}: exists and is not an empty directory; nothing was written",
            hint="choose a new directory, or remove the old one first",
        )
    pool = DigitPool.of(load_mnist(mnist, log=say), config.split)
    written = write_scenes(output, make_scenes(config, pool, count), config)
    say(f"wrote {written} scenes to {output} (preview: {output / 'preview.png'})")
