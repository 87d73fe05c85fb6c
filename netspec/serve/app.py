"""The page's server: a Starlette app over one `Probe`.

GET  /                 the page (static/index.html; /static/app.js, /static/style.css)
GET  /api/model        the network: input shape, classes, every layer's row of the compile
                       table (shape, receptive field, params, MACs) and its spec line
POST /api/run          a drawn image -> the input as the network sees it, every layer's maps
                       (16-bit codes over the layer's range, base64), the class probabilities
POST /api/upload       an image file (PNG, JPEG, ...) -> the pixels to draw, at the input size
GET  /api/gallery      the misclassified test digits (a run, or --data)
GET  /api/digit/N      test digit N (`random` for any one)
POST /api/explain      an image, a layer and a unit -> how the unit's value is computed, with
                       the numbers (netspec.serve.explain)
GET  /api/detector     a detector's decoder, class names, thresholds, and its grid's or its
                       default boxes' geometry, or what makes a two-stage detector's regions
                       (404 for a network that finds no boxes)
POST /api/detect       a drawn image (and a threshold) -> the detector's boxes, as `netspec
                       detect --json` gives them, and its grid's cells or best default boxes,
                       or a two-stage detector's proposals and its RPN's best anchors
GET  /api/scene?seed=N a generated scene (netspec.serve.scenes) and its digits' true boxes
POST /api/run answers a detector's image with its `detection` too (netspec.serve.detector).

Every refusal is a 4xx with ``{"error": message}``; a request never stops the server.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from netspec.probe import Probe
from netspec.serve.detector import PAGE_FLOOR, Detecting, threshold_of
from netspec.serve.digits import GALLERY, Digits
from netspec.serve.explain import Explainer
from netspec.serve.images import BadRequest, drawn, input_size, plain, uploaded
from netspec.serve.maps import model_json, pixels_json, run_json
from netspec.serve.scenes import SceneMaker, seed_of

STATIC = Path(__file__).with_name("static")
MAX_JSON = 1 << 20  # bytes of a POST /api/run body: a 3x224x224 image in base64 is 200 KB
MAX_UPLOAD = 8 << 20  # bytes of an uploaded image file
DRAIN = 4  # an undeclared body over its limit is read and dropped up to this many limits
DECODERS = 2  # uploads decoded at once (each in a worker thread)


@dataclass(frozen=True)
class Served:
    """What the app serves: the probe, the page's title, the test digits if any, the
    dataset's word for one sample ("digit", "garment", "image") that the page shows, and
    for a detector, its file and decoder and the scenes it may be shown."""

    probe: Probe
    title: str
    digits: Digits | None
    sample: str = "image"
    detecting: Detecting | None = None
    scenes: SceneMaker | None = None

    @property
    def size(self) -> tuple[int, int, int]:
        return input_size(self.probe.input_shape)


def make_app(served: Served) -> Starlette:
    """The Starlette app for ``served``; refusals are JSON, never an HTML error page."""
    input_size(served.probe.input_shape)  # refuse a network without an image input now
    decoding = anyio.Semaphore(DECODERS)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def model(request: Request) -> Response:
        return JSONResponse(
            model_json(served.probe, served.title, served.digits is not None, served.sample)
        )

    async def run(request: Request) -> Response:
        body = _json(await _body(request, MAX_JSON))
        image = drawn(body, served.size)
        layers = _layers(body, served.probe)
        return _answer(await run_in_threadpool(_run, served, image, layers))

    explainer = Explainer(served.probe)

    async def explain(request: Request) -> Response:
        body = _json(await _body(request, MAX_JSON))
        image = drawn(body.get("image") if isinstance(body, dict) else None, served.size)
        return _answer(await run_in_threadpool(explainer, image, body))

    async def upload(request: Request) -> Response:
        data = await _body(request, MAX_UPLOAD)
        async with decoding:  # off the event loop, a few at a time
            image, inverted = await run_in_threadpool(uploaded, data, served.size)
        return JSONResponse(pixels_json(image, [("inverted", inverted)]))

    async def detector(request: Request) -> Response:
        scenes = None if served.scenes is None else served.scenes.settings()
        return JSONResponse({**_detecting(served).info(), "scenes": scenes})

    async def detect(request: Request) -> Response:
        detecting = _detecting(served)
        body = _json(await _body(request, MAX_JSON))
        image = drawn(body, served.size)
        threshold = threshold_of(body, detecting.threshold)
        return _answer(
            await run_in_threadpool(detecting.detect_json, served.probe, image, threshold)
        )

    async def scene(request: Request) -> Response:
        if served.scenes is None:
            raise BadRequest("no generated scenes: pass --data with MNIST's IDX files", 404)
        seed = seed_of(request.query_params.get("seed"))
        return JSONResponse(await run_in_threadpool(served.scenes.scene_json, seed))

    async def gallery(request: Request) -> Response:
        digits = _digits(served)
        errors = await run_in_threadpool(digits.errors, served.probe, served.size)
        shown = [
            {**e, **pixels_json(digits.image(e["index"], served.size))} for e in errors[:GALLERY]
        ]
        return JSONResponse({"errors": len(errors), "tested": len(digits), "digits": shown})

    async def digit(request: Request) -> Response:
        digits = _digits(served)
        which = request.path_params["which"]
        if which == "random":
            index = random.randrange(len(digits))
        elif which.isascii() and which.isdigit() and int(which) < len(digits):
            index = int(which)
        else:
            raise BadRequest(
                f"no test digit {which!r}: there are {len(digits)} (0 to {len(digits) - 1})", 404
            )
        image = digits.image(index, served.size)
        return JSONResponse(pixels_json(image, [("index", index), ("label", digits.label(index))]))

    return Starlette(
        routes=[
            Route("/api/model", model, methods=["GET"]),
            Route("/api/run", run, methods=["POST"]),
            Route("/api/upload", upload, methods=["POST"]),
            Route("/api/explain", explain, methods=["POST"]),
            Route("/api/detector", detector, methods=["GET"]),
            Route("/api/detect", detect, methods=["POST"]),
            Route("/api/scene", scene, methods=["GET"]),
            Route("/api/gallery", gallery, methods=["GET"]),
            Route("/api/digit/{which}", digit, methods=["GET"]),
            Route("/", page, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
        exception_handlers={BadRequest: _refused, HTTPException: _http_error},
    )


def _run(served: Served, image: Any, layers: list[str]) -> dict[str, Any]:
    """POST /api/run's answer; a detector's has its boxes of at least `PAGE_FLOOR` too."""
    probe = served.probe
    prepared = probe.prepare(plain(image))
    outputs = probe.run(prepared)
    answer = run_json(probe, prepared, outputs, layers)
    if served.detecting is not None:
        answer["detection"] = served.detecting.found(prepared, outputs, PAGE_FLOOR)
    return answer


def _layers(body: dict[str, Any], probe: Probe) -> list[str]:
    """The layers a POST /api/run asks for (``"layers": [names]``), all by default."""
    names = [layer.name for layer in probe.layers]
    asked = body.get("layers", names)
    if not isinstance(asked, list) or not all(isinstance(n, str) for n in asked):
        raise BadRequest("'layers' must be a list of layer names", 422)
    known = set(names)
    unknown = next((n for n in asked if n not in known), None)
    if unknown is not None:
        raise BadRequest(f"unknown layer {unknown[:80]!r}; the layers are {', '.join(names)}", 404)
    return list(dict.fromkeys(asked))  # each layer once, however often it was asked for


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) once it passes ``limit`` bytes, whatever its
    Content-Length says. A body declared too large is refused before it is read; one that
    only turns out too large is read to its end (and dropped, up to `DRAIN` times the limit)
    before the answer, so that the client, still sending, is not cut off mid-request and
    gets the 413 rather than a reset connection."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the request is {int(declared):,} bytes; at most {limit:,} are read", 413)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > DRAIN * limit:
                break
            if size <= limit:
                chunks.append(chunk)
    except ClientDisconnect:  # gone (or dropped as too slow): nobody reads the answer
        raise BadRequest("the client left before its request arrived whole", 408) from None
    if size > limit:
        raise BadRequest(f"the request is over {limit:,} bytes, the most that is read", 413)
    if not size:
        raise BadRequest("the request has no body")
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"the body is not JSON ({e})") from None
    except RecursionError:
        raise BadRequest("the body's JSON is nested too deeply") from None


def _answer(result: dict[str, Any]) -> Response:
    """The run's answer; a network whose output is NaN or infinite for this image is said
    so (JSON has no NaN), not a 500."""
    try:
        return JSONResponse(result)
    except ValueError:
        raise BadRequest(
            "the network's output is not a number (NaN or infinity) for this image: "
            "its weights or its input normalization are broken",
            422,
        ) from None


def _detecting(served: Served) -> Detecting:
    if served.detecting is None:
        raise BadRequest("this network is no detector: it finds no boxes", 404)
    return served.detecting


def _digits(served: Served) -> Digits:
    if served.digits is None:
        raise BadRequest("no test digits: serve a run, or pass --data with the test images", 404)
    return served.digits


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route: 404, wrong method: 405) as JSON too."""
    assert isinstance(exc, HTTPException)
    message = {
        404: f"no such page or API: {request.url.path[:200]}",
        405: f"{request.method} is not allowed on {request.url.path[:200]}",
    }.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)
