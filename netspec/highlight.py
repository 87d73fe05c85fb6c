"""Pygments' lexer for netspec specs: `pygmentize -l netspec lenet.net`, and any tool that
asks Pygments for `*.net` (Sphinx, MkDocs, GitLab, ...) once netspec is installed (the
`pygments.lexers` entry point in pyproject.toml).

Its words come from netspec itself, so that they cannot drift from the language: the
keywords are the grammar's (`KEYWORDS`), the operations the registry's (`OPERATIONS`);
editors/vscode/generate_grammar.py builds the VS Code grammar from the same two lists.
`.net` is also .NET's extension: `analyse_text` claims a file only for netspec's own
declarations, and gives C# or VB.NET nothing.

Nothing else in netspec imports this module, so Pygments is needed only where it is used
(the `dev` extra installs it for the tests).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pygments.lexer import RegexLexer, bygroups, words  # type: ignore[import-untyped]
from pygments.token import (  # type: ignore[import-untyped]
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from netspec.ops import REGISTRY
from netspec.syntax.grammar import lark_parser

# The grammar's words (`network`, `repeat`, `as`, ...): its keyword terminals.
KEYWORDS: tuple[str, ...] = tuple(
    sorted(
        {
            t.pattern.value
            for t in lark_parser().terminals
            if t.pattern.type == "str" and t.pattern.value.isalpha()
        }
    )
)
OPERATIONS: tuple[str, ...] = tuple(sorted(REGISTRY))
DECLARATIONS = ("network", "block", "train", "const", "table", "kernel", "shared")
LITERALS = ("true", "false")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SPEC = re.compile(
    rf"^[ \t]*(?:(?:network|block)[ \t]+{_NAME}[ \t]*\(|train[ \t]+{_NAME}[ \t]+on[ \t]+{_NAME})",
    re.MULTILINE,
)
_DOTNET = re.compile(
    r"^[ \t]*(?:using[ \t]+System|namespace[ \t]|Imports[ \t]+System|(?:Public|Private|"
    r"Friend)?[ \t]*(?:Class|Module|Sub|Function)[ \t]|End[ \t]+(?:Sub|Class|Module)|"
    r"(?:public|private|internal|static)[ \t].*[({]|<%@|\[assembly:)",
    re.MULTILINE,
)
# `train NAME on DATASET`: the network trained and the dataset, in the pieces' order
_TRAIN = (
    Keyword.Declaration,
    Whitespace,
    Name.Function,
    Whitespace,
    Keyword,
    Whitespace,
    Name.Constant,
)


class NetspecLexer(RegexLexer):  # type: ignore[misc]
    """Declarations, keywords, the registry's operations, sizes, numbers and comments."""

    name = "netspec"
    aliases: ClassVar[list[str]] = ["netspec"]
    filenames: ClassVar[list[str]] = ["*.net"]
    mimetypes: ClassVar[list[str]] = ["text/x-netspec"]

    tokens: ClassVar[dict[str, list[tuple[Any, ...]]]] = {
        "root": [
            # `x = ...` (a named result) at the start of a line, before its indentation goes
            (
                rf"^([ \t]*)({_NAME})([ \t]*)(=)",
                bygroups(Whitespace, Name.Variable, Whitespace, Operator),
            ),
            (r"[ \t\f]+", Whitespace),
            (r"\\\r?\n|\r?\n", Whitespace),
            (r"#.*?$", Comment.Single),
            (r'"[^"\n]*"', String.Double),
            (
                rf"(train)([ \t]+)({_NAME})([ \t]+)(on)([ \t]+)({_NAME})",
                bygroups(*_TRAIN),
            ),
            (
                rf"(network|block|shared)([ \t]+)({_NAME})",
                bygroups(Keyword.Declaration, Whitespace, Name.Function),
            ),
            (
                rf"(const|table|kernel)([ \t]+)({_NAME})",
                bygroups(Keyword.Declaration, Whitespace, Name.Constant),
            ),
            (rf"({_NAME})(=)", bygroups(Name.Attribute, Operator)),
            (words(OPERATIONS, prefix=r"\b", suffix=r"\b"), Name.Builtin),
            (words(KEYWORDS, prefix=r"\b", suffix=r"\b"), Keyword),
            (words(LITERALS, prefix=r"\b", suffix=r"\b"), Keyword.Constant),
            (r"\bin\b", Name.Builtin.Pseudo),
            (r"(?<=[\d)])x(?=[\d(-])", Operator),  # a computed size's `x`: (c)x3, 3x(k)
            (rf"{_NAME}(?=\()", Name.Function),
            (r"-?\d+(?:x(?:-?\d+|[A-Z][A-Za-z0-9_]*))+\b", Number),  # sizes, shapes
            (r"\d+(?:\.\d+)?(?:deg|px|%)", Number),  # quantities
            (r"\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+", Number.Float),
            (r"\d+", Number.Integer),
            (r"\.\.|//|[|+\-*/%=]", Operator),
            (r"[()\[\]{},;:.]", Punctuation),
            (_NAME, Name),
            (r".", Text),
        ],
    }

    @staticmethod
    def analyse_text(text: str) -> float:
        """High for netspec's declarations; nothing for C# or VB.NET, also `*.net`."""
        if _DOTNET.search(text):
            return 0.0
        return 0.9 if _SPEC.search(text) else 0.0
