"""The pipeline's structure: PASSES in an order that works, each pass's needs and ensures
checked, doctests that run, one-way imports, and the small IR and AST guarantees."""

from __future__ import annotations

import ast as pyast
import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import netspec
import netspec.compiler
import netspec.passes
from netspec.compiler import PASSES
from netspec.diagnostics import Span
from netspec.passes.lints import LINTS
from netspec.passes.state import CompileState, Pass, PipelineError, check_order, run_passes
from netspec.syntax import ast
from netspec.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "netspec"
NET = "network n(x: 1x8x8) {{\n    {}\n}}\n"


def test_passes_are_in_an_order_that_works() -> None:
    check_order(PASSES)
    assert [p.name for p in PASSES] == [
        "load", "define", "bind", "constants", "expand", "infer", "limits", "train", "lint",
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(1, len(PASSES)))
def test_moving_a_pass_first_is_refused_naming_what_it_needs(index: int) -> None:
    moved = PASSES[index]
    if not set(moved.needs) - {"text", "file", "limits", "allow_outside", "overrides"}:
        pytest.skip(f"'{moved.name}' needs only the request")
    order = (moved, *PASSES[:index], *PASSES[index + 1 :])
    with pytest.raises(PipelineError, match=f"pass '{moved.name}' needs"):
        check_order(order)


