"""A detector file's `decoding` (netspec.artifact.Decoding) and the runtime's decoders
(netspec.runtime.decoders): the record is bounded and generic, the decoder it names checks
its own parameters, files written with the old `single_shot` / `sliding_window` entries read
as the same decoding and find the same boxes, the head operation says its file's decoding,
and a new decoder is one module that `discover` finds and `netspec detect`'s lookup runs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import netspec
import netspec.runtime.decoders as decoders
import netspec.runtime.detect as detect_module
from netspec.artifact import (
    MAX_DECODING_VALUES,
    MAX_PARAMS,
    Decoding,
    InputInfo,
    ModelInfo,
    OutputInfo,
    from_props,
)
from netspec.cli import main
from netspec.errors import MetadataError, ModelError, NetspecError
from netspec.export.detection import decoding
from netspec.export.fcn import export_fcn
from netspec.lower import to_torch
from netspec.ops import REGISTRY
from netspec.runtime.decoders.single_shot import SingleShot
from netspec.runtime.decoders.sliding_window import SlidingWindow
from netspec.runtime.detect import DetectOptions, detect, detector
from netspec.runtime.session import open_model

pytestmark = pytest.mark.usefixtures("one_thread")

SHOT: dict[str, Any] = {
    "grid": 1,
    "boxes": 1,
    "classes": 1,
    "image": [1, 5],
    "score": 0.5,
    "iou": 0.5,
}
WINDOW: dict[str, Any] = {
    "window": [8, 8],
    "size": [8.0, 8.0],
    "jump": [1.0, 1.0],
    "start": [4.0, 4.0],
    "scores": "logits",
    "background": 1,
    "boxes": [[0.5, 0.5], [1.0, 1.0]],
}


def _info(kind: str = "boxes", **fields: Any) -> ModelInfo:
    """A one-input, one-output model's facts: a row of 5 numbers in, ``kind`` out."""
    return ModelInfo(
        network="rows",
        spec="",
        version="0.1",
        inputs=(InputInfo("image", (1, 1, 5)),),
        outputs=(OutputInfo("y", kind, (1, 5)),),  # type: ignore[arg-type]
        labels=("thing", "background"),
        **fields,
    )


def _rows_model(path: Path, props: dict[str, str]) -> None:
    """`y = reshape(image, (N, 1, 5))`: the image's five numbers are one proposed box
    (x1, y1, x2, y2, then one class's confidence), with these metadata props."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 1, 5])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["image", "shape"], ["y"])],
        "rows",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 5])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    onnx.save(model, str(path))


def _legacy(info: ModelInfo) -> dict[str, str]:
    """The props an older netspec wrote for `info`: its decoding under its decoder's name."""
    assert info.decoding is not None
    props = info.to_props()
    del props["decoding"]
    props[info.decoding.decoder] = json.dumps(dict(info.decoding.params))
    return props


ROW = np.array([[[[0.0, 0.0, 1.0, 1.0, 0.9]]]], np.float32)  # one box, class 0 at 0.9


# ---- the registry ----------------------------------------------------------------------------


def test_the_decoders_are_discovered_by_name() -> None:
    assert list(decoders.DECODERS) == ["single_shot", "sliding_window", "ssd", "two_stage"]
    assert decoders.discover() == decoders.DECODERS
    assert {d.outputs for d in decoders.DECODERS.values()} == {
        ("boxes",),
        ("class_map",),
        ("detections",),
    }


EVERY_ROW = """
from netspec.detection.boxes import select
from netspec.errors import MetadataError
from netspec.runtime.decoders.base import Decoder, run_image


def read(params, info, source):
    score = params.get("least")
    if not isinstance(score, float):
        raise MetadataError(f"{source}: bad netspec metadata: every_row.least: not a float")
    return score


def decode(model, least, image, options):
    rows = run_image(model, image)[0]
    return select(rows[:, :4], rows[:, 4:], least, 0.5, options.max_detections)


RECORDS = (
    Decoder(name="every_row", outputs=("boxes",), missing="rows", read=read, decode=decode),
)
"""


