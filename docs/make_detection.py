"""Make the pictures of docs/detection.md: each detector's boxes on the same four test scenes,
found as `netspec detect` finds them (netspec.runtime.detect, ONNX Runtime) and drawn by its
painter three times larger, so that a box's tag can be read. Run from the repository root:

    python docs/make_detection.py NAME=MODEL.onnx[@THRESHOLD] [NAME=MODEL.onnx ...]

with the exported files of the runs docs/results.md names (e.g. `ssd=runs/ssd_digits/
model.onnx`); the scenes are drawn here from MNIST's test digits (`netspec scenes --count 4
--digits 1..4 --randomize --split test --seed 3`), and one picture of them with their true
boxes is written too (`scenes.png`). A threshold after `@` draws only the boxes scoring
that much (the model's own threshold otherwise)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from netspec.data.scenefiles import read_scenes
from netspec.detection.boxes import Detections
from netspec.detection.paint import class_colour, paint_boxes, picture_of
from netspec.runtime.decoders.base import DetectOptions
from netspec.runtime.detect import detect
from netspec.runtime.session import open_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "detection"
ZOOM = 3
GAP = 6  # pixels between two scenes of a strip


def strip(pictures: list[Image.Image]) -> Image.Image:
    """The pictures side by side on white."""
    width = sum(p.width for p in pictures) + GAP * (len(pictures) - 1)
    out = Image.new("RGB", (width, max(p.height for p in pictures)), "white")
    x = 0
    for p in pictures:
        out.paste(p, (x, 0))
        x += p.width + GAP
    return out


def drawn(image: np.ndarray, found: Detections, labels: list[str]) -> Image.Image:
    """One scene, three times larger, with each box in its class's colour and tagged."""
    texts = [f"{labels[int(c)]} {s:.2f}" for c, s in zip(found.classes, found.scores, strict=True)]
    colours = [class_colour(int(c)) for c in found.classes]
    return paint_boxes(
        picture_of(image, ZOOM), found.boxes, texts, colours, zoom=ZOOM, widths=2, tags=True
    )


def _true(boxes: np.ndarray, classes: np.ndarray) -> Detections:
    """A scene's true boxes, drawn as detections of score 1."""
    return Detections(boxes.astype(np.float32), np.ones(len(boxes), np.float32), classes)


def main() -> None:
    models = dict(arg.split("=", 1) for arg in sys.argv[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        scenes_dir = Path(tmp) / "scenes"
        command = ["scenes", "-o", str(scenes_dir), "--count", "4", "--digits", "1..4"]
        command += ["--randomize", "--split", "test", "--seed", "3"]
        subprocess.run([sys.executable, "-m", "netspec", *command], cwd=ROOT, check=True)
        scenes = read_scenes(scenes_dir)
        truth = [
            drawn(s.image, _true(s.boxes, s.classes), [str(d) for d in range(10)])
            for s in scenes.scenes
        ]
        strip(truth).save(OUT / "scenes.png")
        for name, given in models.items():
            path, _, least = given.partition("@")
            options = DetectOptions(threshold=float(least) if least else None)
            model = open_model(Path(path), threads=2)
            info = model.info.inputs[0]
            labels = list(model.info.labels or [str(d) for d in range(10)])
            pictures = []
            for scene in scenes.scenes:
                x = ((scene.image[None, None] / 255.0 - info.mean) / info.std).astype(np.float32)
                pictures.append(drawn(scene.image, detect(model, x, options), labels))
            strip(pictures).save(OUT / f"{name}.png")
            print(f"wrote {OUT / name}.png")


if __name__ == "__main__":
    main()
