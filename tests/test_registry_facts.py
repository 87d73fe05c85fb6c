"""The facts other stages ask about an operation live on its `OpDef`, nowhere else.

A scan of netspec/ (outside netspec/ops/, the registry) fails on a collection of
operation names or a test of a node's `op` against a name: such a list is a fact that
leaked out of the registry, and goes stale when an operation is added. The facts
themselves are checked against the operations' PyTorch modules where they say something
a module can show (what each output position is computed from), and against each other.
"""

from __future__ import annotations

import ast
import pkgutil
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
import torch

import netspec
import netspec.lower
from netspec.lower import to_torch
from netspec.ops import REGISTRY
from netspec.runtime.decoders import DECODERS
from tests.test_lower import OP_SNIPPETS, spec

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

NETSPEC = Path(netspec.__file__).resolve().parent
OPS = set(REGISTRY)

# Collections of operation names that may stay outside netspec/ops/, by file and by the name
# they are assigned to; every other line of these files is scanned like any other.
ALLOWED = {
    # The registry's PyTorch half: one builder per operation, keyed by its name, declared in
    # the module-level `BUILDERS` of a module of netspec/lower/ (netspec.lower.builders, or a
    # head's own, as netspec.lower.ssd), which `netspec.lower.discover` collects. It cannot be
    # an OpDef field, since nothing in netspec/ops/ may import torch (lint-imports checks it);
    # tests/test_registry.py checks that the collected keys are exactly the registry's.
    f"lower/{module.name}.py": {"BUILDERS"}
    for module in pkgutil.iter_modules(netspec.lower.__path__)
}
# The registry's arithmetic half: how the page works out a unit of each operation
# (netspec.serve.arithmetic.RULES), keyed by name as BUILDERS are; the page's only table of
# operation names, and each key is a registered operation (below).
ALLOWED["serve/arithmetic.py"] = {"RULES"}


# ---- the scan --------------------------------------------------------------------------------


def _op_names(node: ast.AST) -> list[str]:
    """The operation names among the string literals of a set, list, tuple or dict's keys."""
    if isinstance(node, ast.Set | ast.List | ast.Tuple):
        items: list[ast.expr | None] = list(node.elts)
    elif isinstance(node, ast.Dict):
        items = list(node.keys)
    else:
        return []
    words = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    names = [w for w in words if w in OPS]
    # Names of operations, not words that happen to be one (a summary's "max" and "mean"
    # beside its "min" and "shape"; the grammar's rules "add", "sub", "mul" among others).
    return names if len(names) >= 2 and 2 * len(names) > len(words) else []


def _is_op(node: ast.AST) -> bool:
    """`node.op`, `layer.op`, `view.op` or a bare `op`: an IR node's operation."""
    return (isinstance(node, ast.Attribute) and node.attr == "op") or (
        isinstance(node, ast.Name) and node.id == "op"
    )


def _names_an_op(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in OPS
    return isinstance(node, ast.Set | ast.List | ast.Tuple) and any(
        isinstance(e, ast.Constant) and e.value in OPS for e in node.elts
    )


def _allowed(tree: ast.Module, names: set[str]) -> set[int]:
    """The ids of the value nodes assigned to `names` at the top of the module."""
    skip: set[int] = set()
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        if isinstance(stmt, ast.AnnAssign):
            targets = [stmt.target]
        value = getattr(stmt, "value", None)
        if value is not None and any(isinstance(t, ast.Name) and t.id in names for t in targets):
            skip.add(id(value))
    return skip


def leaks(source: str, allowed: Collection[str] = ()) -> Iterator[tuple[int, str]]:
    """(line, code) of each collection of operation names and each test of an `op` against
    a name in `source`, but for the values assigned to `allowed` names."""
    tree = ast.parse(source)
    skip = _allowed(tree, set(allowed))
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if id(node) in skip:
            continue
        if isinstance(node, ast.expr) and _op_names(node):
            yield node.lineno, ast.unparse(node)
            continue
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_op(s) for s in sides) and any(_names_an_op(s) for s in sides):
                yield node.lineno, ast.unparse(node)
        stack.extend(ast.iter_child_nodes(node))


