"""netspec/highlight.py: Pygments' lexer for specs, found through the `pygments.lexers`
entry point, with its words from the grammar and the registry, and a claim on `*.net`
that .NET's sources do not trigger."""

from __future__ import annotations

from pathlib import Path

import pytest
from pygments.lexers import (
    get_lexer_by_name,
    get_lexer_for_filename,
    guess_lexer,
    guess_lexer_for_filename,
)
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String

from netspec.highlight import KEYWORDS, OPERATIONS, NetspecLexer
from netspec.ops import REGISTRY
from netspec.syntax.parser import lark_parser

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.net"))

SAMPLE = """\
use "blocks.net"
const width = 8  # maps
table pairs = [0 1; 1 2]
block basic(c, stride=1) {
    body = conv c*2 3x3 stride=stride pad=same | relu
    add(body, in) | mine(c) as out
}
network n(image: 1xHxW) {
    repeat 2 basic(width) | concat { relu } | reshape -1x7x7 | dropout 0.5 bias=false
    output out: map
}
train n on mnist {
    augment { rotate 15deg }
    optimizer sgd lr=1e-3
}
"""

# Every token but whitespace, in order: the golden reading of SAMPLE.
GOLDEN = [
    (Keyword, "use"), (String.Double, '"blocks.net"'),
    (Keyword.Declaration, "const"), (Name.Constant, "width"), (Operator, "="),
    (Number.Integer, "8"), (Comment.Single, "# maps"),
    (Keyword.Declaration, "table"), (Name.Constant, "pairs"), (Operator, "="),
    (Punctuation, "["), (Number.Integer, "0"), (Number.Integer, "1"), (Punctuation, ";"),
    (Number.Integer, "1"), (Number.Integer, "2"), (Punctuation, "]"),
    (Keyword.Declaration, "block"), (Name.Function, "basic"), (Punctuation, "("),
    (Name, "c"), (Punctuation, ","), (Name.Attribute, "stride"), (Operator, "="),
    (Number.Integer, "1"), (Punctuation, ")"), (Punctuation, "{"),
    (Name.Variable, "body"), (Operator, "="), (Name.Builtin, "conv"), (Name, "c"),
    (Operator, "*"), (Number.Integer, "2"), (Number, "3x3"), (Name.Attribute, "stride"),
    (Operator, "="), (Name, "stride"), (Name.Attribute, "pad"), (Operator, "="),
    (Name, "same"), (Operator, "|"), (Name.Builtin, "relu"),
    (Name.Builtin, "add"), (Punctuation, "("), (Name, "body"), (Punctuation, ","),
    (Name.Builtin.Pseudo, "in"), (Punctuation, ")"), (Operator, "|"),
    (Name.Function, "mine"), (Punctuation, "("), (Name, "c"), (Punctuation, ")"),
    (Keyword, "as"), (Name, "out"),
    (Punctuation, "}"),
    (Keyword.Declaration, "network"), (Name.Function, "n"), (Punctuation, "("),
    (Name, "image"), (Punctuation, ":"), (Number, "1xHxW"), (Punctuation, ")"),
    (Punctuation, "{"),
    (Keyword, "repeat"), (Number.Integer, "2"), (Name.Function, "basic"), (Punctuation, "("),
    (Name, "width"), (Punctuation, ")"), (Operator, "|"), (Name.Builtin, "concat"),
    (Punctuation, "{"), (Name.Builtin, "relu"), (Punctuation, "}"), (Operator, "|"),
    (Name.Builtin, "reshape"), (Number, "-1x7x7"), (Operator, "|"),
    (Name.Builtin, "dropout"), (Number.Float, "0.5"), (Name.Attribute, "bias"),
    (Operator, "="), (Keyword.Constant, "false"),
    (Keyword, "output"), (Name, "out"), (Punctuation, ":"), (Name, "map"),
    (Punctuation, "}"),
    (Keyword.Declaration, "train"), (Name.Function, "n"), (Keyword, "on"),
    (Name.Constant, "mnist"), (Punctuation, "{"),
    (Keyword, "augment"), (Punctuation, "{"), (Name, "rotate"), (Number, "15deg"),
    (Punctuation, "}"),
    (Name, "optimizer"), (Name, "sgd"), (Name.Attribute, "lr"), (Operator, "="),
    (Number.Float, "1e-3"),
    (Punctuation, "}"),
]  # fmt: skip

CSHARP = """\
using System;
namespace Demo {
    public class Program {
        public static void Main(string[] args) { Console.WriteLine("network"); }
    }
}
"""
VBNET = """\
Imports System
Module Program
    Sub Main()
        Console.WriteLine("train n on mnist")
    End Sub
End Module
"""


def tokens(text: str) -> list[tuple[object, str]]:
    return [(t, v) for t, v in NetspecLexer().get_tokens(text) if v.strip()]


def test_golden_tokens() -> None:
    assert tokens(SAMPLE) == GOLDEN


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_spec_lexes_whole_without_errors(spec: Path) -> None:
    text = spec.read_text(encoding="utf-8")
    lexed = list(NetspecLexer().get_tokens(text))
    assert "".join(v for _, v in lexed) == text
    assert [v for t, v in lexed if t in Error] == []
    assert any(t in Name.Builtin for t, _ in lexed)


def test_the_words_come_from_the_registry_and_the_grammar() -> None:
    assert set(OPERATIONS) == set(REGISTRY)
    grammar_words = {
        t.pattern.value
        for t in lark_parser().terminals
        if t.pattern.type == "str" and t.pattern.value.isalpha()
    }
    assert set(KEYWORDS) == grammar_words >= {"network", "block", "train", "repeat", "output"}
    for op in REGISTRY:
        assert tokens(f"    x | {op} 2")[2] == (Name.Builtin, op)


def test_pygments_finds_the_lexer_by_name_and_file_name() -> None:
    assert isinstance(get_lexer_by_name("netspec"), NetspecLexer)
    assert isinstance(get_lexer_for_filename("lenet.net"), NetspecLexer)
    spec = SPECS[0].read_text(encoding="utf-8")
    assert isinstance(guess_lexer_for_filename("x.net", spec), NetspecLexer)


@pytest.mark.parametrize(
    "text",
    [
        "network lenet(image: 1x28x28) {\n    dense 10\n}\n",
        "# a library\nblock basic(c) {\n    conv c 3x3\n}\n",
        "train lenet on mnist {\n    epochs 3\n}\n",
    ],
)
def test_a_spec_scores_high(text: str) -> None:
    assert NetspecLexer.analyse_text(text) >= 0.8


@pytest.mark.parametrize("text", [CSHARP, VBNET, "just some words\n"])
def test_dotnet_and_other_text_score_nothing(text: str) -> None:
    assert NetspecLexer.analyse_text(text) == 0.0
    assert not isinstance(guess_lexer(text), NetspecLexer)


def test_a_spec_is_guessed_from_its_text() -> None:
    assert isinstance(guess_lexer(SPECS[0].read_text(encoding="utf-8")), NetspecLexer)
