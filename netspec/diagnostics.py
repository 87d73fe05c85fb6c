"""Source spans, diagnostics, and the one renderer that shows them to a person.

Passes never format text: they raise :class:`SpecError` carrying
:class:`Diagnostic` objects, and the CLI renders them with :func:`render`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __eq__(self, other: object) -> bool:
        # Spans never make two nodes differ: comparisons ignore where things came from.
        return isinstance(other, Span)

    def __hash__(self) -> int:
        return 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


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


class SpecError(Exception):
    """Raised by any pass that found mistakes; carries all of them (capped)."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__(diagnostics[0].message if diagnostics else "spec error")
        self.diagnostics = list(diagnostics)


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

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The nearest candidate to a misspelled name, phrased as a hint."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None


@dataclass
class Sources:
    """The text of every file a compilation read, so diagnostics can quote lines."""

    texts: dict[str, str] = field(default_factory=dict)

    def line(self, file: str, number: int) -> str | None:
        text = self.texts.get(file)
        if text is None or number < 1:
            return None
        lines = text.splitlines()
        return lines[number - 1] if number <= len(lines) else ""


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
