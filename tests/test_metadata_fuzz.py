"""The ONNX metadata `netspec run` reads comes from a file someone may have crafted:
`from_props` either returns a ModelInfo whose every field is sane or raises MetadataError
naming the field, never anything else (fuzzed); and `netspec run` on a real ONNX file with
crafted metadata exits 1 with a message, no traceback."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from cli import main
from netspec.artifact import (
    MAX_DIMS,
    MAX_ELEMENTS,
    InputInfo,
    ModelInfo,
    OutputInfo,
    from_props,
)
from netspec.errors import MetadataError

GOOD = ModelInfo(
    network="tiny",
    spec="network tiny(image: 1x2x2) {\n    flatten\n}\n",
    version="0.1",
    inputs=(InputInfo("image", (1, 2, 2), 0.5, 0.25),),
    outputs=(OutputInfo("y", "logits"),),
    labels=("a", "b", "c", "d"),
    weights={"fc.weight": "fc.weight"},
    sizes={"H": 4},
).to_props()

# ---- the fuzz test ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=24,
)
dims = st.one_of(
    st.integers(-2, 10**12),
    st.sampled_from(["H", "W", "", "1x", "\x1b[2J", "é"]),
    st.floats(),
    st.booleans(),
    st.none(),
)
input_records = st.fixed_dictionaries(
    {"name": st.one_of(st.just("image"), st.text(max_size=6), st.integers())},
    optional={
        "shape": st.one_of(st.lists(dims, max_size=12), json_values),
        "mean": st.one_of(st.floats(), st.text(max_size=3), st.none()),
        "std": st.one_of(st.floats(), st.integers(-2, 2), st.text(max_size=3)),
    },
)
output_records = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.just("y"), st.text(max_size=4), st.integers()),
        "kind": st.one_of(
            st.sampled_from(["logits", "sigmoid", "map", "bounding", ""]), json_values
        ),
    },
)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


crafted_json = {
    "inputs": st.one_of(st.lists(input_records, max_size=3), json_values),
    "outputs": st.one_of(st.lists(output_records, max_size=3), json_values),
    "labels": st.one_of(st.lists(st.text(max_size=10), max_size=6), json_values),
    "weights": st.one_of(st.dictionaries(st.text(max_size=6), st.text(max_size=6)), json_values),
    "sizes": st.one_of(st.dictionaries(st.text(max_size=3), st.integers(-5, 10**9)), json_values),
}


@st.composite
def crafted_props(draw: st.DrawFn) -> dict[str, str]:
    """The good metadata with some fields dropped, replaced by crafted JSON, by text that is
    not JSON, or by deeply nested arrays."""
    props = dict(GOOD)
    for key in sorted(GOOD):
        choice = draw(st.sampled_from(["keep"] * 3 + ["json"] * 3 + ["drop", "text", "nested"]))
        if choice == "drop":
            del props[key]
        elif choice == "json":
            value = draw(crafted_json.get(key, json_values))
            props[key] = value if isinstance(value, str) else json.dumps(value)
        elif choice == "text":
            props[key] = draw(st.text(max_size=20))
        elif choice == "nested":
            props[key] = _nested(draw(st.sampled_from([3, 70, 300, 5000])))
    return props


def _sane(info: ModelInfo) -> None:
    """What a ModelInfo from_props returns guarantees to the runtime."""
    assert info.inputs and info.outputs
    for i in info.inputs:
        assert i.name and i.name.isprintable() and len(i.shape) <= MAX_DIMS
        for d in i.shape:
            assert (type(d) is int and d > 0) or (isinstance(d, str) and d.isidentifier())
        assert math.prod(d for d in i.shape if isinstance(d, int)) <= MAX_ELEMENTS
        assert math.isfinite(i.mean) and math.isfinite(i.std) and i.std > 0
    assert all(
        o.kind in ("logits", "rbf_distances", "probabilities", "sigmoid") for o in info.outputs
    )
    assert info.labels is None or all(isinstance(s, str) and s.isprintable() for s in info.labels)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.weights.items())
    assert all(type(v) is int and v > 0 for v in info.sizes.values())
    assert info.precision in ("fp32", "fp16", "int8")


@seed(20261201)
@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(crafted_props())
def test_from_props_returns_sane_info_or_raises_metadata_error(props: dict[str, str]) -> None:
    try:
        info = from_props(props, "crafted.onnx")
    except MetadataError as e:
        assert str(e).startswith("crafted.onnx: ")
        return
    _sane(info)
    assert from_props(info.to_props(), "again.onnx") == info  # what it reads, it writes back


def test_the_good_metadata_reads_back() -> None:
    info = from_props(GOOD, "good.onnx")
    assert info.inputs[0].shape == (1, 2, 2) and info.labels == ("a", "b", "c", "d")


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        (
            "inputs",
            json.dumps([{"name": "image", "shape": [1, 100000, 100000]}]),
            "inputs[0].shape",
        ),
        ("inputs", json.dumps([{"name": "image", "shape": [1] * 9}]), "inputs[0].shape"),
        ("inputs", json.dumps([{"name": "image", "shape": [1, 2, 2], "std": 0}]), "inputs[0].std"),
        ("inputs", '[{"name": "image", "shape": [1, 2, 2], "mean": NaN}]', "inputs[0].mean"),
        ("inputs", _nested(100_000), "inputs"),
        ("labels", json.dumps(["ok", "\x1b[2J"]), "labels[1]"),
        ("labels", json.dumps([["nested"]]), "labels[0]"),
        ("labels", json.dumps({"a": 1}), "labels"),
        ("weights", "[1, 2]", "weights"),
        ("outputs", "[]", "outputs"),
        ("outputs", json.dumps([{"name": "y", "kind": "bounding"}]), "outputs[0].kind"),
        (
            "outputs",
            json.dumps([{"name": "y", "kind": "map", "shape": [0]}]),
            "outputs[0].shape[0]",
        ),
        ("sizes", json.dumps({"H": -1}), "sizes.H"),
        ("precision", "fp64", "precision"),
    ],
)
def test_each_bad_field_is_named(key: str, value: str, field: str) -> None:
    with pytest.raises(MetadataError, match=re.escape(f"m.onnx: bad netspec metadata: {field}:")):
        from_props({**GOOD, key: value}, "m.onnx")


# ---- end to end: a real ONNX file, the real CLI -----------------------------------------------


def _tiny_model(path: Path, props: dict[str, str]) -> None:
    """`y = flatten(image)`: a (N, 1, 2, 2) input to (N, 4) scores, with these metadata_props."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["y"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _run(tmp_path: Path, props: dict[str, str]) -> Any:
    model, sample = tmp_path / "m.onnx", tmp_path / "x.npy"
    _tiny_model(model, props)
    np.save(sample, np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2))
    return CliRunner().invoke(main, ["run", str(model), str(sample)])


def test_run_on_the_tiny_model_with_good_metadata(tmp_path: Path) -> None:
    result = _run(tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert "x.npy: d (" in result.output  # the largest of 0, 1, 2, 3 is the fourth label


CRAFTED = {
    "labels": json.dumps([["a"], {"b": 1}]),
    "labels_escape": json.dumps(["\x1b]0;pwned\x07", "b"]),
    "weights": "[1, 2, 3]",
    "outputs": "[]",
    "shape": json.dumps([{"name": "image", "shape": [1, 100000, 100000]}]),
    "nested": _nested(100_000),
    "std": json.dumps([{"name": "image", "shape": [1, 2, 2], "mean": 0, "std": -1}]),
    "not_json": "{'inputs': ",
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_run_on_crafted_metadata_exits_1_without_a_traceback(case: str, tmp_path: Path) -> None:
    key = {"nested": "inputs", "shape": "inputs", "std": "inputs", "not_json": "outputs"}.get(
        case, case.split("_")[0]
    )
    result = _run(tmp_path, {**GOOD, key: CRAFTED[case]})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"m.onnx: bad netspec metadata: {key}" in result.output
    assert "\x1b" not in result.output
