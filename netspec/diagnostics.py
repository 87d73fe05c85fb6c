"""Source spans, diagnostics, and the one renderer that shows them to a person.

Passes never format text: they raise :class:`SpecError` carrying
:class:`Diagnostic` objects, and the CLI renders them with :func:`render`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from netspec.errors import NetspecError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    @property
    def where(self) -> str:
        return f"{display_path(self.file)}:{self.line}:{self.col}"


def display_path(file: str | Path) -> str:
    """A path as a person wants to read it: relative to the working directory when inside it,
    so that messages do not depend on where the checkout lives."""
    text = str(file)
    if text.startswith("<") or not os.path.isabs(text):
        return text
    try:
        return Path(text).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return text


UNKNOWN = Span("<unknown>", 0, 0, 0, 0)


@dataclass(frozen=True)
class Note:
    message: str
    span: Span | None = None


@dataclass(frozen=True)
class Diagnostic:
    """One mistake (or lint), located in the source."""

    code: str
    message: str
    span: Span
    severity: Severity = "error"
    hint: str | None = None
    notes: tuple[Note, ...] = ()

    def with_note(self, message: str, span: Span | None = None) -> Diagnostic:
        return Diagnostic(
            self.code,
            self.message,
            self.span,
            self.severity,
            self.hint,
            (*self.notes, Note(message, span)),
        )


class SpecError(NetspecError):
    """Raised by any pass that found mistakes; carries all of them (capped). Exit 1."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__(diagnostics[0].message if diagnostics else "spec error")
        self.diagnostics = list(diagnostics)


def spec_error(code: str, message: str, span: Span, hint: str | None = None) -> SpecError:
    """A SpecError carrying one diagnostic: `raise spec_error("E201", "unknown name", span)`."""
    return SpecError([Diagnostic(code, message, span, hint=hint)])


class Collector:
    """Gathers a pass's diagnostics so it can report many at once (up to a cap)."""

    def __init__(self, cap: int = 20) -> None:
        self.cap = cap
        self.items: list[Diagnostic] = []

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)
        if len(self.items) >= self.cap:
            raise SpecError(self.items)

    def error(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        self.add(Diagnostic(code, message, span, hint=hint))

    def raise_if_any(self) -> None:
        errors = [d for d in self.items if d.severity == "error"]
        if errors:
            raise SpecError(self.items)


def _distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (adjacent transpositions count once)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        row = [i]
        for j, cb in enumerate(b, start=1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate a typo most likely meant: a few edits away (fewer for short names),
    else the closest by difflib's ratio; None when nothing is close."""
    pool = sorted(set(candidates) - {name})
    scored = sorted((_distance(name.lower(), c.lower()), c) for c in pool)
    if scored:
        dist, best = scored[0]
        if dist <= max(1, len(name) // 3) and dist < len(name):
            return best
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.75)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The nearest candidate to a misspelled name, phrased as a hint."""
    match = nearest(name, candidates)
    return f"did you mean '{match}'?" if match else None


_PHRASES = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "tuple_type": "a size such as 3x3",
    "string_type": "a word",
    "missing": "given",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def literal_options(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """The allowed words named by Pydantic `literal_error`s."""
    found: list[str] = []
    for err in errors:
        if err.get("type") == "literal_error":
            found += re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    return found


def requirement(errors: Sequence[Mapping[str, Any]]) -> str:
    """What a value must be, in words, from the Pydantic errors about it (several for a union):
    "greater than 0", "'same', 'valid' or at least 0"."""
    items = [f"'{o}'" for o in literal_options(errors)]
    for err in errors:
        kind, ctx = str(err.get("type")), err.get("ctx") or {}
        if kind == "literal_error":
            continue
        if kind in _BOUNDS:
            key, words = _BOUNDS[kind]
            bound = ctx.get(key)
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            items.append(f"{words} {bound}")
        elif kind in ("too_long", "too_short"):
            most = "at most" if kind == "too_long" else "at least"
            items.append(f"{most} {ctx.get('max_length', ctx.get('min_length'))} values long")
        else:
            msg = str(err.get("msg", "valid")).split(",")[0]
            items.append(_PHRASES.get(kind, msg.removeprefix("Input should be ")))
    unique = list(dict.fromkeys(items))
    if len(unique) < 2:
        return unique[0] if unique else "valid"
    return ", ".join(unique[:-1]) + " or " + unique[-1]


@dataclass
class Sources:
    """The text of every file a compilation read, so diagnostics can quote lines."""

    texts: dict[str, str] = field(default_factory=dict)

    def line(self, file: str, number: int) -> str | None:
        text = self.texts.get(file)
        if text is None or number < 1:
            return None
        # Lark counts lines by '\n' alone; splitlines() would also split at '\f', '\x1c', ...
        lines = text.split("\n")
        return lines[number - 1].rstrip("\r") if number <= len(lines) else ""


def _caret(span: Span, source_line: str) -> str:
    start = max(span.col - 1, 0)
    if span.end_line == span.line and span.end_col > span.col:
        width = span.end_col - span.col
    else:
        width = max(len(source_line.rstrip()) - start, 1)
    prefix = "".join(ch if ch == "\t" else " " for ch in source_line[:start])
    return prefix + "^" + "~" * (width - 1)


def _quote(span: Span, sources: Sources) -> list[str]:
    text = sources.line(span.file, span.line)
    if text is None:
        return []
    return ["    " + text.rstrip(), "    " + _caret(span, text)]


def render(diag: Diagnostic, sources: Sources) -> str:
    """`file:line:col: error[CODE]: message`, the line, a caret, hint and notes."""
    out = [f"{diag.span.where}: {diag.severity}[{diag.code}]: {diag.message}"]
    out += _quote(diag.span, sources)
    if diag.hint:
        out.append(f"    {diag.hint}")
    for note in diag.notes:
        if note.span is None:
            out.append(f"    note: {note.message}")
        else:
            out.append(f"{note.span.where}: note: {note.message}")
            out += _quote(note.span, sources)
    return "\n".join(out)


def render_all(diags: Sequence[Diagnostic], sources: Sources) -> str:
    body = "\n".join(render(d, sources) for d in diags)
    errors = sum(d.severity == "error" for d in diags)
    if errors > 1:
        body += f"\n{errors} errors"
    return body
