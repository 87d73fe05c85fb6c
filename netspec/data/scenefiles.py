"""Scenes on disk, in formats other tools read, and read back with every label checked.

A scenes directory (what `netspec scenes -o DIR` writes):

    images/000000.png     one 8-bit greyscale PNG per scene
    labels/000000.txt     YOLO: one line per digit, "class cx cy w h", normalized to 0..1
    annotations.json      COCO: images, annotations (bbox x, y, w, h in pixels), categories
    scenes.json           how the scenes were made (netspec's SceneConfig) and how many
    preview.png           the first scenes in a grid, their boxes and classes drawn

`read_scenes` reads any directory of that layout (images/ and labels/, the YOLO way; an
image without a labels file has no digits) and refuses a label that names no image, does
not parse, has a class out of 0..9 or a box outside its image, naming the file and line.
An annotations.json beside them must agree: readable COCO JSON (at most `MAX_COCO_BYTES`)
naming only images of images/, each with as many boxes as its labels file.

Reading is bounded (docs/limits.md): every image's header is read first, each at most
`MAX_SIZE` a side and all of them together at most `MAX_DECODED` bytes decoded, before
anything is decoded; then one buffer is allocated and each image decoded into its place.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from netspec.data.idx import MAX_BYTES
from netspec.data.pixels import byte_pixels
from netspec.data.scenes import MAX_SIZE, Scene, SceneConfig
from netspec.detection.paint import class_colour, paint_boxes, picture_of
from netspec.errors import DataError, OutputError
from netspec.fileio import (
    TMP_SUFFIX,
    fsync_dir,
    make_dirs,
    open_regular,
    output_error,
    read_capped,
    umask,
    write_bytes,
    write_text,
)

__all__ = ["SceneSet", "draw_boxes", "read_coco", "read_scenes", "write_scenes"]

CLASSES = 10
MANIFEST = "scenes.json"
COCO_FILE = "annotations.json"
PREVIEW = "preview.png"
PREVIEW_SCENES = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_LABEL_BYTES = 1 << 20
MAX_SCENES = 1_000_000
MAX_DECODED = MAX_BYTES  # all of a directory's images, decoded: checked from their headers
MAX_COCO_BYTES = 64 << 20  # annotations.json (Python's objects for it take about 10 times)
EDGE = 1e-3  # normalized slack for a box edge past the image's (rounding in other tools)


@dataclass(frozen=True)
class SceneSet:
    """Scenes read from a directory, their image names, and how they were made (from
    scenes.json, or empty when another tool wrote the directory)."""

    scenes: tuple[Scene, ...]
    names: tuple[str, ...]
    made: dict[str, Any]
    source: str
    pixels: npt.NDArray[np.uint8] | None = None  # every image, in order, one flat buffer

    def stacked(self, part: slice) -> npt.NDArray[np.uint8] | None:
        """The images of ``scenes[part]`` as one ``(N, H, W)`` array, a view of the buffer
        they were decoded into (no copy); None unless every scene is one size."""
        sizes = {s.image.shape for s in self.scenes}
        if self.pixels is None or len(sizes) != 1:
            return None
        stack = self.pixels.reshape(len(self.scenes), *next(iter(sizes)))
        return stack[part]


def write_scenes(directory: Path, scenes: Iterable[Scene], config: SceneConfig | None) -> int:
    """Write every scene (image, YOLO labels), then COCO JSON, scenes.json and preview.png,
    into a temp directory beside ``directory``, renamed into place when whole: a kill
    leaves no half-written scenes, a directory that already holds files is refused (nothing
    there is lost), and of two writers of one new directory the second fails, its files
    never mixed with the first's. Returns the number written."""
    directory = directory.resolve() if directory.is_symlink() else directory
    _refuse_taken(directory, "it exists and is not an empty directory")
    parent = make_dirs(directory.parent)
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{directory.name}.", suffix=TMP_SUFFIX))
    except OSError as e:
        raise output_error(directory, e) from None
    try:
        count = _fill(tmp, scenes, config)
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp's 0700 would hide the scenes from others
        try:
            os.rename(tmp, directory)  # onto a missing or empty directory; refused otherwise
        except OSError as e:
            _refuse_taken(directory, "another writer filled it meanwhile; nothing was written")
            raise output_error(directory, e) from None
        fsync_dir(parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count


def _refuse_taken(directory: Path, why: str) -> None:
    """An OutputError saying ``why`` when ``directory`` exists and is not an empty folder."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise OutputError(
            f"cannot write scenes to {directory}: {why}",
            hint="choose a new directory, or remove the old one first",
        )


def _fill(directory: Path, scenes: Iterable[Scene], config: SceneConfig | None) -> int:
    """Write the scenes, their labels, COCO JSON, scenes.json and preview.png into the
    (new, empty) ``directory``; the number written."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    shown: list[Scene] = []
    for i, scene in enumerate(scenes):
        name = f"{i:06d}"
        write_bytes(directory / "images" / f"{name}.png", png_bytes(scene.image))
        write_text(directory / "labels" / f"{name}.txt", yolo_text(scene))
        h, w = scene.image.shape
        images.append({"id": i, "file_name": f"images/{name}.png", "width": w, "height": h})
        annotations.extend(_coco_annotations(scene, i, len(annotations)))
        if len(shown) < PREVIEW_SCENES:
            shown.append(scene)
    categories = [{"id": c, "name": str(c), "supercategory": "digit"} for c in range(CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    write_text(directory / COCO_FILE, json.dumps(coco, separators=(",", ":")) + "\n")
    made = {"count": len(images), "config": config.as_dict() if config else None}
    write_text(directory / MANIFEST, json.dumps(made, indent=2) + "\n")
    if shown:
        write_bytes(directory / PREVIEW, png_bytes(preview_grid(shown)))
    return len(images)


def png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    """A PNG of an 8-bit greyscale (H, W) or RGB (H, W, 3) array; the same bytes each time."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def yolo_text(scene: Scene) -> str:
    """The YOLO label lines: "class cx cy w h", normalized to the image's size."""
    h, w = scene.image.shape
    lines = []
    for (x1, y1, x2, y2), c in zip(scene.boxes.tolist(), scene.classes.tolist(), strict=True):
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
    return "".join(lines)


def _coco_annotations(scene: Scene, image_id: int, first_id: int) -> list[dict[str, Any]]:
    out = []
    for j, ((x1, y1, x2, y2), c) in enumerate(
        zip(scene.boxes.tolist(), scene.classes.tolist(), strict=True)
    ):
        w, h = x2 - x1, y2 - y1
        out.append(
            {
                "id": first_id + j + 1,  # COCO's ids start at 1 (0 reads as "none" to some tools)
                "image_id": image_id,
                "category_id": c,
                "bbox": [x1, y1, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
        )
    return out


def draw_boxes(
    image: npt.NDArray[np.uint8],
    boxes: npt.NDArray[np.float32],
    classes: npt.NDArray[np.int64],
    zoom: int,
) -> Image.Image:
    """An RGB picture of a scene ``zoom`` times larger, each box outlined in its class's
    colour with the class written above it (netspec.detection.paint)."""
    kinds = classes.tolist()
    return paint_boxes(
        picture_of(image, zoom),
        boxes,
        [str(c) for c in kinds],
        [class_colour(c) for c in kinds],
        zoom=zoom,
        widths=2,
    )


def preview_grid(scenes: Sequence[Scene], zoom: int = 2) -> npt.NDArray[np.uint8]:
    """Up to PREVIEW_SCENES scenes, boxes drawn, in a grid with 4-pixel gaps."""
    pictures = [draw_boxes(s.image, s.boxes, s.classes, zoom) for s in scenes[:PREVIEW_SCENES]]
    cols = min(4, len(pictures))
    rows = math.ceil(len(pictures) / cols)
    cell_w = max(p.width for p in pictures) + 4
    cell_h = max(p.height for p in pictures) + 4
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h), (40, 40, 40))
    for i, p in enumerate(pictures):
        grid.paste(p, ((i % cols) * cell_w + 2, (i // cols) * cell_h + 2))
    return np.asarray(grid, np.uint8)


def read_scenes(directory: Path) -> SceneSet:
    """Every scene of a scenes directory, its labels checked (see the module docstring)."""
    images_dir, labels_dir = directory / "images", directory / "labels"
    if not images_dir.is_dir():
        raise DataError(f"{directory}: no images/ directory; expected a scenes directory")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = sorted(labels_dir.glob("*.txt")) if labels_dir.is_dir() else []
    for label in labels:
        if label.stem not in images:
            raise DataError(f"{label}: no image for it in {images_dir} (expected {label.stem}.png)")
    if not images:
        raise DataError(f"{images_dir}: no images (.png, .jpg, .bmp)")
    if len(images) > MAX_SCENES:
        raise DataError(f"{images_dir}: {len(images):,} images; at most {MAX_SCENES:,} are read")
    sizes = [_image_size(path) for path in images.values()]
    pixels = np.empty(_decoded_bytes(images_dir, sizes), np.uint8)
    scenes, offset = [], 0
    for (stem, path), (h, w) in zip(images.items(), sizes, strict=True):
        image = pixels[offset : offset + h * w].reshape(h, w)
        offset += h * w
        image[...] = _read_image(path, (h, w))
        boxes, classes = _read_labels(labels_dir / f"{stem}.txt", image.shape)
        scenes.append(Scene(image, boxes, classes, np.full(len(classes), -1, np.int64)))
    _check_coco(directory, images, scenes)
    return SceneSet(tuple(scenes), tuple(images), _manifest(directory), str(directory), pixels)


def _decoded_bytes(images_dir: Path, sizes: Sequence[tuple[int, int]]) -> int:
    """What the images decode to, refused over `MAX_DECODED` (from their headers)."""
    total = sum(h * w for h, w in sizes)
    if total > MAX_DECODED:
        raise DataError(
            f"{images_dir}: {len(sizes):,} images decode to {total:,} bytes; "
            f"netspec reads at most {MAX_DECODED:,}"
        )
    return total


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of a scene's image from its header alone, at most `MAX_SIZE` a side."""
    try:
        with open_regular(path) as f, Image.open(f) as image:
            if max(image.size) > MAX_SIZE:
                raise DataError(f"{path}: {image.width}x{image.height}; at most {MAX_SIZE} a side")
            return image.height, image.width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def _read_image(path: Path, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """The image, decoded; it must be the ``size`` (H, W) its header said."""
    try:
        with Image.open(io.BytesIO(read_capped(path, 64 << 20))) as image:
            if (image.height, image.width) != size:
                raise DataError(f"{path}: changed while it was read")
            return byte_pixels(image, 1)  # 16-bit grey scaled, not clipped
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def _read_labels(
    path: Path, shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """A YOLO labels file's boxes in pixels (x1, y1, x2, y2) and classes; absent: none."""
    if not path.exists():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    try:
        text = read_capped(path, MAX_LABEL_BYTES).decode("utf-8")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable labels file ({e})") from None
    h, w = shape
    boxes, classes = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        c, cx, cy, bw, bh = _parse_line(path, number, line)
        x1, x2, y1, y2 = cx - bw / 2, cx + bw / 2, cy - bh / 2, cy + bh / 2
        if min(x1, y1) < -EDGE or max(x2, y2) > 1 + EDGE:
            raise DataError(
                f"{path}:{number}: the box ({line.strip()}) reaches outside the image "
                "(its edges must lie in 0..1)"
            )
        boxes.append((x1 * w, y1 * h, x2 * w, y2 * h))
        classes.append(c)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def _parse_line(path: Path, number: int, line: str) -> tuple[int, float, float, float, float]:
    fields = line.split()
    where = f"{path}:{number}"
    if len(fields) != 5:
        raise DataError(f"{where}: expected 'class cx cy w h', found {line.strip()!r}")
    try:
        c = int(fields[0])
        cx, cy, bw, bh = (float(f) for f in fields[1:])
    except ValueError:
        raise DataError(
            f"{where}: expected an integer class and four numbers, found {line.strip()!r}"
        ) from None
    if not 0 <= c < CLASSES:
        raise DataError(f"{where}: class {c} is out of range; expected 0 to {CLASSES - 1}")
    if not all(math.isfinite(v) for v in (cx, cy, bw, bh)) or bw <= 0 or bh <= 0:
        raise DataError(f"{where}: expected finite numbers and a positive width and height")
    return c, cx, cy, bw, bh


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        return {}
    try:
        made = json.loads(read_capped(path, MAX_LABEL_BYTES))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: not readable JSON (nested too deeply)") from None
    return made if isinstance(made, dict) else {}


def _check_coco(directory: Path, images: dict[str, Path], scenes: Sequence[Scene]) -> None:
    """An annotations.json beside the scenes must read as COCO and agree with the labels:
    only images of images/, each with as many boxes as its labels file has lines."""
    path = directory / COCO_FILE
    if not path.exists():
        return
    counts = {stem: len(s.classes) for stem, s in zip(images, scenes, strict=True)}
    for name, (boxes, _) in read_coco(path).items():
        stem = PurePosixPath(name).stem
        if stem not in counts:
            raise DataError(f"{path}: names the image '{name}', which is not in images/")
        if len(boxes) != counts[stem]:
            raise DataError(
                f"{path}: {len(boxes)} boxes for '{name}', but its labels file has "
                f"{counts[stem]}; expected the same digits (remove annotations.json to read "
                "the labels alone)"
            )


def read_coco(path: Path) -> dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
    """A COCO JSON's boxes (x1, y1, x2, y2) and classes, by image file name."""
    try:
        coco = json.loads(read_capped(path, MAX_COCO_BYTES))
        names = {int(im["id"]): str(im["file_name"]) for im in coco["images"]}
        found: dict[str, tuple[list[list[float]], list[int]]] = {
            n: ([], []) for n in names.values()
        }
        for a in coco["annotations"]:
            x, y, w, h = (float(v) for v in a["bbox"])
            boxes, classes = found[names[int(a["image_id"])]]
            boxes.append([x, y, x + w, y + h])
            classes.append(int(a["category_id"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise DataError(f"{path}: not a COCO detection JSON ({type(e).__name__}: {e})") from None
    return {
        n: (np.asarray(b, np.float32).reshape(-1, 4), np.asarray(c, np.int64))
        for n, (b, c) in found.items()
    }
