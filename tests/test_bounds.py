"""Every input has a bound (docs/limits.md): a file over it is refused with a message and
no traceback, what is under it is read in memory close to what it holds. Real files are
crafted in temp folders (a gzip IDX whose header declares more than it has, a 1 MiB spec,
a sparse file, PNG headers declaring huge images, nested or corrupt JSON, ONNX metadata)
and run through the command line in a fresh process, whose peak memory is measured: each
bound asserted is far from what the code needs, and far below what it took before."""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from netspec.artifact import InputInfo, ModelInfo, OutputInfo
from netspec.data import DataError, read_idx, write_idx
from netspec.data.folders import MAX_PIXELS, ImageFiles, load_image_folder
from netspec.data.scenefiles import read_scenes
from netspec.diagnostics import (
    MESSAGE_CHARS,
    QUOTE_CHARS,
    Diagnostic,
    Sources,
    Span,
    close_matches,
    nearest,
    render,
)
from netspec.serve.digits import read_digits
from netspec.serve.images import BadRequest

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
MEASURE = (
    "import json, resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[2:], capture_output=True, text=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "json.dump({'code': done.returncode, 'out': done.stdout, 'err': done.stderr, "
    "'peak': peak}, open(sys.argv[1], 'w'))\n"
)


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    peak: int  # bytes: the largest resident set the command reached


def measured(tmp_path: Path, *argv: str | Path, timeout: float = 600) -> Ran:
    """Run ``argv`` in a fresh process (through a fresh parent, so that its peak memory is
    its own), from the checkout's root."""
    report = tmp_path / "measured.json"
    command = [sys.executable, "-c", MEASURE, str(report), *map(str, argv)]
    subprocess.run(command, cwd=ROOT, timeout=timeout, check=True)
    ran = Ran(**json.loads(report.read_text()))
    assert "Traceback" not in ran.err + ran.out, ran.err[-3000:]
    return ran


def netspec(tmp_path: Path, *args: str | Path) -> Ran:
    return measured(tmp_path, sys.executable, "-m", "netspec", *args)


def python(tmp_path: Path, code: str) -> Ran:
    return measured(tmp_path, sys.executable, "-c", code)


# ---- IDX: the header is checked, then the payload streams into one array ---------------------


def _gzip_idx(path: Path, dims: tuple[int, ...], payload: int) -> None:
    """A gzipped uint8 IDX file whose header declares ``dims``, then ``payload`` zero bytes
    (written a chunk at a time: the file is small, what it inflates to is not)."""
    with gzip.open(path, "wb", compresslevel=9) as gz:
        gz.write(bytes([0, 0, 8, len(dims)]) + np.asarray(dims, ">u4").tobytes())
        chunk = bytes(MiB)
        for start in range(0, payload, MiB):
            gz.write(chunk[: min(MiB, payload - start)])


def test_an_idx_file_streams_into_an_array_of_its_declared_size(tmp_path: Path) -> None:
    """256 MiB inflated from 256 kB: read at about the array's own size (the old reader
    held it three times: the chunks, their bytes, the native-endian copy)."""
    path = tmp_path / "zeros-images-idx3-ubyte.gz"
    _gzip_idx(path, (256, 1024, 1024), 256 * MiB)
    assert path.stat().st_size < MiB
    ran = python(
        tmp_path,
        "from netspec.data import read_idx\n"
        f"a = read_idx({str(path)!r})\n"
        "print(a.shape, a.dtype, int(a.max()))",
    )
    assert ran.code == 0 and ran.out.strip() == "(256, 1024, 1024) uint8 0"
    assert ran.peak < 256 * MiB + 200 * MiB


def test_an_idx_header_declaring_more_than_the_cap_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _gzip_idx(data / "train-images-idx3-ubyte.gz", (2**20, 1024, 1024), MiB)
    write_idx(data / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    write_idx(data / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    write_idx(data / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    ran = netspec(tmp_path, "train", "specs/lenet.net", "--data", data, "--out", tmp_path / "r")
    assert ran.code == 1
    assert "1048576x1024x1024 uint8 = 1,099,511,627,776 bytes; netspec reads at most" in ran.err
    assert ran.peak < 1024 * MiB  # torch's import, and no payload


def test_a_truncated_idx_payload_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "short-images-idx3-ubyte.gz"
    _gzip_idx(path, (4, 1024, 1024), 3 * MiB)
    with pytest.raises(DataError, match=r"truncated: header says 4x1024x1024 = 4194304 bytes"):
        read_idx(path)


def test_too_many_labels_for_int64_are_refused(tmp_path: Path) -> None:
    from netspec.data.idx import MAX_LABELS, check_pair

    images = np.zeros((MAX_LABELS + 1, 1, 1), np.uint8)
    with pytest.raises(DataError, match=r"labels; netspec reads at most 134,217,728"):
        check_pair(images, np.zeros(MAX_LABELS + 1, np.uint8), "i", "l")


# ---- specs: did-you-mean and the renderer are bounded ----------------------------------------


def test_a_one_mib_identifier_is_a_short_clean_error(tmp_path: Path) -> None:
    spec = tmp_path / "ident.net"
    spec.write_text("a" * (MiB - 1))
    ran = netspec(tmp_path, "compile", spec)
    assert ran.code == 1 and "error[E002]: unexpected 'aaaa" in ran.err
    assert len(ran.err) < 4 * (MESSAGE_CHARS + QUOTE_CHARS)  # not the megabyte, twice
    assert ran.peak < 400 * MiB


def test_a_long_misspelled_operation_gets_no_suggestion(tmp_path: Path) -> None:
    spec = tmp_path / "op.net"
    name = "maxpol" * ((MiB - 200) // 6)
    spec.write_text(f"network n(image: 1x28x28) {{\n    {name} 2x2\n}}\n")
    ran = netspec(tmp_path, "compile", spec)
    assert ran.code == 1 and "error[E202]: unknown operation 'maxpolmaxpol" in ran.err
    assert "did you mean" not in ran.err
    assert max(len(line) for line in ran.err.splitlines()) <= MESSAGE_CHARS + 100
    assert ran.peak < 400 * MiB


def test_the_suggestion_bounds_keep_the_answers() -> None:
    assert nearest("maxpol", ["maxpool", "avgpool", "conv"]) == "maxpool"
    assert nearest("m" + "a" * 100, ["maxpool"]) is None
    many = [f"layer{i}" for i in range(100_000)]
    assert nearest("layr7", [*many[:10], "layer7"]) == "layer7"
    assert nearest("x" * 10, many) is None  # within the budget: no answer, and no minutes
    assert set(close_matches("conv9", ["conv1", "conv2", "dense1"], 3)) == {"conv1", "conv2"}
    assert close_matches("c" * 65, ["c" * 65 + "x"], 3) == []


@pytest.mark.parametrize("size", ["32M", "2G"])
def test_a_sparse_spec_over_the_limit_is_refused_from_its_size(tmp_path: Path, size: str) -> None:
    spec = tmp_path / "sparse.net"
    subprocess.run(["truncate", "-s", size, str(spec)], check=True)
    ran = netspec(tmp_path, "compile", spec)
    assert ran.code == 1 and "error[E102]" in ran.err and "the limit is 1,048,576" in ran.err
    assert len(ran.err) < 4 * (MESSAGE_CHARS + QUOTE_CHARS)
    assert ran.peak < 400 * MiB


def test_the_renderer_quotes_one_line_from_disk_cut_around_its_caret(tmp_path: Path) -> None:
    spec = tmp_path / "long.net"
    spec.write_text("first line\n" + "x" * 5000 + "needle" + "y" * 5000 + "\nlast\n")
    span = Span(str(spec), 2, 5001, 2, 5007)
    text = render(Diagnostic("E999", "z" * 5000, span), Sources(disk={str(spec)}))
    head, quoted, caret = text.splitlines()
    assert len(head) < MESSAGE_CHARS + 100 and head.endswith("z" * 200)
    assert len(quoted) <= 4 + QUOTE_CHARS + 2 and "needle" in quoted
    assert quoted.index("needle") == caret.index("^") and caret.endswith("^~~~~~")
    assert Sources(disk={str(spec)}).line(str(spec), 3) == "last"
    assert Sources(disk={str(spec)}).line(str(spec), 9) == ""
    assert Sources().line(str(spec), 1) is None  # quoted from disk only where asked


# ---- show: the same limits as compile, a memory estimate, a layer cap and progress ----------


def _tiny_model(path: Path, spec: str, kind: str = "logits", **extra: str) -> None:
    """`y = flatten(image)`: (N, 1, 2, 2) to (N, 4), with netspec metadata saying ``spec``
    and the output's ``kind`` (and ``extra`` props, crafted)."""
    props = ModelInfo(
        network="tiny",
        spec=spec,
        version="0.1",
        inputs=(InputInfo("image", (1, 2, 2)),),
        outputs=(OutputInfo("y", kind),),  # type: ignore[arg-type]
        labels=("a", "b", "c", "d"),
    ).to_props()
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["y"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {**props, **extra})
    onnx.save(model, str(path))


TINY = "network tiny(image: 1x2x2) {\n    flatten\n}\n"


def test_show_refuses_an_embedded_spec_over_the_compile_limit(tmp_path: Path) -> None:
    model = tmp_path / "big.onnx"
    _tiny_model(model, TINY + "# " + "x" * MiB + "\n")
    ran = netspec(tmp_path, "show", model, "-o", tmp_path / "out")
    assert ran.code == 1
    assert "its metadata's spec is 1,048,622 bytes; the limit is 1,048,576" in ran.err


def test_show_refuses_a_network_too_large_to_show_before_allocating(tmp_path: Path) -> None:
    spec = tmp_path / "huge.net"
    spec.write_text(
        "network huge(image: 3x8192x8192) {\n"
        "    conv 2 3x3 stride=2 | relu\n"
        "    avgpool global | dense 10\n"
        "}\n"
    )
    ran = netspec(tmp_path, "show", spec, "-o", tmp_path / "out")
    assert ran.code == 2
    assert "would need about 10,239 MiB to show" in ran.err and "at most 4,096 MiB" in ran.err
    assert ran.peak < 600 * MiB  # refused from the compiler's counts: nothing allocated
    assert not (tmp_path / "out").exists()


def test_show_draws_the_first_layers_and_says_so_as_it_goes(tmp_path: Path) -> None:
    spec = tmp_path / "deep.net"
    stages = "\n".join(["    conv 2 3x3 pad=same | relu"] * 40)
    spec.write_text(f"network deep(image: 1x8x8) {{\n{stages}\n    dense 2\n}}\n")
    out = tmp_path / "out"
    ran = netspec(tmp_path, "show", spec, "-o", out)
    assert ran.code == 0, ran.err
    assert "drawing the maps of the first 16 of 40 layers; --layer NAME draws any" in ran.err
    maps = sorted(p.name for p in out.glob("maps-*.png"))
    assert len(maps) == 16 and "maps-conv16.png" in maps and "maps-conv17.png" not in maps
    wrote = [line for line in ran.out.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 16 + 4 and wrote[0].endswith("maps-conv1.png")
    named = netspec(tmp_path, "show", spec, "--layer", "conv40", "-o", tmp_path / "named")
    assert named.code == 0 and (tmp_path / "named" / "maps-conv40.png").is_file()
    assert "drawing the maps" not in named.err


# ---- images: headers first, one array, one image decoded at a time -----------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` grey pixels and holds almost none."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def _folders(root: Path, images: list[bytes]) -> Path:
    """train/ and test/ folders of one class ``a``; the test images are ``images``."""
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        Image.new("L", (28, 28)).save(root / split / "a" / "0.png")
    for k, data in enumerate(images):
        (root / "test" / "a" / f"{k + 1:03d}.png").write_bytes(data)
    return root


def test_a_png_declaring_20000x20000_is_refused_from_its_header(tmp_path: Path) -> None:
    data = _folders(tmp_path / "data", [png_header(20000, 20000)])
    ran = netspec(tmp_path, "train", "specs/lenet.net", "--data", data, "--out", tmp_path / "r")
    assert ran.code == 1 and "001.png: cannot read image" in ran.err
    assert "400000000 pixels" in ran.err
    side = int(MAX_PIXELS**0.5) + 1
    (tmp_path / "data" / "test" / "a" / "001.png").write_bytes(png_header(side, side))
    with pytest.raises(DataError, match=rf"{side}x{side} pixels; netspec reads images of at most"):
        load_image_folder(tmp_path / "data" / "test", size=28)


def test_a_folder_decoding_to_more_than_the_cap_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    side = int(MAX_PIXELS**0.5)  # each image under the cap, 33 of them over a GiB
    folder = _folders(tmp_path / "data", [png_header(side, side)] * 33) / "test"
    ran = python(
        tmp_path,
        "from netspec.data import DataError\n"
        "from netspec.data.folders import load_image_folder\n"
        "try:\n"
        f"    load_image_folder({str(folder)!r}, size={side})\n"
        "except DataError as e:\n"
        "    print(e)\n",
    )
    assert ran.code == 0 and "34 images of 5792x5792 decode to 1,140,606,976 bytes" in ran.out
    assert ran.peak < 300 * MiB


def _big_pngs(folder: Path, count: int, side: int) -> None:
    folder.mkdir(parents=True)
    for k in range(count):
        Image.new("L", (side, side), k).save(folder / f"{k:06d}.png")


def test_an_image_folder_is_decoded_into_one_array(tmp_path: Path) -> None:
    """16 PNGs of 4096x4096 (a few hundred kB on disk, 256 MiB decoded): read at about
    the array's size (the old reader held every image, then their stack)."""
    _big_pngs(tmp_path / "data" / "a", 16, 4096)
    ran = python(
        tmp_path,
        "from netspec.data.folders import load_image_folder\n"
        f"f = load_image_folder({str(tmp_path / 'data')!r})\n"
        "print(f.x.shape, int(f.x[15, 0, 0]))",
    )
    assert ran.code == 0 and ran.out.strip() == "(16, 4096, 4096) 15"
    assert ran.peak < 256 * MiB + 250 * MiB


def test_serve_reads_an_image_folder_lazily(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _big_pngs(data / "train" / "a", 1, 28)
    _big_pngs(data / "test" / "a", 16, 4096)
    ran = python(
        tmp_path,
        "from pathlib import Path\n"
        "from netspec.serve.digits import read_digits\n"
        f"d = read_digits('folders', Path({str(data)!r}), 1)\n"
        "print(len(d), d.image(3, (28, 28, 1)).shape, d.label(3))",
    )
    assert ran.code == 0 and ran.out.strip() == "16 (28, 28, 1) 0"
    assert ran.peak < 250 * MiB  # one 16 MiB image decoded at a time, not 256 MiB
    files = ImageFiles(data / "test")
    assert len(files) == 16 and files.size(2) == (4096, 4096) and files.read(2)[0, 0] == 2
    (data / "test" / "a" / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    digits = read_digits("folders", data, 1)
    assert digits is not None and digits.image(2, (28, 28, 1)).shape == (28, 28, 1)
    with pytest.raises(BadRequest, match=r"000003.png: cannot read image") as refused:
        digits.image(3, (28, 28, 1))
    assert refused.value.status == 422  # the page says so; the server goes on


# ---- scenes: headers, one buffer, JSON that is nested or corrupt -------------------------------


def _scenes(directory: Path, images: list[bytes]) -> Path:
    (directory / "images").mkdir(parents=True)
    (directory / "labels").mkdir()
    for k, data in enumerate(images):
        (directory / "images" / f"{k:06d}.png").write_bytes(data)
    return directory


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_scenes_decoding_to_more_than_the_cap_are_refused_from_their_headers(
    tmp_path: Path,
) -> None:
    scenes = _scenes(tmp_path / "s", [png_header(2048, 2048)] * 257)
    with pytest.raises(DataError, match=r"257 images decode to 1,077,936,128 bytes; netspec reads"):
        read_scenes(scenes)
    _scenes(tmp_path / "t", [png_header(4096, 16)])
    with pytest.raises(DataError, match=r"000000.png: 4096x16; at most 2048 a side"):
        read_scenes(tmp_path / "t")


def test_scenes_are_decoded_into_one_buffer_and_trained_from_it(tmp_path: Path) -> None:
    """64 scenes of 2048x2048 (256 MiB decoded) read for training at about their size."""
    _big_pngs(tmp_path / "s" / "images", 64, 2048)
    ran = python(
        tmp_path,
        "from pathlib import Path\n"
        "from netspec.data.scenedata import from_directory\n"
        f"a = from_directory(Path({str(tmp_path / 's')!r}), 'scenes', 0, 1.0, print)\n"
        "print(a.train_x.shape, a.test_x.shape, int(a.test_x[-1, 0, 0]))",
    )
    assert ran.code == 0 and ran.out.splitlines()[-1] == "(54, 2048, 2048) (10, 2048, 2048) 63"
    assert ran.peak < 256 * MiB + 250 * MiB


def test_nested_scenes_json_is_a_data_error(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "s", [_png(16)])
    (scenes / "scenes.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"scenes.json: not readable JSON \(nested too deeply\)"):
        read_scenes(scenes)


@pytest.mark.parametrize(
    ("coco", "says"),
    [
        ("{'images': ", r"annotations.json: not a COCO detection JSON \(JSONDecodeError"),
        ("[" * 100_000, r"annotations.json: not a COCO detection JSON \(RecursionError"),
        ('{"images": [{"id": 1}], "annotations": []}', r"\(KeyError: 'file_name'\)"),
        (
            '{"images": [{"id": 1, "file_name": "images/000009.png"}], "annotations": []}',
            r"names the image 'images/000009.png', which is not in images/",
        ),
        (
            '{"images": [{"id": 1, "file_name": "images/000000.png"}], "annotations": []}',
            r"0 boxes for 'images/000000.png', but its labels file has 1",
        ),
    ],
)
def test_a_corrupt_or_disagreeing_annotations_json_is_a_data_error(
    tmp_path: Path, coco: str, says: str
) -> None:
    scenes = _scenes(tmp_path / "s", [_png(16)])
    (scenes / "labels" / "000000.txt").write_text("3 0.5 0.5 0.5 0.5\n")
    (scenes / "annotations.json").write_text(coco)
    with pytest.raises(DataError, match=says):
        read_scenes(scenes)


# ---- a detector's metadata and outputs ---------------------------------------------------------


def _shot(image: list[int], grid: int = 1, boxes: int = 1, classes: int = 1) -> str:
    shot = {"grid": grid, "boxes": boxes, "classes": classes, "image": image}
    return json.dumps({**shot, "score": 0.5, "iou": 0.5})


def test_a_detector_asking_for_16_pib_is_refused_from_its_metadata(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _tiny_model(model, TINY, "boxes", single_shot=_shot([2**26, 2**26]))
    Image.new("L", (1, 1)).save(tmp_path / "one.png")
    ran = netspec(tmp_path, "detect", model, tmp_path / "one.png", "-o", tmp_path / "out")
    assert ran.code == 1 and "bad netspec metadata: single_shot: image 67108864x67108864" in ran.err
    assert ran.peak < 500 * MiB


def test_an_output_relabelled_boxes_is_a_model_error_on_a_1x1_scene(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    _tiny_model(model, TINY, "boxes", single_shot=_shot([2, 2]))
    Image.new("L", (1, 1)).save(tmp_path / "one.png")
    ran = netspec(tmp_path, "detect", model, tmp_path / "one.png", "-o", tmp_path / "out")
    assert ran.code == 1
    assert "its output is 4, but its single_shot grid (1x1 cells of 1 boxes" in ran.err
    scenes = _scenes(tmp_path / "s", [_png(1)])
    ran = netspec(tmp_path, "eval", model, "--scenes", scenes)
    assert ran.code == 1 and "its output is 4" in ran.err
    _tiny_model(model, TINY, "boxes", single_shot=_shot([2, 2], grid=1024, boxes=64))
    ran = netspec(tmp_path, "detect", model, tmp_path / "one.png", "-o", tmp_path / "out")
    assert ran.code == 1
    assert "single_shot: 1024x1024 cells of 64 boxes and 1 classes are 335,544,320" in ran.err
