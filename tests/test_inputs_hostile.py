"""`netspec run`, `bench` and the training commands against hostile or clumsy inputs: a
crafted ONNX file's metadata, a decompression bomb, a 16-bit PNG, a 65-dimensional IDX
file, absurd numbers on the command line, labels that carry escape sequences. Each
ends in a clear message and the right exit code, never a traceback or a huge allocation.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import netspec
from netspec.artifact import InputInfo, ModelInfo
from netspec.errors import InputError, MetadataError
from netspec.export import export_compiled
from netspec.runtime.inputs import MAX_IMAGE_PIXELS, load_inputs
from netspec.runtime.session import check_declared
from tests.test_export import QUIET, SPECS, invoke
from tests.test_runtime import LENET5, digit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "lenet.onnx"
    export_compiled(netspec.compile(SPECS / "lenet.net"), out, **QUIET)
    return out


def with_metadata(model: Path, out: Path, **props: object) -> Path:
    """A copy of `model` whose netspec metadata entries `props` are replaced (JSON)."""
    proto = onnx.load(str(model))
    for entry in proto.metadata_props:
        if entry.key in props:
            entry.value = json.dumps(props[entry.key])
    onnx.save(proto, str(out))
    return out


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width` x `height` grey pixels and holds one row of data: what
    a decompression bomb looks like to a reader before it inflates anything."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


# ---- declared shapes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [[1, 100000, 100000], [1, 0, 28], [1, -28, 28], [1, 28.5, 28]],
    ids=lambda shape: "x".join(map(str, shape)),
)
def test_declared_shapes_are_checked_before_allocating(
    lenet: Path, tmp_path: Path, shape: list[object]
) -> None:
    """A 1x100000x100000 input would be 37 GiB of zeros to pad an image into: refused
    (by the metadata reader or by the runtime's own check), naming the file."""
    inputs = [{"name": "image", "shape": shape, "mean": 0.0, "std": 1.0}]
    crafted = with_metadata(lenet, tmp_path / "crafted.onnx", inputs=inputs)
    for command in (["run", crafted, digit(tmp_path)], ["bench", crafted, "--batch", "1"]):
        result = invoke(*command)
        assert result.exit_code == 1, result.output
        assert str(crafted) in result.stderr
        assert "shape" in result.stderr or "declares" in result.stderr


def test_the_runtime_checks_declared_shapes_itself() -> None:
    """The runtime's own check, whatever the metadata reader lets through."""
    huge = ModelInfo("n", "", "0", (InputInfo("image", (1, 100000, 100000)),), ())
    with pytest.raises(MetadataError, match=r"declares 1x100000x100000 per sample"):
        check_declared(huge, "m.onnx")
    with pytest.raises(MetadataError, match="expected positive sizes"):
        check_declared(ModelInfo("n", "", "0", (InputInfo("x", (1, 0)),), ()), "m.onnx")
    check_declared(ModelInfo("n", "", "0", (InputInfo("x", (3, "H", "W")),), ()), "m.onnx")


def test_bench_refuses_a_batch_that_would_not_fit(tmp_path: Path) -> None:
    """A graph of any H and W (so that metadata of 4096x4096 agrees with it)."""
    fcn = tmp_path / "filters.onnx"
    export_compiled(netspec.compile(SPECS / "filters.net"), fcn, **QUIET)
    inputs = [{"name": "image", "shape": [1, 4096, 4096], "mean": 0.0, "std": 1.0}]
    crafted = with_metadata(fcn, tmp_path / "big.onnx", inputs=inputs)
    result = invoke("bench", crafted, "--batch", "64")
    assert result.exit_code == 2
    assert "--batch 64: 64 samples of 16,777,216 values each" in result.stderr


# ---- images ---------------------------------------------------------------------------


def test_a_decompression_bomb_is_refused_from_its_header(lenet: Path, tmp_path: Path) -> None:
    bomb = png_header(tmp_path / "bomb.png", 12_000, 12_000)  # 144 Mpx in a few hundred bytes
    assert bomb.stat().st_size < 1000
    with pytest.raises(InputError, match=r"bomb.png: an image of 12000x12000 \(144,000,000"):
        load_inputs([bomb], LENET5)
    result = invoke("run", lenet, bomb)
    assert result.exit_code == 1
    assert "netspec reads images of at most 33,554,432 pixels" in result.stderr


def test_pillows_own_guard_is_left_as_it_was(tmp_path: Path) -> None:
    """The cap is netspec's own, per call: Pillow's global guard is left as it was."""
    before = Image.MAX_IMAGE_PIXELS
    side = 64
    assert side * side < MAX_IMAGE_PIXELS
    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "ok.png")
    assert load_inputs([tmp_path / "ok.png"], LENET5).array.shape == (1, 1, 32, 32)
    assert before == Image.MAX_IMAGE_PIXELS


