"""Image folders too large to hold, streamed (issue 21): listed and header-checked up front,
decoded, fitted and deformed a batch at a time in worker threads, the same batches
whatever the threads, memory bounded by the prefetch depth; and `show`'s top activations
of a colour run drawn in colour. Every image here is a real JPEG or PNG made in tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image
from safetensors.torch import load_file

import netspec
from cli import main
from netspec.data.folders import ImageFolder, load_image_folder
from netspec.data.stream import STREAM_ENV, THREADS_ENV, StreamedImages, open_image_folder
from netspec.errors import DataError
from netspec.train.data import Streamed, measure
from netspec.train.loop import Place, streamed_batches
from netspec.train.setup import load_tensors
from tests.test_bounds import MiB
from tests.test_bounds import netspec as measured_netspec

CLASSES = ("sky", "leaf", "sand")


def photo(rng: np.random.Generator, label: int, size: tuple[int, int]) -> np.ndarray:
    """A photograph-like RGB picture: a gradient in the class's colours, noise and a shape."""
    h, w = size
    base = np.array([(90, 140, 220), (60, 150, 50), (210, 190, 120)][label], float)
    ramp = np.linspace(0.6, 1.2, h)[:, None, None] * np.linspace(0.8, 1.1, w)[None, :, None]
    pixels = base * ramp + rng.normal(0, 18, (h, w, 3))
    top, left = (int(v) for v in rng.integers(0, [h // 2, w // 2]))
    pixels[top : top + h // 3, left : left + w // 3] += rng.normal(0, 60, 3)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def folders(root: Path, train: int, test: int = 2, size: tuple[int, int] = (44, 52)) -> Path:
    """train/ and test/ with ``train`` and ``test`` images per class, JPEGs and PNGs."""
    rng = np.random.default_rng(1)
    for split, n in (("train", train), ("test", test)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                suffix = "png" if i % 3 == 0 else "jpg"
                Image.fromarray(photo(rng, label, size)).save(root / split / name / f"{i}.{suffix}")
    return root


NETWORK = """network tiny(image: 3x32x32) {
    conv 6 3x3 pad=same | relu | maxpool 2x2
    conv 8 3x3 pad=same | relu | avgpool global
    dropout 0.2 | dense 3
}
"""


def spec(tmp_path: Path, *lines: str) -> Path:
    body = "\n".join(f"    {line}" for line in ("resize 36", *lines))
    path = tmp_path / "tiny.net"
    path.write_text(f"{NETWORK}\ntrain tiny on folders {{\n{body}\n}}\n")
    return path


def invoke(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


# ---- held or streamed: the rule ----------------------------------------------------------------


def test_a_folder_over_the_limit_is_listed_and_decodes_as_a_held_one(tmp_path: Path) -> None:
    data = folders(tmp_path / "p", 4)
    said: list[str] = []
    held = open_image_folder(data / "train", (40, 40), 3, resize=40, stream_over=None)
    assert isinstance(held, ImageFolder)
    decoded = 12 * 3 * 40 * 40
    assert isinstance(
        open_image_folder(data / "train", 40, 3, resize=40, stream_over=decoded), ImageFolder
    )  # at the limit: held
    streamed = open_image_folder(
        data / "train", (40, 40), 3, resize=40, log=said.append, stream_over=decoded - 1
    )
    assert isinstance(streamed, StreamedImages)
    assert streamed.shape == (12, 3, 40, 40) and streamed.classes == sorted(CLASSES)
    assert f"decode to {decoded:,} bytes, over the {decoded - 1:,} held" in said[-1]
    x, y = streamed.decode(np.arange(12, dtype=np.int64))
    assert np.array_equal(x, held.x) and np.array_equal(y, held.y)  # the same pixels
    assert np.array_equal(streamed.first(5).decode(np.array([4], np.int64))[0], held.x[4:5])
    grey = open_image_folder(data / "train", None, 1, stream_over=0)
    assert isinstance(grey, StreamedImages) and grey.shape == (12, 1, 44, 52)
    assert np.array_equal(
        grey.decode(np.array([2], np.int64))[0][0, 0], load_image_folder(data / "train").x[2]
    )


def test_the_limit_and_the_threads_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.data.stream import loader_threads, stream_above
    from netspec.errors import UsageError

    monkeypatch.setenv(STREAM_ENV, "1000")
    monkeypatch.setenv(THREADS_ENV, "3")
    assert (stream_above(), loader_threads()) == (1000, 3)
    monkeypatch.setenv(THREADS_ENV, "0")
    with pytest.raises(UsageError, match=f"{THREADS_ENV}=0: expected a positive whole number"):
        loader_threads()
    monkeypatch.delenv(THREADS_ENV)
    assert 2 <= loader_threads() <= 8


# ---- training: as held, deterministic, unreadable files ------------------------------------


def _train(tmp_path: Path, data: Path, spec_path: Path, name: str) -> Path:
    ran = invoke("train", spec_path, "--data", data, "--out", tmp_path / "runs", "--name", name)
    assert ran.exit_code == 0, ran.output
    return tmp_path / "runs" / name


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_a_streamed_folder_trains_exactly_as_the_held_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without augmentation a batch is the same floats held or streamed, so the runs are the
    same run: the measured normalization, every epoch's metrics and the weights."""
    data = folders(tmp_path / "p", 8)
    path = spec(tmp_path, "normalize auto", "optimizer adam lr=0.01", "epochs 2", "batch 5")
    held = _train(tmp_path, data, path, "held")
    monkeypatch.setenv(STREAM_ENV, "1")
    streamed = invoke("train", path, "--data", data, "--out", tmp_path / "runs", "--name", "s")
    assert streamed.exit_code == 0, streamed.output
    assert "decoded a batch at a time by" in streamed.output
    runs = [held, tmp_path / "runs" / "s"]
    norms = [json.loads((r / "settings.json").read_text())["train"]["normalize"] for r in runs]
    assert norms[0] == norms[1] and norms[0]["auto"]
    assert _rows(runs[0]) == _rows(runs[1])
    weights = [load_file(r / "weights" / "last.safetensors") for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    ran = invoke("eval", runs[1], "--data", data)  # eval lists the training split, holds the test
    assert ran.exit_code == 0 and "accuracy" in ran.output


def _epoch_batches(data: Path, path: Path, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    compiled = netspec.compile(path)
    config = compiled.train
    assert config is not None
    tensors = load_tensors(compiled, config, data, None, torch.device("cpu"), print)
    assert isinstance(tensors.train_x, Streamed)
    order = torch.randperm(len(tensors.train_x), generator=torch.Generator().manual_seed(epoch))
    steps = -(-len(tensors.train_x) // config.batch)
    got = streamed_batches(
        tensors.train_x, order, tensors, config, Place(torch.device("cpu")), epoch, steps
    )
    return [(x, y) for x, y, _ in got]


def test_streamed_batches_are_the_same_whatever_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = folders(tmp_path / "p", 7)
    path = spec(
        tmp_path,
        "augment {",
        "    random_resized_crop scale=0.3..1",
        "    flip",
        "    colour_jitter brightness=0.3 contrast=0.3 saturation=0.3",
        "}",
        "batch 4",
    )
    monkeypatch.setenv(STREAM_ENV, "1")
    runs = {}
    for threads in ("1", "4", "2"):
        monkeypatch.setenv(THREADS_ENV, threads)
        runs[threads] = _epoch_batches(data, path, epoch=3)
    first = runs["1"]
    assert [len(y) for _, y in first] == [4, 4, 4, 4, 4, 1] and first[0][0].shape[1:] == (3, 32, 32)
    for other in (runs["4"], runs["2"]):
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            for a, b in zip(first, other, strict=True)
        )
    again = _epoch_batches(data, path, epoch=4)  # another epoch: other crops of other images
    assert not torch.equal(again[0][0], first[0][0])
    plain = folders(tmp_path / "q", 7)  # the same pictures, not deformed: the crops did move
    monkeypatch.setenv(THREADS_ENV, "2")
    unmoved = _epoch_batches(plain, spec(tmp_path, "batch 4"), epoch=3)
    assert torch.equal(unmoved[0][1], first[0][1])  # the same images in the same order
    assert not torch.allclose(unmoved[0][0], first[0][0], atol=0.05)


def _cut(jpeg: Path) -> None:
    """Truncate a JPEG a little after its scan begins: its header reads, its pixels not."""
    whole = jpeg.read_bytes()
    jpeg.write_bytes(whole[: whole.index(b"\xff\xda") + 40])


def test_a_file_that_cannot_be_decoded_is_dropped_named_and_counted(tmp_path: Path) -> None:
    data = folders(tmp_path / "p", 10)
    _cut(data / "train" / "leaf" / "1.jpg")
    said: list[str] = []
    streamed = open_image_folder(data / "train", None, 3, log=said.append, stream_over=0)
    assert isinstance(streamed, StreamedImages) and len(streamed) == 30  # the header reads
    picks = [np.arange(k, min(k + 8, 30), dtype=np.int64) for k in range(0, 30, 8)]
    sizes = list(streamed.batches(picks, lambda _, x, y: len(y), threads=2))
    assert sizes == [7, 8, 8, 6]  # leaf/1.jpg is the second image (classes in sorted order)
    assert said[-1].startswith("skipped 1 file(s) in ") and "leaf/1.jpg (cannot read" in said[-1]
    for name in ("2.jpg", "4.jpg", "5.jpg"):  # 4 of 30: over the 10% a folder may skip
        _cut(data / "train" / "sand" / name)
    again = open_image_folder(data / "train", None, 3, stream_over=0)
    assert isinstance(again, StreamedImages)
    with pytest.raises(DataError, match=r"cannot read image .*; 4 of the 30 images"):
        list(again.batches(picks, lambda _, x, y: len(y), threads=3))


def test_measure_of_a_streamed_folder_is_the_held_measure(tmp_path: Path) -> None:
    data = folders(tmp_path / "p", 5)
    held = load_image_folder(data / "train", 32, 3, resize=36)
    streamed = open_image_folder(data / "train", 32, 3, resize=36, stream_over=0)
    assert isinstance(streamed, StreamedImages)
    x = torch.as_tensor(held.x).float().div(255)
    assert measure(Streamed(streamed, (32, 32), 36)) == measure(x)


# ---- memory: the prefetch depth, not the folder ---------------------------------------------

BIG = """network big(image: 3x224x224) {
    conv 4 8x8 stride=8 | relu | avgpool global
    dense 3
}
train big on folders {
    normalize mean=0.5 std=0.25
    resize 256
    augment {
        random_resized_crop
        flip
    }
    optimizer sgd lr=0.01
    epochs 1
    batch 4
}
"""


def _big_folders(root: Path, train: int) -> Path:
    """``train`` JPEGs of 256x256 per class: 256 KiB each decoded, 768 KiB as floats."""
    rng = np.random.default_rng(2)
    for split, n in (("train", train), ("test", 2)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                picture = Image.fromarray(photo(rng, label, (256, 256)))
                picture.save(root / split / name / f"{i}.jpg", quality=85)
    return root


@pytest.mark.slow
def test_memory_follows_the_prefetch_depth_not_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`netspec train` in a fresh process on 300 and 600 photographs of 256x256 (a random
    resized crop keeps them at 256x256: 59 and 118 MB decoded, four times that as floats):
    streamed, the peak barely moves when the folder doubles (a few batches' worth of what
    the allocator keeps), where holding it takes its floats and more."""
    path = tmp_path / "big.net"
    path.write_text(BIG)
    monkeypatch.setenv(THREADS_ENV, "2")
    peaks = {}
    for count, streamed in ((100, True), (200, True), (200, False)):
        data = tmp_path / f"d{count}"
        if not data.exists():
            _big_folders(data, count)
        monkeypatch.setenv(STREAM_ENV, str(16 * MiB if streamed else 4096 * MiB))
        out = tmp_path / f"runs{count}{streamed}"
        ran = measured_netspec(tmp_path, "train", path, "--data", data, "--out", out)
        assert ran.code == 0, ran.err[-2000:]
        assert ("decoded a batch at a time" in ran.out + ran.err) == streamed
        peaks[count, streamed] = ran.peak
    floats = 300 * 3 * 256 * 256 * 4  # the 300 images doubling the folder adds, as floats
    assert abs(peaks[200, True] - peaks[100, True]) < floats / 4, peaks
    assert peaks[200, False] - peaks[200, True] > 2 * floats * 0.8, peaks


# ---- show: the top activations of a colour run, in colour ------------------------------------


def test_top_activations_of_a_colour_run_are_drawn_in_colour(tmp_path: Path) -> None:
    """The patches are the test images un-normalized with the run's per-channel mean and
    std: a red class's patches are red, a blue class's blue, not grey."""
    from netspec.probe import open_probe
    from netspec.show import pictures

    data = folders(tmp_path / "p", 3, test=4, size=(32, 32))
    run = _train(
        tmp_path,
        data,
        spec(tmp_path, "normalize mean=0.5,0.4,0.3 std=0.2,0.25,0.3", "epochs 1", "batch 4"),
        "col",
    )
    probe = open_probe(run)
    test = load_image_folder(data / "test", 32, 3, resize=36)
    x = np.concatenate([probe.prepare(p.transpose(1, 2, 0)) for p in test.x])
    seen = np.clip(probe.input.pixels(x), 0, 1).transpose(0, 2, 3, 1)
    drawn = pictures.draw_top_activations(probe, x, seen, tmp_path, top=3)
    assert drawn is not None
    rgb = np.asarray(Image.open(drawn.path).convert("RGB")).astype(int)
    assert (np.abs(rgb[..., 2] - rgb[..., 1]) > 40).sum() > 200  # blue skies, green leaves
    assert (np.abs(rgb[..., 0] - rgb[..., 2]) > 40).sum() > 200  # sand
    sky = rgb[rgb[..., 2] - rgb[..., 1] > 40]  # the sky's red, un-normalized: about 90 / 255
    assert 25 < np.median(sky[:, 0]) < 110  # (normalized with mean 0.5, std 0.2, it is 0)
    ran = invoke("show", run, "--data", data, "-o", tmp_path / "shown")
    assert ran.exit_code == 0, ran.output
    shown = np.asarray(Image.open(tmp_path / "shown" / "top-activations.png").convert("RGB"))
    assert (np.abs(shown[..., 2].astype(int) - shown[..., 1]) > 40).sum() > 200