def test_a_new_decoder_is_one_module_that_detect_finds_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "more"
    package.mkdir()
    (package / "every_row.py").write_text(EVERY_ROW)
    monkeypatch.setattr(decoders, "__path__", [*decoders.__path__, str(package)])
    try:
        found = decoders.discover()
    finally:
        sys.modules.pop("netspec.runtime.decoders.every_row", None)
    assert list(found) == ["every_row", "single_shot", "sliding_window", "ssd", "two_stage"]
    model = tmp_path / "rows.onnx"
    info = _info(decoding=Decoding("every_row", {"least": 0.95}))
    _rows_model(model, info.to_props())
    with pytest.raises(ModelError, match=r"decoder 'every_row', .* \(it has single_shot, "):
        detector(open_model(model).info, str(model))
    monkeypatch.setattr(detect_module, "DECODERS", found)
    opened = open_model(model)
    assert len(detect(opened, ROW, DetectOptions())) == 0  # 0.9 is under its least 0.95
    _rows_model(model, _info(decoding=Decoding("every_row", {"least": 0.5})).to_props())
    got = detect(open_model(model), ROW, DetectOptions())
    assert got.boxes.tolist() == [[0.0, 0.0, 1.0, 1.0]] and got.classes.tolist() == [0]


# ---- files written before `decoding` -----------------------------------------------------------


@pytest.mark.parametrize(("name", "params"), [("single_shot", SHOT), ("sliding_window", WINDOW)])
def test_a_legacy_entry_reads_as_the_decoding_of_its_name(
    name: str, params: dict[str, Any]
) -> None:
    kind = "boxes" if name == "single_shot" else "class_map"
    info = _info(kind, decoding=Decoding(name, {}))
    props = {**info.to_props(), name: json.dumps(params)}
    del props["decoding"]
    legacy = from_props(props, "old.onnx")
    new = from_props({**info.to_props(), "decoding": json.dumps({"decoder": name, **params})}, "n")
    assert legacy == new and legacy.decoding is not None and legacy.decoding.decoder == name
    assert "decoding" in legacy.to_props() and name not in legacy.to_props()  # written anew
    typed = detector(legacy, "old.onnx").params
    if name == "single_shot":
        assert typed == SingleShot(1, 1, 1, (1, 5), 0.5, 0.5)
    else:
        assert typed == SlidingWindow(
            (8, 8), (8.0, 8.0), (1.0, 1.0), (4.0, 4.0), "logits", 1, ((0.5, 0.5), (1.0, 1.0))
        )


def test_an_old_single_shot_file_finds_the_same_boxes(tmp_path: Path) -> None:
    info = _info(decoding=Decoding("single_shot", {**SHOT, "image": (1, 5)}))
    new, old = tmp_path / "new.onnx", tmp_path / "old.onnx"
    _rows_model(new, info.to_props())
    _rows_model(old, _legacy(info))
    got = [detect(open_model(p), ROW, DetectOptions()) for p in (new, old)]
    assert got[0].boxes.tolist() == got[1].boxes.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert got[0].scores.tolist() == got[1].scores.tolist() == pytest.approx([0.9])


BRIGHT = "network bright(image: 1x8x8) {\n    dense 2\n}\n"


