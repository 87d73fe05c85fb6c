"""`proposals.png`: a two-stage detector's stages side by side on one scene.

Three panels, each the scene as the network sees it, zoomed by a whole number:
- the RPN's best anchors: the few its objectness scores best (netspec.probe.regions'
  `TOP_ANCHORS`), where they are placed, before its deltas move them (only for a network
  whose regions an RPN makes);
- the proposals: every box of the RoI set (netspec.probe.regions), shaded from dark blue
  (score 0) to yellow (score 1), the best drawn last, on top;
- the detections: the boxes the head's decoding keeps (what the exported file outputs) of at
  least its own threshold, each in its class's colour with its class and score.

Everything drawn is the network's own output for the scene (the probe's layers; the head's
decoding is the torch module export appends, netspec.export.detection), painted with the one
painter (netspec.detection.paint). `Drawn.data` says where each box went, so a test checks
the pixels against the RoI rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from netspec.data.registry import dataset
from netspec.detection.boxes import label
from netspec.detection.paint import Colour, class_colour, paint_boxes, picture_of
from netspec.fileio import write_atomic
from netspec.probe import Probe
from netspec.probe.regions import Ranked, Regions, regions_of
from netspec.show.pictures import Drawn

FloatArray = npt.NDArray[np.float32]
PANEL = 384  # a panel's longer side, at least, in pixels (the scene zoomed by a whole number)
TITLE = 40  # pixels above each panel: its two lines of title
LEGEND = 26  # pixels below the panels: the score's shades
GAP = 12  # pixels between panels and around them
INK, PAPER = (0, 0, 0), (255, 255, 255)
LOW, HIGH = (40, 80, 200), (255, 220, 0)  # the shades of score 0 and of score 1
WIDTH = 2  # a box's outline, in pixels of the picture
TEXT = 13  # the titles' size, in pixels


def shade(score: float) -> Colour:
    """A box's colour for its score in [0, 1]: `LOW` to `HIGH`, straight between.

    >>> shade(0.0), shade(1.0), shade(0.5)
    ((40, 80, 200), (255, 220, 0), (148, 150, 100))
    """
    t = min(max(float(score), 0.0), 1.0)
    r, g, b = (round(low + t * (high - low)) for low, high in zip(LOW, HIGH, strict=True))
    return (r, g, b)


@dataclass(frozen=True)
class Found:
    """The head's detections of one image: boxes ``(D, 4)`` in input pixels, scores and
    classes, best first, and the threshold they passed."""

    boxes: FloatArray
    scores: FloatArray
    classes: npt.NDArray[np.int64]
    threshold: float


def detections(probe: Probe, outputs: Mapping[str, FloatArray]) -> Found | None:
    """What the exported file would output for this image, from the head's layer: its
    decoding module (the one export appends) applied to the head's rows, rows of class -1
    dropped, those of at least the head's own threshold kept. None for a network without a
    head that decodes to kept rows (`detections`)."""
    import torch

    from netspec.export.detection import decoding, exported_head
    from netspec.kinds import head_node

    head, node = exported_head(probe.compiled), head_node(probe.compiled)
    if head is None or node is None or head.kind != "detections":
        return None
    said = decoding(probe.compiled)
    score = said.params.get("score") if said is not None else None
    threshold = float(score) if isinstance(score, int | float) else 0.0
    rows = torch.from_numpy(np.ascontiguousarray(outputs[node.name][:1], np.float32))
    with torch.inference_mode():
        kept = head.module.eval()(rows)[0].float().numpy()  # (keep, 6)
    shown = (kept[:, 5] >= 0) & (kept[:, 4] >= threshold)
    found = kept[shown]
    return Found(found[:, :4].copy(), found[:, 4].copy(), found[:, 5].astype(np.int64), threshold)


def draw_proposals(
    probe: Probe, outputs: Mapping[str, FloatArray], picture: FloatArray, out: Path
) -> Drawn | None:
    """`proposals.png` for a network that makes regions (module doc); None for any other."""
    regions = regions_of(probe.compiled)
    if regions is None:
        return None
    rois = regions.rois(outputs)
    anchors = regions.best_anchors(outputs)
    found = detections(probe, outputs)
    scene = np.asarray(np.clip(picture, 0, 1) * 255 + 0.5, np.uint8)
    height, width = scene.shape[:2]
    zoom = max(1, -(-PANEL // max(height, width)))
    panels: dict[str, tuple[tuple[str, str], Image.Image]] = {}
    if anchors is not None:
        panels["anchors"] = (_anchor_title(regions, anchors), _shaded(scene, zoom, anchors))
    panels["rois"] = (_roi_title(regions, rois), _shaded(scene, zoom, rois))
    if found is not None:
        panels["detections"] = (_found_title(found), _found(scene, zoom, found, _labels(probe)))
    lefts = {name: GAP + k * (width * zoom + GAP) for k, name in enumerate(panels)}
    sheet = _sheet(list(panels.values()), list(lefts.values()), (width * zoom, height * zoom))
    path = out / "proposals.png"
    write_atomic(path, lambda tmp: sheet.save(tmp, format="png"))
    data: dict[str, Any] = {
        "zoom": zoom,
        "top": GAP + TITLE,  # each panel's top row, and its left column by name
        "lefts": lefts,
        "anchors": anchors,
        "rois": rois,
        "detections": found,
        "layer": regions.layer,
    }
    return Drawn(path, data)


def _shaded(scene: npt.NDArray[np.uint8], zoom: int, ranked: Ranked) -> Image.Image:
    """The scene with boxes shaded by score, the worst first so that the best is on top."""
    order = list(range(len(ranked)))[::-1]
    colours = [shade(float(ranked.scores[k])) for k in order]
    texts = [""] * len(order)
    return paint_boxes(
        picture_of(scene, zoom), ranked.boxes[order], texts, colours, zoom=zoom, widths=WIDTH
    )


def _found(
    scene: npt.NDArray[np.uint8], zoom: int, found: Found, labels: Sequence[str]
) -> Image.Image:
    """The scene with the detections in their classes' colours, the best drawn last."""
    order = list(range(len(found.scores)))[::-1]
    texts = [f"{label(labels, int(found.classes[k]))} {found.scores[k]:.2f}" for k in order]
    colours = [class_colour(int(found.classes[k])) for k in order]
    return paint_boxes(
        picture_of(scene, zoom),
        found.boxes[order],
        texts,
        colours,
        zoom=zoom,
        widths=WIDTH,
        tags=True,
    )


