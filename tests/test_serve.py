"""`netspec serve`: a real server (uvicorn in a subprocess on 127.0.0.1, `--port 0`) over a
real run trained here on a few hundred MNIST digits, asked with urllib: what the API
answers, that every bad request is a 4xx with a message and the next good one still
answers, that Ctrl-C stops it cleanly, and that a bad target is a clear error."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from netspec.data import read_idx, write_idx
from tests.conftest import REAL_MNIST, ROOT, interruptible, write_mnist_subset

pytestmark = pytest.mark.slow
LENET = ROOT / "specs" / "lenet.net"
STARTUP = 120  # seconds a server may take to print its URL on a loaded machine


def netspec(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command line in a child process, one torch thread."""
    # one thread, whatever the suite's NETSPEC_THREADS: a server's threads that spin while
    # other processes hold the cores make each answer many times slower (issue 20)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NETSPEC_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "netspec", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


@dataclass(frozen=True)
class TinyRun:
    run: Path  # a run directory of specs/lenet.net, with model.onnx
    data: Path  # its MNIST subset (IDX files)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """LeNet trained for three epochs on 1,500 digits (tested on 300), exported by `train`."""
    base = tmp_path_factory.getbasetemp() / "serve-run"
    run, data = base / "runs" / "tiny", base / "mnist"
    if not (run / "model.onnx").is_file():  # shared by both serve test modules
        write_mnist_subset(data, 1500, 300)
        if not REAL_MNIST.is_dir():
            _mislabel(data / "t10k-labels-idx1-ubyte.gz", 20)
        args = ("--data", data, "--epochs", "3", "--batch", "32", "--out", base / "runs")
        trained = netspec("train", LENET, *args, "--name", "tiny")
        assert trained.returncode == 0, trained.stderr[-3000:]
    return TinyRun(run, data)


def _mislabel(labels: Path, count: int) -> None:
    """Synthetic digits are learnt without a mistake: give the first ``count`` test
    digits another label, so that the gallery has digits the network disagrees with."""
    y = read_idx(labels).astype(np.uint8)
    y[:count] = (y[:count] + 1) % 10
    write_idx(labels, y)


class Server:
    """A `netspec serve` child process and the URL it printed."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url.rstrip("/")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request(path)

    def post(self, path: str, body: bytes | Any, kind: str = "application/json") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request(path, data, kind)

    def request(
        self, path: str, data: bytes | None = None, kind: str = "", method: str | None = None
    ) -> tuple[int, Any]:
        """(status, the JSON body) of a request; a 4xx is an answer here, not an error."""
        headers = {"Content-Type": kind} if kind else {}
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@contextmanager
def serving(*args: str | Path) -> Iterator[Server]:
    """`netspec serve ... --port 0` until the block ends (SIGINT, then a wait)."""
    # one thread, whatever the suite's NETSPEC_THREADS: a server's threads that spin while
    # other processes hold the cores make each answer many times slower (issue 20)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NETSPEC_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "netspec", "serve", *map(str, args), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=interruptible,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if found is None:
            process.kill()
            _, err = process.communicate(timeout=30)
            raise AssertionError(f"no URL printed: {line!r} {err[-3000:]}")
        yield Server(process, found.group())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def server(tiny_run: TinyRun) -> Iterator[Server]:
    with serving(tiny_run.run, "--data", tiny_run.data) as s:
        yield s


def drawn(pixels: np.ndarray) -> dict[str, Any]:
    """The body of POST /api/run for a 28x28 uint8 image."""
    h, w = pixels.shape
    raw = base64.b64encode(pixels.astype(np.uint8).tobytes()).decode()
    return {"height": h, "width": w, "channels": 1, "pixels": raw}


def decoded(encoded: dict[str, Any]) -> np.ndarray:
    """A layer's values from its 16-bit codes and range, as the page reads them."""
    codes = np.frombuffer(base64.b64decode(encoded["codes"]), dtype="<u2").astype(np.float64)
    values = encoded["min"] + codes / 65535 * (encoded["max"] - encoded["min"])
    return values.reshape(encoded["shape"])


def digit_pixels(server: Server, which: str) -> tuple[dict[str, Any], np.ndarray]:
    status, digit = server.get(f"/api/digit/{which}")
    assert status == 200, digit
    image = np.frombuffer(base64.b64decode(digit["pixels"]), dtype=np.uint8)
    return digit, image.reshape(digit["height"], digit["width"])


def compiled_layers() -> dict[str, dict[str, Any]]:
    result = netspec("compile", LENET, "--json")
    assert result.returncode == 0, result.stderr
    return {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}


