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
    ("word", "hint"),
    [
        ("linear", "netspec calls it 'dense'"),
        ("fc", "netspec calls it 'dense'"),
        ("bn", "netspec calls it 'batchnorm'"),
        ("cat", "netspec calls it 'concat'"),
        ("conv2d", "did you mean 'conv'?"),  # a spelling too: the plain hint says it
        ("LeakyReLU", "did you mean 'leaky_relu'?"),
    ],
)
def test_another_frameworks_word_names_netspecs(word: str, hint: str) -> None:
    assert _hint(NET.format(f"{word} | dense 2")) == hint


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


def test_a_dataset_netspec_cannot_load_is_a_warning_naming_those_it_can() -> None:
    compiled = netspec.compile(LENET + "train n on cifar99 {\n    epochs 1\n}\n")
    (diag,) = compiled.warnings
    assert diag.code == "W506" and (diag.span.line, diag.span.col) == (4, 12)
    assert [n.message.split(":")[0] for n in diag.notes] == list(DATASETS)


def test_a_misspelt_dataset_gets_the_nearest_name() -> None:
    (diag,) = netspec.compile(LENET + "train n on mnsit {\n    epochs 1\n}\n").warnings
    assert diag.hint == "did you mean 'mnist'?"


def test_the_dataset_registry_imports_no_numpy() -> None:
    code = "import sys, netspec.data.registry\nassert 'numpy' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---- a body's input: in, in.c, in.h, in.w --------------------------------------------------

DENSENET = """\
block transition() {
    batchnorm | relu | conv in.c//2 1x1 bias=false | avgpool 2x2
}

block depthwise(c) {
    conv in.c 3x3 pad=same groups=in.c bias=false | conv c 1x1 bias=false
}

network net(image: 24x16x16) {
    transition()
    depthwise(32)
    avgpool global | dense 10
}
"""


def test_a_block_reads_its_inputs_channel_count() -> None:
    compiled = netspec.compile(DENSENET)
    conv = compiled.inferred.layer("transition1.conv1")
    assert conv.shape == (12, 16, 16) and conv.params == 24 * 12
    dw = compiled.inferred.layer("depthwise1.conv1")
    assert dw.shape == (12, 8, 8) and dw.params == 12 * 9  # one 3x3 kernel per channel


def test_each_call_reads_its_own_input() -> None:
    text = "block half() {\n    conv in.c//2 1x1\n}\n" + NET.format("conv 32 1x1 | half() | half()")
    shapes = [layer.shape[0] for layer in netspec.compile(text).layers]
    assert shapes == [32, 16, 8]


def test_in_h_and_in_w_are_the_spatial_sizes() -> None:
    text = "block whole() {\n    conv 4 1x1 | maxpool 1x1 stride=in.w\n}\n" + NET.format("whole()")
    assert netspec.compile(text).layers[-1].shape == (4, 1, 1)


def test_in_is_the_input_of_a_one_input_network_and_of_a_shared_body() -> None:
    text = NET.format(
        "shared s = conv in.c 1x1\n    a = s(x)\n    b = x | relu | s\n"
        "    concat(a, b, in | conv in.c 1x1)"
    )
    compiled = netspec.compile(text)
    assert compiled.inferred.layer("a.conv1").shape == (3, 16, 16)
    assert compiled.inferred.layer("b.1.conv1").shared_with == "a.conv1"
    assert compiled.layers[-1].shape == (3 + 3 + 3, 16, 16)


def test_a_shape_error_before_in_c_is_reported_once() -> None:
    text = "block b() {\n    conv in.c 3x3\n}\n" + NET.format("conv 4 32x32\n    b() | dense 2")
    with pytest.raises(netspec.SpecError) as e:
        netspec.compile(text)
    assert [d.code for d in e.value.diagnostics] == ["E301"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("conv in.q 3x3", "E229"),
        ("a = conv 4 1x1\n    conv a.c 1x1", "E229"),
        ("dense 4 | dense 4 | depth()", "E229"),
        ("conv in 1x1", "E226"),
    ],
)
def test_sizes_that_cannot_be_read(body: str, code: str) -> None:
    text = "block depth() {\n    dense in.h\n}\n" + NET.format(body)
    assert _codes(text) == [code]


# ---- calls and chains inside merges ------------------------------------------------------------

BASIC = """\
block basic(c, stride=1) {
    body = conv c 3x3 stride=stride pad=1 | batchnorm | relu | conv c 3x3 pad=1
    MERGE | relu
}

network net(image: 16x16x16) {
    basic(16) | basic(32, stride=2)
    avgpool global | dense 10
}
"""


def test_a_call_inside_a_merge_is_the_same_as_a_named_branch() -> None:
    inline = netspec.compile(BASIC.replace("MERGE", "add(body, project(c, stride))"))
    named = netspec.compile(
        BASIC.replace("MERGE", "skip = project(c, stride)\n    add(body, skip)")
    )
    assert [(la.shape, la.params) for la in inline.layers] == [
        (la.shape, la.params) for la in named.layers
    ]
    assert inline.totals == named.totals


@pytest.mark.parametrize("merge", ["add(body, identity)", "add(body, in)", "add(in, body)"])
def test_the_blocks_input_by_name_in_a_merge(merge: str) -> None:
    compiled = netspec.compile(BASIC.replace("MERGE", merge).replace("(32, stride=2)", "(16)"))
    add = compiled.inferred.layer("basic1.add1")
    assert add.in_shapes == ((16, 16, 16), (16, 16, 16))


def test_a_chain_from_a_tensor_inside_a_merge() -> None:
    text = NET.format("a = conv 8 1x1\n    concat(a, x | conv 8 1x1 | relu) | dense 2")
    compiled = netspec.compile(text)
    assert compiled.inferred.layer("concat1").shape == (16, 16, 16)
    assert compiled.inferred.layer("conv1").in_shapes == ((3, 16, 16),)
    assert compiled.warnings == []


def test_a_tensor_used_only_inside_a_chain_argument_is_a_branch() -> None:
    """`body` read inside `add(project(8, 1), body | relu)` does not move the cursor."""
    text = NET.format("body = conv 8 3x3 pad=same\n    add(project(8, 1), body | relu) | dense 2")
    compiled = netspec.compile(text)
    assert compiled.inferred.layer("project1").in_shapes == ((3, 16, 16),)


def test_merges_of_chains_lower_to_the_inferred_shapes() -> None:
    """Real PyTorch: the module runs, every layer's output shape is the inferred one."""
    torch = pytest.importorskip("torch")
    from netspec.lower import to_torch

    text = DENSENET.replace(
        "    depthwise(32)\n",
        "    depthwise(32)\n    concat(in | avgpool 2x2 | conv 4 1x1, identity)\n",
    )
    compiled = netspec.compile(text)
    module = to_torch(compiled).eval()
    with torch.no_grad():
        out = module(torch.randn(2, 24, 16, 16))
    assert tuple(out.shape) == (2, 10)
    assert compiled.inferred.layer("concat1").shape == (4 + 32, 8, 8)
    assert sum(p.numel() for p in module.parameters()) == compiled.totals.trainable_params


def test_a_parameters_default_may_read_the_calls_input() -> None:
    text = "block keep(c=in.c) {\n    conv c 1x1\n}\n" + NET.format("conv 6 1x1 | keep() | keep(2)")
    assert [layer.shape[0] for layer in netspec.compile(text).layers] == [6, 6, 2]
