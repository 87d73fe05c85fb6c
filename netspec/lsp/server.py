"""The language server: pygls over stdio, one handler per feature, each a call into the
feature's module with the document's analysis (netspec/lsp/documents.py).

No handler can stop the server: a handler that raises is logged to the editor's output
(window/logMessage, with the traceback) and answers nothing (None, or an empty list). A
refusal meant for the person (a rename to a taken name) is the one error that is answered
as an error.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace.position_codec import PositionCodec

import netspec
from netspec.lsp.completion import completions
from netspec.lsp.diagnostics import publishable
from netspec.lsp.documents import Documents, Snapshot
from netspec.lsp.formatting import format_edits
from netspec.lsp.hover import hover
from netspec.lsp.inlay import inlay_hints
from netspec.lsp.navigation import definition, prepare_rename, references, rename
from netspec.lsp.symbols import document_symbols
from netspec.lsp.tokens import LEGEND, encode

F = TypeVar("F", bound=Callable[..., Any])
TRIGGERS = ["|", "=", "(", ","]


class NetspecServer(LanguageServer):
    """pygls' server with the open documents' analyses."""

    def __init__(self) -> None:
        super().__init__("netspec", netspec.__version__, types.TextDocumentSyncKind.Full)
        self.documents = Documents(lambda: self.workspace)

    @property
    def codec(self) -> PositionCodec:
        return self.workspace.position_codec

    def log(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def snapshot(self, uri: str) -> Snapshot:
        return self.documents.snapshot(uri)

    def at(
        self, document: types.TextDocumentIdentifier, position: types.Position
    ) -> tuple[Snapshot, int, int]:
        """The document's analysis and the 1-based (line, col) of a position in it."""
        snap = self.snapshot(document.uri)
        line, col = snap.lines.from_client(position, self.codec)
        return snap, line, col

    def publish(self, uri: str) -> None:
        """Analyze the document and send its diagnostics."""
        snap = self.snapshot(uri)
        version = self.workspace.get_text_document(uri).version  # the text may be an older's
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri, diagnostics=publishable(snap, self.codec), version=version
            )
        )

    def republish(self, uri: str) -> None:
        """The document's diagnostics, and those of the open documents that `use` it."""
        path = str(Path(to_fs_path(uri) or uri).resolve()) if uri.startswith("file:") else uri
        readers = self.documents.readers_of(path)
        if uri in self.workspace.text_documents:
            self.publish(uri)
        for reader in readers:
            if reader != uri and reader in self.workspace.text_documents:
                self.publish(reader)


def guarded(server: NetspecServer, empty: Callable[[], Any]) -> Callable[[F], F]:
    """A handler that logs what it raises and answers `empty()` instead."""

    def wrap(handler: F) -> F:
        @functools.wraps(handler)
        def run(params: Any) -> Any:
            try:
                return handler(params)
            except JsonRpcException:
                raise
            except Exception:
                server.log(f"netspec lsp: {handler.__name__} failed\n{traceback.format_exc()}")
                return empty()

        return cast(F, run)

    return wrap


def _none() -> None:
    return None


def _empty() -> list[Any]:
    return []


def build() -> NetspecServer:
    """The server with every feature registered."""
    server = NetspecServer()
    _register_sync(server)
    _register_reading(server)
    _register_editing(server)
    return server


def _register_sync(server: NetspecServer) -> None:
    """Keep each document's analysis and diagnostics current."""

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @guarded(server, _none)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        server.republish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @guarded(server, _none)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        server.republish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @guarded(server, _none)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        server.republish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @guarded(server, _none)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        server.documents.forget(uri)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )
        server.republish(uri)


def _register_reading(server: NetspecServer) -> None:
    """Hover, navigation, symbols, tokens and inlay hints."""

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @guarded(server, _none)
    def on_hover(params: types.HoverParams) -> types.Hover | None:
        snap, line, col = server.at(params.text_document, params.position)
        return hover(snap, line, col, server.codec)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    @guarded(server, _none)
    def on_definition(params: types.DefinitionParams) -> types.Location | None:
        snap, line, col = server.at(params.text_document, params.position)
        return definition(snap, line, col, server.codec)

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    @guarded(server, _empty)
    def on_references(params: types.ReferenceParams) -> list[types.Location]:
        snap, line, col = server.at(params.text_document, params.position)
        declaration = params.context.include_declaration
        return references(snap, line, col, declaration, server.codec)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @guarded(server, _empty)
    def on_symbols(params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        return document_symbols(server.snapshot(params.text_document.uri), server.codec)

    @server.feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL, LEGEND)
    @guarded(server, lambda: types.SemanticTokens(data=[]))
    def on_tokens(params: types.SemanticTokensParams) -> types.SemanticTokens:
        return encode(server.snapshot(params.text_document.uri), server.codec)

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
    @guarded(server, _empty)
    def on_inlay(params: types.InlayHintParams) -> list[types.InlayHint]:
        snap = server.snapshot(params.text_document.uri)
        first, last = params.range.start.line + 1, params.range.end.line + 1
        return inlay_hints(snap, first, last, server.codec)


def _register_editing(server: NetspecServer) -> None:
    """Completion, rename and formatting."""

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=TRIGGERS)
    )
    @guarded(server, _empty)
    def on_completion(params: types.CompletionParams) -> list[types.CompletionItem]:
        snap, line, col = server.at(params.text_document, params.position)
        named = server.documents.named(snap.uri, line)
        return completions(snap, named, line, col)

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    @guarded(server, _none)
    def on_prepare_rename(params: types.PrepareRenameParams) -> types.Range | None:
        snap, line, col = server.at(params.text_document, params.position)
        return prepare_rename(snap, line, col, server.codec)

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    @guarded(server, _none)
    def on_rename(params: types.RenameParams) -> types.WorkspaceEdit | None:
        snap, line, col = server.at(params.text_document, params.position)
        return rename(snap, line, col, params.new_name, server.codec)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    @guarded(server, _empty)
    def on_formatting(params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        return format_edits(server.snapshot(params.text_document.uri), server.codec)


def serve() -> None:
    """Answer an editor over stdin and stdout until it says exit (or closes stdin)."""
    build().start_io()