def _labels(probe: Probe) -> tuple[str, ...]:
    """The class names of the data the network trains on, where its record names them."""
    train = probe.compiled.train
    known = dataset(train.dataset) if train is not None else None
    return known.labels or () if known is not None else ()


def _anchor_title(regions: Regions, anchors: Ranked) -> tuple[str, str]:
    best = f", best {anchors.scores[0]:.2f}" if len(anchors) else ""
    return (
        f"RPN: the {len(anchors)} best of {len(regions.anchors):,} anchors",
        f"as placed, before the deltas ({regions.objectness}{best})",
    )


def _roi_title(regions: Regions, rois: Ranked) -> tuple[str, str]:
    span = f", scores {rois.scores.min():.2f} to {rois.scores.max():.2f}" if len(rois) else ""
    return (
        f"proposals: {len(rois)} of {regions.keep} RoIs",
        f"{regions.layer}{span}",
    )


def _found_title(found: Found) -> tuple[str, str]:
    return (f"detections: {len(found.scores)}", f"score {found.threshold:.2f} or more")


def _sheet(
    panels: Sequence[tuple[tuple[str, str], Image.Image]],
    lefts: Sequence[int],
    size: tuple[int, int],
) -> Image.Image:
    """The panels side by side under their titles, the score's shades below."""
    width, height = size
    sheet = Image.new("RGB", (lefts[-1] + width + GAP, GAP + TITLE + height + LEGEND), PAPER)
    pen = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(TEXT)
    for (lines, panel), left in zip(panels, lefts, strict=True):
        sheet.paste(panel, (left, GAP + TITLE))
        pen.text((left, GAP), "\n".join(lines), fill=INK, font=font, spacing=4)
    top = GAP + TITLE + height + 8
    ramp = min(width, 200)
    for x in range(ramp):
        pen.line((lefts[0] + x, top, lefts[0] + x, top + 8), fill=shade(x / max(ramp - 1, 1)))
    pen.text((lefts[0] + ramp + 6, top - 2), "a shaded box's score: 0 to 1", fill=INK, font=font)
    return sheet