def test_model_is_the_compile_table(server: Server) -> None:
    status, model = server.get("/api/model")
    assert status == 200
    assert model["input_shape"] == [1, 28, 28]
    assert model["classes"] == [str(i) for i in range(10)]
    table = compiled_layers()
    assert [layer["name"] for layer in model["layers"]] == list(table)
    for layer in model["layers"]:
        row = table[layer["name"]]
        assert (layer["op"], layer["shape"]) == (row["op"], row["shape"])
        assert (layer["params"], layer["macs"]) == (row["params"], row["macs"])
        rf = row["receptive_field"]
        if rf["whole_input"]:
            assert layer["rf"] is None
        else:
            assert layer["rf"] == {k: rf[k] for k in ("size", "jump", "start")}
        assert layer["spec"]["line"] == row["line"]
        lines = LENET.read_text().splitlines()
        assert layer["spec"]["text"].strip() == lines[row["line"] - 1].strip()


def test_run_answers_every_layer_as_the_runtime_does(server: Server, tmp_path: Path) -> None:
    _, image = digit_pixels(server, "0")
    status, answer = server.post("/api/run", drawn(image))
    assert status == 200, answer
    shapes = {layer["name"]: layer["shape"] for layer in server.get("/api/model")[1]["layers"]}
    assert set(answer["layers"]) == set(shapes)
    for name, encoded in answer["layers"].items():
        values = decoded(encoded)
        assert list(values.shape) == shapes[name]
        assert values.min() == pytest.approx(encoded["min"]) and encoded["min"] <= encoded["max"]
        if name.startswith("relu"):
            assert encoded["min"] >= 0
    seen = decoded(answer["input"])[0]  # the input as the network sees it: normalized
    assert seen == pytest.approx((image / 255 - 0.1307) / 0.3081, abs=1e-3)
    probabilities = np.array(answer["probabilities"])
    assert probabilities.sum() == pytest.approx(1.0)
    Image.fromarray(image).save(tmp_path / "digit.png")
    ran = netspec("run", server_run(server) / "model.onnx", tmp_path / "digit.png", "--json")
    assert ran.returncode == 0, ran.stderr
    (top, *_) = json.loads(ran.stdout)[0]["top"]
    assert str(probabilities.argmax()) == top["label"]
    assert probabilities.max() == pytest.approx(top["probability"], abs=1e-4)
    logits = decoded(answer["layers"]["dense3"])
    assert np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum() == pytest.approx(
        probabilities, abs=1e-3
    )


def server_run(server: Server) -> Path:
    args = server.process.args
    assert isinstance(args, list)
    return Path(args[args.index("serve") + 1])


def test_run_can_ask_for_some_layers(server: Server) -> None:
    status, answer = server.post("/api/run", {**drawn(np.zeros((28, 28))), "layers": ["conv2"]})
    assert status == 200, answer
    assert list(answer["layers"]) == ["conv2"]


def test_gallery_lists_the_misclassified(server: Server) -> None:
    status, gallery = server.get("/api/gallery")
    assert status == 200
    assert gallery["tested"] == 300
    assert gallery["errors"] == len(gallery["digits"]) > 0
    for listed in gallery["digits"][:5]:
        assert listed["label"] != listed["predicted"]
        digit, image = digit_pixels(server, str(listed["index"]))
        assert digit["label"] == listed["label"]
        shown = np.frombuffer(base64.b64decode(listed["pixels"]), dtype=np.uint8)
        assert (shown.reshape(28, 28) == image).all()
        _, answer = server.post("/api/run", drawn(image))
        assert int(np.argmax(answer["probabilities"])) == listed["predicted"]


def test_random_digit_is_a_test_digit(server: Server) -> None:
    digit, image = digit_pixels(server, "random")
    again, same = digit_pixels(server, str(digit["index"]))
    assert 0 <= digit["index"] < 300 and (image == same).all() and digit["label"] == again["label"]


def test_upload_of_dark_ink_on_paper_is_inverted_and_fitted(server: Server) -> None:
    paper = np.full((56, 40), 255, dtype=np.uint8)
    paper[10:46, 18:22] = 0  # a black "1" on white, 56x40
    png = _png(paper)
    status, image = server.post("/api/upload", png, "image/png")
    assert status == 200, image
    assert image["inverted"] is True and (image["height"], image["width"]) == (28, 28)
    pixels = np.frombuffer(base64.b64decode(image["pixels"]), dtype=np.uint8).reshape(28, 28)
    assert pixels[:, :4].max() == 0 and pixels[:, -4:].max() == 0  # centred, padded with black
    assert pixels[14, 13:15].min() > 200  # the stroke, now light on black


