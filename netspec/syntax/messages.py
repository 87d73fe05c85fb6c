"""Syntax errors as located, worded diagnostics: what was expected, which bracket is still
open, and known mistakes recognised from a catalogue of examples (Lark's `match_examples`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from netspec.diagnostics import Diagnostic, Note, Span, did_you_mean
from netspec.syntax.grammar import lark_parser, tok_span

KEYWORDS = ("use", "const", "table", "kernel", "block", "network", "train", "shared", "output")

_TERMINAL_WORDS = {
    "NAME": "a name",
    "CALLNAME": "a call such as 'basic('",
    "NUMBER": "a number",
    "SIZE": "a size such as 3x3",
    "_X": "'x'",
    "SHAPE": "a shape such as 1x28x28",
    "QUANTITY": "a quantity such as 15deg",
    "STRING": 'a quoted path such as "blocks.net"',
    "_NL": "the end of the line",
    "_PIPE": "'|'",
    "$END": "the end of the file",
    "NEG": "'-'",
}
_SHOWN_TOKEN = 60  # characters of an unexpected token quoted in a message
_TOP_LEVEL = ("use", "const", "table", "kernel", "block", "network", "train")
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {"RPAR": ")", "RSQB": "]", "RBRACE": "}"}
_CHAR_HINTS = {
    "\t": "tabs are allowed only as indentation",
    "'": 'a path is written in double quotes, e.g. use "blocks.net"',
    '"': "a quoted path must end on the same line",
    ".": "a decimal number needs digits on both sides of the point, e.g. 0.5",
    ">": "stages are joined with '|', not '->'",
}


@dataclass(frozen=True)
class _Known:
    """A kind of syntax error, recognised as in Lark's `match_examples`: a parse failure
    in the same parser state, on the same kind of token, as one of the examples.

    `message` and `hint` may name `{word}`, the last word before the failure;
    `caret` puts the caret on that word, on the character just before, or on the token.
    """

    message: str
    hint: str
    examples: tuple[str, ...]
    caret: Literal["token", "word", "char"] = "token"


def _in_net(*lines: str) -> str:
    return "network n(x: 1x8x8) {\n" + "\n".join(lines) + "\n}\n"


# Habits from other languages and frameworks, each answered with netspec's way.
_MISTAKES = (
    _Known(
        "'repeat' takes its count first",
        "write 'repeat N {word} ...': the count, then the stage",
        (_in_net("repeat b(1) 2"), _in_net("repeat conv 1 1x1 2"), _in_net("repeat relu 2")),
    ),
    _Known(
        "',' does not separate stages or an operation's arguments",
        "an operation's arguments are separated by spaces ('conv 16 3x3'), "
        "its stages by '|' ('conv 16 3x3 | relu')",
        tuple(_in_net(f"{stage}, relu") for stage in ("conv 1", "conv 1 1x1", "conv 1 1x1 pad=1")),
    ),
    _Known(
        "';' does not end a statement",
        "a statement ends at the end of its line: put the next one on a line of its own, "
        "or join stages with '|'",
        tuple(_in_net(f"{stage}; relu") for stage in ("relu", "conv 1 1x1", "conv 1 1x1 pad=1")),
    ),
    _Known(
        "'//' does not start a comment",
        "a comment starts with '#'",
        tuple(_in_net(f"{stage} // a comment") for stage in ("relu", "conv 1 1x1")),
    ),
    _Known(
        "'{word}:' does not name an argument",
        "write '{word}=' and its value, with no space between",
        (_in_net("conv 1 1x1 stride:2"), _in_net("relu x:2")),
        caret="word",
    ),
    _Known(
        "two '|' in a row",
        "stages are joined by one '|'",
        (_in_net("relu || relu"), _in_net("conv 1 1x1 || relu")),
    ),
    _Known(
        "a size is written with 'x', not as a tuple",
        "write its sizes joined by 'x': 3x3, not (3, 3)",
        (_in_net("conv 1 (3, 3)"), _in_net("conv 1 1x1 stride=(2, 2)"), _in_net("maxpool (2, 2)")),
    ),
    _Known(
        "input '{word}' needs a shape",
        "write '{word}: SHAPE', channels first and per sample, e.g. '{word}: 3x32x32'",
        ("network n(x) {\n}\n", "network n(x, y: 1x2x2) {\n}\n"),
        caret="word",
    ),
    _Known(
        "a shape is numbers or capitalised names joined by 'x'",
        "e.g. 3x32x32, or 3xHxW for sizes given later with --set H=... --set W=...",
        ("network n(x: 1xhxw) {\n}\n",),
    ),
    _Known(
        "a block's parameters are written in parentheses, even when it has none",
        "write 'block {word}() {{'",
        ("block b {\n}\n",),
    ),
    _Known(
        "a network's inputs are written in parentheses",
        "e.g. 'network {word}(image: 1x28x28) {{'",
        ("network n {\n}\n",),
    ),
    _Known(
        "a body is written in braces; ':' does not open one",
        "end this line with '{{' and close the body with '}}' on a line of its own",
        ("block b(c):\n", "network n(x: 1x8x8):\n"),
    ),
    _Known(
        "'{word}=' cannot start a training setting",
        "a setting is its name, then its values: 'epochs 10', 'optimizer sgd lr=0.1'",
        (_in_net("relu") + "train n on d {\nlr=0.1\n}\n",),
        caret="word",
    ),
)


_KNOWN = (
    _Known(
        "'{word}' is a keyword and cannot be used as a name",
        "choose another name, e.g. '{word}_'",
        (
            _in_net("output = relu"),
            _in_net("output | relu"),
            _in_net("shared = relu"),
            _in_net("shared | relu"),
            _in_net("repeat = relu"),
        ),
        caret="word",
    ),
    _Known(
        "a chain cannot end with '|'",
        "add a stage after the '|', or remove it (a chain goes on on the next line when that "
        "line starts with '|')",
        (
            *(
                _in_net(*lines)
                for chain in ("relu |", "relu | relu |", "x = relu |", "x = relu | relu |")
                for lines in ((chain,), (chain, "relu"), (chain + " }",), ("concat {", chain, "}"))
            ),
            "network n(x: 1x8x8) {\nrelu |",
            "network n(x: 1x8x8) {\nrelu | relu |",
        ),
        caret="char",
    ),
    _Known(
        "'{word}=' needs a value",
        "write a value after '=', e.g. stride=2",
        (_in_net("conv 1 1x1 pad="), _in_net("conv 1 1x1 pad= | relu")),
        caret="word",
    ),
    _Known(
        "'{word}' needs a name",
        "e.g. '{word} NAME = ...'",
        ("const = 1\n", "table = [1]\n", "kernel = [1]\n"),
        caret="word",
    ),
    _Known(
        "'{word}' cannot take arguments here: a call's arguments are separated by ','",
        "in a merge, a stage with arguments reads a tensor named first: name the tensor "
        "(x = ...) and write 'x | {word} ...' ('in' is a block's input, or the network's)",
        tuple(
            _in_net(f"add(a, conv {arg})")
            for arg in ("8 1x1", "c 1x1", "1x1", "15deg", "stride=2", "[1, 2]", "(c)")
        ),
        caret="word",
    ),
    _Known(
        "'repeat' needs a count and a stage",
        "e.g. 'repeat 3 conv 16 3x3 pad=same'",
        (_in_net("repeat"), _in_net("repeat 2"), _in_net("repeat 2 | relu")),
        caret="word",
    ),
    *_MISTAKES,
)


@cache
def _signatures() -> dict[tuple[Any, str], _Known]:
    """(parser state, token type) of each catalogue example's failure -> its kind."""
    found: dict[tuple[Any, str], _Known] = {}
    for known in _KNOWN:
        for example in known.examples:
            try:
                lark_parser().parse(example)
            except UnexpectedToken as e:
                found.setdefault((e.state.position, e.token.type), known)
    return found