def test_an_old_sliding_window_file_finds_the_same_boxes(tmp_path: Path) -> None:
    """The fully convolutional export, and the same file with its decoding written as the
    `sliding_window` entry an older netspec wrote: the same boxes on the same scene."""
    compiled = netspec.compile(BRIGHT)
    module = to_torch(compiled)
    with torch.no_grad():
        dense = module.get_submodule("dense1")
        assert isinstance(dense, torch.nn.Linear)
        dense.weight.zero_()
        dense.weight[0] = 0.1
        dense.bias.copy_(torch.tensor([-3.2, 0.0]))
    new = tmp_path / "new.onnx"
    report = export_fcn(compiled, new, module, labels=("sq", "background"), log=lambda _: None)
    model = onnx.load(str(new))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["decoding"])["decoder"] == "sliding_window"
    assert "sliding_window" not in props and "single_shot" not in props
    legacy = json.loads(props.pop("decoding"))
    del legacy["decoder"]
    del model.metadata_props[:]
    helper.set_model_props(model, {**props, "sliding_window": json.dumps(legacy)})
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    scene = np.zeros((1, 1, 24, 32), np.float32)
    scene[0, 0, 8:16, 12:20] = 1.0
    options = DetectOptions(threshold=0.6, scales=(1.0,))
    got = [detect(open_model(p), scene, options) for p in (new, old)]
    assert got[0].boxes.tolist() == got[1].boxes.tolist() == [[12.0, 8.0, 20.0, 16.0]]
    assert detector(open_model(old).info, str(old)).params == report.window


# ---- crafted entries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('{"grid": 1}', "decoding: expected the decoder's name"),
        ('{"decoder": "../x"}', "decoding: expected the decoder's name"),
        (json.dumps({"decoder": "x" * 65}), "decoding: expected the decoder's name"),
        ('{"decoder": "x", "a": [[[1]]]}', "decoding.a: expected a number, true or false"),
        ('{"decoder": "x", "a": {"b": 1}}', "decoding.a: expected a number"),
        ('{"decoder": "x", "a": null}', "decoding.a: expected a number"),
        ('{"decoder": "x", "a": Infinity}', "decoding.a: expected a number"),
        ('{"decoder": "x", "a": 9007199254740993}', "decoding.a: expected a number"),
        (json.dumps({"decoder": "x", "a": "w" * 257}), "decoding.a: expected a number"),
        (json.dumps({"decoder": "x", "a": [1] * 131_073}), "decoding.a: expected a number"),
        (json.dumps({"decoder": "x", "a": [[1] * 65]}), "decoding.a: expected a number"),
        (
            json.dumps({"decoder": "x", "t": [[0.5] * 64] * 16_385}),
            f"decoding: 1,048,640 numbers; a decoding holds at most {MAX_DECODING_VALUES:,}",
        ),
        (
            json.dumps({"decoder": "x", **{f"p{i}": i for i in range(MAX_PARAMS + 1)}}),
            f"decoding: {MAX_PARAMS + 1} parameters; a decoding has at most {MAX_PARAMS}",
        ),
        ('{"decoder": "x", "1st": 1}', r"decoding.1st.[key]: String should match pattern"),
        ("[" * 100 + "]" * 100, "decoding: JSON nested too deeply"),
        ('"single_shot"', "decoding: Input should be a valid dictionary"),
    ],
)
def test_a_crafted_decoding_is_refused_naming_its_field(entry: str, says: str) -> None:
    with pytest.raises(MetadataError, match=re.escape(f"m.onnx: bad netspec metadata: {says}")):
        from_props({**_info().to_props(), "decoding": entry}, "m.onnx")


def test_two_decodings_or_a_legacy_entry_that_is_no_object_are_refused() -> None:
    props = {**_info(decoding=Decoding("single_shot", {})).to_props(), "single_shot": "{}"}
    with pytest.raises(MetadataError, match="decoding and single_shot: a file has one decoding"):
        from_props(props, "m.onnx")
    del props["decoding"]
    props["single_shot"] = "[1, 2]"
    with pytest.raises(MetadataError, match="single_shot: expected a JSON object"):
        from_props(props, "m.onnx")


BAD = "bad netspec metadata: "