def _png(array: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


SIZE = {"height": 28, "width": 28, "channels": 1}
BAD_REQUESTS = [
    ("GET", "/api/nothing", None, 404, "no such page"),
    ("GET", "/api/run", None, 405, "not allowed"),
    ("DELETE", "/api/model", None, 405, "not allowed"),
    ("POST", "/api/run", b"{not json", 400, "not JSON"),
    ("POST", "/api/run", b"", 400, "no body"),
    ("POST", "/api/run", b"[1, 2]", 400, "JSON object"),
    ("POST", "/api/run", {**SIZE, "height": 27, "pixels": ""}, 422, "28x28"),
    ("POST", "/api/run", {**SIZE, "channels": 3}, 422, "1 channel"),
    ("POST", "/api/run", {**SIZE, "pixels": "!!"}, 422, "base64"),
    ("POST", "/api/run", {**SIZE, "pixels": "AAAA"}, 422, "bytes"),
    ("POST", "/api/run", {**drawn(np.zeros((28, 28))), "layers": ["conv9"]}, 404, "unknown layer"),
    ("POST", "/api/run", {**drawn(np.zeros((28, 28))), "layers": "conv1"}, 422, "list"),
    ("POST", "/api/upload", b"this is no image", 422, "cannot read"),
    ("GET", "/api/digit/300", None, 404, "0 to 299"),
    ("GET", "/api/digit/-1", None, 404, "no test digit"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD_REQUESTS)
def test_bad_request_is_a_4xx_and_the_server_keeps_serving(
    server: Server, method: str, path: str, body: Any, status: int, words: str
) -> None:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    got, answer = server.request(path, data, "application/json" if data else "", method)
    assert got == status, answer
    assert words in answer["error"]
    good, model = server.get("/api/model")
    assert good == 200 and model["layers"]


def raw_reply(server: Server, request: bytes) -> str:
    """The server's whole answer to bytes sent as they are (a request that asks to close
    the connection after it), on a connection of their own."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        parts = []
        while part := conn.recv(65536):
            parts.append(part)
    return b"".join(parts).decode()


def test_body_over_the_limit_is_refused_without_reading_it(server: Server) -> None:
    """A Content-Length over the limit is refused before its body arrives."""
    reply = raw_reply(
        server,
        b"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 999999999\r\n\r\n",
    )
    assert reply.startswith("HTTP/1.1 413"), reply
    assert server.get("/api/model")[0] == 200


def test_streamed_body_over_the_limit_is_refused(server: Server) -> None:
    """A body sent in chunks, with no Content-Length, is refused once it passes the limit
    (1 MiB for /api/run): read to its end, so the 413 reaches the client, and the server
    goes on serving."""
    chunk = b"[" + b"0," * 300_000 + b"0]"  # 600 KB: two of them pass 1 MiB
    size = f"{len(chunk):x}\r\n".encode()
    reply = raw_reply(
        server,
        b"POST /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + (size + chunk + b"\r\n") * 2 + b"0\r\n\r\n",
    )
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "over 1,048,576 bytes" in reply
    assert server.get("/api/model")[0] == 200


def test_ctrl_c_stops_it_cleanly(tiny_run: TinyRun) -> None:
    with serving(tiny_run.run, "--data", tiny_run.data) as s:
        assert s.get("/api/model")[0] == 200
        s.process.send_signal(signal.SIGINT)
        out, err = s.process.communicate(timeout=60)
    assert s.process.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err + out


def test_onnx_file_is_served_without_torch(tiny_run: TinyRun) -> None:
    with serving(tiny_run.run / "model.onnx") as s:
        status, model = s.get("/api/model")
        assert status == 200 and model["layers"] and model["digits"] is False
        status, answer = s.post("/api/run", drawn(np.zeros((28, 28))))
        assert status == 200 and len(answer["probabilities"]) == 10
        assert s.get("/api/gallery")[0] == 404
        maps = Path(f"/proc/{s.process.pid}/maps").read_text()
    assert "libtorch" not in maps


@pytest.mark.parametrize(
    ("target", "words", "code"),
    [
        ("nowhere/at-all", "nowhere/at-all: no such file", 2),
        ("tests/conftest.py", "conftest.py", 1),
        ("specs/signal1d.net", "draws images", 2),
    ],
)
def test_bad_target_is_a_clear_error(target: str, words: str, code: int) -> None:
    result = netspec("serve", target, "--port", "0", timeout=120)
    assert result.returncode == code, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_port_in_use_is_a_usage_error(tiny_run: TinyRun) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = netspec("serve", tiny_run.run / "model.onnx", "--port", str(port), timeout=120)
    assert result.returncode == 2
    assert (
        f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
    )
