"""`netspec fmt` (netspec/fmt.py, netspec/cli/fmt.py): one layout, the same meaning.

Every spec in specs/ is formatted already and comes back from a mess of its own spaces,
indentation and blank lines; generated specs (the grammar's own, with comments and long
chains) format idempotently and compile to the same graph and totals, or to the same
errors; a few tricky layouts are pinned before and after; and the command's `--check`,
`--diff`, `-` and syntax errors are checked from the outside.
"""

from __future__ import annotations

import doctest
import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

import netspec
import netspec.fmt
from cli import main
from netspec.diagnostics import SpecError
from netspec.fmt import WIDTH, format_text
from netspec.limits import Limits
from netspec.syntax.parser import lark_parser, parse
from tests.test_fuzz import _explicit

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.net"))
DOC = ROOT / "docs" / "language.md"
LIMITS = Limits(max_nodes=3000, max_repeat=200, max_params=10**12)
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def outcome(text: str) -> tuple[object, ...]:
    """What compiling `text` gives, spans aside: the graph's nodes (names, operations,
    parameters, inputs) and the totals, or the kind of error and its codes."""
    try:
        compiled = netspec.compile(text, limits=LIMITS)
    except netspec.UsageError as e:
        return ("usage", str(e))
    except SpecError as e:
        return ("errors", [d.code for d in e.diagnostics])
    graph = compiled.graph
    return ("ok", graph.nodes, graph.inputs, graph.outputs, compiled.totals)


def comments(text: str) -> list[str]:
    return [c.text.rstrip() for c in parse(text).comments]


# ---- specs/ and the language doc ---------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_spec_is_formatted(spec: Path) -> None:
    text = spec.read_text(encoding="utf-8")
    assert format_text(text, str(spec)) == text


