"""Detectors on the page (issue 26): `netspec serve` on a detection run, a real server on
127.0.0.1 over two runs trained here for seconds on 48x48 scenes (an SSD head and a
single-shot grid, the quick specs of tests/test_ssd.py and tests/test_yolo_train.py), and
on an untrained detector spec. The boxes it answers are `netspec detect --json`'s on the
same image, at any threshold, and the ones every POST /api/run carries are those same
boxes; a generated scene is `netspec scenes`' scene of that seed; bad requests are 4xx;
and in headless Chromium a picked scene's boxes and the grid or default boxes are drawn.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from netspec.cli import main
from netspec.data import load_mnist
from netspec.data.scenefiles import read_scenes, write_scenes
from netspec.data.scenes import DigitPool, SceneConfig, make_scenes
from tests.chromium import open_page
from tests.conftest import ROOT, write_mnist_subset
from tests.test_serve import LENET, Server, raw_reply, serving
from tests.test_serve_browser import browser
from tests.test_ssd import QUICK as SSD_QUICK
from tests.test_yolo_train import QUICK as YOLO_QUICK

__all__ = ["browser"]  # the module fixture, shared with tests/test_serve_browser.py

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
SIZE, DIGITS, SCALE = 48, (1, 2), (20, 30)
# The scenes the runs train on, written into their specs so that the page draws the same.
SCENES = f"    scenes size={SIZE} digits={DIGITS[0]}..{DIGITS[1]} scale={SCALE[0]}..{SCALE[1]}\n"
RUNS = {"ssd": (SSD_QUICK, 8), "yolo": (YOLO_QUICK.replace("EPOCHS", "10"), 10)}


@dataclass(frozen=True)
class Trained:
    runs: Path  # runs/ssd and runs/yolo, each with model.onnx
    mnist: Path  # the MNIST subset (IDX files) the scenes are drawn from


def _invoke(*args: str | Path) -> Any:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Both runs, trained for about 20 s in all on 240 scenes of 1 or 2 digits."""
    root = tmp_path_factory.mktemp("detector-runs")
    mnist = write_mnist_subset(root / "mnist", 600, 200)
    digits = load_mnist(mnist)
    for split, count in (("train", 240), ("test", 24)):
        config = SceneConfig(size=SIZE, digits=DIGITS, scale=SCALE, split=split)
        scenes = make_scenes(config, DigitPool.of(digits, split), count)
        write_scenes(root / "scenes" / split, scenes, config)
    for name, (text, epochs) in RUNS.items():
        spec = root / f"{name}.net"
        spec.write_text(text.replace("on mnist_scenes {\n", "on mnist_scenes {\n" + SCENES))
        args = ("--data", root / "scenes", "--out", root / "runs", "--name", name)
        _invoke("train", spec, *args, "--epochs", str(epochs), "--device", "cpu")
    return Trained(root / "runs", mnist)


@pytest.fixture(scope="module")
def servers(trained: Trained) -> Iterator[dict[str, Server]]:
    """`netspec serve RUN --data MNIST` on each run, the scenes drawn from that MNIST."""
    with (
        serving(trained.runs / "ssd", "--data", trained.mnist) as ssd,
        serving(trained.runs / "yolo", "--data", trained.mnist) as yolo,
    ):
        yield {"ssd": ssd, "yolo": yolo}


