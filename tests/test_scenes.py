"""Scenes: the same seed draws the same scenes byte for byte, boxes are tight on the ink,
test scenes hold no training digit, YOLO and COCO files read back to the same boxes, bad
label files are refused by file and line, and `netspec scenes` and the scene datasets
work end to end (small canvases, few scenes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner, Result
from PIL import Image

import netspec
from netspec.cli import main
from netspec.data.mnist import MnistData
from netspec.data.scenedata import SceneRequest, from_directory, generated
from netspec.data.scenefiles import png_bytes, read_coco, read_scenes, write_scenes
from netspec.data.scenes import FAMILIES, INK, DigitPool, SceneConfig, make_scene, make_scenes
from netspec.data.windows import BACKGROUND, LABELS, _centred, scene_windows, windows
from netspec.detection.paint import PALETTE
from netspec.diagnostics import SpecError
from netspec.errors import DataError, OutputError
from tests.conftest import write_mnist_subset

pytestmark = pytest.mark.usefixtures("one_thread")
TRAIN_GREY, TEST_GREY = 255, 200  # the ink of the fake training and test digits


def fake_mnist(n: int = 20) -> MnistData:
    """Digits that tell their split apart: training ink 255, test ink 200; class k is a
    bar whose width grows with k, so the digits differ."""

    def digits(grey: int) -> npt.NDArray[np.uint8]:
        x = np.zeros((n, 28, 28), np.uint8)
        for i in range(n):
            x[i, 4:24, 10 : 12 + i % 10] = grey
        return x

    labels = (np.arange(n) % 10).astype(np.int64)
    return MnistData(digits(TRAIN_GREY), labels, digits(TEST_GREY), labels, "fake")


MNIST = fake_mnist()
TRAIN = DigitPool.of(MNIST, "train")
SMALL = SceneConfig(size=48, digits=(1, 3), scale=(14, 28))


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the person
    return result


@pytest.mark.parametrize("config", [SMALL, SceneConfig.randomized(size=48, scale=(14, 28))])
def test_same_seed_same_scene_whatever_the_count(config: SceneConfig) -> None:
    three = list(make_scenes(config, TRAIN, 3))
    alone = make_scene(config, TRAIN, 2)
    assert png_bytes(three[2].image) == png_bytes(alone.image)
    assert np.array_equal(three[2].boxes, alone.boxes)
    other = SceneConfig(**{**config.__dict__, "seed": 1})
    assert not np.array_equal(make_scene(other, TRAIN, 2).image, alone.image)


def test_box_is_the_ink_bounding_box() -> None:
    """One white digit on black: the pixels at least INK bright are exactly its box."""
    config = SceneConfig(size=48, digits=(1, 1), scale=(14, 40))
    for i in range(6):
        scene = make_scene(config, TRAIN, i)
        rows, cols = np.nonzero(scene.image >= round(INK * 255))
        box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert scene.boxes.tolist() == [box]
        assert int(scene.classes[0]) == int(TRAIN.labels[scene.sources[0]])


def test_test_scenes_hold_no_training_digit() -> None:
    test = SceneConfig(size=48, digits=(1, 1), scale=(14, 28), split="test")  # none overlap
    scenes = list(make_scenes(test, DigitPool.of(MNIST, "test"), 5))
    assert all(s.image.max() <= TEST_GREY for s in scenes)
    assert max(s.image.max() for s in make_scenes(SMALL, TRAIN, 5)) == TRAIN_GREY


def test_every_family_and_switch_draws() -> None:
    for family in FAMILIES:
        config = SceneConfig.randomized(size=48, scale=(14, 28), families=(family,))
        scene = make_scene(config, TRAIN, 0)
        assert scene.image.dtype == np.uint8 and scene.image.std() > 0
        assert len(scene.boxes) == len(scene.classes) >= 1


def test_files_read_back_to_the_same_boxes(tmp_path: Path) -> None:
    scenes = list(make_scenes(SMALL, TRAIN, 4))
    assert write_scenes(tmp_path / "s", scenes, SMALL) == 4
    back = read_scenes(tmp_path / "s")
    coco = read_coco(tmp_path / "s" / "annotations.json")
    for name, made, read in zip(back.names, scenes, back.scenes, strict=True):
        assert np.array_equal(read.image, made.image)
        assert np.allclose(read.boxes, made.boxes, atol=1e-3)  # YOLO's 6 decimals
        assert np.array_equal(read.classes, made.classes)
        assert np.array_equal(coco[f"images/{name}.png"][0], made.boxes)
        assert np.array_equal(coco[f"images/{name}.png"][1], made.classes)
    assert back.made["config"]["scale"] == [14, 28]
    with pytest.raises(OutputError, match="not an empty directory"):
        write_scenes(tmp_path / "s", scenes, SMALL)


def _one_scene(tmp_path: Path, labels: str | None, stem: str = "a") -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("L", (20, 10)).save(tmp_path / "images" / "a.png")
    if labels is not None:
        (tmp_path / "labels" / f"{stem}.txt").write_text(labels)
    return tmp_path


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("3 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2\n", r"a\.txt:2: expected 'class cx cy w h'"),
        ("x 0.5 0.5 0.2 0.2\n", r"a\.txt:1: expected an integer class"),
        ("\n12 0.5 0.5 0.2 0.2\n", r"a\.txt:2: class 12 is out of range"),
        ("1 0.95 0.5 0.3 0.2\n", r"a\.txt:1: the box .* outside the image"),
        ("1 0.5 0.5 nan 0.2\n", r"a\.txt:1: expected finite numbers"),
    ],
)
def test_bad_labels_are_refused_by_file_and_line(tmp_path: Path, labels: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_scenes(_one_scene(tmp_path, labels))


def test_labels_without_an_image_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"b\.txt: no image for it"):
        read_scenes(_one_scene(tmp_path, "1 0.5 0.5 0.2 0.2\n", stem="b"))
    (tmp_path / "labels" / "b.txt").unlink()
    (tmp_path / "images" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"a\.png: not a readable image"):
        read_scenes(tmp_path)


def test_an_image_without_labels_has_no_digits(tmp_path: Path) -> None:
    scene = read_scenes(_one_scene(tmp_path, None)).scenes[0]
    assert scene.image.shape == (10, 20) and scene.boxes.shape == (0, 4)


def test_windows_are_centred_digits_or_background() -> None:
    scene = make_scene(SMALL, TRAIN, 1)
    crops, classes = scene_windows(scene, np.random.default_rng([0, 0, 1]), 2.0, SMALL.scale)
    n = len(scene.boxes)
    assert classes[:n] == scene.classes.tolist() and BACKGROUND in classes[n:]
    assert all(c.shape == (28, 28) for c in crops)
    x, y = windows([scene], 0, 2.0, SMALL.scale)
    assert np.array_equal(x, np.stack(crops)) and y.tolist() == classes
    assert not _centred(scene, -100.0, -100.0, 20.0)
    assert len(LABELS) == 11 and LABELS[BACKGROUND] == "background"


def test_generated_arrays_are_cached(tmp_path: Path) -> None:
    said: list[str] = []
    request = SceneRequest("windows", SMALL, 6, 2)
    first = generated(request, lambda: MNIST, said.append, cache=tmp_path)
    again = generated(request, lambda: pytest.fail("drew again"), said.append, cache=tmp_path)
    assert any("cached" in s for s in said)
    for a, b in zip(first[:4], again[:4], strict=True):
        assert np.array_equal(a, b)
    assert first.train_x.shape[1:] == (28, 28) and set(first.train_y.tolist()) <= set(range(11))
    boxes = generated(SceneRequest("scenes", SMALL, 3, 2), lambda: MNIST, said.append, tmp_path)
    assert boxes.train_x.shape == (3, 48, 48) and boxes.train_y.shape[2] == 5
    assert (boxes.train_y[:, :, 0] >= -1).all()


def test_a_scenes_directory_is_split_when_it_has_no_train_and_test(tmp_path: Path) -> None:
    write_scenes(tmp_path / "s", make_scenes(SMALL, TRAIN, 7), SMALL)
    got = from_directory(tmp_path / "s", "scenes", 0, 1.0, lambda _: None)
    assert (len(got.train_x), len(got.test_x)) == (6, 1)
    with pytest.raises(DataError, match="not a scenes directory"):
        from_directory(tmp_path, "windows", 0, 1.0, lambda _: None)


WINDOW_SPEC = """
network win(w: 1x28x28) { conv 4 5x5 | relu | maxpool 4x4 | dense 11 }
train win on mnist_windows {
    scenes size=64 count=40 test=10 digits=1..2 scale=14..40 randomize blur=false background=cells
    epochs 1
}
"""


def test_the_train_section_takes_scene_settings() -> None:
    scenes = netspec.compile(WINDOW_SPEC).train.scenes  # type: ignore[union-attr]
    assert scenes is not None
    assert (scenes.size, scenes.digits, scenes.scale, scenes.background) == (
        64,
        (1, 2),
        (14, 40),
        "cells",
    )
    assert scenes.switches() == ("backgrounds", "distractors", "contrast", "brightness", "invert")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("train win on mnist { scenes size=64 }", "'scenes' sets up generated scenes"),
        ("train win on mnist_windows { scenes background=sky }", "scenes background must be"),
        ("train win on mnist_windows { scenes size=8 }", "scenes size must be"),
    ],
)
def test_bad_scene_settings_are_diagnosed(section: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        netspec.compile("network win(w: 1x28x28) { dense 11 }\n" + section)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mnist_subset(tmp_path_factory.mktemp("mnist"), 60, 60)


def test_cli_writes_the_same_scenes_twice(tmp_path: Path, mnist_dir: Path) -> None:
    args = ["--count", "3", "--size", "64", "--randomize", "--mnist", mnist_dir]
    for name in ("a", "b"):
        result = invoke("scenes", "-o", tmp_path / name, *args)
        assert result.exit_code == 0, result.output
    for file in ("images/000002.png", "labels/000002.txt", "annotations.json", "preview.png"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    coco = json.loads((tmp_path / "a" / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == [str(d) for d in range(10)]
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in coco["annotations"])
    first = coco["annotations"][0]  # its box is drawn in its class's colour, 2x zoomed
    x, y = (int(v) * 2 for v in first["bbox"][:2])
    preview = np.asarray(Image.open(tmp_path / "a" / "preview.png").convert("RGB"))
    assert tuple(preview[y + 2, x + 2 + 4]) == PALETTE[first["category_id"]]


@pytest.mark.parametrize(
    "flags",
    [
        ["--digits", "3..1"],
        ["--digits", "one"],
        ["--scale", "14..200", "--size", "64"],
        ["--randomize", "blurr"],
        ["--plain", "--randomize"],
        ["--background", "sky"],
        ["--count", "0"],
    ],
)
def test_cli_bad_flags_are_usage_errors(tmp_path: Path, flags: list[str]) -> None:
    result = invoke("scenes", "-o", tmp_path / "out", *flags)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_directory_with_files(tmp_path: Path, mnist_dir: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = invoke("scenes", "-o", tmp_path, "--count", "1", "--mnist", mnist_dir)
    assert result.exit_code == 2 and "not an empty directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.slow
def test_a_window_classifier_trains_on_a_scenes_directory(tmp_path: Path, mnist_dir: Path) -> None:
    for split, count in (("train", 12), ("test", 4)):
        out = tmp_path / "data" / split
        result = invoke(
            "scenes",
            "-o",
            out,
            "--count",
            count,
            "--size",
            "64",
            "--split",
            split,
            "--mnist",
            mnist_dir,
        )
        assert result.exit_code == 0, result.output
    spec = tmp_path / "win.net"
    spec.write_text(WINDOW_SPEC)
    result = invoke(
        "train", spec, "--data", tmp_path / "data", "--out", tmp_path / "runs", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "runs" / "win" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and "test_acc" in rows[0]
