"""Networks whose outputs are not class scores: each output's kind (declared or inferred) in
the metadata, the spec's names in the ONNX file, and `netspec run` printing and saving every
output of a multi-output model as its kind calls for, checked against a bare ONNX Runtime
session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

import netspec
from netspec.artifact import from_props
from netspec.errors import MetadataError
from netspec.export import ExportOptions, export_compiled
from netspec.export.verify import values_agree
from netspec.kinds import output_infos
from netspec.runtime.inputs import load_inputs
from netspec.runtime.session import open_model
from tests.test_export import QUIET, invoke

HEADS = """\
network heads(image: 1x16x16) {
    trunk = conv 8 3x3 pad=same | relu
    density = trunk | conv 1 1x1 | relu
    box = trunk | conv 4 1x1
    cls = trunk | avgpool global | dense 10
    code = trunk | avgpool global | flatten
    output density, box, cls, code: embedding
}
"""


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("heads") / "heads.onnx"
    export_compiled(netspec.compile(HEADS), out, **QUIET)
    return out


def _image(tmp_path: Path) -> Path:
    pixels = np.zeros((16, 16), np.uint8)
    pixels[4:12, 6:10] = 255
    path = tmp_path / "bar.png"
    Image.fromarray(pixels).save(path)
    return path


def test_kinds_are_declared_or_inferred_from_the_shape() -> None:
    infos = output_infos(netspec.compile(HEADS))
    assert [(o.name, o.kind, o.shape) for o in infos] == [
        ("density", "map", (1, 16, 16)),
        ("box", "map", (4, 16, 16)),
        ("cls", "logits", (10,)),
        ("code", "embedding", (8,)),
    ]
    fcn = netspec.compile("network f(image: 1xHxW) {\n    conv 1 3x3 pad=same | sigmoid\n}\n")
    assert output_infos(fcn)[0].kind == "map"  # a sigmoid map is not a yes/no score
    nin = netspec.compile("network n(image: 1x8x8) {\n    conv 10 1x1 | avgpool global\n}\n")
    assert output_infos(nin)[0].kind == "logits"  # 10x1x1: NiN's class scores


def test_onnx_outputs_carry_the_spec_names_and_kinds(heads: Path) -> None:
    model = onnx.load(str(heads))
    assert [o.name for o in model.graph.output] == ["density", "box", "cls", "code"]
    info = open_model(heads, "cpu").info
    assert [(o.name, o.kind) for o in info.outputs] == [
        ("density", "map"),
        ("box", "map"),
        ("cls", "logits"),
        ("code", "embedding"),
    ]
    assert info.outputs[1].shape == (4, 16, 16)


def test_files_written_before_kinds_had_shapes_still_read() -> None:
    props = {
        "network": "n",
        "spec": "",
        "inputs": '[{"name": "x", "shape": [1, 28, 28]}]',
        "outputs": '[{"name": "dense3", "kind": "rbf_distances"}]',
        "output_kind": "rbf_distances",
    }
    info = from_props(props, "old.onnx")
    assert info.outputs[0].shape is None and info.outputs[0].scores


def test_a_kind_the_format_lacks_is_refused() -> None:
    props = {
        "network": "n",
        "spec": "",
        "inputs": '[{"name": "x", "shape": [1]}]',
        "outputs": '[{"name": "y", "kind": "heatmap"}]',
    }
    with pytest.raises(MetadataError, match=r"outputs\[0\]\.kind"):
        from_props(props, "m.onnx")


def test_run_prints_every_output_by_its_kind(heads: Path, tmp_path: Path) -> None:
    image = _image(tmp_path)
    result = invoke("run", heads, image)
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(f"{image}: ")]
    assert [ln.split()[1] for ln in lines] == ["density", "box", "cls", "code"]
    assert "(map 1x16x16): min " in lines[0] and "(map 4x16x16): min " in lines[1]
    assert lines[2].count("(0.") == 3  # the top 3 classes with their probabilities
    assert "(embedding 8): norm " in lines[3]
    assert "pass --out DIR to save them" in result.stderr
    assert not list(tmp_path.glob("*.npy"))  # nothing written beside the input


def test_run_saves_maps_that_equal_onnx_runtime(heads: Path, tmp_path: Path) -> None:
    image, out = _image(tmp_path), tmp_path / "out"
    result = invoke("run", heads, image, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert "top" not in record  # several outputs: each reports under "outputs"
    by_name = {o["name"]: o for o in record["outputs"]}
    x = load_inputs([image], open_model(heads, "cpu").info.inputs[0]).array
    want = ort.InferenceSession(str(heads), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )
    density = np.load(out / "bar.density.npy")
    np.testing.assert_array_equal(density, want[0][0])
    np.testing.assert_array_equal(np.load(out / "bar.box.npy"), want[1][0])
    assert by_name["density"]["files"] == [
        str(out / "bar.density.npy"),
        str(out / "bar.density.png"),
    ]
    assert by_name["box"]["files"] == [str(out / "bar.box.npy")]  # 4 channels: no picture
    assert by_name["density"]["max"] == pytest.approx(float(want[0].max()))
    png = np.asarray(Image.open(out / "bar.density.png"), np.float64)
    assert png.shape == (16, 16)
    stretched = (density[0] - density.min()) / (density.max() - density.min() or 1)
    np.testing.assert_allclose(
        png / 255, stretched if density.max() > 1 else density[0], atol=1 / 255
    )
    assert [c["class"] for c in by_name["cls"]["top"]] == list(np.argsort(-want[2][0])[:3])
    assert by_name["code"]["norm"] == pytest.approx(float(np.linalg.norm(want[3][0])), rel=1e-5)


def test_a_classifier_prints_as_it_always_did(tmp_path: Path) -> None:
    spec = "network c(image: 1x16x16) {\n    logits = conv 4 3x3 | dense 3\n}\n"
    model = tmp_path / "c.onnx"
    export_compiled(netspec.compile(spec), model, **QUIET)
    assert [o.name for o in onnx.load(str(model)).graph.output] == ["logits"]
    result = invoke("run", model, _image(tmp_path), "--json")
    (record,) = json.loads(result.stdout)
    assert len(record["top"]) == 3 and record["outputs"][0]["name"] == "logits"


def test_a_reduced_map_model_agrees_by_its_values(tmp_path: Path) -> None:
    """fp16 has no top-1 class to compare for a map: every value must stay near fp32's."""
    spec = "network f(image: 1x16x16) {\n    conv 4 3x3 pad=same | relu | conv 1 1x1\n}\n"
    report = export_compiled(
        netspec.compile(spec), tmp_path / "f16.onnx", ExportOptions(precision="fp16"), **QUIET
    )
    assert report.reduced is not None and report.reduced.agreement == 1.0
    assert values_agree(np.ones((2, 4)), np.zeros((2, 4))) == 0.0  # a flat map: any change


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("    a = conv 2 3x3\n    output a, a\n", ["a", "a_2"]),  # one tensor, two names
        ("    a = conv 2 3x3\n    output a, image\n", ["a", "image"]),  # the input passed out
        ("    conv 2 3x3 | relu\n", ["relu1"]),  # no name in the spec: the layer's
    ],
)
def test_output_names_are_unique_and_match_the_graph(
    body: str, names: list[str], tmp_path: Path
) -> None:
    model = tmp_path / "m.onnx"
    export_compiled(netspec.compile(f"network n(image: 1x8x8) {{\n{body}}}\n"), model, **QUIET)
    assert [o.name for o in onnx.load(str(model)).graph.output] == names
    assert [o.name for o in open_model(model, "cpu").info.outputs] == names


def test_compile_prints_each_outputs_name_and_kind(tmp_path: Path) -> None:
    spec = tmp_path / "heads.net"
    spec.write_text(HEADS)
    text = invoke("compile", spec).stdout
    assert (
        "outputs       density (density.1): map 1x16x16, box: map 4x16x16, "
        "cls (cls.1): logits 10, code (code.1): embedding 8"
    ) in text
    data = json.loads(invoke("compile", spec, "--json").stdout)
    assert [(o["name"], o["kind"]) for o in data["output_kinds"]] == [
        ("density", "map"),
        ("box", "map"),
        ("cls", "logits"),
        ("code", "embedding"),
    ]
