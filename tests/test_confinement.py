"""A run, an ONNX file and a scenes directory keep to themselves (issue 20, section 4): a link
out of a run is refused before anything is read through it, `show` checks a run as `eval`
does, an ONNX file's spec reads its `use`s from the file and its external data from its own
folder, two `netspec scenes` never mix their files, damaged files are clear errors, 16-bit
PNGs are scaled wherever an image is read, a BOM is skipped and invisible characters are
printed as escapes.

Real runs (the one-epoch run of tests/test_run_trust.py, with a library in spec/lib/), real
links, real ONNX files, the real commands.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from netspec.artifact import from_props
from netspec.cli import main
from netspec.data.folders import load_image_folder
from netspec.data.scenefiles import read_scenes, write_scenes
from netspec.data.scenes import Scene, make_scenes
from netspec.errors import MetadataError, NetspecError, OutputError, RunError
from netspec.probe import open_probe
from netspec.serve.images import uploaded
from netspec.serve.server import open_served
from netspec.show import pictures
from tests.conftest import ROOT, write_mnist_subset
from tests.test_run_trust import LIB, MAIN
from tests.test_scenes import SMALL, TRAIN

pytestmark = pytest.mark.usefixtures("one_thread")
SECRET = "root:"  # what /etc/passwd starts with: never printed


def invoke(*args: str | Path) -> Result:
    """The real command line, in process; a traceback fails the test."""
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 training and 100 test digits, as tests/test_run_trust.py trains on."""
    return write_mnist_subset(tmp_path_factory.mktemp("data"), 200, 100)


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/test_run_trust.py's one-epoch run of a spec that uses spec/lib/blocks.net."""
    root = tmp_path_factory.mktemp("spec")
    (root / "lib").mkdir()
    (root / "lib" / "blocks.net").write_text(LIB)
    (root / "tiny.net").write_text(MAIN)
    result = invoke("train", root / "tiny.net", "--data", data, "--out", root / "runs")
    assert result.exit_code == 0, result.output
    return root / "runs" / "tiny"


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _settings(run: Path, **fields: object) -> None:
    settings = json.loads((run / "settings.json").read_text())
    (run / "settings.json").write_text(json.dumps({**settings, **fields}))


@pytest.fixture
def digit(tmp_path: Path) -> Path:
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    Image.fromarray(image).save(tmp_path / "digit.png")
    return tmp_path / "digit.png"


# ---- a link out of a run -----------------------------------------------------------------


def _spec_is_etc(run: Path, match: bool) -> str:
    """spec/ -> /etc, its settings naming /etc/passwd as the main file: with its real
    digest (`match`: it would compile, and print its first line) or another one (it would
    print 12 hex digits of the real one). Returns the real digest."""
    digest = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    recorded = digest if match else "0" * 64
    shutil.rmtree(run / "spec")
    (run / "spec").symlink_to("/etc")
    _settings(run, main="passwd", sources={"passwd": recorded}, spec_sha256=recorded)
    return digest


@pytest.mark.parametrize("match", [True, False], ids=["digest-matches", "digest-differs"])
def test_a_spec_folder_linked_to_etc_is_refused_naming_the_link(
    run: Path, data: Path, digit: Path, tmp_path: Path, match: bool
) -> None:
    digest = _spec_is_etc(run, match)
    commands = [
        ("eval", run, "--data", data),
        ("train", "--resume", run, "--data", data),
        ("export", run, "-o", tmp_path / "m.onnx"),
        ("show", run, "--input", digit, "-o", tmp_path / "pictures"),
    ]
    for args in commands:
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert f"{run / 'spec'}: not a regular file inside the run" in result.output
        assert "leads out of the run directory" in result.output
        assert SECRET not in result.output and digest[:12] not in result.output, result.output
    with pytest.raises(RunError, match="leads out of the run directory") as refused:
        open_served(run, None, lambda _: None)
    assert SECRET not in str(refused.value) and digest[:12] not in str(refused.value)


