"""`--emit python`: the emitted source runs, and is the same network as `to_torch()`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import netspec
from cli import main
from netspec.compiler import Compiled
from netspec.lower import to_torch
from netspec.lower.emit import emit_python

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

BRANCHES = """
block inception(a, b) {
    concat {
        conv a 1x1 | relu
        conv b 1x1 | relu | conv b 3x3 pad=same | relu
        maxpool 3x3 stride=1 pad=same | conv a 1x1 | relu
    }
}

block basic(c, stride=1) {
    body = conv c 3x3 stride=stride pad=1 bias=false as conv1 | batchnorm as bn1 | relu
         | conv c 3x3 pad=1 bias=false as conv2 | batchnorm as bn2
    downsample = project(c, stride)
    add(body, downsample) | relu
}

network branches(image: 3x16x16) {
    conv 8 3x3 pad=1 | batchnorm | relu
    repeat 2 inception(4, 6)
    layer1 = basic(14) | basic(16, stride=2)
    concat {
        identity
        batchnorm | relu | conv 4 3x3 pad=1 bias=false
    }
    avgpool global | dense 10 init=kaiming
}
"""

TWO_OUTPUTS = """
network two(left: 1x6x6, right: 1x6x6) {
    a = left | conv 2 3x3 | flatten
    b = right | conv 2 3x3 | flatten
    d = distance(a, b) | dense 3 | softmax
    output d, a
}
"""


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core machine: one thread avoids OpenMP's busy waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(source: str) -> type[nn.Module]:
    namespace: dict[str, object] = {"__name__": "emitted"}
    exec(compile(source, "<emitted>", "exec"), namespace)
    classes = [v for v in namespace.values() if isinstance(v, type) and v.__module__ == "emitted"]
    cls = classes[-1]  # the network: the carried layers come before it
    assert issubclass(cls, nn.Module)
    return cls


def _inputs(compiled: Compiled) -> list[torch.Tensor]:
    return [torch.randn(3, *(int(d) for d in i.shape)) for i in compiled.graph.inputs]


CASES = [
    pytest.param(SPECS / "lenet5.net", {}, id="lenet5"),
    pytest.param(SPECS / "lenet.net", {}, id="lenet"),
    pytest.param(SPECS / "siamese.net", {}, id="siamese"),
    pytest.param(SPECS / "local.net", {}, id="local"),
    pytest.param(SPECS / "ciresan2010.net", {}, id="ciresan2010"),
    pytest.param(SPECS / "filters.net", {"H": 10, "W": 12}, id="filters"),
    pytest.param(BRANCHES, {}, id="branches"),
    pytest.param(TWO_OUTPUTS, {}, id="two_outputs"),
]


@pytest.mark.parametrize(("source", "overrides"), CASES)
def test_emitted_module_equals_to_torch(source: Path | str, overrides: dict[str, int]) -> None:
    if isinstance(source, Path) and not source.exists():
        pytest.skip(f"{source.name} is not in specs/")
    torch.manual_seed(0)
    compiled = netspec.compile(source, **overrides)
    generated = to_torch(compiled)
    emitted = _load(emit_python(compiled))()
    weights = generated.state_dict()
    assert list(emitted.state_dict()) == list(weights)
    emitted.load_state_dict(weights)
    generated.eval()
    emitted.eval()
    x = _inputs(compiled)
    with torch.no_grad():
        want, got = generated(*x), emitted(*x)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)
    else:
        torch.testing.assert_close(got, want)


def test_emitted_source_reads_like_hand_written_code() -> None:
    source = emit_python(netspec.compile(SPECS / "lenet5.net"))
    assert "class Lenet5(nn.Module):" in source
    assert "        self.c3 = TableConv2d(6, 16, 5, C3_TABLE)" in source
    assert "        x = self.f6(torch.flatten(x, 1))  # 84" in source
    assert '        init_weights(self.c1, "lecun")' in source
    assert "netspec" not in "".join(line for line in source.splitlines() if "import" in line)
    assert source.count("class TableConv2d(nn.Module):") == 1  # carried once, before its use
    assert source.index("class TableConv2d(") < source.index("class Lenet5(")
    forward = source.split("class Lenet5(nn.Module):")[1].split("def forward")[1]
    names = [
        line.split("self.")[1].split("(")[0] for line in forward.splitlines() if "self." in line
    ]
    assert names[:3] == ["c1", "scaled_tanh1", "s2"]  # spec order
    assert max(len(line) for line in source.splitlines()) <= 100
    assert source.isascii()  # the carried docstrings too: any stdout can take the file


def test_a_spec_path_cannot_break_the_docstring(tmp_path: Path) -> None:
    """A Windows-style path, or one holding triple quotes, stays inside the docstring."""
    folder = tmp_path / 'C:\\nets\\x"""; import os; """é\x1b'
    folder.mkdir()
    spec = folder / "lenet.net"
    spec.write_text((SPECS / "lenet.net").read_text(encoding="utf-8"), encoding="utf-8")
    source = emit_python(netspec.compile(spec))
    namespace: dict[str, object] = {"__name__": "emitted"}
    exec(compile(source, "<emitted>", "exec"), namespace)
    assert str(spec) in str(namespace["__doc__"])
    assert "\x1b" not in source and "import os" not in source.split('"""')[2]


def test_emitted_shared_weights_exist_once() -> None:
    compiled = netspec.compile(SPECS / "siamese.net")
    emitted = _load(emit_python(compiled))()
    assert sum(p.numel() for p in emitted.parameters()) == compiled.totals.trainable_params


def test_emitted_file_runs_as_a_script(tmp_path: Path) -> None:
    path = tmp_path / "lenet.py"
    path.write_text(emit_python(netspec.compile(SPECS / "lenet.net")))
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, check=True, timeout=120
    )
    assert "tensor(" in done.stdout


def test_cli_emit_python() -> None:
    result = CliRunner().invoke(main, ["compile", str(SPECS / "lenet.net"), "--emit", "python"])
    assert result.exit_code == 0, result.output
    assert "class Lenet(nn.Module):" in result.output
    _load(result.output)
