"""netspec.rewrites: a rewrite of a compiled graph checks what it needs before it runs,
infers its result as the compiler infers a spec, and checks what it ensures after; the
fully convolutional conversion goes through it."""

from __future__ import annotations

import doctest
from dataclasses import replace

import pytest

import netspec
import netspec.rewrites
from netspec.compiler import Compiled
from netspec.diagnostics import SpecError
from netspec.errors import ExportError, UsageError
from netspec.export.fcn_graph import WINDOWS, fcn_rewrite, fully_convolutional
from netspec.ir import Graph, GraphInput
from netspec.passes.state import PipelineError
from netspec.rewrites import Condition, Rewrite, rewrite

NET = """network n(x: 3x8x8) {
    conv 4 3x3 | relu
    dense 5
}
train n on mnist {
    epochs 1
}
"""


def _sized(side: int) -> Rewrite:
    """The network with its input `side` x `side`."""

    def run(c: Compiled) -> Graph:
        g, x = c.graph, c.graph.inputs[0]
        inputs = (GraphInput(x.name, (x.shape[0], side, side), x.span),)
        return Graph(g.name, inputs, g.nodes, g.outputs, g.span)

    return Rewrite(f"{side}x{side}", run)


def test_the_doctest() -> None:
    assert doctest.testmod(netspec.rewrites).failed == 0


def test_the_result_is_inferred_afresh_and_keeps_the_spans() -> None:
    compiled = netspec.compile(NET)
    bigger = rewrite(compiled, _sized(10))
    conv = bigger.inferred.layer("conv1")
    assert conv.shape == (4, 8, 8) and compiled.inferred.layer("conv1").shape == (4, 6, 6)
    assert bigger.totals.macs != compiled.totals.macs
    assert conv.span == compiled.inferred.layer("conv1").span and conv.span.line == 2
    assert compiled.train is not None and bigger.train is None  # not the network it trains
    assert rewrite(compiled) is compiled  # no rewrite: the network itself


def test_rewrites_apply_in_order() -> None:
    compiled = netspec.compile(NET)
    assert rewrite(compiled, _sized(12), _sized(10)).inferred.layer("conv1").shape == (4, 8, 8)


def test_a_need_that_fails_raises_its_error_before_the_rewrite_runs() -> None:
    ran = []

    def run(c: Compiled) -> Graph:
        ran.append(c.name)
        return c.graph

    square = Condition("a square input", lambda c: UsageError(f"{c.name} is not square"))
    with pytest.raises(UsageError, match="n is not square"):
        rewrite(netspec.compile(NET), Rewrite("r", run, needs=(square,)))
    assert ran == []


def test_a_rewrite_that_breaks_what_it_ensures_is_a_bug() -> None:
    broken = replace(_sized(10), name="sizes", ensures=(WINDOWS,))  # the dense sees it all
    with pytest.raises(
        PipelineError, match=r"rewrite 'sizes' did not ensure every layer sees.*whole input: dense1"
    ):
        rewrite(netspec.compile(NET), broken)


def test_a_graph_that_does_not_fit_is_a_spec_error() -> None:
    with pytest.raises(SpecError):
        rewrite(netspec.compile(NET), _sized(2))


def test_the_fully_convolutional_conversion_is_a_rewrite() -> None:
    compiled = netspec.compile(NET.replace("conv 4 3x3 | relu", "conv 4 3x3 | relu | flatten"))
    fcn = fully_convolutional(compiled, (11, 9))
    again = rewrite(compiled, fcn_rewrite((11, 9)))
    assert fcn.compiled.layers == again.layers
    assert [layer.op for layer in again.layers] == ["conv", "relu", "identity", "conv"]
    assert again.layers[-1].shape == (5, 4, 2)  # 9x7 maps, a 6x6 window: 4x2 positions
    assert not any(layer.rf.whole for layer in again.layers)
    with pytest.raises(ExportError, match=r"the fully convolutional network: .*larger"):
        fully_convolutional(compiled, (5, 5))  # smaller than the 8x8 window
