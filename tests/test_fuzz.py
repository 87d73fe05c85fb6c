"""Property tests of the front end: whatever the text, `netspec.compile` either succeeds
or raises SpecError/UsageError whose diagnostics point inside the text; never a traceback.

Inputs come from the grammar itself (Hypothesis `from_lark`, with tokens drawn from
the language's real vocabulary), from mutations of the specs in specs/, from those
specs with their numbers scaled (by 0, 10^3, 10^5, 10^12), and from deep nesting.
Every Hypothesis test has a fixed max_examples and no deadline: nothing depends on load.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

import netspec
from netspec.diagnostics import Diagnostic, Sources, Span, render_all
from netspec.limits import Limits
from netspec.syntax.parser import lark_parser

SPECS = {p.name: p.read_text(encoding="utf-8") for p in sorted(Path("specs").glob("*.net"))}
# Small limits keep a generated `repeat 60 repeat 60 ...` quick to refuse.
LIMITS = Limits(max_nodes=3000, max_repeat=200, max_params=10**12)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ---- the check ---------------------------------------------------------------------------


def _spans(diag: Diagnostic) -> list[Span]:
    return [diag.span, *(n.span for n in diag.notes if n.span is not None)]


def _located(span: Span, text: str) -> bool:
    """Inside the text: a real line (Lark counts '\\n' only) and a column from 1."""
    if span.file != "<string>":
        return span.line >= 1 and span.col >= 1  # a file that the text `use`d
    return 1 <= span.line <= text.count("\n") + 1 and span.col >= 1


def check(text: str) -> None:
    try:
        compiled = netspec.compile(text, limits=LIMITS)
    except netspec.UsageError as e:
        assert str(e)
        return
    except netspec.SpecError as e:
        assert e.diagnostics
        diags = e.diagnostics
    else:
        diags = compiled.warnings
    for diag in diags:
        for span in _spans(diag):
            assert _located(span, text), f"{diag.code} {diag.message!r} at {span}"
    rendered = render_all(diags, Sources({"<string>": text}))
    assert "Traceback" not in rendered


# ---- (a) text generated from the grammar -------------------------------------------------


def _padded(words: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(words).map(lambda w: f" {w} ")


OPS = ["conv", "dense", "relu", "maxpool", "avgpool", "add", "concat", "batchnorm", "flatten"]
WORDS = [
    "x",
    "c",
    "k",
    "t",
    "a",
    "b",
    "H",
    "W",
    "same",
    "global",
    "stride",
    "pad",
    "connect",
    "fixed",
    "tie",
    "groups",
    "lenet",
    "mnist",
    "sgd",
    "lr",
    "epochs",
    "c3",
    "tower",
]


def _terminals(start: str) -> set[str]:
    """The terminals that the rule `start` can reach, and the ignored ones."""
    parser = lark_parser()
    seen: set[str] = set()
    found = set(parser.ignore_tokens)
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for rule in parser.rules:
            if rule.origin.name == name:
                found.update(s.name for s in rule.expansion if s.is_term)
                todo += [s.name for s in rule.expansion if not s.is_term]
    return found


def _explicit(start: str) -> dict[str, st.SearchStrategy[str]]:
    """Real-looking tokens, spaced so that neighbours never run together."""
    strategies: dict[str, st.SearchStrategy[str]] = {
        "NAME": st.one_of(_padded(WORDS), _padded(WORDS), _padded(OPS)),
        "CALLNAME": st.sampled_from(["b(", "tower(", "lenet(", "net(", "add(", "project("]).map(
            lambda w: f" {w}"
        ),
        "NUMBER": st.one_of(
            st.integers(0, 70).map(str), st.sampled_from(["0.5", "1e-3", "2.0"])
        ).map(lambda w: f" {w} "),
        "SIZE": _padded(["1x1", "2x2", "3x3", "5x5", "7x7", "1x7", "3x3x3", "40x40"]),
        "_X": st.just("x"),  # a computed size's `x`: `(c)x3`, `3 x (k)`
        "SHAPE": _padded(["1x28x28", "3x32x32", "1x8x8", "3xHxW", "1xH", "2x4x4x4"]),
        "QUANTITY": _padded(["15deg", "2px", "10%", "0.5px"]),
        "STRING": _padded(['"lib.net"', '"../up.net"', '""']),
        "NEG": st.just(" - "),
        "_PIPE": st.sampled_from([" | ", "\n  | ", "\n# c\n| "]),
        "_NL": st.sampled_from(["\n", "\n    ", "\r\n"]),
        "COMMENT": st.just(" "),  # a comment would swallow the rest of the line
        "WS": st.just(" "),
        "LINE_CONT": st.just(" \\\n"),
    }
    for terminal in lark_parser().terminals:
        if terminal.pattern.type == "str":
            strategies[terminal.name] = st.just(f" {terminal.pattern.value} ")
    used = _terminals(start)
    return {name: strategy for name, strategy in strategies.items() if name in used}


# Whole files, and single networks (which reach the later passes far more often).
GRAMMAR_TEXT = st.one_of(
    from_lark(lark_parser(), explicit=_explicit("start")),
    from_lark(lark_parser(), start="network", explicit=_explicit("network")),
)


@FUZZ
@given(GRAMMAR_TEXT)
def test_text_from_the_grammar(text: str) -> None:
    check(text)


def test_generated_text_parses() -> None:
    """The generator is faithful: what it makes, the parser accepts (else (a) tests little)."""

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(GRAMMAR_TEXT)
    def parses(text: str) -> None:
        lark_parser().parse(text)

    parses()


# ---- (b) mutations of the real specs -----------------------------------------------------

TOKEN = re.compile(r"\w+|[^\w\s]")
VOCABULARY = sorted({t for text in SPECS.values() for t in TOKEN.findall(text)})
NOISE = st.text(
    alphabet=st.sampled_from(list("{}()[]|=:;,.-+*/%#\"'\\\t\r\n\f x059_aZé\u00a0\u2028\x00")),
    min_size=1,
    max_size=4,
)
MUTATIONS = ("delete", "duplicate", "swap", "replace", "truncate", "insert")


@st.composite
def mutated_spec(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(sorted(SPECS.values())))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(MUTATIONS))
        lines = text.split("\n")
        if kind in ("delete", "duplicate", "swap"):
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "delete":
                del lines[i]
            elif kind == "duplicate":
                lines.insert(i, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == "replace":
            tokens = list(TOKEN.finditer(text))
            if tokens:
                m = tokens[draw(st.integers(0, len(tokens) - 1))]
                new = draw(st.sampled_from(VOCABULARY))
                text = text[: m.start()] + new + text[m.end() :]
        elif kind == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        else:
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(NOISE) + text[at:]
    return text


@settings(FUZZ, max_examples=400)
@given(mutated_spec())
def test_mutated_specs(text: str) -> None:
    check(text)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_compiles_and_every_truncation_is_clean(name: str) -> None:
    """Each real spec compiles; cut at every line end, it still fails cleanly."""
    text = SPECS[name]
    check(text)
    ends = [m.start() for m in re.finditer("\n", text)]
    for end in ends[:: max(1, len(ends) // 15)]:
        check(text[:end])


# ---- (c) the real specs with their numbers scaled, and deep nesting --------------------

NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:\.\d+)?(?:x(?:\d+|[A-Z]\w*))*")
FACTORS = (0, 10**3, 10**5, 10**12)


def scaled(text: str, factor: int, picked: set[int] | None = None) -> str:
    """`text` with every number (or the `picked` ones, by position) times `factor`; the
    parts of a size such as 3x3 are scaled one by one."""
    count = iter(range(1 << 30))

    def one(part: str) -> str:
        if not part[0].isdigit():
            return part  # a symbolic size such as H
        value = float(part) * factor if "." in part else int(part) * factor
        return repr(value) if isinstance(value, float) else str(value)

    def scale(m: re.Match[str]) -> str:
        if picked is not None and next(count) not in picked:
            return m[0]
        return "x".join(one(p) for p in m[0].split("x"))

    return NUMBER.sub(scale, text)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_number_scaled(name: str, factor: int) -> None:
    check(scaled(SPECS[name], factor))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(SPECS)),
    st.sampled_from(FACTORS),
    st.sets(st.integers(0, 400), min_size=1, max_size=6),
)
def test_some_numbers_scaled(name: str, factor: int, picked: set[int]) -> None:
    check(scaled(SPECS[name], factor, picked))


def _nested(kind: str, depth: int) -> str:
    if kind == "concat":
        body = "concat {\n" * depth + "relu\n" + "}\n" * depth
    elif kind == "repeat":
        body = "repeat 1 " * depth + "relu\n"
    elif kind == "shared":
        opened = "".join(f"shared s{i} = {{\n" for i in range(depth))
        body = opened + "relu\n" + "}\n" * depth + "s0\n"
    elif kind == "sum":
        body = "conv " + " + ".join(["1"] * depth) + " 1x1\n"
    else:
        body = "conv " + "- " * depth + "1 1x1\n"
    return "network n(x: 1x8x8) {\n" + body + "}\n"


@pytest.mark.parametrize("depth", [1, 10, 49, 50, 51, 161, 1000, 5000])
@pytest.mark.parametrize("kind", ["concat", "repeat", "shared", "sum", "neg"])
def test_deep_nesting_is_refused_cleanly(kind: str, depth: int) -> None:
    check(_nested(kind, depth))