def test_the_docs_examples_are_formatted() -> None:
    blocks = re.findall(r"^```netspec\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) >= 15
    assert [b for b in blocks if format_text(b) != b] == []


def mess(text: str, seed: int) -> str:
    """The same spec laid out carelessly: other indentation, spaces doubled or dropped
    where that cannot join two words, comments moved, blank lines added, CRLF ends."""
    rng = random.Random(seed)
    out = []
    for line in text.split("\n"):
        code, sep, comment = line.partition("#")
        code = re.sub(r" {2,}", " ", code.strip())
        code = re.sub(r" ", lambda _: " " * rng.randint(1, 3), code)
        code = re.sub(r" ?(\||,) ?", lambda m: m[1] if rng.random() < 0.5 else m[0], code)
        indent = " " * rng.randint(0, 9) if code else ""
        gap = " " * rng.randint(1, 6) if code and sep else ""
        out.append(f"{indent}{code}{gap}{sep}{comment}" + " " * rng.randint(0, 2))
        if line.rstrip().endswith("{") or not line.strip():
            out.append("")
    return "\r\n".join(out)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_a_messed_spec_formats_back_and_means_the_same(spec: Path) -> None:
    text = spec.read_text(encoding="utf-8")
    messed = mess(text, seed=len(text))
    assert messed != text
    formatted = format_text(messed)
    assert formatted == text
    assert outcome(formatted) == outcome(messed) == outcome(text)
    assert outcome(text)[0] == "ok"
    assert comments(messed) == comments(formatted) and len(comments(text)) > 0


# ---- generated specs ---------------------------------------------------------------------


def _with_comments(start: str) -> dict[str, st.SearchStrategy[str]]:
    explicit = _explicit(start)
    explicit["_NL"] = st.sampled_from(["\n", "\n    ", "\r\n", "  # note\n", "\n\n\n  ", "\t#\n"])
    explicit["_PIPE"] = st.sampled_from([" | ", "\n  | ", "\n# c\n| ", "|", "  # t\n    |"])
    return explicit


GENERATED = st.one_of(
    from_lark(lark_parser(), explicit=_with_comments("start")),
    from_lark(lark_parser(), start="network", explicit=_with_comments("network")),
)


def check_formats(text: str) -> str:
    """fmt(text) is a fixed point, keeps the comments and compiles as `text` does."""
    try:
        formatted = format_text(text)
    except SpecError as e:  # the generator's numbers may be over the parser's bounds
        assert e.diagnostics
        with pytest.raises(SpecError):
            parse(text)
        return text
    assert format_text(formatted) == formatted
    assert comments(formatted) == comments(text)
    assert outcome(formatted) == outcome(text)
    return formatted


@PROPERTY
@given(GENERATED)
def test_generated_specs_format_idempotently_with_the_same_meaning(text: str) -> None:
    check_formats(text)


@pytest.mark.parametrize(
    ("text", "laid_out"),
    [
        ("const x = 0 x 0.5\n", "const x = 0 x 0.5\n"),  # found by the property above
        ("const x = -1 x 2.5 x (3)\n", "const x = -1 x 2.5 x (3)\n"),
        ("const x = 3 x  (2)\n", "const x = 3x(2)\n"),
        (" const  x  =  0 x 0  \\\nx 0 ", "const x = 0 x 0 \\\n    x 0\n"),  # found too
    ],
)
def test_a_size_that_is_not_one_word_keeps_its_spaces(text: str, laid_out: str) -> None:
    """`3x1.5` would lex as the size `3x1` and a stray `.5`, and a continued line that
    starts `x0` as a name: a size with a number that is not whole (E205 at compile), or
    one continued onto the next line, stays spaced, so that fmt's output parses as its
    input."""
    assert check_formats(text) == laid_out


STAGES = [
    "conv 8 3x3 pad=same",
    "relu",
    "batchnorm",
    "conv 8 1x1 stride=1 bias=false",
    "leaky_relu 0.1",
    "dropout 0.25",
    "maxpool 3x3 stride=1 pad=same",
    "project(8, 1)",
    "add(in, in)",
]


@st.composite
def long_chains(draw: st.DrawFn) -> str:
    """A network of a few chains, some far longer than WIDTH, some named, some commented."""
    lines = []
    for i in range(draw(st.integers(1, 4))):
        stages = draw(st.lists(st.sampled_from(STAGES), min_size=1, max_size=30))
        name = draw(st.sampled_from(["", f"x{i} = ", f"a_rather_long_result_name{i} = "]))
        comment = draw(st.sampled_from(["", "  # note", " # shapes stay 8x16x16"]))
        glue = draw(st.sampled_from([" | ", "|", "   |  "]))
        lines.append(f"  {name}{glue.join(stages)}{comment}")
    return "network n(image: 8x16x16) {\n" + "\n".join(lines) + "\n    dense 10\n}\n"


@PROPERTY
@given(long_chains())
def test_long_chains_break_at_pipes_within_the_width(text: str) -> None:
    formatted = check_formats(text)
    for line in formatted.splitlines():
        code = line.partition("#")[0].rstrip()
        one_stage = code.strip().removeprefix("|").count("|") == 0
        assert len(code) <= WIDTH or one_stage, line
    assert outcome(text)[0] == "ok"


# ---- tricky layouts, before and after ----------------------------------------------------

GOLDEN = [
    pytest.param(
        "network n(x:1x8x8){\n  conv 4 3x3|relu   # two\n dense 10 # out\n}",
        "network n(x: 1x8x8) {\n    conv 4 3x3 | relu  # two\n    dense 10           # out\n}\n",
        id="spaces-and-aligned-comments",
    ),
    pytest.param(
        "\n\n# head\nconst  w=8\n\n\n\nblock b(c , stride = 1) {\n\n  body=conv c*2 - 1 3x3"
        " stride = stride\n    # why\n      | relu\n\n  add(body, project(c ,stride))\n\n}\n\n",
        "# head\nconst w = 8\n\nblock b(c, stride=1) {\n    body = conv c*2-1 3x3 stride=stride\n"
        "         # why\n         | relu\n\n    add(body, project(c, stride))\n}\n",
        id="blank-lines-continuations-and-arithmetic",
    ),
    pytest.param(
        "table t = [0 1; 1 2;\n 2 0]   # rows\nkernel k = [\n1 -1;\n  - 1 1\n ] / 2\n",
        "table t = [0 1; 1 2;\n           2 0]  # rows\nkernel k = [\n    1 -1;\n    -1 1\n] / 2\n",
        id="matrices-across-lines",
    ),
    pytest.param(
        "network n(x: 1x8x8) {\n conv 4 3x3 \\\n pad=same   # joined\n"
        "    concat {\n  conv 2 1x1\n  # last branch\n    conv 2 1x1 } | relu\n}\n",
        "network n(x: 1x8x8) {\n    conv 4 3x3 \\\n        pad=same  # joined\n    concat {\n"
        "        conv 2 1x1\n        # last branch\n        conv 2 1x1 } | relu\n}\n",
        id="backslash-group-and-comment-before-a-brace",
    ),
    pytest.param(
        "const a = 10 % 3\nconst b = (a+1)*2\nnetwork n(x: 1x8x8) {\n"
        "    conv 10 % 3 3x3 | conv b * 2 1x1 | scale 2 | leaky_relu -0.1 | dense a\n}\n",
        "const a = 10 % 3\nconst b = (a+1)*2\nnetwork n(x: 1x8x8) {\n"
        "    conv 10 % 3 3x3 | conv b*2 1x1 | scale 2 | leaky_relu -0.1 | dense a\n}\n",
        id="a-quantity-is-never-made",
    ),
    pytest.param(
        "network n(x: 8x8x8) {\n    features = conv 8 3x3 pad=same | batchnorm | relu | conv 8"
        " 3x3 pad=same | batchnorm | relu | conv 8 3x3 pad=same # long\n}\n",
        "network n(x: 8x8x8) {\n    features = conv 8 3x3 pad=same | batchnorm | relu | conv 8"
        " 3x3 pad=same | batchnorm | relu\n             | conv 8 3x3 pad=same  # long\n}\n",
        id="a-long-chain-breaks-under-its-equals",
    ),
    pytest.param(
        "const B = 2\nnetwork n(x: 1x28x28) {\n    dense 1470|reshape ( B*5 + C )x7x7\n"
        "    conv 8 3 x (B) pad = (B-1)x( B - 1) | reshape -1 x(B*2)x7\n}\nconst C = 20\n",
        "const B = 2\nnetwork n(x: 1x28x28) {\n    dense 1470 | reshape (B*5 + C)x7x7\n"
        "    conv 8 3x(B) pad=(B-1)x(B - 1) | reshape -1x(B*2)x7\n}\nconst C = 20\n",
        id="computed-sizes-keep-their-arithmetic-and-join-their-x",
    ),
]


@pytest.mark.parametrize(("before", "after"), GOLDEN)
def test_golden(before: str, after: str) -> None:
    assert format_text(before) == after
    assert format_text(after) == after
    assert comments(after) == comments(before)
    assert outcome(after) == outcome(before)


def test_a_syntax_error_is_a_located_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        format_text("network n(x: 1x8x8) {\n    conv 4 3x3 |\n}\n", "bad.net")
    span = caught.value.diagnostics[0].span
    assert (span.file, span.line, span.col) == ("bad.net", 2, 16)


def test_the_modules_example() -> None:
    result = doctest.testmod(netspec.fmt)
    assert result.attempted > 0 and result.failed == 0


def test_an_empty_file_stays_empty() -> None:
    assert format_text("") == format_text("\n\n  \n") == ""
    assert format_text("# only a comment   ") == "# only a comment\n"


# ---- the command -------------------------------------------------------------------------

MESSY = "network n(x:1x8x8){\nconv 4 3x3|relu\n}\n"
TIDY = "network n(x: 1x8x8) {\n    conv 4 3x3 | relu\n}\n"
BAD = "network n(x: 1x8x8) {\n    conv 4 3x3 |\n}\n"


def fmt(*args: str | Path, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, ["fmt", *map(str, args)], input=stdin, prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "tidy.net").write_text(TIDY)
    (tmp_path / "sub" / "messy.net").write_text(MESSY)
    (tmp_path / "notes.txt").write_text(MESSY)
    for skipped in (".hidden", "node_modules"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x.net").write_text(MESSY)
    return tmp_path


def test_check_lists_the_files_to_change_and_exits_1(tree: Path) -> None:
    result = fmt("--check", tree)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [str(tree / "sub" / "messy.net")]
    assert (tree / "sub" / "messy.net").read_text() == MESSY
    assert fmt("--check", tree / "tidy.net").exit_code == 0


def test_a_directory_is_every_spec_under_it(tree: Path) -> None:
    result = fmt(tree)
    assert result.exit_code == 0, result.stderr
    assert (tree / "sub" / "messy.net").read_text() == TIDY
    assert (tree / "tidy.net").read_text() == TIDY
    assert (tree / "notes.txt").read_text() == MESSY
    assert (tree / ".hidden" / "x.net").read_text() == MESSY
    assert (tree / "node_modules" / "x.net").read_text() == MESSY
    assert fmt("--check", tree).exit_code == 0


def test_diff_prints_a_unified_diff_and_writes_nothing(tree: Path) -> None:
    messy = tree / "sub" / "messy.net"
    result = fmt("--diff", messy)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"--- a/{messy}", f"+++ b/{messy}"]
    assert "-conv 4 3x3|relu" in lines and "+    conv 4 3x3 | relu" in lines
    assert messy.read_text() == MESSY
    assert fmt("--diff", "--check", messy).exit_code == 1


def test_dash_reads_stdin_and_writes_stdout() -> None:
    result = fmt("-", stdin=MESSY)
    assert result.exit_code == 0
    assert result.stdout == TIDY
    assert fmt("--check", "-", stdin=TIDY).exit_code == 0


def test_a_syntax_error_leaves_the_file_and_the_others_are_formatted(tmp_path: Path) -> None:
    bad, messy = tmp_path / "bad.net", tmp_path / "messy.net"
    bad.write_bytes(BAD.encode())
    messy.write_text(MESSY)
    result = fmt(bad, messy)
    assert result.exit_code == 1
    assert f"{bad}:2:16: error" in result.stderr
    assert bad.read_bytes() == BAD.encode()
    assert messy.read_text() == TIDY
    stdin = fmt("-", stdin=BAD)
    assert stdin.exit_code == 1 and "<stdin>:2:16" in stdin.stderr and stdin.stdout == ""


def test_no_paths_is_a_usage_error() -> None:
    result = fmt()
    assert result.exit_code == 2
    assert "stdin" in result.stderr
