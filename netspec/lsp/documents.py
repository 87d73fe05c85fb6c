"""The open documents and what analyzing each one gave, kept per version.

A `use`d file comes from the editor's buffer when it is open (saved or not), else from
the disk within the compile limits. A file that defines several networks is analyzed once
per network, so that every network's layers have their shapes; a library (no network) is
analyzed once, and is no mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pygls.uris import from_fs_path
from pygls.workspace import TextDocument, Workspace

from netspec.compiler import Analysis, analyze
from netspec.diagnostics import Diagnostic, Sources
from netspec.limits import Limits
from netspec.lsp.facts import Facts
from netspec.lsp.index import Index, build
from netspec.lsp.positions import Lines
from netspec.passes.load import disk_reader


@dataclass(frozen=True)
class Snapshot:
    """One version of one document, analyzed."""

    uri: str
    version: int | None
    text: str
    file: str  # the path analyze was given: `use` paths are relative to it
    analyses: tuple[Analysis, ...]

    @cached_property
    def lines(self) -> Lines:
        return Lines(self.text)

    @property
    def first(self) -> Analysis:
        return self.analyses[0]

    @property
    def parsed(self) -> bool:
        """Whether the text parsed (else there is no AST, only the syntax error)."""
        return bool(self.first.items) or not self.first.errors

    @property
    def sources(self) -> Sources:
        return self.first.sources

    @cached_property
    def index(self) -> Index:
        return build(self.first.items or [], self.sources.texts)

    @cached_property
    def facts(self) -> Facts:
        return Facts(self.analyses)

    @cached_property
    def diagnostics(self) -> list[Diagnostic]:
        """Every diagnostic of every analysis, each once."""
        seen: dict[tuple[str, str, object], Diagnostic] = {}
        for analysis in self.analyses:
            for d in analysis.diagnostics:
                seen.setdefault((d.code, d.message, d.span), d)
        return list(seen.values())

    @property
    def read(self) -> frozenset[str]:
        """The other files this analysis read (`use`d, directly or not)."""
        return frozenset(self.sources.texts) - {self.file}

    def uri_of(self, file: str) -> str:
        """The URI of this document, or of a file it read."""
        return self.uri if file == self.file else uri_of(file)

    def lines_of(self, file: str) -> Lines:
        """The lines of this document, or of a file it read."""
        if file == self.file:
            return self.lines
        return Lines(self.sources.texts.get(file, ""))


def document_file(doc: TextDocument) -> str:
    """The path a document is analyzed as: its file, or its URI when it has none."""
    return doc.path if doc.uri.startswith("file:") else doc.uri


def uri_of(file: str) -> str:
    """The URI of a file a spec read (an untitled document's file is its URI)."""
    if ":" in file.split("/")[0]:
        return file
    return from_fs_path(file) or file


class Documents:
    """Analyses of the workspace's open documents, one per version, analyzed when asked."""

    def __init__(self, workspace: Callable[[], Workspace], limits: Limits | None = None) -> None:
        self._workspace = workspace
        self.limits = limits or Limits()
        self._disk = disk_reader(self.limits)
        self._snapshots: dict[str, Snapshot] = {}
        self._parsed: dict[str, Snapshot] = {}
        self._without: Snapshot | None = None  # the last text completion left a line out of

    def _open_texts(self) -> dict[str, str]:
        docs = self._workspace().text_documents.values()
        return {str(Path(document_file(d)).resolve()): d.source for d in docs}

    def read(self, path: Path) -> str:
        """A `use`d file's text: the editor's buffer if it is open, else the disk."""
        text = self._open_texts().get(str(path.resolve()))
        return text if text is not None else self._disk(path)

    def snapshot(self, uri: str) -> Snapshot:
        """The analysis of the document's current text (cached while it and the open
        buffers it reads stay the same)."""
        doc = self._workspace().get_text_document(uri)
        text = doc.source
        cached = self._snapshots.get(uri)
        if cached is not None and cached.text == text and self._fresh(cached):
            return cached
        file = document_file(doc)
        snap = Snapshot(uri, doc.version, text, file, self._analyze(text, file))
        self._snapshots[uri] = snap
        if snap.parsed:
            self._parsed[uri] = snap
        return snap

    def named(self, uri: str, line: int) -> Snapshot:
        """A version of the document whose names completion can read at 1-based `line`:
        the current one if it parses; else the current one with that line, being typed,
        left out; else the latest version that parsed."""
        snap = self.snapshot(uri)
        if snap.parsed:
            return snap
        lines = snap.text.split("\n")
        lines[line - 1 : line] = [""]
        text = "\n".join(lines)
        without = self._without
        if without is None or without.uri != uri or without.text != text:
            first = analyze(text, file=snap.file, read=self.read, limits=self.limits)
            without = self._without = Snapshot(uri, snap.version, text, snap.file, (first,))
        return without if without.parsed else self._parsed.get(uri, snap)

    def forget(self, uri: str) -> None:
        self._snapshots.pop(uri, None)
        self._parsed.pop(uri, None)

    def readers_of(self, file: str) -> list[str]:
        """The documents whose last analysis read `file` (a resolved path), `use`d."""
        return [u for u, s in self._snapshots.items() if file in s.read]

    def _fresh(self, snap: Snapshot) -> bool:
        """Whether every open buffer the analysis read still holds what it read."""
        if not snap.read:
            return True
        buffers = self._open_texts()
        texts = snap.sources.texts
        return all(buffers.get(f, texts[f]) == texts[f] for f in snap.read)

    def _analyze(self, text: str, file: str) -> tuple[Analysis, ...]:
        first = analyze(text, file=file, read=self.read, limits=self.limits)
        program = first.program
        if first.refused is None or program is None or len(program.networks) < 2:
            return (first,)
        return (first, *self._each_network(text, file, program.networks))

    def _each_network(self, text: str, file: str, names: Iterable[str]) -> list[Analysis]:
        return [
            analyze(text, file=file, read=self.read, limits=self.limits, network_name=name)
            for name in names
        ]