_VALUE_STARTS = {"NUMBER", "NAME", "NEG", "LPAR", "LSQB", "SIZE", "QUANTITY"}


def _describe_expected(parser: Lark, names: set[str]) -> str:
    """What the parser would have accepted, in words (any start of a value is 'a value')."""
    words: list[str] = []
    if {"NUMBER", "NAME", "LPAR"} <= names:
        names = names - _VALUE_STARTS
        words.append("a value")
    for name in sorted(names):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        words.append(f"'{pattern.value}'" if pattern.type == "str" else name.lower())
    words = sorted(set(words))
    if len(words) > 6:
        words = [*words[:6], "..."]
    return ", ".join(words)


def _at_end(tok: Token, text: str) -> bool:
    """The end of the file, or a last newline with nothing after it."""
    return tok.type == "$END" or (tok.type == "_NL" and not text[tok.start_pos or 0 :].strip())


def _token_words(tok: Token, text: str) -> str:
    if _at_end(tok, text):
        return "end of file"
    if tok.type in ("_NL", "_PIPE") and "\n" in str(tok):
        return "end of line"
    word = str(tok)
    return f"'{word}'" if len(word) <= _SHOWN_TOKEN else f"'{word[:_SHOWN_TOKEN]}…'"


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _open_brackets(text: str, end: int) -> list[tuple[str, int]]:
    """The brackets still open at offset `end` (comments and strings skipped), innermost last;
    a stray closer is returned as the last entry."""
    stack: list[tuple[str, int]] = []
    i = 0
    while i < end:
        ch = text[i]
        if ch in '#"':
            stop = text.find("\n" if ch == "#" else '"', i + 1)
            i = end if stop < 0 else stop + 1
            continue
        if ch in _PAIRS:
            stack.append((ch, i))
        elif stack and _PAIRS[stack[-1][0]] == ch:
            stack.pop()
        i += 1
    return stack


