"""editors/vscode: the extension's manifest, its language configuration, its TextMate
grammar (generated from the registry and the grammar, so it cannot drift), and the
grammar's scope assertions (editors/vscode/tests/*.test.net) run by vscode-tmgrammar-test.

The assertions need node and the npm package (`make editors` installs it where node and
npm are): elsewhere that test skips, but under CI=true it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from netspec.ops import REGISTRY
from netspec.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[1]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "netspec.tmLanguage.json"
CASES = sorted((VSCODE / "tests").glob("*.test.net"))
TOOL = VSCODE / "node_modules" / ".bin" / "vscode-tmgrammar-test"


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    return data


def language() -> dict[str, Any]:
    (lang,) = manifest()["contributes"]["languages"]
    return dict(lang)


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_grammar", VSCODE / "generate_grammar.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_grammar_file_is_what_the_generator_writes() -> None:
    assert GRAMMAR.read_text(encoding="utf-8") == generator().text(), (
        "run .venv/bin/python editors/vscode/generate_grammar.py"
    )


def test_the_grammar_colours_every_registered_operation() -> None:
    pattern = json.loads(GRAMMAR.read_text(encoding="utf-8"))["repository"]["operation"]["match"]
    for op in REGISTRY:
        assert re.fullmatch(pattern, op), op
    assert not re.fullmatch(pattern, "maxpol")


def test_the_manifest_names_the_language_grammar_and_server() -> None:
    data = manifest()
    lang = language()
    assert lang["id"] == "netspec" and lang["extensions"] == [".net"]
    config = json.loads((VSCODE / lang["configuration"]).read_text(encoding="utf-8"))
    assert config["comments"]["lineComment"] == "#"
    assert ["{", "}"] in config["brackets"]
    (grammar,) = data["contributes"]["grammars"]
    assert (VSCODE / grammar["path"]).resolve() == GRAMMAR
    assert grammar["scopeName"] == json.loads(GRAMMAR.read_text())["scopeName"]
    script = (VSCODE / data["main"]).read_text(encoding="utf-8")
    assert '"lsp"' in script and "vscode-languageclient/node" in script
    assert "vscode-languageclient" in data["dependencies"]
    assert "vscode-tmgrammar-test" in data["devDependencies"]


def test_first_line_claims_specs_and_not_dotnet_sources() -> None:
    first_line = re.compile(language()["firstLine"])
    specs = [p.read_text(encoding="utf-8").splitlines()[0] for p in (ROOT / "specs").glob("*.net")]
    claimed = [*specs, "network lenet(image: 1x28x28) {", "block basic(c) {", "train n on mnist {"]
    assert [line for line in claimed if not first_line.search(line)] == []
    dotnet = ["using System;", "Imports System", "// C#", "namespace Demo", "Public Module M"]
    assert [line for line in dotnet if first_line.search(line)] == []


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_each_grammar_case_is_a_spec_with_its_assertions_in_column_1(case: Path) -> None:
    """vscode-tmgrammar-test reads an assertion only from a `#` in column 1 (an indented
    one is a plain comment, and passes), so these files are never run through fmt."""
    text = case.read_text(encoding="utf-8")
    assert parse(text, str(case)).items
    assertions = re.findall(r"^([ \t]*)#\s*(?:\^|<-)", text, re.MULTILINE)
    assert len(assertions) >= 5 and set(assertions) == {""}


def _tool_or_skip() -> Path:
    missing = None
    if shutil.which("node") is None:
        missing = "node"
    elif not TOOL.exists():
        missing = "vscode-tmgrammar-test (`make editors` installs it with npm)"
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}: CI runs the grammar's tests (make editors)")
        pytest.skip(f"no {missing}")
    return TOOL


def run_cases(*cases: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_tool_or_skip()), "--grammar", str(GRAMMAR), *map(str, cases)],
        cwd=VSCODE,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_grammar_passes_its_scope_assertions() -> None:
    assert len(CASES) >= 2
    result = run_cases(*CASES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("run successfuly") == len(CASES), result.stdout


def test_a_wrong_assertion_fails(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.test.net"
    wrong.write_text(
        '# SYNTAX TEST "source.netspec" "a wrong scope"\n'
        "network n(x: 1x8x8) {\n"
        "    dense 10\n"
        "#   ^^^^^ keyword.control.netspec\n"
        "}\n"
    )
    result = run_cases(wrong)
    assert result.returncode != 0
    assert "support.function.operation.netspec" in result.stdout