@pytest.mark.parametrize(
    ("name", "params", "error", "says"),
    [
        (
            "yolo9000",
            {},
            ModelError,
            "its decoding names the decoder 'yolo9000', which this netspec does not have "
            "(it has single_shot, sliding_window, ssd, two_stage)",
        ),
        ("single_shot", {**SHOT, "grid": -1}, MetadataError, BAD + "single_shot.grid: Input"),
        ("single_shot", {**SHOT, "grid": True}, MetadataError, BAD + "single_shot.grid: Input"),
        ("single_shot", {**SHOT, "score": 2.5}, MetadataError, BAD + "single_shot.score: Input"),
        (
            "single_shot",
            {**SHOT, "image": [7, 7]},
            MetadataError,
            BAD + "single_shot: image 7x7 is not the input's size (1x5)",
        ),
        (
            "single_shot",
            {**SHOT, "classes": 3},
            ModelError,
            "its output is 1x5, but its single_shot grid (1x1 cells of 1 boxes, 3 classes) gives",
        ),
        (
            "sliding_window",
            WINDOW,
            ModelError,
            "not a detector of its kind (its output is boxes; its decoder sliding_window reads "
            "class_map)",
        ),
    ],
)
def test_a_decoding_its_decoder_cannot_read_is_refused(
    name: str, params: dict[str, Any], error: type[NetspecError], says: str
) -> None:
    props = {**_info().to_props(), "decoding": json.dumps({"decoder": name, **params})}
    with pytest.raises(error, match=re.escape(f"m.onnx: {says}")):
        detector(from_props(props, "m.onnx"), "m.onnx")


def test_netspec_detect_on_an_unknown_decoder_exits_1_naming_the_known_ones(
    tmp_path: Path,
) -> None:
    model, image = tmp_path / "m.onnx", tmp_path / "x.npy"
    _rows_model(model, _info(decoding=Decoding("proposals", {"rois": 300})).to_props())
    np.save(image, ROW[0])
    result = CliRunner().invoke(main, ["detect", str(model), str(image), "--json"])
    assert result.exit_code == 1, result.output
    assert "decoder 'proposals', which this netspec does not have" in result.output
    assert "(it has single_shot, sliding_window, ssd, two_stage)" in result.output
    assert "Traceback" not in result.output


params = st.dictionaries(
    st.sampled_from(["grid", "boxes", "classes", "image", "score", "iou", "decoder", "x"]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
        max_leaves=8,
    ),
    max_size=8,
)


@seed(20261209)
@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(params, st.sampled_from(["decoding", "single_shot", "sliding_window"]))
def test_any_decoding_reads_or_is_refused_cleanly(entry: dict[str, Any], key: str) -> None:
    """Whatever the entry, reading the file gives a sane decoding or a MetadataError, and
    the decoder refuses what it cannot read with a ModelError; never anything else."""
    props = {**_info().to_props(), key: json.dumps(entry)}
    try:
        info = from_props(props, "m.onnx")
    except MetadataError as e:
        assert str(e).startswith("m.onnx: bad netspec metadata: ")
        return
    assert from_props(info.to_props(), "again.onnx") == info
    if info.decoding is None:
        return
    for value in info.decoding.params.values():
        assert isinstance(value, bool | int | float | str | tuple)
    try:
        detector(info, "m.onnx")
    except ModelError as e:
        assert str(e).startswith("m.onnx: ")


# ---- the head operation says its file's decoding ----------------------------------------------

FINDER = """network finder(image: 1x32x32) {
    conv 8 3x3 stride=4 | relu
    conv 12 1x1
    detect boxes=2 classes=2 score=0.25 iou=0.45
}
"""


def test_the_detect_operation_declares_its_files_decoding() -> None:
    assert REGISTRY["detect"].decoding is not None and REGISTRY["detect"].head
    assert decoding(netspec.compile(FINDER)) == Decoding(
        "single_shot",
        {"grid": 8, "boxes": 2, "classes": 2, "image": (32, 32), "score": 0.25, "iou": 0.45},
    )
    assert decoding(netspec.compile(BRIGHT)) is None  # no head, no decoding
