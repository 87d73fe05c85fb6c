"""What keeps the page's server answering when a web site or a client misbehaves.

- **Host names.** A page the user visits elsewhere can rebind its own DNS name to
  127.0.0.1 and then read this server as same-origin. Only requests whose ``Host`` is a
  name the server was started for (127.0.0.1, localhost, [::1], and what ``--host``
  names) are answered; any other gets a 403, as Jupyter and Vite do.
- **Slow or half-open connections.** A request must arrive whole, headers and body,
  within ``request_timeout`` seconds of its first byte (or of the connection), else the
  connection is closed; an idle keep-alive connection closes after `KEEP_ALIVE_S`.
- **Too many connections.** Past ``max_connections`` open at once, a new connection is
  closed at once, long before the process runs out of file descriptors.
- **A log that cannot flood.** The event loop's own errors (an ``accept`` that failed, a
  reset connection) are logged at most once per `LOG_EVERY_S` seconds, with a count.

>>> allowed_hosts("0.0.0.0")
frozenset({'0.0.0.0', '127.0.0.1', '::1', 'localhost'})
>>> host_name(b"[::1]:8000"), host_name(b"LocalHost:80"), host_name(b"127.0.0.1")
('::1', 'localhost', '127.0.0.1')
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this
LOG_EVERY_S = 10.0
LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Guard:
    """The server's bounds: its allowed Host names, time for one request, connections."""

    hosts: frozenset[str]
    request_timeout: float = 20.0
    max_connections: int = 256


def allowed_hosts(host: str) -> frozenset[str]:
    """The names a request may give in ``Host``: the loopback names and ``host`` itself."""
    return LOCAL_NAMES | {host.strip("[]").lower()}


def host_name(header: bytes) -> str:
    """The name in a ``Host`` header, without its port or an IPv6 address's brackets."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.rpartition(":")[0] if text.count(":") == 1 else text


class HostCheck:
    """ASGI middleware: a 403 (JSON, as every refusal of the page) for a Host not allowed."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"")
            name = host_name(header)
            if name not in self.hosts:
                await _refuse(send, name)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, name: str) -> None:
    shown = name[:80] or "(none)"
    body = json.dumps(
        {"error": f"host {shown!r} is not allowed: open the page at the address netspec printed"}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded_protocol(guard: Guard) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a deadline per request and a connection cap."""

    class Guarded(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= guard.max_connections:
                transport.abort()  # never added: the server does not wait for it
                return
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is None:  # refused in connection_made
                return
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request on this connection gets its own time

        def shutdown(self) -> None:
            """Ctrl-C: a request still arriving is dropped now (its handler sees the
            client gone), not waited for; one being answered finishes."""
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
                self.transport.close()
            else:
                super().shutdown()

        def _arm(self) -> None:
            self._disarm()
            self.deadline = self.loop.call_later(guard.request_timeout, self._expired)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _expired(self) -> None:
            """Still receiving a request (or none yet) when its time is up: close."""
            self.deadline = None
            receiving = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
            if receiving and not self.transport.is_closing():
                self.transport.close()

    return Guarded


class QuietLoopErrors:
    """An event-loop exception handler that logs one line per `LOG_EVERY_S` seconds,
    counting what it held back, instead of a traceback per failed ``accept``."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.last = -LOG_EVERY_S
        self.held = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < LOG_EVERY_S:
            self.held += 1
            return
        error = context.get("exception")
        what = f"{type(error).__name__}: {error}" if error else context.get("message", "")
        more = f" ({self.held} more like it held back)" if self.held else ""
        self.log.warning("server: %s%s", str(what)[:300], more)
        self.last, self.held = now, 0
