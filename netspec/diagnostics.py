"""Source spans, diagnostics, and the one renderer that shows them to a person.

Passes never format text: they raise :class:`SpecError` carrying
:class:`Diagnostic` objects, and the CLI renders them with :func:`render`.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import stat
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


# Did-you-mean's bounds: the longest name given a suggestion (an identifier far longer
# than any name of the language is not a typo of one), and the edit-distance cells
# computed for one suggestion (about 0.1 s).
MAX_SUGGESTED = 64
SUGGEST_CELLS = 200_000


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
    else the closest by difflib's ratio; None when nothing is close.

    The work is bounded: a name longer than `MAX_SUGGESTED` characters gets no suggestion,
    a candidate whose length alone puts it out of reach is skipped, and at most
    `SUGGEST_CELLS` edit-distance cells are computed (so a 1 MiB name, or a pool of
    100,000 names, costs milliseconds, not minutes)."""
    if len(name) > MAX_SUGGESTED:
        return None
    pool = sorted(set(candidates) - {name})
    allowed = max(1, len(name) // 3)
    lowered, budget = name.lower(), SUGGEST_CELLS
    best: tuple[int, str] | None = None
    for c in pool:
        if abs(len(c) - len(name)) > allowed:
            continue  # the distance is at least the difference in length
        budget -= (len(name) + 1) * (len(c) + 1)
        if budget < 0:
            break
        scored = (_distance(lowered, c.lower()), c)
        best = scored if best is None else min(best, scored)
    if best is not None and best[0] <= allowed and best[0] < len(name):
        return best[1]
    matches = close_matches(name, pool, 1, cutoff=0.75)
    return matches[0] if matches else None


def close_matches(name: str, candidates: Iterable[str], n: int, cutoff: float = 0.6) -> list[str]:
    """difflib's `get_close_matches`, bounded as `nearest` is: no match for a name over
    `MAX_SUGGESTED` characters, candidates whose lengths alone put them under ``cutoff``
    skipped, and at most `SUGGEST_CELLS` characters' pairs compared in all."""
    if len(name) > MAX_SUGGESTED:
        return []
    budget, kept = SUGGEST_CELLS, []
    for c in candidates:
        if 2 * min(len(c), len(name)) < cutoff * (len(c) + len(name)):
            continue  # difflib's ratio is at most 2 * shorter / total
        budget -= (len(name) + 1) * (len(c) + 1)
        if budget < 0:
            break
        kept.append(c)
    return difflib.get_close_matches(name, kept, n=n, cutoff=cutoff)


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


# What a rendered diagnostic shows at most: a quoted line is cut to `QUOTE_CHARS` around
# its caret, a message line to `MESSAGE_CHARS`, and a line quoted from disk is looked
# for in the first `QUOTE_SCAN_BYTES` of its file only, read in chunks, never whole.
QUOTE_CHARS = 400
MESSAGE_CHARS = 1000
QUOTE_SCAN_BYTES = 1 << 24
_CHUNK = 1 << 16


@dataclass
class Sources:
    """The text of every file a compilation read, so diagnostics can quote lines; and the
    files to quote from disk (`disk`), one line read when it is needed."""

    texts: dict[str, str] = field(default_factory=dict)
    disk: set[str] = field(default_factory=set)

    def line(self, file: str, number: int) -> str | None:
        text = self.texts.get(file)
        if number < 1:
            return None
        if text is None:
            return read_line(file, number) if file in self.disk else None
        # Lark counts lines by '\n' alone; splitlines() would also split at '\f', '\x1c', ...
        start = 0
        for _ in range(number - 1):
            start = text.find("\n", start) + 1
            if start == 0:
                return ""
        end = text.find("\n", start)
        return text[start : end if end >= 0 else len(text)].rstrip("\r")


def read_line(file: str | Path, number: int) -> str | None:
    """Line ``number`` of a regular UTF-8 file (lines split at newlines alone, as Lark
    counts them), at most `QUOTE_SCAN_BYTES` into it; None when it cannot be had. A FIFO
    or a device is never waited on, and the file is read in chunks up to the line's end."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        found = _line_bytes(fd, number)
    except OSError:
        return None
    finally:
        os.close(fd)
    if found is None:
        return ""
    data, whole = found
    try:  # a line cut by the scan may end inside a character: it is left out
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=whole)
    except UnicodeDecodeError:
        return None
    return text.rstrip("\r")


def _line_bytes(fd: int, number: int) -> tuple[bytes, bool] | None:
    """The bytes of line ``number`` read from ``fd``, and whether they are the whole line
    (not cut by the scan); None past the end of the file or the scan."""
    seen, line, read = 1, bytearray(), 0
    while read < QUOTE_SCAN_BYTES:
        chunk = os.read(fd, min(_CHUNK, QUOTE_SCAN_BYTES - read))
        if not chunk:
            return (bytes(line), True) if seen == number else None
        read += len(chunk)
        while seen < number:
            cut = chunk.find(b"\n")
            if cut < 0:
                break
            chunk, seen = chunk[cut + 1 :], seen + 1
        if seen < number:
            continue
        end = chunk.find(b"\n")
        line += chunk if end < 0 else chunk[:end]
        if end >= 0:
            return bytes(line), True
    return (bytes(line), False) if seen == number else None


def _clip(line: str, start: int) -> tuple[str, int]:
    """At most `QUOTE_CHARS` of ``line`` around offset ``start``, an ellipsis marking
    each cut end; and where ``start`` is in what is shown."""
    if len(line) <= QUOTE_CHARS:
        return line, start
    first = min(max(start - QUOTE_CHARS // 4, 0), len(line) - QUOTE_CHARS)
    shown = line[first : first + QUOTE_CHARS]
    head = "…" if first > 0 else ""
    tail = "…" if first + QUOTE_CHARS < len(line) else ""
    return head + shown + tail, start - first + len(head)


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text`` cut in the middle to at most ``limit`` characters (a message that quotes
    a 1 MiB name keeps its start and its end)."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    return text[: limit - tail - 1] + "…" + text[len(text) - tail :]


def _caret(span: Span, source_line: str) -> tuple[str, str]:
    """The line as shown and the caret line under the span."""
    start = max(span.col - 1, 0)
    if span.end_line == span.line and span.end_col > span.col:
        width = span.end_col - span.col
    else:
        width = max(len(source_line.rstrip()) - start, 1)
    shown, at = _clip(source_line, start)
    if len(source_line) > QUOTE_CHARS:  # cut: the caret ends where the quote does
        width = max(min(width, len(shown) - at), 1)
    prefix = "".join(ch if ch == "\t" else " " for ch in shown[:at])
    return shown.rstrip(), prefix + "^" + "~" * (width - 1)


def _quote(span: Span, sources: Sources) -> list[str]:
    text = sources.line(span.file, span.line)
    if text is None:
        return []
    shown, caret = _caret(span, text)
    return ["    " + shown, "    " + caret]


def render(diag: Diagnostic, sources: Sources) -> str:
    """`file:line:col: error[CODE]: message`, the line, a caret, hint and notes; every
    line of it bounded (`QUOTE_CHARS`, `MESSAGE_CHARS`)."""
    out = [f"{diag.span.where}: {diag.severity}[{diag.code}]: {shorten(diag.message)}"]
    out += _quote(diag.span, sources)
    if diag.hint:
        out.append(f"    {shorten(diag.hint)}")
    for note in diag.notes:
        if note.span is None:
            out.append(f"    note: {shorten(note.message)}")
        else:
            out.append(f"{note.span.where}: note: {shorten(note.message)}")
            out += _quote(note.span, sources)
    return "\n".join(out)


def render_all(diags: Sequence[Diagnostic], sources: Sources) -> str:
    body = "\n".join(render(d, sources) for d in diags)
    errors = sum(d.severity == "error" for d in diags)
    if errors > 1:
        body += f"\n{errors} errors"
    return body