def test_no_operation_names_outside_the_registry() -> None:
    found = []
    for path in sorted(NETSPEC.rglob("*.py")):
        where = path.relative_to(NETSPEC).as_posix()
        if where.startswith("ops/"):
            continue
        allowed = ALLOWED.get(where, set())
        found += [
            f"netspec/{where}:{line}: {code}" for line, code in leaks(path.read_text(), allowed)
        ]
    assert not found, "operation names outside netspec/ops/: make each an OpDef fact\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "source",
    [
        'if node.op == "dense":\n    pass',
        'ok = graph.node(source).op != "flatten"',
        'ok = view.op not in ("conv", "deconv")',
        'ok = op in {"relu"}',
        'POINTWISE = frozenset({"relu", "tanh", "batchnorm"})',
        'WHY = {"local": "one kernel per position", "rbf": "distances"}',
        'SLIDING = ["conv", "maxpool", "subsample", "something_else"]',
        'def f():\n    return [("conv", 1), ("relu", "tanh")]',
    ],
)
def test_the_scan_finds_each_kind_of_leak(source: str) -> None:
    assert list(leaks(source)), source


@pytest.mark.parametrize(
    "source",
    [
        "same = owner.op != node.op",  # two nodes' operations: no name
        'divides = value.op == "/"',  # an expression's operator, not an operation
        'if kind == "sigmoid":\n    pass',  # an output kind, not a node's op
        'row = {"shape": s, "min": 0, "max": 1, "mean": 0.5, "nonfinite": 0}',
        'NESTING = frozenset({"group", "repeat", "shared", "add", "sub", "mul", "mod", "neg"})',
        'BUILDERS = {"conv": a, "relu": b}',  # allowed below, by name
    ],
)
def test_the_scan_leaves_other_words_alone(source: str) -> None:
    assert not list(leaks(source, {"BUILDERS"})), source


# ---- the facts ------------------------------------------------------------------------------


def test_the_facts_agree_with_each_other() -> None:
    for name, opdef in REGISTRY.items():
        if opdef.activation:
            assert opdef.locality == "elementwise", f"{name}: an activation is elementwise"
        if opdef.refusal is not None:  # said only where the conversion would refuse it
            assert opdef.locality is None and opdef.on_maps is None, name
        if opdef.head:  # its output is of a kind one of the runtime's decoders reads
            assert any(opdef.output in d.outputs for d in DECODERS.values()), name
        if opdef.decoding is not None:  # how a head's output is decoded, said of heads only
            assert opdef.head, name
        if opdef.kernels:
            assert opdef.weighted and opdef.locality != "elementwise", name
        if opdef.locality is not None:
            assert not opdef.merges, f"{name}: `locality` is said of one-input operations"


@pytest.mark.parametrize("op", sorted(n for n, d in REGISTRY.items() if d.on_maps is not None))
def test_what_replaces_an_operation_on_maps_is_kept_by_the_conversion(op: str) -> None:
    node = next(n for n in spec(OP_SNIPPETS[op]).graph.nodes if n.op == op)
    rule = REGISTRY[op].on_maps
    assert rule is not None
    replacement, params = rule(node.params, (3, 3))
    assert REGISTRY[replacement].locality is not None
    assert isinstance(params, REGISTRY[replacement].params)


def _dependence(op: str) -> torch.Tensor:
    """For the snippet's network on a 3x4x4 input: `(C, H, W, 3, 4, 4)`, whether each output
    value's derivative reaches each input value."""
    compiled = spec(OP_SNIPPETS[op], "x: 3x4x4")
    torch.manual_seed(0)
    module = to_torch(compiled).eval().double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(module, x)
    return jacobian[0, ..., 0, :, :, :].ne(0)


@pytest.mark.parametrize(
    "op", sorted(n for n, d in REGISTRY.items() if d.locality in ("elementwise", "pointwise"))
)
def test_what_each_output_position_is_computed_from_is_as_declared(op: str) -> None:
    reaches = _dependence(op)
    assert reaches.shape[1:3] == (4, 4) and reaches.any(), "the test must see some dependence"
    h, w = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    same_position = (h[:, :, None, None] == h) & (w[:, :, None, None] == w)  # (4, 4, 4, 4)
    allowed = same_position[None, :, :, None].expand_as(reaches)
    if REGISTRY[op].locality == "elementwise":
        assert reaches.shape[0] == 3
        same_channel = torch.eye(3, dtype=torch.bool)[:, None, None, :, None, None]
        allowed = allowed & same_channel
    assert not (reaches & ~allowed).any(), f"{op} reads beyond its declared locality"


def test_a_sliding_operation_reads_neighbours() -> None:
    """The converse, so the test above can fail: conv reads beyond one position."""
    reaches = _dependence("conv")
    assert reaches[:, 0, 0, :, 1, 1].any() and reaches[:, 0, 0, :, 0, 0].any()


def test_the_pages_arithmetic_names_registered_operations_only() -> None:
    from netspec.ops import REGISTRY
    from netspec.serve.arithmetic import RULES

    assert set(RULES) <= set(REGISTRY)
    pools = {op for op, rule in RULES.items() if rule.window is not None}
    assert pools == {"maxpool", "avgpool", "subsample"}