def _pixels(answer: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(answer["pixels"])
    return np.frombuffer(raw, np.uint8).reshape(answer["height"], answer["width"])


def _image(pixels: np.ndarray) -> dict[str, Any]:
    h, w = pixels.shape
    return {"height": h, "width": w, "channels": 1, "pixels": base64.b64encode(pixels).decode()}


def _same_boxes(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The same boxes in the same order: classes alike, corners and scores within what
    ONNX Runtime's thread count changes."""
    assert [(b["class"], b["label"]) for b in got] == [(b["class"], b["label"]) for b in want]
    for a, b in zip(got, want, strict=True):
        assert np.allclose(a["xyxy"], b["xyxy"], atol=0.05), (a, b)
        assert a["score"] == pytest.approx(b["score"], abs=2e-3), (a, b)


# ---- the API ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ssd", "yolo"])
def test_the_page_shows_the_boxes_netspec_detect_finds(
    servers: dict[str, Server], trained: Trained, name: str, tmp_path: Path
) -> None:
    server = servers[name]
    status, info = server.get("/api/detector")
    assert status == 200
    assert info["labels"] == [str(k) for k in range(10)] and len(info["colours"]) == 10
    floor, own = info["floor"], info["threshold"]
    found_any = 0
    for seed in range(3):
        status, scene = server.get(f"/api/scene?seed={seed}")
        assert status == 200 and (scene["height"], scene["width"]) == (SIZE, SIZE)
        pixels = _pixels(scene)
        png = tmp_path / f"scene{seed}.png"
        Image.fromarray(pixels).save(png)
        status, ran = server.post("/api/run", _image(pixels))
        assert status == 200
        carried = ran["detection"]["boxes"]
        for threshold in (floor, own):
            status, asked = server.post("/api/detect", {**_image(pixels), "threshold": threshold})
            assert status == 200 and asked["threshold"] == threshold
            model = trained.runs / name / "model.onnx"
            printed = _invoke("detect", model, png, "--json", "--threshold", str(threshold))
            (record,) = json.loads(printed.stdout)
            _same_boxes(asked["boxes"], record["detections"])
            # what the page filters from every answer is the decoder's answer at that threshold
            assert [b for b in carried if b["score"] >= threshold] == asked["boxes"]
        found_any += len(carried)
    assert found_any > 0


def test_the_ssd_page_says_its_default_boxes_and_their_scores(servers: dict[str, Server]) -> None:
    status, info = servers["ssd"].get("/api/detector")
    assert status == 200 and info["decoder"] == "ssd" and info["grid"] is None
    anchors = info["anchors"]
    # the quick head: maps of 12x12 and 6x6, one ratio (0.6) and the extra square box each
    assert [(m["height"], m["width"], len(m["sizes"])) for m in anchors["maps"]] == [
        (12, 12, 2),
        (6, 6, 2),
    ]
    assert anchors["rows"] == 12 * 12 * 2 + 6 * 6 * 2
    width, height = anchors["maps"][0]["sizes"][0]  # scale 0.35 at ratio 0.6 on 48 pixels
    assert (width, height) == pytest.approx((0.35 * 48 * 0.6**0.5, 0.35 * 48 / 0.6**0.5), abs=0.01)
    status, scene = servers["ssd"].get("/api/scene?seed=1")
    status, found = servers["ssd"].post("/api/detect", _image(_pixels(scene)))
    scores, best = found["anchors"]["scores"], found["anchors"]["best"]
    assert len(scores) == anchors["rows"] and all(0 <= s <= 1 for s in scores)
    assert [a["score"] for a in best] == sorted((a["score"] for a in best), reverse=True)
    top = best[0]
    assert top["score"] == pytest.approx(max(scores), abs=1e-4)
    assert scores[top["index"]] == top["score"]
    # its place: map, position and box give its index in the head's rows, and its corners
    m = anchors["maps"][top["map"]]
    first = sum(p["height"] * p["width"] * 2 for p in anchors["maps"][: top["map"]])
    assert top["index"] == first + (top["row"] * m["width"] + top["col"]) * 2 + top["box"]
    w, h = m["sizes"][top["box"]]
    cx, cy = (top["col"] + 0.5) * SIZE / m["width"], (top["row"] + 0.5) * SIZE / m["height"]
    assert top["xyxy"] == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=0.02)


def test_the_single_shot_page_says_its_grid_and_each_cells_confidence(
    servers: dict[str, Server],
) -> None:
    status, info = servers["yolo"].get("/api/detector")
    assert status == 200 and info["decoder"] == "single_shot" and info["anchors"] is None
    assert (info["grid"]["size"], info["grid"]["boxes"], info["grid"]["cell"]) == (6, 1, [8, 8])
    status, scene = servers["yolo"].get("/api/scene?seed=2")
    status, found = servers["yolo"].post("/api/detect", {**_image(_pixels(scene)), "threshold": 0})
    cells = found["cells"]
    assert len(cells["scores"]) == len(cells["classes"]) == 36
    # the best box of all survives suppression: its score and class are the best cell's
    assert found["boxes"], "no box at threshold 0"
    top = found["boxes"][0]
    best = int(np.argmax(cells["scores"]))
    assert cells["scores"][best] == pytest.approx(top["score"], abs=1e-3)
    assert cells["classes"][best] == top["class"]
    assert all(b["score"] <= max(cells["scores"]) + 1e-3 for b in found["boxes"])


def test_a_generated_scene_is_the_scene_netspec_scenes_draws(
    servers: dict[str, Server], trained: Trained, tmp_path: Path
) -> None:
    status, info = servers["ssd"].get("/api/detector")
    assert info["scenes"] == {
        "size": SIZE,
        "digits": list(DIGITS),
        "scale": list(SCALE),
        "max_iou": 0.1,
        "randomize": [],
    }
    status, scene = servers["ssd"].get("/api/scene?seed=7")
    assert status == 200 and scene["seed"] == 7
    out = tmp_path / "drawn"
    flags = ("--size", SIZE, "--digits", "1..2", "--scale", "20..30", "--split", "test")
    _invoke("scenes", "-o", out, "--count", 1, "--seed", 7, *flags, "--mnist", trained.mnist)
    (drawn,) = read_scenes(out).scenes
    assert np.array_equal(_pixels(scene), drawn.image)
    assert [t["class"] for t in scene["truth"]] == drawn.classes.tolist()
    truth = np.array([t["xyxy"] for t in scene["truth"]])
    assert np.allclose(truth, drawn.boxes, atol=1e-3)  # the files hold them as YOLO's fractions
    status, again = servers["ssd"].get("/api/scene?seed=7")
    assert again == scene
    status, other = servers["ssd"].get("/api/scene?seed=8")
    assert other["pixels"] != scene["pixels"]


def test_bad_requests_are_refused_and_the_server_goes_on(servers: dict[str, Server]) -> None:
    server = servers["yolo"]
    status, scene = server.get("/api/scene?seed=0")
    image = _image(_pixels(scene))
    for path in (
        "/api/scene",
        "/api/scene?seed=-1",
        "/api/scene?seed=x",
        "/api/scene?seed=1e3",
        f"/api/scene?seed={2**63}",
        "/api/scene?seed=" + "9" * 5000,
    ):
        status, body = server.get(path)
        assert status == 400 and "seed" in body["error"], (path, body)
    for threshold in (2, -0.1, "0.5", True, None, [0.5]):
        status, body = server.post("/api/detect", {**image, "threshold": threshold})
        assert status == 422 and "threshold" in body["error"], (threshold, body)
    for body in ({"height": 28, "width": 28, "channels": 1, "pixels": ""}, [], "x"):
        status, answer = server.post("/api/detect", body)
        assert 400 <= status < 500 and answer["error"]
    status, answer = server.post("/api/detect", b"{not json")
    assert status == 400
    # a body over the limit is refused from its Content-Length, before it is sent (sending
    # it whole would race the server's early answer and close: a broken pipe under load)
    reply = raw_reply(
        server,
        b"POST /api/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n",
    )
    assert reply.startswith("HTTP/1.1 413"), reply
    status, answer = server.request("/api/detect", None, method="GET")
    assert status == 405
    status, found = server.post("/api/detect", image)
    assert status == 200 and found["threshold"] == 0.2  # the head's own score= default


def test_a_classifier_has_no_detector_and_a_detector_spec_is_served_untrained(
    trained: Trained,
) -> None:
    with serving(LENET) as server:
        for path in ("/api/detector", "/api/scene?seed=1"):
            status, body = server.get(path)
            assert status == 404 and body["error"]
        status, body = server.post("/api/detect", _image(np.zeros((28, 28), np.uint8)))
        assert status == 404 and "no detector" in body["error"]
        status, ran = server.post("/api/run", _image(np.zeros((28, 28), np.uint8)))
        assert status == 200 and "detection" not in ran
    with serving(ROOT / "specs" / "yolo_digits.net", "--data", trained.mnist) as server:
        status, info = server.get("/api/detector")
        assert status == 200 and info["grid"]["size"] == 8 and info["scenes"]["size"] == 128
        status, scene = server.get("/api/scene?seed=3")
        assert (scene["height"], scene["width"]) == (128, 128)
        status, found = server.post("/api/detect", {**_image(_pixels(scene)), "threshold": 0})
        assert status == 200 and len(found["cells"]["scores"]) == 64
        assert len(found["boxes"]) <= 100  # netspec detect's most boxes per image


# ---- the page in headless Chromium ------------------------------------------------------------

COUNT_DRAWN = """c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n;
}"""


def _answers(page: Any) -> int:
    return int(page.evaluate("Number(document.querySelector('#detector').dataset.answers || 0)"))


@pytest.mark.parametrize("name", ["ssd", "yolo"])
def test_a_picked_scene_shows_its_boxes_and_the_heads_overlay_in_chromium(
    browser: Any, servers: dict[str, Server], name: str, tmp_path: Path
) -> None:
    server = servers[name]
    context, page, errors = open_page(browser, server.url + "/", 1400, 1000)
    page.wait_for_function(
        "Number(document.querySelector('#detector')?.dataset.answers) >= 1", timeout=60_000
    )
    page.fill("#det-seed", "3")
    before = _answers(page)
    page.click("#det-scene")
    page.wait_for_function(
        f"Number(document.querySelector('#detector').dataset.answers) > {before}", timeout=60_000
    )
    assert page.get_attribute("#detector", "data-seed") == "3"
    page.eval_on_selector(  # the least threshold the slider offers
        "#det-threshold", "t => { t.value = t.min; t.dispatchEvent(new Event('input')); }"
    )
    status, scene = server.get("/api/scene?seed=3")
    status, info = server.get("/api/detector")
    status, found = server.post(
        "/api/detect", {**_image(_pixels(scene)), "threshold": info["floor"]}
    )
    assert status == 200
    assert found["boxes"], "no box at the least threshold: nothing to see drawn"
    items = page.eval_on_selector_all(
        ".det-item", "es => es.map(e => [e.dataset.label, +e.dataset.score])"
    )
    assert items == [[b["label"], b["score"]] for b in found["boxes"]]
    assert page.eval_on_selector("#det-boxes", COUNT_DRAWN) > 0
    assert page.text_content("#det-count").startswith(f"({len(found['boxes'])} of score")
    heat = "grid" if name == "yolo" else "anchors"
    assert page.get_attribute("#detector", "data-heat") == heat
    assert page.eval_on_selector("#det-heat", COUNT_DRAWN) > 0
    if name == "ssd":  # every default box of the coarser map
        page.select_option("#det-anchors", "map1")
        assert page.get_attribute("#detector", "data-heat") == "map1"
        assert page.eval_on_selector("#det-heat", COUNT_DRAWN) > 0
    page.screenshot(path=str(tmp_path / f"{name}.png"))
    print(f"screenshot: {tmp_path / f'{name}.png'}")
    context.close()
    assert not errors, errors
