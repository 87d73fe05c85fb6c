"""Issue 10, section 2: the semantics users tripped on, each pinned by its behaviour
(the mistakes' exact text is in tests/golden, cases 100-119)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import netspec
from netspec.data.registry import DATASETS
from netspec.ops import REGISTRY
from netspec.ops.synonyms import OPS, PARAMS, meant_ops, op_hint

NET = "network n(x: 3x16x16) {{\n    {}\n}}\n"


def _codes(text: str) -> list[str]:
    with pytest.raises(netspec.SpecError) as e:
        netspec.compile(text)
    return [d.code for d in e.value.diagnostics]


def _hint(text: str) -> str | None:
    with pytest.raises(netspec.SpecError) as e:
        netspec.compile(text)
    return e.value.diagnostics[0].hint


# ---- a constant and a symbolic size with the same name --------------------------------


def test_a_constant_and_a_symbolic_size_may_not_share_a_name() -> None:
    text = "const S = 8\nnetwork n(x: 1xSxS) {\n    conv 4 3x3\n}\n"
    assert _codes(text) == ["E110"]


def test_a_symbolic_size_of_its_own_name_still_compiles() -> None:
    text = "const S = 8\nnetwork n(x: 1xHxW) {\n    conv S 3x3\n}\n"
    assert netspec.compile(text).layers[0].shape == (8, "H-2", "W-2")


# ---- repeat 0 ----------------------------------------------------------------------------


def test_repeat_zero_is_an_error() -> None:
    assert _codes(NET.format("repeat 0 relu | dense 2")) == ["E219"]


def test_repeat_zero_from_a_constant_is_an_error() -> None:
    assert _codes("const k = 0\n" + NET.format("repeat k relu | dense 2")) == ["E219"]


# ---- PyTorch's spellings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("conv 4 3x3 padding=1", "netspec calls it pad="),
        ("maxpool 2x2 kernel_size=2", "netspec calls it kernel="),
        ("conv 4 3x3 out_channels=4", "netspec calls it channels="),
        ("dense 4 out_features=4", "netspec calls it units="),
        ("conv 4 3x3 in_channels=3", "netspec infers it from the input's shape; leave it out"),
        ("conv 4 3x3 padd=1", "did you mean 'pad'?"),
    ],
)
def test_pytorch_parameter_names_suggest_netspecs(written: str, hint: str) -> None:
    assert _hint(NET.format(written)) == hint


def test_every_parameter_synonym_names_a_parameter_of_some_operation() -> None:
    fields = {f for op in REGISTRY.values() for f in op.params.model_fields}
    pending = {"output_pad", "factor"}  # deconv and upsample, on the operations' branches
    assert set(PARAMS.values()) <= fields | pending


# ---- unknown operations: by meaning, then by spelling ---------------------------------------


@pytest.mark.parametrize(
    ("word", "meant"),
    [
        ("linear", "dense"),
        ("fc", "dense"),
        ("bn", "batchnorm"),
        ("conv2d", "conv"),
        ("cat", "concat"),
        ("LeakyReLU", "leaky_relu"),
    ],
)
def test_another_frameworks_word_names_netspecs(word: str, meant: str) -> None:
    assert _hint(NET.format(f"{word} | dense 2")) == f"netspec calls it '{meant}'"


@pytest.mark.parametrize(
    "word", ["deconv", "convtranspose", "transposed_conv", "upsample", "interpolate", "swish"]
)
def test_a_word_whose_meaning_is_known_never_suggests_a_near_spelling(word: str) -> None:
    """`deconv` is not `conv`, `upsample` is not `subsample`: the hint names what the word
    means when that is registered (the operations land on their own branches), else nothing."""
    meant = meant_ops(word, REGISTRY)
    hint = op_hint(word, REGISTRY)
    assert hint == (f"netspec calls it {' or '.join(repr(m) for m in meant)}" if meant else None)


def test_a_typo_still_gets_the_nearest_spelling() -> None:
    assert _hint(NET.format("batchnrom | dense 2")) == "did you mean 'batchnorm'?"


def test_every_synonym_is_lower_case_and_not_itself_an_operation() -> None:
    for word, meant in OPS.items():
        assert word == word.lower() and word not in meant
        assert word not in REGISTRY, word


# ---- datasets are a registry ---------------------------------------------------------------

LENET = "network n(image: 1x28x28) {\n    dense 10\n}\n"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_registered_dataset_compiles(name: str) -> None:
    compiled = netspec.compile(LENET + f"train n on {name} {{\n    epochs 1\n}}\n")
    assert compiled.train is not None and compiled.train.dataset == name


def test_a_dataset_netspec_cannot_load_is_refused_with_those_it_can() -> None:
    with pytest.raises(netspec.SpecError) as e:
        netspec.compile(LENET + "train n on cifar10 {\n    epochs 1\n}\n")
    (diag,) = e.value.diagnostics
    assert diag.code == "E506" and (diag.span.line, diag.span.col) == (4, 12)
    assert [n.message.split(":")[0] for n in diag.notes] == list(DATASETS)


def test_a_misspelt_dataset_gets_the_nearest_name() -> None:
    assert _hint(LENET + "train n on mnsit {\n    epochs 1\n}\n") == "did you mean 'mnist'?"


def test_the_dataset_registry_imports_no_numpy() -> None:
    code = "import sys, netspec.data.registry\nassert 'numpy' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
