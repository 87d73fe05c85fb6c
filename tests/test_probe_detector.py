"""The probe on a detector's ONNX file: the file's output is what the graph's decoding makes
of the head (boxes in input pixels, or the boxes an SSD head keeps), not a layer, so the
probe reads every layer's own tensor, the head's from before its decoding, and checks the
shapes of layers only. `netspec show` and `netspec serve` then take `RUN/model.onnx` as they
take its run: the same layers, the same pictures, the same boxes.

The untrained files are the quick SSD and single-shot specs of tests/test_ssd.py and
tests/test_yolo_train.py, exported with the probe's seeded weights; the trained runs are
tests/test_serve_detector.py's (its `trained` fixture, about 20 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from netspec.artifact import from_props
from netspec.errors import ModelError
from netspec.export.onnx_export import ExportOptions, export_compiled
from netspec.probe import open_probe
from netspec.probe.torch_side import TorchLayers, build_network
from netspec.train.opening import open_run
from tests.test_probe import rename_tensors
from tests.test_serve import Server, serving
from tests.test_serve_detector import Trained, _image, _invoke, _pixels, _same_boxes, trained
from tests.test_ssd import QUICK as SSD_QUICK
from tests.test_yolo_train import QUICK as YOLO_QUICK

__all__ = ["trained"]  # the module fixture of tests/test_serve_detector.py

pytestmark = pytest.mark.usefixtures("one_thread")
SPECS = {"ssd": SSD_QUICK, "yolo": YOLO_QUICK.replace("EPOCHS", "1")}
HEADS = {"ssd": ("ssd1", (360, 15)), "yolo": ("boxes.1", (15, 6, 6))}  # layer, its shape
LAST_MAPS = {"ssd": "b", "yolo": "boxes.1"}  # the last layer of maps (SSD's head has rows)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each quick spec and its file, exported with the probe's seeded weights."""
    tmp = tmp_path_factory.mktemp("detector-files")
    files = {}
    for name, text in SPECS.items():
        spec = tmp / f"{name}.net"
        spec.write_text(text)
        compiled = open_probe(spec).compiled
        path = tmp / f"{name}.onnx"
        network = build_network(compiled, None)
        export_compiled(compiled, path, ExportOptions(verify=False), weights=network, log=_quiet)
        files[name] = (spec, path)
    return files


def _quiet(line: str) -> None:
    """Export's progress, not shown."""


def _picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


@pytest.mark.parametrize("name", ["ssd", "yolo"])
def test_a_detectors_file_shows_its_layers_not_its_decoded_output(
    exported: dict[str, tuple[Path, Path]], name: str
) -> None:
    import onnx

    spec, path = exported[name]
    model = onnx.load(str(path))
    info = from_props({p.key: p.value for p in model.metadata_props}, str(path))
    head, shape = HEADS[name]
    assert info.decoding is not None and info.outputs[0].shape != shape  # decoded in the graph
    from_file, from_spec = open_probe(path), open_probe(spec)
    assert (from_file.backend, from_spec.backend) == ("onnxruntime", "torch")
    assert [v.name for v in from_file.layers] == [v.name for v in from_spec.layers]
    assert from_file.output_layer == head and from_file.layer(head).shape == shape
    x = from_file.prepare(_picture(0))
    got, want = from_file.run(x), from_spec.run(x)
    assert list(got) == list(want)
    for layer, value in want.items():
        assert got[layer].shape == value.shape, layer
        assert np.allclose(got[layer], value, atol=1e-4), layer
    assert got[head].shape == (1, *shape)  # the head's raw output, before its decoding