def _char_span(file: str, text: str, pos: int) -> Span:
    line, col = _line_col(text, pos)
    return Span(file, line, col, line, col + 1)


def _eof_span(text: str, file: str) -> Span:
    body = text.rstrip()
    line, col = _line_col(text, len(body))
    return Span(file, line, col, line, col + 1)


def _token_span(tok: Token, text: str, file: str) -> Span:
    """The token's span; a newline token points just past the end of its line."""
    if tok.type == "$END":
        return _eof_span(text, file)
    if tok.type in ("_NL", "_PIPE") and "\n" in str(tok):
        start = tok.start_pos or 0
        return _char_span(file, text, start + len(text[start:].split("\n", 1)[0]))
    return tok_span(file, tok)


def _word_before(text: str, pos: int) -> tuple[str, int]:
    """The last word before `pos` and its offset ('' and the last non-space character if none)."""
    before = text[:pos].rstrip()
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\W*$", before)
    if m is None:
        return "", max(len(before) - 1, 0)
    return m[1], m.start(1)


def _from_catalogue(e: UnexpectedToken, text: str, file: str) -> Diagnostic | None:
    known = _signatures().get((e.state.position, e.token.type))
    if known is None:
        return None
    pos = e.token.start_pos if e.token.type != "$END" else len(text)
    word, at = _word_before(text, pos if pos is not None else len(text))
    if known.caret == "word":
        line, col = _line_col(text, at)
        span = Span(file, line, col, line, col + max(len(word), 1))
    elif known.caret == "char":
        span = _char_span(file, text, len(text[:pos].rstrip()) - 1)
    else:
        span = _token_span(e.token, text, file)
    fill = {"word": word}
    return Diagnostic("E002", known.message.format(**fill), span, hint=known.hint.format(**fill))


# Tokens that start an argument: one where a call's ')' was expected lacks a ',' before it.
_ARGUMENT_STARTS = frozenset({"NAME", "NUMBER", "CALLNAME", "SIZE", "QUANTITY"})