def test_sixteen_bit_png_is_scaled_by_65535(tmp_path: Path) -> None:
    """A white-on-black digit stored in 16 bits reads as the same digit in 8 bits."""
    eight = digit(tmp_path)
    pixels = np.asarray(Image.open(eight), np.uint16) * 257  # 255 -> 65535
    sixteen = tmp_path / "digit16.png"
    Image.fromarray(pixels).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I")
    notices: list[str] = []
    got = load_inputs([sixteen], LENET5, notice=notices.append).array
    np.testing.assert_allclose(got, load_inputs([eight], LENET5).array, atol=1e-6)
    assert not any("dark ink" in n for n in notices)
    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((28, 28), 16384, np.uint16)).save(grey)
    x = load_inputs([grey], LENET5).array[0, 0, 2:-2, 2:-2]
    np.testing.assert_allclose(x * LENET5.std + LENET5.mean, 16384 / 65535, atol=1e-6)


# ---- IDX ------------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True], ids=["raw", "gzip"])
def test_idx_of_65_dimensions_is_refused(lenet: Path, tmp_path: Path, gzipped: bool) -> None:
    header = b"\x00\x00\x08\x41" + struct.pack(">65I", *([1] * 65)) + b"\x00"
    path = tmp_path / "deep-idx"
    path.write_bytes(gzip.compress(header) if gzipped else header)
    result = invoke("run", lenet, path)
    assert result.exit_code == 1, result.output
    assert "an IDX file of 65 dimensions" in result.stderr


# ---- numbers on the command line ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["bench", "model.onnx", "--batch", "1000000000"], "--batch"),
        (["bench", "model.onnx", "--batch", "1,64,99999999999"], "--batch"),
        (["run", "model.onnx", "x.png", "--batch", "1000000000"], "--batch"),
        (["export", str(SPECS / "lenet.net"), "-o", "x.onnx", "--batch", "99999999999"], "--batch"),
        (["train", str(SPECS / "lenet.net"), "--seed", str(10**23)], "--seed"),
        (["train", str(SPECS / "lenet.net"), "--seed", "-1"], "--seed"),
        (["augment", str(SPECS / "lenet.net"), "--seed", str(10**23)], "--seed"),
        (["train", str(SPECS / "lenet.net"), "--lr", "inf"], "--lr"),
        (["train", str(SPECS / "lenet.net"), "--lr", "nan"], "--lr"),
        (["train", str(SPECS / "lenet.net"), "--batch", str(10**12)], "--batch"),
    ],
    ids=lambda a: " ".join(a[:1] + a[-2:]) if isinstance(a, list) else a,
)
def test_absurd_numbers_are_usage_errors_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], flag: str
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the checkout
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert flag in result.stderr


# ---- printing what a file says --------------------------------------------------------


def test_names_with_escape_sequences_are_printed_literally(lenet: Path, tmp_path: Path) -> None:
    """A file name that carries terminal escapes is printed with them written out."""
    image = digit(tmp_path).rename(tmp_path / "evil\x1b[2J\x1b[31m\x07.png")
    result = invoke("run", lenet, image)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "evil\\x1b[2J\\x1b[31m\\x07.png: " in result.stdout


def test_labels_with_escape_sequences_never_reach_the_terminal(lenet: Path, tmp_path: Path) -> None:
    """Labels from a crafted file: printed written out, or refused with a clean error
    (the metadata reader may refuse control characters); never raw."""
    labels = [f"\x1b[2J\x1b[31mevil{d}\x07" for d in range(10)]
    crafted = with_metadata(lenet, tmp_path / "labels.onnx", labels=labels)
    result = invoke("run", crafted, digit(tmp_path), "--top", "10")
    assert "\x1b" not in result.output and "\x07" not in result.output
    if result.exit_code == 0:
        assert "\\x1b[2J\\x1b[31mevil0\\x07" in result.stdout
    else:
        assert result.exit_code == 1 and "labels" in result.stderr


def test_run_imports_no_torch_and_reports_an_unprintable_name(lenet: Path, tmp_path: Path) -> None:
    """The deployment side in a fresh process: `run` never imports torch; and a file name
    stdout's encoding cannot print is a clear error, exit 1, no traceback."""
    image = digit(tmp_path).rename(tmp_path / "chiffre-été.png")
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['netspec', 'run', {str(lenet)!r}, {str(image)!r}]\n"
        "try:\n"
        "    runpy.run_module('netspec', run_name='__main__')\n"
        "finally:\n"
        "    assert 'torch' not in sys.modules, 'run imported torch'\n"
    )
    plain = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith(f"{image}: ")
    ascii_only = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert ascii_only.returncode == 1, ascii_only.stderr
    assert "cannot print" in ascii_only.stderr and "encoding is ascii" in ascii_only.stderr
    assert "Traceback" not in ascii_only.stderr