def _documented() -> dict[str, tuple[str, set[str], set[str]]]:
    """compiler.py's table of passes: name -> (module, needs, ensures)."""
    doc = netspec.compiler.__doc__ or ""
    lines = doc.split("    pass        module", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows: dict[str, list[str]] = {}
    name = ""
    for line in lines:
        name = line[4:16].strip() or name
        cells = rows.setdefault(name, ["", "", ""])
        for i, (a, b) in enumerate(((16, 41), (41, 71), (71, None))):
            cells[i] += " " + line[a:b]
    return {n: (c[0].strip(), _words(c[1]), _words(c[2])) for n, c in rows.items()}


def _words(cell: str) -> set[str]:
    """The field names of a table cell, without its remark in parentheses."""
    return set(re.findall(r"[a-z_]+", cell.split("(")[0]))


def test_compiler_docstring_lists_every_pass_as_it_is() -> None:
    documented = _documented()
    assert list(documented) == [p.name for p in PASSES]
    for p in PASSES:
        module, needs, ensures = documented[p.name]
        assert (PACKAGE / module).exists(), module
        assert needs == set(p.needs), p.name
        assert ensures == set(p.ensures), p.name


def test_a_pass_that_does_not_ensure_what_it_says_is_caught() -> None:
    lazy = Pass("lazy", lambda state: None, needs=(), ensures=("graph",))
    with pytest.raises(PipelineError, match="did not set graph"):
        run_passes(CompileState(""), (lazy,))


def test_a_pass_naming_an_unknown_field_is_caught() -> None:
    with pytest.raises(PipelineError, match="not a CompileState field"):
        check_order((Pass("typo", lambda state: None, needs=("grahp",), ensures=()),))


def test_the_pipeline_stops_after_the_pass_that_found_mistakes() -> None:
    state = CompileState(NET.format("relu"), overrides={"nope": 1})
    with pytest.raises(netspec.UsageError):
        run_passes(state, PASSES)
    assert state.program is not None and state.graph is None


def test_lints_are_a_tuple_of_rules_with_one_code_each() -> None:
    codes = {rule.__doc__.split(":")[0] for rule in LINTS if rule.__doc__}
    assert codes == {"W301", "W302", "W303", "W304", "W305"}


def test_many_unused_results_stay_warnings() -> None:
    names = [f"r{i}" for i in range(30)]
    body = "\n    ".join(f"{n} = x | relu" for n in names)  # each reads x, none is read
    body += "\n    output x"
    compiled = netspec.compile(NET.format(body))
    assert {d.code for d in compiled.warnings} == {"W301"}
    assert len(compiled.warnings) == 30


def _modules() -> list[str]:
    names = ["netspec.passes"]
    for info in pkgutil.walk_packages(netspec.passes.__path__, "netspec.passes."):
        names.append(info.name)
    syntax = ["netspec.syntax.ast", "netspec.syntax.bounds", "netspec.syntax.parser"]
    return [*names, *syntax, "netspec.compiler"]


@pytest.mark.parametrize("name", _modules())
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


# ---- one-way layers --------------------------------------------------------------------

# Each layer and the netspec modules it may not import, lazily or not.
ABOVE_COMPILER = ("netspec.report", "netspec.lower", "netspec.export", "netspec.train",
                  "netspec.runtime", "netspec.console", "cli")  # fmt: skip
FORBIDDEN = {
    "syntax": ("netspec.passes", "netspec.compiler", "netspec.ir", *ABOVE_COMPILER),
    "passes": ("netspec.compiler", "netspec.trainspec", *ABOVE_COMPILER),
    "ir.py": ("netspec.passes", "netspec.compiler", *ABOVE_COMPILER),
    "ops": ("netspec.passes", "netspec.compiler", *ABOVE_COMPILER),
    "trainspec.py": ("netspec.compiler", *ABOVE_COMPILER),
    "compiler.py": ABOVE_COMPILER,
}


def _imports(path: Path) -> set[str]:
    tree = pyast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, pyast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_go_one_way(layer: str) -> None:
    target = PACKAGE / layer
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    for path in files:
        for name in _imports(path):
            bad = [f for f in FORBIDDEN[layer] if name == f or name.startswith(f + ".")]
            assert not bad, f"{path.relative_to(ROOT)} imports {name}"


def test_compiling_imports_neither_report_nor_lower_nor_torch() -> None:
    code = (
        "import sys, netspec\n"
        "netspec.compile('network n(x: 1x8x8) {\\n    relu\\n}\\n')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')"
        " or m.startswith(('netspec.report', 'netspec.lower'))))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert run.stdout.strip() == "[]"


# ---- the API -------------------------------------------------------------------------------


def test_compile_takes_a_path_as_a_file_and_a_str_as_text() -> None:
    lenet = ROOT / "specs" / "lenet.net"
    assert netspec.compile(lenet).name == netspec.compile(lenet.read_text()).name
    assert netspec.compile_file(str(lenet)).name == "lenet"
    with pytest.raises(netspec.UsageError, match="as the text of a spec, not as a path"):
        netspec.compile(str(lenet))  # a str is text, never guessed to be a path


def test_compile_file_without_a_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(netspec.UsageError, match="no such spec file"):
        netspec.compile_file(tmp_path / "missing.net")


# ---- spans, indexes ------------------------------------------------------------------------


def test_spans_compare_as_values_and_never_break_node_equality() -> None:
    a, b = Span("a.net", 1, 1, 1, 5), Span("b.net", 2, 3, 2, 7)
    assert a != b and a == Span("a.net", 1, 1, 1, 5) and hash(a) == hash(replace(a))
    here = parse("const c = 1 + 2", "a.net").items[0]
    there = parse("\n\nconst c = 1 + 2", "b.net").items[0]
    assert here.span != there.span
    assert here == there and hash(here) == hash(there)
    assert here != parse("const c = 1 + 3").items[0]
    assert ast.Num(value=1) != ast.Name(name="x")


def test_ir_nodes_compare_without_spans() -> None:
    one = netspec.compile(NET.format("relu"))
    two = netspec.compile("\n\n" + NET.format("relu"))
    assert one.graph.nodes[0].span != two.graph.nodes[0].span
    assert one.graph == two.graph


def test_graph_and_inferred_look_nodes_up_by_name() -> None:
    compiled = netspec.compile(ROOT / "specs" / "resnet18.net")
    last = compiled.graph.nodes[-1]
    assert compiled.graph.node(last.name) is last
    assert compiled.inferred.layer(last.name).name == last.name
    with pytest.raises(KeyError):
        compiled.graph.node("nope")