def _unclosed(e: UnexpectedToken, text: str, file: str) -> Diagnostic | None:
    """A bracket left open: at the end of the file, or before a token that needs it closed."""
    pos = len(text) if e.token.type == "$END" else (e.token.start_pos or 0)
    stack = _open_brackets(text, pos)
    if not stack:
        return None
    opener, at = stack[-1]
    closer = _PAIRS[opener]
    word = str(e.token).strip()
    opened = _char_span(file, text, at)
    if word in _TOP_LEVEL and not _open_brackets(text, len(text)):
        return Diagnostic(
            "E002",
            f"'{word}' cannot appear inside a network or block",
            _token_span(e.token, text, file),
            hint=f"move the '{word}' out of the '{opener} {closer}', to the top level of the file",
        )
    if _at_end(e.token, text):
        message = f"unexpected end of file: the '{opener}' on line {opened.line} is never closed"
    elif word in _TOP_LEVEL:
        message = (
            f"'{word}' cannot appear inside '{opener} {closer}': the '{opener}' on line "
            f"{opened.line} is never closed"
        )
    elif closer == "}" and "_NL" in e.expected:
        return None  # the statement could end here: '}' is only one of what may follow
    elif any(_CLOSERS[t] == closer for t in e.expected & _CLOSERS.keys()):
        message = f"expected '{closer}' to close the '{opener}', got {_token_words(e.token, text)}"
    else:
        return None
    hint = f"add the missing '{closer}'"
    call = opener == "(" and at > 0 and (text[at - 1].isalnum() or text[at - 1] == "_")
    if call and e.token.type in _ARGUMENT_STARTS:
        hint = f"separate the arguments with ',', or add the missing '{closer}'"
    return Diagnostic(
        "E003",
        message,
        _token_span(e.token, text, file),
        hint=hint,
        notes=(Note(f"the '{opener}' opened here", opened),),
    )


def _line_ends_inside(e: UnexpectedToken, text: str, file: str) -> Diagnostic | None:
    """A line that ends inside '( )' or '[ ]' (a merge split across lines): a newline ends
    a statement unless a '\\' continues it."""
    if e.token.type != "_NL" or _at_end(e.token, text):
        return None
    stack = _open_brackets(text, e.token.start_pos or 0)
    if not stack or stack[-1][0] == "{":
        return None
    opener, at = stack[-1]
    return Diagnostic(
        "E002",
        f"the line ends inside '{opener} {_PAIRS[opener]}': a statement ends with its line",
        _token_span(e.token, text, file),
        hint="to go on on the next line, end this one with a backslash '\\'",
        notes=(Note(f"the '{opener}' opened here", _char_span(file, text, at)),),
    )


def _unexpected_token(e: UnexpectedToken, text: str, file: str) -> Diagnostic:
    tok = e.token
    span = _token_span(tok, text, file)
    if tok.type in _CLOSERS:
        stack = _open_brackets(text, tok.start_pos or 0)
        if not stack or _PAIRS[stack[-1][0]] != str(tok):
            return Diagnostic(
                "E003",
                f"unmatched '{tok}'",
                span,
                hint=f"remove it, or add the '{_opener(str(tok))}' it closes",
            )
    diag = _line_ends_inside(e, text, file) or _from_catalogue(e, text, file)
    diag = diag or _unclosed(e, text, file)
    if diag is not None:
        return diag
    hint = f"expected {_describe_expected(lark_parser(), set(e.expected))}"
    lines = text.split("\n")
    line = lines[span.line - 1] if 1 <= span.line <= len(lines) else ""
    if "NETWORK" in e.expected and tok.type in ("NAME", "CALLNAME"):
        hint = "stages belong inside 'network NAME(input: SHAPE) { ... }' or a block"
        defined = re.match(r"\s*[A-Za-z_]\w*\s+([A-Za-z_]\w*)\(", line)
        if defined:
            name = defined[1]
            hint = f"define it with 'network {name}(...) {{' or 'block {name}(...) {{'"
    first = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s+[A-Za-z_]", line)
    if first and first[1] not in KEYWORDS:
        hint = did_you_mean(first[1], KEYWORDS) or hint
    return Diagnostic("E002", f"unexpected {_token_words(tok, text)}", span, hint=hint)


def _opener(closer: str) -> str:
    return next(o for o, c in _PAIRS.items() if c == closer)


def syntax_diagnostic(e: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """One located, worded diagnostic for a Lark parse failure."""
    if isinstance(e, UnexpectedToken):
        return _unexpected_token(e, text, file)
    if isinstance(e, UnexpectedEOF):
        return Diagnostic("E002", "unexpected end of file", _eof_span(text, file))
    assert isinstance(e, UnexpectedCharacters)
    pos = e.pos_in_stream or 0
    char = text[pos] if pos < len(text) else ""
    span = _char_span(file, text, pos)
    hint = _CHAR_HINTS.get(char, "names use letters, digits and '_'; sizes are written like 5x5")
    return Diagnostic("E001", f"unexpected character {char!r}", span, hint=hint)