def test_a_decoded_head_without_its_own_tensor_is_refused(
    exported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """An SSD file whose head's raw tensor lost its name: the decoded output under the
    head's name is not read in its place."""
    path = tmp_path / "renamed.onnx"
    rename_tensors(exported["ssd"][1], path, {"ssd1.raw": "/network/ssd1/Concat_output_0"})
    with pytest.raises(ModelError, match=r"no tensor named after layer 'ssd1'"):
        open_probe(path)


@pytest.mark.parametrize("name", ["ssd", "yolo"])
def test_show_draws_a_detectors_file_as_its_spec(
    exported: dict[str, tuple[Path, Path]], name: str, tmp_path: Path
) -> None:
    spec, path = exported[name]
    image = tmp_path / "scene.png"
    Image.fromarray(_picture(1)).save(image)
    drawn = {}
    for target in (spec, path):
        out = tmp_path / f"show-{target.suffix[1:]}"
        _invoke("show", target, "--input", image, "-o", out)
        drawn[target.suffix] = sorted(p.name for p in out.iterdir())
    assert drawn[".onnx"] == drawn[".net"]
    assert f"maps-{LAST_MAPS[name]}.png" in drawn[".onnx"] and "graph.svg" in drawn[".onnx"]


# ---- trained runs: their model.onnx served and shown as the run ----------------------------


def _same_model(got: dict[str, Any], want: dict[str, Any]) -> None:
    """/api/model of the file and of its run: equal but for the title (the target's name)
    and the file each layer's spec line is read from (the ONNX file, the run's spec)."""
    assert got["title"] == "model.onnx"
    for answer in (got, want):
        answer.pop("title")
        for layer in answer["layers"]:
            if layer["spec"] is not None:
                layer["spec"].pop("file")
    assert got == want


def _same_found(got: dict[str, Any], want: dict[str, Any]) -> None:
    """/api/detect of the file and of its run: the same input, boxes and head's scores."""
    assert got["input"] == want["input"]
    _same_boxes(got["boxes"], want["boxes"])
    for key, part in (("cells", "scores"), ("anchors", "scores")):
        if key in want:
            assert np.allclose(got[key][part], want[key][part], atol=2e-3)
    if "anchors" in want:
        assert [a["index"] for a in got["anchors"]["best"][:3]] == [
            a["index"] for a in want["anchors"]["best"][:3]
        ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssd", "yolo"])
def test_serving_a_runs_model_onnx_answers_as_serving_the_run(
    trained: Trained, name: str, tmp_path: Path
) -> None:
    run = trained.runs / name
    compiled, weights = open_run(run)
    probe = open_probe(run / "model.onnx")
    x = probe.prepare(_picture(2))
    layers = TorchLayers(compiled, weights, 1)(x)
    got = probe.run(x)
    assert probe.backend == "onnxruntime" and list(got) == list(layers)
    assert all(np.allclose(got[k], v, atol=1e-3) for k, v in layers.items())
    with (
        serving(run / "model.onnx", "--data", trained.mnist) as file,
        serving(run, "--data", trained.mnist) as whole,
    ):
        servers: tuple[Server, Server] = (file, whole)
        models = [s.get("/api/model") for s in servers]
        assert [status for status, _ in models] == [200, 200]
        _same_model(models[0][1], models[1][1])
        detectors = [s.get("/api/detector") for s in servers]
        assert detectors[0] == detectors[1] and detectors[0][0] == 200
        floor = detectors[0][1]["floor"]
        found = 0
        for seed in range(3):
            scenes = [s.get(f"/api/scene?seed={seed}") for s in servers]
            assert scenes[0] == scenes[1] and scenes[0][0] == 200
            body = {**_image(_pixels(scenes[0][1])), "threshold": floor}
            answers = [s.post("/api/detect", body) for s in servers]
            assert [status for status, _ in answers] == [200, 200]
            _same_found(answers[0][1], answers[1][1])
            found += len(answers[1][1]["boxes"])
            runs = [s.post("/api/run", _image(_pixels(scenes[0][1]))) for s in servers]
            _same_boxes(runs[0][1]["detection"]["boxes"], runs[1][1]["detection"]["boxes"])
        assert found > 0
    image = tmp_path / "scene.png"
    Image.fromarray(_pixels(scenes[0][1])).save(image)
    _invoke("show", run / "model.onnx", "--input", image, "-o", tmp_path / "shown")
    assert f"maps-{LAST_MAPS[name]}.png" in {p.name for p in (tmp_path / "shown").iterdir()}
