"""A small Language Server Protocol client for the tests and the benchmark: it starts a
server process and speaks JSON-RPC over its stdin and stdout, as an editor does
(Content-Length framing, requests with ids, notifications collected), every wait bounded.

    with LspClient([sys.executable, "-m", "netspec", "lsp"]) as client:
        client.initialize(root)
        client.open(uri, text)
        diagnostics = client.diagnostics(uri, version=1)
        hover = client.request("textDocument/hover", {...})
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

Json = Any


class LspError(Exception):
    """The server answered a request with an error, or did not answer in time."""


class LspClient:
    def __init__(self, command: Sequence[str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self._next_id = 0
        self._answers: dict[int, Json] = {}
        self._notes: list[Json] = []
        self._changed = threading.Condition()
        self._write = threading.Lock()
        self.stderr = bytearray()
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.process.stderr,), daemon=True).start()

    # ---- the wire ------------------------------------------------------------------------

    def _send(self, message: Json) -> None:
        body = json.dumps(message).encode("utf-8")
        assert self.process.stdin is not None
        with self._write:
            self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.process.stdin.flush()

    def _read(self, stream: BinaryIO) -> None:
        while True:
            length = None
            while True:
                header = stream.readline()
                if not header:
                    self._closed()
                    return
                header = header.strip()
                if not header:
                    break
                name, _, value = header.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length is None:
                continue
            self._receive(json.loads(stream.read(length)))

    def _receive(self, message: Json) -> None:
        if "id" in message and "method" in message:  # a request from the server
            self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            return
        with self._changed:
            if "id" in message:
                self._answers[message["id"]] = message
            else:
                self._notes.append(message)
            self._changed.notify_all()

    def _closed(self) -> None:
        with self._changed:
            self._notes.append({"method": "$/closed"})
            self._changed.notify_all()

    def _drain(self, stream: BinaryIO) -> None:
        while chunk := stream.read1(1 << 16):  # type: ignore[attr-defined]
            self.stderr += chunk

    def _wait(self, ready: Callable[[], Json | None], timeout: float, what: str) -> Json:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := ready()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LspError(f"no {what} within {timeout} s; stderr: {self.stderr[-2000:]!r}")
                self._changed.wait(left)
            return found

    # ---- requests and notifications ----------------------------------------------------

    def request(self, method: str, params: Json, timeout: float = 10.0) -> Json:
        """Send a request and wait for its result (LspError on an error or a timeout)."""
        self._next_id += 1
        ident = self._next_id
        self._send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        answer = self._wait(lambda: self._answers.pop(ident, None), timeout, f"answer to {method}")
        if "error" in answer:
            raise LspError(f"{method}: {answer['error']}")
        return answer.get("result")

    def notify(self, method: str, params: Json) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def notifications(self, method: str) -> list[Json]:
        with self._changed:
            return [n.get("params") for n in self._notes if n.get("method") == method]

    def wait_for(
        self, method: str, matches: Callable[[Json], bool], timeout: float = 10.0, start: int = 0
    ) -> Json:
        """The first notification `method` from the `start`-th on whose params match."""

        def found() -> Json | None:
            for note in self._notes[start:]:
                if note.get("method") == method and matches(note.get("params")):
                    return note["params"]
            return None

        return self._wait(found, timeout, method)

    @property
    def received(self) -> int:
        """How many notifications have come so far (a `start` for `wait_for`)."""
        with self._changed:
            return len(self._notes)

    # ---- what an editor does -----------------------------------------------------------

    def initialize(self, root: Path) -> Json:
        result = self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": root.as_uri(),
                "capabilities": {
                    "textDocument": {
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "rename": {"prepareSupport": True},
                        "publishDiagnostics": {"relatedInformation": True},
                    }
                },
            },
            timeout=30.0,
        )
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, version: int = 1) -> None:
        doc = {"uri": uri, "languageId": "netspec", "version": version, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": doc})

    def change(self, uri: str, text: str, version: int) -> None:
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]},
        )

    def diagnostics(self, uri: str, version: int, timeout: float = 10.0, start: int = 0) -> Json:
        """The diagnostics the server published for this version of the document."""
        params = self.wait_for(
            "textDocument/publishDiagnostics",
            lambda p: p["uri"] == uri and p.get("version") == version,
            timeout,
            start,
        )
        return params["diagnostics"]

    def at(self, uri: str, line: int, character: int) -> Json:
        """Text document position params (0-based line and character)."""
        return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self, timeout: float = 10.0) -> int:
        """Shut the server down as an editor does; its exit status."""
        if self.alive():
            try:
                self.request("shutdown", None, timeout)
                self.notify("exit", None)
            except (LspError, OSError):
                pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)

    def __enter__(self) -> LspClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
