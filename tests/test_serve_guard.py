"""`netspec serve` against a hostile or clumsy client: a real server (a subprocess on
127.0.0.1) and real sockets. Another site's Host name is refused; connections that send
nothing, or half a request, are closed after --request-timeout; past --max-connections a
connection is closed at once; malformed inputs are 4xx answers, never a 500; Ctrl-C stops
the server while a client holds a request half-sent. Every wait here is bounded."""

from __future__ import annotations

import io
import json
import signal
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_mnist_subset
from tests.test_serve import LENET, Server, drawn, serving

pytestmark = pytest.mark.slow
NAN_SPEC = """kernel big = [2000000000 2000000000; 2000000000 2000000000]

network overflow(image: 1x28x28) {
    conv fixed=[big] | conv fixed=[big] | conv fixed=[big] | conv fixed=[big] | conv fixed=[big]
    dense 10
}
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = write_mnist_subset(tmp_path_factory.mktemp("digits"), 10, 30)
    with serving(LENET, "--data", data, "--request-timeout", "1", "--max-connections", "16") as s:
        yield s


def _address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _reply(server: Server, request: bytes) -> bytes:
    with socket.create_connection(_address(server), timeout=30) as conn:
        conn.sendall(request)
        parts = []
        while part := conn.recv(65536):
            parts.append(part)
    return b"".join(parts)


def _closed_by_server(conn: socket.socket, within: float) -> bool:
    """Whether the server closes ``conn`` (EOF or reset) within ``within`` seconds."""
    conn.settimeout(within)
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (b"127.0.0.1", 200),
        (b"localhost:8000", 200),
        (b"[::1]:8000", 200),
        (b"evil.example", 403),
        (b"evil.example:8000", 403),
        (b"127.0.0.1.evil.example", 403),
        (b"", 403),
    ],
)
def test_only_the_servers_own_host_names_are_answered(
    guarded: Server, host: bytes, status: int
) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: refused."""
    reply = _reply(
        guarded, b"GET /api/model HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 %d" % status), reply[:200]
    if status == 403:
        body = json.loads(reply.partition(b"\r\n\r\n")[2])
        assert "is not allowed" in body["error"]


def test_silent_and_half_sent_connections_are_closed(guarded: Server) -> None:
    """Ten connections that send nothing and two that stop mid-request are closed by the
    server after the request timeout (1 s here), and a real request is then answered."""
    conns = [socket.create_connection(_address(guarded), timeout=30) for _ in range(12)]
    try:
        conns[10].sendall(b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        conns[11].sendall(
            b"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"height": 28'
        )
        assert all(_closed_by_server(c, within=30) for c in conns)
    finally:
        for c in conns:
            c.close()
    assert guarded.get("/api/model")[0] == 200


def test_connections_past_the_limit_are_closed_at_once(guarded: Server) -> None:
    """With --max-connections 16, of 40 silent connections at least 24 are closed at
    once; the others at the timeout; then the server answers as before."""
    conns = [socket.create_connection(_address(guarded), timeout=30) for _ in range(40)]
    try:
        refused = sum(_closed_by_server(c, within=0.5) for c in conns)
        assert refused >= 24
        assert all(_closed_by_server(c, within=30) for c in conns)
    finally:
        for c in conns:
            c.close()
    deadline = time.monotonic() + 30
    while guarded.get("/api/model")[0] != 200:  # our closed sockets leave the server's count
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (its pixels are not there)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in ((b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", b""))
    )


def _gif_canvas(width: int, height: int) -> bytes:
    """A one-pixel GIF on a logical screen of ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _thin_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((1, 16000), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("method", "path", "body", "kind", "status", "words"),
    [
        ("GET", "/api/digit/%C2%B2", None, "", 404, "no test digit '²'"),
        ("POST", "/api/run", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested"),
        ("POST", "/api/upload", _png_header(20000, 20000), "image/png", 413, "pixels"),
        ("POST", "/api/upload", _png_header(16_000_000, 1), "image/png", 422, "times as long"),
        ("POST", "/api/upload", _thin_png(), "image/png", 422, "times as long"),
        ("POST", "/api/upload", _gif_canvas(60000, 60000), "image/gif", 413, "pixels"),
    ],
)
def test_malformed_inputs_are_4xx_not_500(
    guarded: Server, method: str, path: str, body: bytes | None, kind: str, status: int, words: str
) -> None:
    got, answer = guarded.request(path, body, kind, method)
    assert got == status, answer
    assert words in answer["error"]
    assert guarded.get("/api/model")[0] == 200


def test_repeated_layer_names_are_computed_once(guarded: Server) -> None:
    _, model = guarded.get("/api/model")
    first = model["layers"][0]["name"]
    body = drawn(np.ones((28, 28)))
    body["layers"] = [first] * 50_000
    status, answer = guarded.post("/api/run", body)
    assert status == 200, answer
    assert list(answer["layers"]) == [first]


def test_a_network_that_overflows_is_answered(tmp_path: Path) -> None:
    """Its maps count their non-finite values, and it has no probabilities: no 500."""
    spec = tmp_path / "overflow.net"
    spec.write_text(NAN_SPEC)
    with serving(spec) as s:
        status, answer = s.post("/api/run", drawn(np.full((28, 28), 255)))
        assert status == 200, answer
        assert answer["probabilities"] is None
        assert answer["layers"]["dense1"]["nonfinite"] == 10
        assert s.get("/api/model")[0] == 200


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_it_while_a_request_is_half_sent(presses: int) -> None:
    with serving(LENET) as s:
        conn = socket.create_connection(_address(s), timeout=30)
        try:
            conn.sendall(
                b"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
            )
            time.sleep(0.5)
            for _ in range(presses):
                s.process.send_signal(signal.SIGINT)
                time.sleep(0.2)
            out, err = s.process.communicate(timeout=60)
        finally:
            conn.close()
    # a second Ctrl-C may land after the server stopped, as the process exits: it then
    # ends by that signal (or 130), as any program does; never with a traceback
    assert s.process.returncode in ((0,) if presses == 1 else (0, 130, -signal.SIGINT)), err
    assert "stopped" in err and "Traceback" not in out + err
