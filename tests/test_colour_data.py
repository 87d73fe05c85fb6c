"""Colour data of any size (issue 21): per-channel normalization, declared or measured from
the training set, recorded in the run and the ONNX file and applied by `netspec run` and the
probe; image folders of photographs at any size brought to the input by a `resize` rule;
the random resized crop, random crop, flip and colour jitter; unreadable files skipped or
refused; and specs/cifar10_resnet.net trained, exported and run on a tiny CIFAR-10 archive.
Every file here is a real PNG, JPEG or archive made in a temporary folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import netspec
from cli import main
from netspec.artifact import InputInfo, from_props
from netspec.data import DataError
from netspec.data.folders import load_image_folder
from netspec.diagnostics import SpecError
from netspec.errors import MetadataError
from netspec.fmt import format_text
from netspec.runtime.inputs import load_file
from netspec.train.augment import augment
from netspec.train.data import measure, measured, normalized
from netspec.trainspec import Augment, Normalize, TrainConfig
from tests.test_cifar10 import archive, batches

SPECS = Path(__file__).resolve().parent.parent / "specs"
RED, BLUE = (200, 40, 30), (30, 40, 200)

NETWORK = """network col(image: 3x32x32) {
    conv 8 3x3 pad=same | relu | maxpool 2x2
    conv 8 3x3 pad=same | relu | avgpool global
    dense 2
}
"""


def section(*lines: str, dataset: str = "folders") -> str:
    body = "\n".join(f"    {line}" for line in lines)
    return f"{NETWORK}\ntrain col on {dataset} {{\n{body}\n}}\n"


def invoke(*args: object) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def error(text: str) -> tuple[str, int, int, str]:
    """The one diagnostic of compiling ``text``: its code, line, column and message."""
    with pytest.raises(SpecError) as e:
        netspec.compile_text(text)
    (d,) = e.value.diagnostics
    return d.code, d.span.line, d.span.col, d.message


# ---- 1. per-channel normalization ----------------------------------------------------------


def test_per_channel_normalize_parses_as_a_list_or_a_vlist() -> None:
    plain = "normalize mean=0.4914,0.4822,0.4465 std=0.247,0.243,0.261"
    listed = "normalize mean=[0.4914, 0.4822, 0.4465] std=[0.247, 0.243, 0.261]"
    for line in (plain, listed):
        norm = netspec.compile_text(section(line)).train.normalize
        assert norm.mean == (0.4914, 0.4822, 0.4465) and norm.std == (0.247, 0.243, 0.261)
    one = netspec.compile_text(section("normalize mean=[0.5] std=0.25")).train.normalize
    assert (one.mean, one.std) == (0.5, 0.25)  # a list of one is a number
    # fmt keeps a list as one word, and the text still means the same
    written = section("normalize mean=0.4914, 0.4822,0.4465 std=1")
    assert "mean=0.4914,0.4822,0.4465 std=1" in format_text(written)
    # a comma still separates a merge's arguments in a network
    merged = (
        "network m(x: 1x8x8) {\n    a = conv 4 1x1\n    concat(a, x | conv 4 1x1 stride=1, a)\n}\n"
    )
    assert netspec.compile_text(merged).graph.nodes[-1].op == "concat"


def test_wrong_counts_and_stds_are_errors_at_their_values() -> None:
    text = section("normalize mean=0.1,0.2 std=0.3")
    code, line, col, message = error(text)
    assert (code, line, col) == ("E508", 8, 15)
    assert message == "normalize mean has 2 values, but the input has 3 channels"
    grey = section("normalize mean=0.1,0.2,0.3 std=0.3").replace("3x32x32", "1x32x32")
    assert error(grey)[3] == "normalize mean has 3 values, but the input has 1 channel"
    code, line, col, message = error(section("normalize mean=0.5 std=0.2,0,0.2"))
    assert (code, line, col, message) == (
        "E505",
        8,
        24,
        "normalize std must be greater than 0, got 0",
    )
    assert error(section("normalize std=-1"))[3] == "normalize std must be greater than 0, got -1"
    assert error(section("normalize auto mean=0.5"))[0] == "E508"
    assert "one per channel" in error(section("normalize mean=a,b,c"))[3]


def test_input_info_reads_old_files_and_writes_one_value_as_a_number() -> None:
    props = {"network": "n", "spec": "", "outputs": '[{"name": "y", "kind": "logits"}]'}
    old = from_props({**props, "inputs": '[{"name": "x", "shape": [1, 2, 2], "mean": 0.1}]'}, "m")
    assert (old.inputs[0].mean, old.inputs[0].std, old.inputs[0].resize) == (0.1, 1.0, None)
    entry = {"name": "x", "shape": [3, 2, 2], "mean": [0.1, 0.2, 0.3], "std": [1, 2, 4]}
    info = from_props({**props, "inputs": json.dumps([{**entry, "resize": 3}])}, "m").inputs[0]
    assert info.mean == (0.1, 0.2, 0.3) and info.std == (1.0, 2.0, 4.0) and info.resize == 3
    assert InputInfo("x", (1, 2, 2), 0.5, 0.25).as_json() == {
        "name": "x",
        "shape": (1, 2, 2),
        "mean": 0.5,
        "std": 0.25,
    }
    for bad, where in (
        ({**entry, "mean": [0.1, 0.2]}, "mean has 2 values"),
        ({**entry, "std": [1, 0, 1]}, r"inputs\[0\]\.std: std must be a normal positive"),
        ({**entry, "mean": ["a"]}, r"inputs\[0\]\.mean: expected a number"),
    ):
        with pytest.raises(MetadataError, match=where):
            from_props({**props, "inputs": json.dumps([bad])}, "m")
    x = np.random.default_rng(0).random((2, 3, 2, 2)).astype(np.float32)
    want = (x - np.array([0.1, 0.2, 0.3]).reshape(3, 1, 1)) / np.array([1, 2, 4]).reshape(3, 1, 1)
    assert np.allclose(info.normalize(x), want) and np.allclose(info.pixels(info.normalize(x)), x)


def test_netspec_run_normalizes_each_channel_of_a_png(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4), (255, 51, 0)).save(tmp_path / "p.png")
    info = InputInfo("image", (3, 4, 4), (0.5, 0.2, 0.1), (0.5, 0.1, 0.3))
    x = load_file(tmp_path / "p.png", info)
    assert x.shape == (1, 3, 4, 4)
    assert np.allclose(x[0, :, 0, 0], [(1 - 0.5) / 0.5, (0.2 - 0.2) / 0.1, (0 - 0.1) / 0.3])


def test_training_normalizes_and_measures_per_channel() -> None:
    x = torch.stack([torch.full((4, 4), v) for v in (0.2, 0.4, 0.8)])[None].repeat(3, 1, 1, 1)
    y = normalized(x, Normalize(mean=(0.2, 0.4, 0.8), std=(0.1, 1.0, 2.0)))
    assert torch.allclose(y, torch.zeros_like(y))
    assert torch.equal(normalized(x, Normalize(mean=0.2, std=0.5)), (x - 0.2) / 0.5)
    with pytest.raises(DataError, match="std is 0"):  # each channel holds one value
        measure(x)
    x[1] = torch.tensor([0.6, 0.0, 1.0]).view(3, 1, 1)  # channel 0: 0.2, 0.6, 0.2, ...
    mean, std = measure(x)
    assert np.allclose(mean, [1 / 3, 0.8 / 3, 2.6 / 3], atol=1e-6)
    assert np.allclose(std, [np.std([0.2, 0.6, 0.2]), np.std([0.4, 0, 0.4]), np.std([0.8, 1, 0.8])])
    config = TrainConfig(network="n", dataset="mnist", normalize=Normalize(auto=True))
    said: list[str] = []
    grey = measured(config, x[:, :1], said.append).normalize
    assert grey.auto and (grey.mean, grey.std) == (mean[0], std[0])  # numbers, as written
    assert said == [f"normalize auto: the training images' mean {mean[0]:.4f} std {std[0]:.4f}"]


# ---- 2. photographs: folders at any size, in colour -----------------------------------------


def photos(root: Path, train: int = 10, test: int = 3) -> Path:
    """train/ and test/ folders of red and blue photographs of mixed sizes and formats."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for name, colour in (("red", RED), ("blue", BLUE)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(36, 80, 2))
                pixels = np.clip(rng.normal(colour, 20, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def test_images_of_mixed_sizes_need_a_resize_rule(tmp_path: Path) -> None:
    data = photos(tmp_path / "p", 2, 1)
    with pytest.raises(DataError, match=r"expected one size, or a rule .*`resize N`"):
        load_image_folder(data / "train", channels=3)
    out = tmp_path / "runs"
    spec = tmp_path / "col.net"
    spec.write_text(section("epochs 1"))
    ran = invoke("train", spec, "--data", data, "--out", out)
    assert ran.exit_code == 1 and "`resize N` in the train section" in ran.output


def test_resize_scales_the_shorter_side_and_cuts_the_centre(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    picture = np.random.default_rng(1).integers(0, 256, (40, 80, 3), np.uint8)
    Image.fromarray(picture).save(tmp_path / "a" / "0.png")
    folder = load_image_folder(tmp_path, (32, 32), 3, resize=36)
    resized = np.asarray(Image.fromarray(picture).resize((72, 36), Image.Resampling.BILINEAR))
    assert folder.x.shape == (1, 3, 32, 32)
    assert np.array_equal(folder.x[0].transpose(1, 2, 0), resized[2:34, 20:52])
    small = load_image_folder(tmp_path, (32, 32), 3, resize=8)  # never less than the input
    assert small.x.shape == (1, 3, 32, 32)


def test_arrays_follow_the_resize_rule_and_maps_refuse_it() -> None:
    from netspec.data.record import Arrays
    from netspec.tasks import target_of
    from netspec.train.data import Sizing, fit_to_input
    from netspec.trainspec import Loss

    ramp = np.tile(np.arange(48, dtype=np.uint8) * 5, (2, 3, 40, 1))  # 40x48, brighter rightwards
    labels = np.array([0, 1])
    arrays = Arrays(ramp, labels, ramp, labels, "ramps")
    classifier = target_of(netspec.compile_text(NETWORK), Loss())
    cpu, quiet = torch.device("cpu"), (lambda _: None)
    fitted = fit_to_input(arrays, (3, 32, 32), classifier, None, cpu, quiet, Sizing(36, True))
    assert fitted.train_x.shape == (2, 3, 36, 36) and fitted.test_x.shape == (2, 3, 32, 32)
    row = fitted.test_x[0, 0, 16]  # 40x48 scaled to 36x43, its centre columns 5..37 kept
    assert float(row[0]) > 0.05 and float(row[-1]) < 0.85  # not the edges: 0 and 0.92
    autoencoder = netspec.compile_text("network ae(image: 3x32x32) {\n    conv 3 3x3 pad=same\n}\n")
    with pytest.raises(DataError, match="`resize` cuts the centre"):
        fit_to_input(arrays, (3, 32, 32), target_of(autoencoder, Loss(name="mse")), None, cpu,
                     quiet, Sizing(36))  # fmt: skip


def test_sixteen_bit_cmyk_and_palette_images_read_in_colour(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(tmp_path / "a" / "0_deep.png")
    Image.new("CMYK", (6, 6), (0, 255, 255, 0)).save(tmp_path / "a" / "1_cmyk.jpg", quality=95)
    palette = Image.new("P", (6, 6), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(tmp_path / "a" / "2_palette.png")
    x = load_image_folder(tmp_path, channels=3).x
    assert x[0, :, 0, 0].tolist() == [156, 156, 156]  # 40000 / 65535 of white, not clipped
    assert np.abs(x[1, :, 3, 3].astype(int) - [255, 0, 0]).max() <= 3  # red, not inverted
    assert x[2, :, 0, 0].tolist() == [10, 200, 30]


def test_unreadable_files_are_skipped_or_refused_by_their_share(tmp_path: Path) -> None:
    data = photos(tmp_path / "p", 10, 1)
    (data / "train" / "red" / "notes.txt").write_text("not a picture")
    (data / "train" / "blue" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    good = data / "train" / "red" / "0.png"
    (data / "train" / "red" / "cut.png").write_bytes(good.read_bytes()[:200])  # truncated
    said: list[str] = []
    folder = load_image_folder(data / "train", (32, 32), 3, resize=32, log=said.append)
    assert len(folder.x) == len(folder.y) == 20  # 22 images, 2 skipped
    (summary,) = said
    assert summary.startswith("skipped 3 file(s) in ") and "red/notes.txt" in summary
    assert "blue/broken.jpg (cannot read image" in summary and "red/cut.png" in summary
    for k in range(2):  # 5 unreadable of 24 images: more than 10%
        (data / "train" / "blue" / f"x{k}.png").write_bytes(b"\x89PNG\r\n\x1a\n no")
    with pytest.raises(DataError, match=r"broken.jpg: cannot read image .*; 3 of the 24 images"):
        load_image_folder(data / "train", (32, 32), 3, resize=32)


def test_one_class_or_no_class_is_refused(tmp_path: Path) -> None:
    from netspec.data.record import Fit
    from netspec.data.registry import read_arrays

    data = photos(tmp_path / "p", 2, 1)
    fit = Fit(3, (32, 32), 36)
    for split in ("train", "test"):
        for f in (data / split / "blue").iterdir():
            f.unlink()
        (data / split / "blue").rmdir()
    with pytest.raises(DataError, match=r"train: one class folder, 'red'; a classifier needs"):
        read_arrays("folders", data, print, fit=fit)
    (data / "empty" / "train").mkdir(parents=True)
    (data / "empty" / "test").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        read_arrays("folders", data / "empty", print, fit=fit)


# ---- the augment words ---------------------------------------------------------------------


def test_flip_random_crop_and_a_whole_crop_move_pixels_exactly() -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    assert torch.allclose(augment(x, Augment(flip=1.0), gen), x.flip(-1), atol=1e-6)
    assert torch.allclose(augment(x, Augment(flip=0.0), gen), x, atol=1e-6)
    whole = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    assert torch.allclose(augment(x, whole, gen), x, atol=1e-6)
    assert augment(x, whole, gen, (4, 4)).shape == (4, 3, 4, 4)  # cut to the input's size
    moved = augment(x, Augment(crop_pad=2), gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for image, source in zip(moved, padded, strict=True):
        shifts = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.allclose(image, source[:, dy : dy + 8, dx : dx + 8], atol=1e-6)
        ]
        assert shifts, "each image is the padded one, cut whole pixels away"


def test_random_resized_crops_stay_inside_and_vary() -> None:
    ramp = torch.linspace(0.5, 1, 16).view(1, 1, 1, 16).expand(64, 3, 16, 16).contiguous()
    crops = augment(ramp, Augment(crop_scale=(0.08, 1.0)), torch.Generator().manual_seed(2))
    assert crops.shape == (64, 3, 16, 16)
    assert float(crops.min()) >= 0.5 - 1e-6 and float(crops.max()) <= 1 + 1e-6  # no zeros
    widths = crops[:, 0, 0, -1] - crops[:, 0, 0, 0]  # each crop's share of the ramp
    assert float(widths.min()) < 0.5 * float(widths.max())
    assert torch.allclose(widths.max(), torch.tensor(0.5), atol=0.05)  # the whole, or nearly


def test_colour_jitter_scales_brightness_contrast_and_saturation() -> None:
    x = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.1
    brighter = augment(x, Augment(brightness=0.5), torch.Generator().manual_seed(4))
    ratio = brighter / x
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-5)
    assert float(ratio.min()) >= 0.5 and float(ratio.max()) <= 1.5
    saturated = augment(x, Augment(saturation=1.0), torch.Generator().manual_seed(4))
    assert not torch.allclose(saturated, x)  # a colour image's saturation moves
    flat = x[:, :1]
    assert torch.equal(augment(flat, Augment(saturation=1.0), torch.Generator()), flat)
    again = augment(x, Augment(brightness=0.5), torch.Generator().manual_seed(4))
    assert torch.equal(again, brighter)  # drawn from the generator alone


def test_augment_words_and_their_defaults() -> None:
    text = section(
        "augment {",
        "    random_resized_crop",
        "    flip",
        "    color_jitter",
        "    random_crop pad=3",
        "}",
    )
    a = netspec.compile_text(text).train.augment
    assert (a.crop_scale, a.crop_ratio, a.flip, a.crop_pad) == ((0.08, 1.0), None, 0.5, 3)
    ratio = netspec.compile_text(section("augment {", "    random_resized_crop ratio=0.5..2", "}"))
    assert ratio.train.augment.crop_ratio == (0.5, 2.0)
    assert (a.brightness, a.contrast, a.saturation) == (0.4, 0.4, 0.4)
    assert a.words == ("random_resized_crop", "random_crop", "flip", "colour_jitter")
    bad = section("augment {", "    random_resized_crop scale=0..1", "}")
    assert error(bad)[3] == "augment random_resized_crop scale must be greater than 0, got 0"
    assert error(section("augment {", "    flip 2", "}"))[3].startswith("augment flip must be")


# ---- training on photographs, and what the run records -------------------------------------


def test_photographs_train_with_a_measured_normalization_run_everywhere(tmp_path: Path) -> None:
    data = photos(tmp_path / "p")
    (data / "train" / "red" / "Thumbs.db").write_bytes(b"\0" * 8)
    spec = tmp_path / "col.net"
    spec.write_text(
        section(
            "normalize auto",
            "resize 36",
            "augment {",
            "    random_resized_crop scale=0.5..1",
            "    flip",
            "    colour_jitter brightness=0.2 contrast=0.2 saturation=0.2",
            "}",
            "optimizer adam lr=0.02",
            "epochs 3",
            "batch 8",
        )
    )
    ran = invoke("train", spec, "--data", data, "--out", tmp_path / "runs", "--name", "col")
    assert ran.exit_code == 0, ran.output
    assert "skipped 1 file(s) in " in ran.output and "red/Thumbs.db" in ran.output
    assert "training images kept at 36x36" in ran.output
    run = tmp_path / "runs" / "col"
    recorded = json.loads((run / "settings.json").read_text())["train"]["normalize"]
    mean, std = recorded["mean"], recorded["std"]
    assert recorded["auto"] and len(mean) == len(std) == 3
    assert mean[0] > 0.4 > mean[1] and mean[2] > 0.4  # red and blue photographs, little green
    model = onnx.load(str(run / "model.onnx"))
    (entry,) = json.loads(next(p.value for p in model.metadata_props if p.key == "inputs"))
    assert (entry["mean"], entry["std"], entry["resize"]) == (mean, std, 36)
    Image.new("RGB", (90, 50), RED).save(tmp_path / "red.png")
    Image.new("RGB", (40, 70), BLUE).save(tmp_path / "blue.jpg")
    said = invoke("run", run / "model.onnx", tmp_path / "red.png", tmp_path / "blue.jpg").output
    assert re.search(r"red\.png: red \(", said) and re.search(r"blue\.jpg: blue \(", said)
    assert "50x90 resized to 36x65 (shorter side 36), its centre 32x32 kept" in said

    from netspec.probe import open_probe

    probe = open_probe(run)
    assert (probe.input.mean, probe.input.std, probe.input.resize) == (tuple(mean), tuple(std), 36)
    picture = np.zeros((32, 32, 3), np.uint8)
    picture[..., 0] = 255
    got = probe.prepare(picture)
    assert np.allclose(got[0, :, 5, 5], (np.array([1, 0, 0]) - mean) / std, atol=1e-5)
    ran = invoke("eval", run, "--data", data)
    assert ran.exit_code == 0 and "accuracy" in ran.output
    # the run's own files say what it measured: `export RUN` writes what training did
    assert invoke("export", run, "-o", tmp_path / "again.onnx").exit_code == 0
    again = onnx.load(str(tmp_path / "again.onnx"))
    (entry,) = json.loads(next(p.value for p in again.metadata_props if p.key == "inputs"))
    assert (entry["mean"], entry["std"]) == (mean, std)


# ---- 3. specs/cifar10_resnet.net ------------------------------------------------------------


def test_the_cifar10_resnet_trains_exports_and_names_a_colour_png(tmp_path: Path) -> None:
    """The spec as written, its widths divided (64..512 maps become 8 and 16), a few steps
    on a tiny archive in CIFAR-10's binary format."""
    text = (SPECS / "cifar10_resnet.net").read_text()
    assert "normalize mean=0.4914,0.4822,0.4465" in text and "random_crop 4" in text
    narrow = text.replace("conv 64", "conv 8").replace("(128)", "(8)").replace("(256)", "(16)")
    spec = tmp_path / "resnet9.net"
    spec.write_text(narrow.replace("(512)", "(16)"))
    data = archive(tmp_path / "cifar-10-binary.tar.gz", batches())
    out = tmp_path / "runs"
    ran = invoke(
        "train", spec, "--data", data, "--out", out, "--name", "r", "--epochs", "1",
        "--set", "batch=16", "--set", "lr=0.05",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    model = out / "r" / "model.onnx"
    (entry,) = json.loads(
        next(p.value for p in onnx.load(str(model)).metadata_props if p.key == "inputs")
    )
    assert entry["mean"] == [0.4914, 0.4822, 0.4465] and entry["std"] == [0.247, 0.2435, 0.2616]
    Image.new("RGB", (32, 32), (250, 60, 40)).save(tmp_path / "colour.png")
    said = invoke("run", model, tmp_path / "colour.png").output
    named = re.search(r"colour\.png: (\w+) \(", said)
    assert named is not None and named[1] in ("airplane", "automobile", "bird", "cat", "deer",
                                              "dog", "frog", "horse", "ship", "truck")  # fmt: skip
