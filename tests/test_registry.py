"""The registry is the one place an operation lives: every declared operation has a builder
and every builder a declaration; each lowers, emits, exports to ONNX and matches its inferred
shape; and the facts other layers ask about (output meaning, merges, channels-last, init=)
come from the declarations, not from tests of operation names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netspec
from netspec.artifact import KINDS, class_scores, predicted_class
from netspec.export import export_compiled
from netspec.kinds import output_kind
from netspec.lower import BUILDERS, lowerings, to_torch
from netspec.lower.emit import emit_python
from netspec.ops import REGISTRY, channels_last_helps, merge_names
from tests.test_emit import _load
from tests.test_lower import OP_SNIPPETS, check_against_inference, spec

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

QUIET = {"log": lambda _: None}


def test_every_builder_has_a_declaration_and_every_declaration_a_builder() -> None:
    assert set(BUILDERS) - set(REGISTRY) == set(), "builders without an OpDef in netspec.ops"
    assert set(REGISTRY) - set(BUILDERS) == set(), "OpDefs without a builder in netspec.lower"
    assert set(OP_SNIPPETS) == set(REGISTRY), "every operation needs a snippet in OP_SNIPPETS"


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_every_op_emits_the_same_network(op: str) -> None:
    torch.manual_seed(0)
    compiled = spec(OP_SNIPPETS[op])
    generated = to_torch(compiled).eval()
    emitted = _load(emit_python(compiled))().eval()
    assert list(emitted.state_dict()) == list(generated.state_dict())
    emitted.load_state_dict(generated.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(emitted(x), generated(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_every_op_exports_and_matches_pytorch(op: str, tmp_path: Path) -> None:
    compiled = spec(OP_SNIPPETS[op])
    report = export_compiled(compiled, tmp_path / f"{op}.onnx", **QUIET)
    assert report.checks and all(c.ok for c in report.checks)


# ---- the facts ------------------------------------------------------------------------------


def test_output_meanings_are_words_of_the_file_format() -> None:
    kinds = set(KINDS)  # with the kinds of the runtime's decoders (the export imports them)
    assert {opdef.output for opdef in REGISTRY.values()} - {"pass"} <= kinds
    assert {REGISTRY[op].output for op in ("rbf", "softmax", "sigmoid")} == {
        "rbf_distances",
        "probabilities",
        "sigmoid",
    }


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("dense 84 | rbf 10", "rbf_distances"),
        ("dense 84 | rbf 10 | dropout 0.1 | identity", "rbf_distances"),
        ("dense 4 | softmax | flatten", "probabilities"),
        ("dense 1 | sigmoid", "sigmoid"),
        ("dense 4 | relu", "logits"),
        ("identity", "logits"),  # nothing decides it before the input: plain numbers
    ],
)
def test_output_kind_follows_the_registry(body: str, kind: str) -> None:
    compiled = spec(body)
    assert output_kind(compiled.graph, compiled.graph.outputs[0]) == kind


def test_merges_are_declared_and_written_inline() -> None:
    merges = ("add", "concat", "distance", "mul", "sub", "mean", "max")
    merges += ("proposals", "roi_pool", "roi_align", "ps_roi_pool", "ssd", "two_stage", "resize")
    assert merge_names() == merges
    compiled = spec(OP_SNIPPETS["add"])
    lowered = lowerings(compiled)
    merge = next(n for n in compiled.graph.nodes if n.op == "add")
    assert lowered[merge.name].inline is not None
    assert lowered[merge.name].inline(["a", "b"]) == "a + b"


def test_channels_last_is_a_declared_fact() -> None:
    assert {name for name, d in REGISTRY.items() if d.channels_last} == {"conv", "local", "deconv"}
    assert channels_last_helps(n.op for n in spec("conv 2 3x3 | relu").graph.nodes)
    assert not channels_last_helps(n.op for n in spec("dense 3").graph.nodes)


INIT_SNIPPETS = {
    "conv": "conv 4 3x3 init={}",
    "local": "local 2 3x3 init={}",
    "dense": "dense 5 init={}",
    "subsample": "subsample 2x2 init={}",
}


@pytest.mark.parametrize("scheme", ["lecun", "kaiming", "xavier"])
@pytest.mark.parametrize("op", sorted(name for name, d in REGISTRY.items() if d.takes_init))
def test_every_op_that_takes_init_can_be_initialized(op: str, scheme: str) -> None:
    assert op in INIT_SNIPPETS, f"add an init= snippet for '{op}' to INIT_SNIPPETS"
    torch.manual_seed(0)
    check_against_inference(spec(INIT_SNIPPETS[op].format(scheme)))


def test_init_draws_from_the_fans_a_layer_declares() -> None:
    torch.manual_seed(0)
    module = to_torch(spec("local 4 3x3 init=lecun as l | subsample 2x2 init=xavier as s"))
    local, sub = module.get_submodule("l"), module.get_submodule("s")
    assert local.weight.abs().max() <= 2.4 / 27 < 1.2 * local.weight.abs().max()  # fan-in 3*3*3
    assert sub.weight.abs().max() <= (6 / 8) ** 0.5  # fan-in = fan-out = 4 taps


def test_kinds_give_class_scores_and_predictions() -> None:
    import numpy as np

    out = np.array([[0.0, 3.0, 1.0]], np.float32)
    assert predicted_class(out, "logits").tolist() == [1]
    assert predicted_class(out, "rbf_distances").tolist() == [0]  # nearest prototype
    assert predicted_class(np.array([[0.7]], np.float32), "sigmoid").tolist() == [1]
    np.testing.assert_allclose(class_scores(out, "logits").sum(axis=1), [1.0], rtol=1e-6)
    np.testing.assert_allclose(class_scores(np.array([[0.25]]), "sigmoid"), [[0.75, 0.25]])
    assert class_scores(out, "rbf_distances").argmax() == 0


def test_a_network_compiles_with_only_registered_operations() -> None:
    with pytest.raises(netspec.SpecError):
        netspec.compile("network n(x: 4) {\n    not_an_op 3\n}\n")
