"""`netspec show`: pictures of what each layer computes, for a run, a spec or an ONNX file.

numpy, matplotlib, torch and ONNX Runtime are imported inside the command.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netspec.cli.console import echo, parse_set, say
from netspec.cli.options import command, sets_option
from netspec.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from netspec.probe import Probe
    from netspec.show.receptive import Unit

MAX_DIGIT = 9999  # MNIST's test set
TOP_SAMPLES = 1000  # test images searched for top-activations.png


@command("show")
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--input", "image", type=click.Path(path_type=Path), help="an image (PNG, JPEG, .npy)"
)
@click.option(
    "--digit",
    type=click.IntRange(0, MAX_DIGIT),
    help="the N-th test image of the dataset (an MNIST digit, a garment, a picture)",
)
@click.option("--layer", "layers", multiple=True, help="draw this layer's maps (repeatable)")
@click.option("--unit", help="the unit whose receptive field to draw: LAYER:C:Y:X")
@click.option(
    "--data", type=click.Path(path_type=Path), help="MNIST directory (default: the cache)"
)
@sets_option("bind a symbolic size or override a constant")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="directory")
def show_cmd(
    target: Path,
    image: Path | None,
    digit: int | None,
    layers: tuple[str, ...],
    unit: str | None,
    data: Path | None,
    sets: tuple[str, ...],
    out: Path,
) -> None:
    """Draw what TARGET (a run directory, a .net spec or an exported .onnx) computes for one
    input: maps-LAYER.png, filters.png, receptive-field.png, graph.svg, occlusion.png, for
    a HOG network hog-gradients.png and hog-glyphs.png, for a two-stage detector
    proposals.png (the RPN's best anchors, the proposals and the detections side by side)
    and, for a run trained on MNIST, top-activations.png; say where each went as it is
    written.
    Maps are drawn for the first 16 layers unless --layer names them."""
    from netspec.fileio import make_dirs

    if image is not None and digit is not None:
        raise UsageError("give --input IMAGE or --digit N, not both")
    overrides: dict[str, Any] = parse_set(sets)
    pixels = _read_image(image, target, overrides) if image is not None else None
    from netspec.probe import open_probe

    probe = open_probe(target, overrides=overrides)
    if pixels is None:
        pixels = _digit(probe, digit if digit is not None else 0, data)
    chosen = _parse_unit(unit, probe) if unit is not None else None
    for name in layers:
        if len(probe.layer(name).shape) != 3:
            say(f"layer '{name}' has units, not feature maps: its picture draws each as a bar")
    make_dirs(out)
    for path in _draw_all(probe, pixels, layers, chosen, out, data, target.is_dir()):
        echo(f"wrote {path}")


def _read_image(path: Path, target: Path, overrides: dict[str, Any]) -> npt.NDArray[np.float32]:
    """The image's pixels in [0, 1], H x W or H x W x 3, at their own size; a spec's unbound
    height and width are bound to it (unless --set binds them)."""
    import numpy as np

    from netspec.artifact import InputInfo
    from netspec.runtime.inputs import load_file

    channels = _channels(target, overrides)
    array = load_file(path, InputInfo("image", (channels, "H", "W")), notice=say)[0]
    if target.suffix == ".net" and target.is_file():
        from netspec.compiler import compile

        shape = compile(target, **overrides).graph.inputs[0].shape
        for name, size in zip(shape[1:], array.shape[1:], strict=False):
            if isinstance(name, str) and name not in overrides:
                overrides[name] = size
    return np.asarray(array[0] if channels == 1 else array.transpose(1, 2, 0), np.float32)


def _channels(target: Path, overrides: dict[str, Any]) -> int:
    """The input's channels, read cheaply: from a spec by compiling it, else 1 or 3 later."""
    if target.suffix == ".net" and target.is_file():
        from netspec.compiler import compile

        first = compile(target, **overrides).graph.inputs[0].shape[0]
        return first if isinstance(first, int) and first in (1, 3) else 1
    return 3


def _digit(probe: Probe, index: int, data: Path | None) -> npt.NDArray[np.float32]:
    """The N-th test image, in [0, 1]; says which one, in the dataset's word for it."""
    found = _test_images(probe, data)
    if found is None:
        raise UsageError("--digit: no test set to take it from; pass --data with test images")
    images, word = found
    if index >= len(images):
        raise UsageError(f"--digit {index}: the test set has {len(images)} images")
    say(f"input: test {word} #{index}")
    pixels: npt.NDArray[np.float32] = images[index].astype("float32") / 255.0
    return pixels


def _test_images(probe: Probe, data: Path | None) -> tuple[npt.NDArray[Any], str] | None:
    """Test images, ``(N, H, W)`` grey or ``(N, H, W, 3)`` colour uint8 as the input has
    channels: ``--data``'s, else those of the dataset the network trains on where netspec
    fetches it (its record's source); and the record's word for one ("digit", "garment",
    "image"). None without."""
    from netspec.data.arrays import read_test_split
    from netspec.data.fetch import load_idx_files
    from netspec.data.registry import DEFAULT_DATASET, dataset

    train = probe.compiled.train
    known = dataset(train.dataset if train is not None else DEFAULT_DATASET)
    source = known.source if known is not None else None
    colour = len(probe.input_shape) == 3 and probe.input_shape[0] == 3
    if data is not None:
        images = read_test_split(data, 3 if colour else 1, source).x
    elif source is not None:
        images = load_idx_files(source, log=say).test_x
    else:
        return None
    if images.ndim == 4 and images.shape[1] == 3:
        images = images.transpose(0, 2, 3, 1)
    if images.ndim != 3 and not (images.ndim == 4 and images.shape[3] == 3):
        return None
    return images, known.sample if known is not None else "image"


def _parse_unit(text: str, probe: Probe) -> Unit:
    """`--unit conv2:3:4:5`: a layer, a channel and a position inside its maps."""
    from netspec.show.receptive import Unit

    parts = text.split(":")
    if len(parts) < 4 or not all(p.isdigit() for p in parts[-3:]):
        raise UsageError(f"--unit {text!r}: expected LAYER:C:Y:X, e.g. --unit conv2:0:4:4")
    layer = ":".join(parts[:-3])
    c, y, x = (int(p) for p in parts[-3:])
    view = probe.layer(layer)
    if not view.spatial:
        raise UsageError(f"--unit {text!r}: '{layer}' has no feature maps with a receptive field")
    channels, height, width = view.shape
    if not (c < channels and y < height and x < width):
        raise UsageError(
            f"--unit {text!r}: '{layer}' is {channels}x{height}x{width}",
            hint=f"C below {channels}, Y below {height}, X below {width}",
        )
    return Unit(layer, c, y, x)


def _draw_all(
    probe: Probe,
    pixels: npt.NDArray[np.float32],
    layers: tuple[str, ...],
    unit: Unit | None,
    out: Path,
    data: Path | None,
    is_run: bool,
) -> Iterator[Path]:
    """Each picture's path as soon as it is written (the command's progress)."""
    import numpy as np

    from netspec.show import hog, pictures
    from netspec.show.graph import write_graph
    from netspec.show.proposals import draw_proposals

    x = probe.prepare(pixels)
    seen = np.clip(probe.input.pixels(x), 0, 1)
    outputs = probe.run(x)
    views = pictures.spatial_groups(probe, layers)
    every = len(pictures.spatial_layers(probe))
    if not layers and every > len(views):
        say(f"drawing the maps of the first {len(views)} of {every} layers; --layer NAME draws any")
    yield from (pictures.draw_maps(probe, outputs, view, out).path for view in views)
    picture = _picture(seen)[0]
    stage = hog.hog_stage(probe)
    for draw in (
        lambda: pictures.draw_filters(probe, outputs, picture, out),
        lambda: None if stage is None else hog.draw_gradients(stage, outputs, out),
        lambda: None if stage is None else hog.draw_glyphs(stage, outputs, picture, out),
        lambda: _receptive(probe, outputs, picture, unit, out),
        lambda: pictures.draw_occlusion(probe, x, picture, out),
        lambda: draw_proposals(probe, outputs, picture, out),
    ):
        drawn = draw()
        if drawn is not None:
            yield drawn.path
    yield write_graph(probe.compiled, out / "graph.svg")
    top = _top_activations(probe, out, data) if is_run else None
    if top is not None:
        yield top


def _receptive(probe: Probe, outputs: Any, grey: Any, unit: Unit | None, out: Path) -> Any:
    from netspec.show import pictures

    unit = unit or pictures.most_active(probe, outputs)
    if unit is None:
        say("no layer with a receptive field smaller than the input: no receptive-field.png")
        return None
    return pictures.draw_receptive_field(probe, outputs, grey, unit, out)


def _top_activations(probe: Probe, out: Path, data: Path | None) -> Path | None:
    found = _test_images(probe, data) if probe.compiled.train is not None else None
    if found is None:
        say("top-activations.png needs test images: a run on a dataset netspec fetches, or --data")
        return None
    import numpy as np

    from netspec.show import pictures

    samples = found[0][:TOP_SAMPLES]
    x = np.concatenate([probe.prepare(d) for d in samples])
    seen = _picture(np.clip(probe.input.pixels(x), 0, 1))
    drawn = pictures.draw_top_activations(probe, x, seen, out)
    return None if drawn is None else drawn.path


def _picture(seen: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Inputs ``(N, C, H, W)`` in [0, 1] as pictures to draw: ``(N, H, W, 3)`` in colour for
    3 channels, else ``(N, H, W)`` grey (other channel counts averaged)."""
    import numpy as np

    picture = seen.transpose(0, 2, 3, 1) if seen.shape[1] == 3 else seen.mean(axis=1)
    return np.asarray(picture, np.float32)