@pytest.mark.parametrize(
    "link",
    ["spec/lib", "spec/lib/blocks.net", "settings.json", "weights", "samples", "model.onnx"],
)
def test_every_path_a_run_reads_is_refused_when_it_links_out(
    run: Path, tmp_path: Path, link: str
) -> None:
    """The link leads to a true copy of what was there, outside the run: refused all the
    same (a run is read only from inside itself), naming the link."""
    path = run / link
    outside = tmp_path / "outside" / path.name
    outside.parent.mkdir()
    shutil.move(path, outside)
    path.symlink_to(outside)
    for opener in (lambda: open_probe(run), lambda: open_served(run, None, lambda _: None)):
        with pytest.raises(RunError, match="leads out of the run directory") as refused:
            opener()
        assert str(refused.value).startswith(f"{path}: ")
    result = invoke("eval", run)
    assert result.exit_code == 1 and f"{path}: not a regular file inside" in result.output


def test_a_link_that_stays_inside_the_run_is_followed(run: Path, data: Path) -> None:
    (run / "weights").rename(run / "kept-weights")
    (run / "weights").symlink_to("kept-weights")
    result = invoke("eval", run, "--data", data)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output


# ---- one check of a run's spec files for every command -------------------------------------


def test_show_and_serve_refuse_an_edited_library_as_eval_does(
    run: Path, data: Path, digit: Path, tmp_path: Path
) -> None:
    lib = run / "spec" / "lib" / "blocks.net"
    lib.write_text(lib.read_text().replace("relu", "tanh"))
    said = "blocks.net: changed since the run was made"
    for args in (("eval", run, "--data", data), ("show", run, "--input", digit, "-o", tmp_path)):
        result = invoke(*args)
        assert result.exit_code == 1 and said in result.output, result.output
    with pytest.raises(RunError, match=said):
        open_served(run, None, lambda _: None)


# ---- an ONNX file's own spec and data ------------------------------------------------------


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _with_props(source: Path, out: Path, **props: str) -> Path:
    """A copy of ``source`` with these metadata entries replaced."""
    model = onnx.load(str(source))
    for entry in model.metadata_props:
        if entry.key in props:
            entry.value = props[entry.key]
    onnx.save(model, str(out))
    return out


def test_an_onnx_file_reads_its_uses_from_what_it_embeds(trained: Path, tmp_path: Path) -> None:
    """Beside the copy lies another lib/blocks.net (3x3 kernels, and a secret in a
    comment): `show` compiles the library the file embeds, and never reads the other."""
    model = shutil.copy(trained / "model.onnx", tmp_path / "model.onnx")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.net").write_text("# SECRET\nblock stage(c) { conv c 3x3 }\n")
    assert json.loads(_props(onnx.load(model))["sources"]) == {
        "lib/blocks.net": (trained / "spec" / "lib" / "blocks.net").read_text()
    }
    probe = open_probe(model)
    assert probe.layer("stage1.conv1").rf_size == (5, 5)  # the embedded library's kernel
    bare = _with_props(Path(model), tmp_path / "bare.onnx", sources="{}")
    result = invoke("show", bare, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "not among the spec files bare.onnx holds" in result.output
    assert "SECRET" not in result.output


def _with_external_data(source: Path, folder: Path, location: str) -> Path:
    """``source`` saved into ``folder`` with every initializer in the file ``location``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(source))
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return folder / "model.onnx"


def test_external_data_is_read_from_the_models_folder(
    trained: Path, tmp_path: Path, digit: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _with_external_data(trained / "model.onnx", tmp_path / "model", "weights.bin")
    decoy = tmp_path / "elsewhere"
    decoy.mkdir()
    (decoy / "weights.bin").write_bytes(bytes((model.parent / "weights.bin").stat().st_size))
    monkeypatch.chdir(decoy)  # a reader that resolves against the current directory reads zeros
    x = np.random.default_rng(0).random((2, 1, 28, 28), np.float32)
    want, got = open_probe(trained / "model.onnx").run(x), open_probe(model).run(x)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    served = open_served(model, None, lambda _: None)
    np.testing.assert_allclose(served.probe.run(x)["dense1"], want["dense1"], rtol=1e-5)


def test_external_data_outside_the_models_folder_is_refused(trained: Path, tmp_path: Path) -> None:
    model = _with_external_data(trained / "model.onnx", tmp_path / "m", "w.bin")
    shutil.move(tmp_path / "m" / "w.bin", tmp_path / "secret.bin")
    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    onnx.save(proto, str(model))
    result = invoke("show", model, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "keeps its data in '../secret.bin', outside the model's folder" in result.output
    _with_external_data(trained / "model.onnx", tmp_path / "m2", "w.bin")  # a link out
    (tmp_path / "m2" / "w.bin").unlink()
    (tmp_path / "m2" / "w.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(NetspecError, match="outside the model's folder"):
        open_probe(tmp_path / "m2" / "model.onnx")


# ---- two writers of one scenes directory ---------------------------------------------------


def test_two_scene_writers_of_one_directory_never_mix(tmp_path: Path) -> None:
    """The second writer finishes while the first is still drawing: the first fails, and
    the directory holds the second's scenes alone."""
    target = tmp_path / "scenes"

    def first() -> Iterator[Scene]:
        yield from make_scenes(SMALL, TRAIN, 2)
        assert write_scenes(target, make_scenes(SMALL, TRAIN, 3), SMALL) == 3
        yield from make_scenes(SMALL, TRAIN, 2)

    with pytest.raises(OutputError, match="another writer filled it meanwhile"):
        write_scenes(target, first(), SMALL)
    assert len(read_scenes(target).scenes) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes"]  # no temp folder left


def test_two_scenes_commands_into_one_new_directory(tmp_path: Path) -> None:
    mnist = write_mnist_subset(tmp_path / "mnist", 100, 100)
    out = tmp_path / "scenes"
    args = ["scenes", "-o", str(out), "--count", "60", "--size", "64", "--mnist", str(mnist)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "netspec", *args, "--seed", str(seed)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    done = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    # the second is refused: by -o's check before it starts (a usage error, exit 2) when the
    # first has finished by then, else when it comes to claim the directory (exit 1)
    codes = sorted(code for code, _ in done)
    assert codes in ([0, 1], [0, 2]), done
    refused = next(err for code, err in done if code != 0)
    assert "Traceback" not in refused and f"{out}" in refused, refused
    assert "not an empty directory" in refused or "filled it meanwhile" in refused, refused
    assert len(list((out / "images").iterdir())) == 60


# ---- damaged runs and files: clear errors, never a traceback --------------------------------


def test_a_huge_seed_in_settings_is_named(run: Path, data: Path) -> None:
    train = json.loads((run / "settings.json").read_text())["train"]
    _settings(run, train={**train, "seed": 10**30})
    result = invoke("eval", run, "--data", data)
    assert result.exit_code == 1, result.output
    assert "settings.json: bad 'train' settings: seed" in result.output


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda r: (r / "settings.json").write_text("[" * 5000 + "]" * 5000), "settings.json"),
        (lambda r: _settings(r, network=json.loads("[" * 500 + "]" * 500)), "'network'"),
        (lambda r: (r / "spec" / "tiny.net").write_bytes(b"\xff\xfe\0binary"), "not UTF-8"),
    ],
    ids=["deep-json", "deep-field", "binary-spec"],
)
def test_damaged_runs_are_clear_errors_for_show_and_serve(
    run: Path, digit: Path, tmp_path: Path, damage: object, said: str
) -> None:
    damage(run)  # type: ignore[operator]
    result = invoke("show", run, "--input", digit, "-o", tmp_path / "out")
    assert result.exit_code == 1 and said in result.output, result.output
    with pytest.raises(RunError, match=said):
        open_served(run, None, lambda _: None)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"labels": json.dumps(["zero"])}, "labels: 1 of them for the 10 classes"),
        ({"outputs": json.dumps([{"name": "nope", "kind": "logits"}])}, "outputs[0].name"),
        (
            {"inputs": json.dumps([{"name": "image", "shape": [1, 28, 28], "std": 1e-320}])},
            "inputs[0].std: std must be a normal positive float",
        ),
    ],
    ids=["one-label", "output-name", "subnormal-std"],
)
def test_bad_metadata_is_named_by_show_and_serve(
    trained: Path, digit: Path, tmp_path: Path, props: dict[str, str], field: str
) -> None:
    model = _with_props(trained / "model.onnx", tmp_path / "model.onnx", **props)
    result = invoke("show", model, "--input", digit, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert f"{model}: bad netspec metadata: {field}" in result.output
    with pytest.raises(NetspecError, match="bad netspec metadata"):
        open_served(model, None, lambda _: None)


def test_a_subnormal_std_is_refused_where_metadata_is_read(trained: Path, digit: Path) -> None:
    props = _props(onnx.load(str(trained / "model.onnx")))
    for std in (1e-320, 1e-39, 1e39):
        inputs = json.dumps([{"name": "image", "shape": [1, 28, 28], "std": std}])
        with pytest.raises(MetadataError, match=r"inputs\[0\]\.std: std must be a normal"):
            from_props({**props, "inputs": inputs}, "m.onnx")
    inputs = json.dumps([{"name": "image", "shape": [1, 28, 28], "std": 1.2e-38}])
    assert from_props({**props, "inputs": inputs}, "m.onnx").inputs[0].std == 1.2e-38


def test_show_draws_a_dense_layer_as_bars(trained: Path, digit: Path, tmp_path: Path) -> None:
    result = invoke("show", trained, "--input", digit, "--layer", "dense1", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "layer 'dense1' has units, not feature maps" in result.output
    assert (tmp_path / "maps-dense1.png").is_file()
    probe = open_probe(trained)
    x = probe.prepare(np.asarray(Image.open(digit)))
    outputs = probe.run(x)
    drawn = pictures.draw_maps(probe, outputs, probe.layer("dense1"), tmp_path)
    np.testing.assert_array_equal(drawn.data["dense1"], outputs["dense1"][0])


# ---- 16-bit PNGs, a BOM, invisible characters ---------------------------------------------


def _deep_png(path: Path) -> Path:
    """A 16-bit grey PNG: 0, a quarter, a half and all of 65535 (Pillow's `I;16`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.array([[0, 16384, 32768, 65535]] * 4, np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    return path


def test_sixteen_bit_pngs_are_scaled_wherever_images_are_read(tmp_path: Path) -> None:
    """Converting `I;16` to 8 bits clips (every value above 255 white); each reader scales."""
    want = [0, 64, 128, 255]
    png = _deep_png(tmp_path / "folders" / "a" / "x.png")
    assert load_image_folder(tmp_path / "folders").x[0, 0].tolist() == want
    _deep_png(tmp_path / "scenes" / "images" / "000000.png")
    assert read_scenes(tmp_path / "scenes").scenes[0].image[0].tolist() == want
    image, inverted = uploaded(png.read_bytes(), (4, 4, 1))
    assert not inverted and image[0, :, 0].tolist() == want
    buffer = io.BytesIO()
    Image.open(png).save(buffer, format="PNG")
    assert uploaded(buffer.getvalue(), (4, 4, 3))[0][0, :, 2].tolist() == want


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    lib = tmp_path / "lib.net"
    lib.write_bytes(b"\xef\xbb\xbfblock b() { relu }\n")
    spec = tmp_path / "bom.net"
    spec.write_bytes(b'\xef\xbb\xbfuse "lib.net"\nnetwork n(x: 1x8x8) { conv 2 3x3 | b() }\n')
    assert invoke("compile", spec).exit_code == 0
    spec.write_bytes(b"\xef\xbb\xbfnetwork n(x: 1x8x8) { dense k }\n")
    result = invoke("compile", spec)
    assert result.exit_code == 1 and f"{spec}:1:29: error[E201]" in result.output, result.output


def test_bidi_and_zero_width_characters_are_printed_as_escapes(
    trained: Path, digit: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "bidi.net"
    spec.write_text('network n(x: 1x8x8) { dense k }  # "\u202eevil\u2066\u200b"\n')
    result = invoke("compile", spec)
    assert result.exit_code == 1
    assert "\\u202eevil\\u2066\\u200b" in result.output, result.output
    assert not {"\u202e", "\u2066", "\u200b"} & set(result.output)
    image = digit.rename(tmp_path / "a\u202egnp.png")
    result = invoke("run", trained / "model.onnx", image)
    assert result.exit_code == 0, result.output
    assert "a\\u202egnp.png: " in result.output and "\u202e" not in result.output
