"""POST /api/explain and the page's "How this unit is computed" (issue 26), against real
servers on 127.0.0.1 (`netspec serve` in a child process, tests/test_serve.py's `serving`).

For LeNet (convolution, max pooling, dense), LeNet-5 (its C3 connection table, trainable
subsampling, the RBF output) and a small spec of the other words (batchnorm, locally
connected, grouped and depthwise convolutions, average pooling, layer norm, layer scale,
upsampling, pixel shuffle), each answer must (1) give the value the network computed for
the unit, the one POST /api/run draws, (2) recompute it from the numbers it shows, and
(3) add up: products = patch x kernel, the channel sums add to the sum, sum + bias = the
pre-activation, and the patch is what the input layer's maps hold there. A trained run,
served through ONNX Runtime, is explained from its own weights. Then, in real headless
Chromium, a student follows one unit of LeNet's last convolution back to the input pixels,
the arithmetic shown at each step."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.chromium import open_page
from tests.test_serve import (
    LENET,
    ROOT,
    Server,
    TinyRun,
    decoded,
    drawn,
    serving,
    tiny_run,
)
from tests.test_serve_browser import browser, settle, stroke

__all__ = ["browser", "tiny_run"]  # fixtures shared with the other serve tests

pytestmark = pytest.mark.slow
LENET5 = ROOT / "specs" / "lenet5.net"
SCREENSHOT = ROOT / "docs" / "img" / "serve-explain.png"
C3 = {0: [0, 1, 2], 4: [0, 4, 5], 6: [0, 1, 2, 3], 15: [0, 1, 2, 3, 4, 5]}  # lenet5.net's table
OTHER_WORDS = """\
network words(image: 1x16x16) {
    conv 8 3x3 pad=1 stride=2 | batchnorm | relu | maxpool 2x2   # 8@4x4
    local 6 3x3 pad=1 | relu                                     # 6@4x4
    conv 6 3x3 pad=same groups=2 | layernorm channels | gelu
    conv 6 3x3 pad=same groups=6 dilation=2 | layer_scale 0.5 | hardswish
    upsample 2 | avgpool 3x3 stride=2 pad=1 | leaky_relu 0.1
    upsample 2 mode=bilinear | conv 4 1x1 | pixel_shuffle 2 | sigmoid
    avgpool global | dense 10
}
"""


def digit(size: int) -> np.ndarray:
    """A drawn "2": white strokes on black, ``size`` x ``size``."""
    picture = Image.new("L", (size, size))
    pen = ImageDraw.Draw(picture)
    s = size / 28
    points = [(8, 8), (14, 5), (20, 9), (18, 15), (9, 22), (21, 22)]
    pen.line([(x * s, y * s) for x, y in points], fill=255, width=max(2, round(3 * s)))
    return np.asarray(picture)


def explain(server: Server, image: np.ndarray, layer: str, **unit: int) -> dict[str, Any]:
    status, answer = server.post(
        "/api/explain", {"image": drawn(image), "layer": layer, "unit": unit}
    )
    assert status == 200, answer
    return answer


def maps(server: Server, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's values as the page gets them from POST /api/run (and the input's)."""
    status, answer = server.post("/api/run", drawn(image))
    assert status == 200, answer
    return {"image": decoded(answer["input"])} | {
        name: decoded(encoded) for name, encoded in answer["layers"].items()
    }


def step(values: np.ndarray) -> float:
    """How far a value read back from its 16-bit code may be from the real one."""
    return float(values.max() - values.min()) / 65535 + 1e-6


def close(a: float, b: float, tol: float = 1e-5) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def adds_up(answer: dict[str, Any]) -> None:
    """The answer checks itself and is checked here: the recomputed value is the
    network's; for a sliding kernel, each product is patch x kernel (a tap in the
    padding reads 0), each channel's products add to its sum, the sums to the total, and
    total + bias is the pre-activation, the value."""
    assert answer["matches"] is True, answer
    assert abs(answer["recomputed"] - answer["value"]) <= answer["tolerance"]
    n = answer["numbers"]
    if answer["kind"] not in ("conv", "local"):
        return
    for term in n["terms"]:
        if "patch" not in term:
            continue
        patch = np.array([[0.0 if v is None else v for v in row] for row in term["patch"]])
        products = np.array(term["products"], dtype=np.float64)
        assert np.allclose(products, patch * np.array(term["kernel"]), rtol=1e-9, atol=1e-12)
        assert close(float(products.sum()), term["sum"], 1e-9)
    assert close(sum(t["sum"] for t in n["terms"]), n["sum"], 1e-9)
    assert close(n["sum"] + n["bias"], n["pre_activation"], 1e-12)
    assert close(n["pre_activation"], answer["recomputed"], 1e-12)


def patch_is_the_input(answer: dict[str, Any], values: np.ndarray) -> None:
    """Each tap of the patch is the input layer's value there (by POST /api/run's maps);
    the rows and columns the answer names are the taps inside the map."""
    rows, cols = answer["patch"]["rows"], answer["patch"]["cols"]
    for term in answer["numbers"]["terms"]:
        patch = np.array([[np.nan if v is None else v for v in row] for row in term["patch"]])
        inside = patch[~np.isnan(patch).all(axis=1)][:, ~np.isnan(patch).all(axis=0)]
        window = values[term["channel"], rows[0] : rows[1] + 1, cols[0] : cols[1] + 1]
        assert inside.shape == window.shape
        assert np.abs(inside - window).max() <= step(values)


@pytest.fixture(scope="module")
def lenet() -> Iterator[Server]:
    with serving(LENET) as s:
        yield s


@pytest.fixture(scope="module")
def lenet5() -> Iterator[Server]:
    with serving(LENET5) as s:
        yield s


@pytest.fixture(scope="module")
def words(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    spec = tmp_path_factory.mktemp("explain") / "words.net"
    spec.write_text(OTHER_WORDS)
    with serving(spec) as s:
        yield s


def test_a_convolution_unit_is_its_patch_times_its_kernel_plus_bias(lenet: Server) -> None:
    image = digit(28)
    seen = maps(lenet, image)
    answer = explain(lenet, image, "conv2", channel=3, y=4, x=5)
    adds_up(answer)
    assert answer["kind"] == "conv" and answer["input"] == "maxpool1"
    assert abs(answer["value"] - seen["conv2"][3, 4, 5]) <= step(seen["conv2"])
    assert answer["patch"] == {
        "channels": list(range(6)),
        "rows": [4, 8],
        "cols": [5, 9],
        "marks": [],
    }
    assert [len(t["patch"]) for t in answer["numbers"]["terms"]] == [5] * 6
    patch_is_the_input(answer, seen["maxpool1"])
    relu, pool = answer["then"]  # the rest of the line: relu, then the max pool that takes it
    assert relu["layer"] == "relu2" and close(relu["value"], max(0.0, answer["value"]))
    assert pool["layer"] == "maxpool2" and pool["unit"] == {
        "channel": 3,
        "y": 2,
        "x": 2,
        "index": 87,
    }
    assert pool["won"] == (pool["numbers"]["winner"] == [4, 5])
    assert pool["value"] >= relu["value"] - 1e-6
    if pool["won"]:
        assert close(pool["value"], relu["value"])


def test_a_convolution_at_the_border_reads_its_padding_as_zero(lenet: Server) -> None:
    image = digit(28)
    answer = explain(lenet, image, "conv1", channel=0, y=0, x=1)
    adds_up(answer)
    (term,) = answer["numbers"]["terms"]
    assert answer["input"] == "image" and answer["patch"]["rows"] == [0, 2]
    assert answer["patch"]["cols"] == [0, 3]
    assert term["patch"][0] == [None] * 5 and term["patch"][2][0] is None
    assert term["products"][0] == [0.0] * 5
    patch_is_the_input(answer, maps(lenet, image)["image"])


def test_a_max_pool_unit_is_the_largest_of_its_window(lenet: Server) -> None:
    image = digit(28)
    seen = maps(lenet, image)
    answer = explain(lenet, image, "maxpool1", channel=2, y=5, x=4)
    adds_up(answer)
    window = np.array(answer["numbers"]["window"])
    assert answer["patch"]["rows"] == [10, 11] and answer["patch"]["cols"] == [8, 9]
    assert np.abs(window - seen["relu1"][2, 10:12, 8:10]).max() <= step(seen["relu1"])
    assert close(answer["value"], float(window.max()))
    y, x = answer["numbers"]["winner"]
    assert close(float(window[y - 10, x - 8]), answer["value"])


def test_a_dense_unit_lists_its_strongest_inputs_and_sums_the_rest(lenet: Server) -> None:
    image = digit(28)
    seen = maps(lenet, image)
    answer = explain(lenet, image, "dense1", index=17)
    adds_up(answer)
    n = answer["numbers"]
    assert answer["kind"] == "dense" and n["inputs"] == 400 and len(n["top"]) == 10
    strength = [abs(t["product"]) for t in n["top"]]
    assert strength == sorted(strength, reverse=True)
    for t in n["top"]:
        assert close(t["product"], t["x"] * t["w"], 1e-9)
        assert abs(t["x"] - seen["maxpool2"][tuple(t["at"])]) <= step(seen["maxpool2"])
        assert t["index"] == np.ravel_multi_index(t["at"], (16, 5, 5))
    assert n["rest"]["count"] == 390
    assert close(sum(t["product"] for t in n["top"]) + n["rest"]["sum"], n["sum"], 1e-9)
    assert close(n["sum"] + n["bias"], n["pre_activation"], 1e-12)
    assert answer["patch"]["marks"] == [t["at"] for t in n["top"]]
    assert abs(answer["value"] - seen["dense1"][17]) <= step(seen["dense1"])
    assert answer["then"][0]["layer"] == "relu3"


def test_the_input_pixel_is_its_byte_normalized(lenet: Server) -> None:
    image = digit(28)
    answer = explain(lenet, image, "image", channel=0, y=8, x=8)
    adds_up(answer)
    assert answer["numbers"] == {"pixel": int(image[8, 8]), "mean": 0.1307, "std": 0.3081}
    assert close(answer["value"], (image[8, 8] / 255 - 0.1307) / 0.3081)


def test_a_connection_table_reads_only_its_connected_maps(lenet5: Server) -> None:
    image = digit(32)
    seen = maps(lenet5, image)
    for o, row in C3.items():
        answer = explain(lenet5, image, "c3", channel=o, y=3, x=6)
        adds_up(answer)
        assert answer["patch"]["channels"] == row
        assert [t["channel"] for t in answer["numbers"]["terms"]] == row
        patch_is_the_input(answer, seen["scaled_tanh2"])
        assert abs(answer["value"] - seen["c3"][o, 3, 6]) <= step(seen["c3"])
        assert answer["then"][0]["layer"] == "scaled_tanh3"
        assert close(answer["then"][0]["value"], 1.7159 * math.tanh(2 * answer["value"] / 3))


def test_lenet5s_subsampling_and_its_rbf_output(lenet5: Server) -> None:
    image = digit(32)
    pooled = explain(lenet5, image, "s2", channel=1, y=6, x=7)
    adds_up(pooled)
    n = pooled["numbers"]
    assert pooled["patch"]["rows"] == [12, 13] and pooled["patch"]["cols"] == [14, 15]
    assert close(float(np.sum(n["window"])), n["sum"], 1e-9)
    assert close(n["sum"] * n["coefficient"] + n["bias"], pooled["recomputed"], 1e-9)
    out = explain(lenet5, image, "output", index=7)
    adds_up(out)
    top = out["numbers"]["top"]
    assert all(close(t["term"], (t["x"] - t["prototype"]) ** 2, 1e-9) for t in top)
    assert close(sum(t["term"] for t in top) + out["numbers"]["rest"]["sum"], out["value"], 1e-5)


def test_batchnorm_local_grouped_and_the_newer_words(words: Server) -> None:
    image = digit(16)
    conv = explain(words, image, "conv1", channel=5, y=0, x=0)
    adds_up(conv)
    bn = conv["then"][0]
    assert bn["layer"] == "batchnorm1" and close(bn["numbers"]["x"], conv["value"])
    n = bn["numbers"]
    normal = (n["x"] - n["mean"]) / math.sqrt(n["var"] + n["eps"]) * n["gamma"] + n["beta"]
    assert close(normal, bn["value"]) and bn["matches"]
    assert [s["layer"] for s in conv["then"]] == ["batchnorm1", "relu1", "maxpool1"]

    local = explain(words, image, "local1", channel=2, y=1, x=3)
    adds_up(local)
    assert local["patch"]["channels"] == list(range(8))
    assert local["numbers"]["position_kernel"] == 1 * 4 + 3

    grouped = explain(words, image, "conv2", channel=4, y=2, x=1)  # 2 groups of 3 channels
    adds_up(grouped)
    assert grouped["patch"]["channels"] == [3, 4, 5]
    depthwise = explain(words, image, "conv3", channel=4, y=2, x=2)
    adds_up(depthwise)
    assert depthwise["patch"]["channels"] == [4]
    assert depthwise["patch"]["rows"] == [0, 2] and depthwise["patch"]["cols"] == [0, 2]

    for layer, kind in [
        ("layernorm1", "layernorm"),
        ("gelu1", "activation"),
        ("layer_scale1", "layer_scale"),
        ("hardswish1", "activation"),
        ("upsample1", "upsample"),
        ("upsample2", "upsample"),
        ("pixel_shuffle1", "pixel_shuffle"),
        ("sigmoid1", "activation"),
    ]:
        answer = explain(words, image, layer, index=5)
        assert answer["kind"] == kind
        adds_up(answer)
    average = explain(words, image, "avgpool1", channel=1, y=0, x=0)  # a corner: pad counts
    adds_up(average)
    assert average["numbers"]["divisor"] == 9
    assert close(average["numbers"]["sum"] / 9, average["value"])
    shuffled = explain(words, image, "pixel_shuffle1", channel=0, y=3, x=2)
    assert shuffled["numbers"]["from"] == [1 * 2 + 0, 1, 1]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"layer": "conv9", "unit": {"index": 0}}, 404, "unknown layer 'conv9'"),
        ({"layer": "conv2", "unit": {"channel": 16, "y": 0, "x": 0}}, 422, "channel 16"),
        ({"layer": "conv2", "unit": {"channel": 0, "y": -1, "x": 0}}, 422, "outside"),
        ({"layer": "conv2", "unit": {"channel": True, "y": 0, "x": 0}}, 422, "whole numbers"),
        ({"layer": "conv2", "unit": {"channel": 0.5, "y": 0, "x": 0}}, 422, "whole numbers"),
        ({"layer": "dense1", "unit": {"index": 120}}, 422, "0 to 119"),
        ({"layer": "conv2"}, 422, "'unit'"),
        ({"layer": 3, "unit": {"index": 0}}, 422, "'layer'"),
    ],
)
def test_a_bad_question_is_a_4xx_with_a_message(
    lenet: Server, body: dict[str, Any], status: int, says: str
) -> None:
    got, answer = lenet.post("/api/explain", {"image": drawn(digit(28)), **body})
    assert got == status and says in answer["error"], answer
    assert explain(lenet, digit(28), "conv1", index=0)["matches"]  # and the server still answers


def test_a_bad_body_is_a_4xx(lenet: Server) -> None:
    for body, status in [
        (b"{not json", 400),
        ({"layer": "conv1", "unit": {"index": 0}}, 400),  # no image
        ({"image": drawn(digit(16)), "layer": "conv1", "unit": {"index": 0}}, 422),
        ([1, 2], 400),
    ]:
        got, answer = lenet.post("/api/explain", body)
        assert got == status and answer["error"], (body, answer)


def test_a_trained_run_on_onnx_runtime_is_explained_from_its_weights(tiny_run: TinyRun) -> None:
    """`netspec serve RUN` runs model.onnx on ONNX Runtime: the patch and the value come
    from there, the weights from the run's safetensors; they must agree."""
    image = digit(28)
    with serving(tiny_run.run, "--data", tiny_run.data) as server:
        seen = maps(server, image)
        for layer, unit in [("conv2", {"channel": 9, "y": 3, "x": 2}), ("dense2", {"index": 40})]:
            answer = explain(server, image, layer, **unit)
            adds_up(answer)
            assert abs(answer["value"] - seen[layer][tuple(unit.values())]) <= step(seen[layer])
    with serving(tiny_run.run / "model.onnx") as server:
        status, answer = server.post(
            "/api/explain", {"image": drawn(image), "layer": "conv2", "unit": {"index": 0}}
        )
        assert status == 422 and "serve its run directory" in answer["error"]
        adds_up(explain(server, image, "maxpool1", channel=2, y=5, x=4))  # needs no weights


# --- the page, in Chromium ------------------------------------------------------------------


def _explained(page: Any, layer: str, kind: str) -> dict[str, str]:
    """Wait for the panel to explain a unit of ``layer``; its data attributes."""
    page.wait_for_selector(f'#explain[data-layer="{layer}"][data-kind="{kind}"]', timeout=60_000)
    return page.eval_on_selector("#explain", "e => ({...e.dataset})")


def _click_in_outline(page: Any, layer: str, channel: int) -> None:
    """Click the middle of the outlined window on map ``channel`` of ``layer``."""
    outline = page.locator(f'.explain-patch[data-layer="{layer}"][data-channel="{channel}"]')
    box = outline.first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def _outline_units(page: Any, layer: str, channel: int, size: int) -> list[int]:
    """The outline on map ``channel`` of ``layer`` (``size`` x ``size`` units) in units:
    first row, last row, first column, last column."""
    outline = page.locator(f'.explain-patch[data-layer="{layer}"][data-channel="{channel}"]')
    o = outline.first.bounding_box()
    c = page.locator(f'canvas.map[data-layer="{layer}"][data-channel="{channel}"]').bounding_box()
    u = c["width"] / size
    return [
        round((o["y"] - c["y"]) / u),
        round((o["y"] + o["height"] - c["y"]) / u) - 1,
        round((o["x"] - c["x"]) / u),
        round((o["x"] + o["width"] - c["x"]) / u) - 1,
    ]


def test_a_student_follows_a_unit_of_lenet_back_to_the_pixels(
    browser: Any, lenet: Server, tmp_path: Path
) -> None:
    """Click a unit of conv2 (LeNet's last convolution): the panel shows its six input
    patches, kernels, products and sums, and outlines its 5x5 window on maxpool1's six
    maps; a click inside the outline explains that max pool (its window and winner), then
    the ReLU, then conv1 (a 5x5 patch of the input), and a click in its outline on the
    input ends on one pixel, with the arithmetic shown at each step."""
    context, page, errors = open_page(browser, lenet.url + "/")
    page.wait_for_function("window.netspec.updates >= 1", timeout=60_000)
    before = page.evaluate("window.netspec.updates")
    stroke(page, [(0.3, 0.3), (0.5, 0.18), (0.7, 0.32), (0.35, 0.8), (0.75, 0.8)])
    settle(page, before)

    conv2 = page.locator('canvas.map[data-layer="conv2"][data-channel="3"]').bounding_box()
    unit = conv2["width"] / 10
    page.mouse.click(conv2["x"] + 5.5 * unit, conv2["y"] + 4.5 * unit)  # (3, y=4, x=5)
    shown = _explained(page, "conv2", "conv")
    assert shown["matches"] == "true" and shown["index"] == str(3 * 100 + 4 * 10 + 5)
    panel = page.locator("#explain")
    assert panel.locator(".channel").count() == 6
    for grid in ("patch", "kernel", "products"):
        assert panel.locator(f".grid.{grid} td").count() == 6 * 25
    assert "+ bias" in panel.locator(".formula").first.inner_text()
    assert [p.get_attribute("data-layer") for p in panel.locator(".then").all()] == [
        "relu2",
        "maxpool2",
    ]
    assert page.locator('.explain-patch.window[data-layer="maxpool1"]').count() == 6
    for c in range(6):
        assert _outline_units(page, "maxpool1", c, 14) == [4, 8, 5, 9]
    if os.environ.get("NETSPEC_DOCS_SHOTS") == "1":  # refresh docs/seeing.md's picture
        _screenshot(page, SCREENSHOT)

    _click_in_outline(page, "maxpool1", 1)  # the middle of the window: (1, y=6, x=7)
    shown = _explained(page, "maxpool1", "maxpool")
    assert shown["matches"] == "true" and shown["index"] == str(196 + 6 * 14 + 7)
    assert panel.locator(".grid.window td.winner").count() == 1
    assert _outline_units(page, "relu1", 1, 28) == [12, 13, 14, 15]

    _click_in_outline(page, "relu1", 1)
    shown = _explained(page, "relu1", "activation")
    assert shown["matches"] == "true"
    _click_in_outline(page, "conv1", 1)
    shown = _explained(page, "conv1", "conv")
    assert shown["matches"] == "true"
    assert panel.locator(".grid.patch td").count() == 25
    assert page.locator('#input-frame .explain-patch[data-layer="image"]').count() == 1

    _click_in_outline(page, "image", 0)
    shown = _explained(page, "image", "input")
    assert shown["matches"] == "true"
    assert "/ 255" in panel.locator(".formula").inner_text()
    shot = tmp_path / "explain.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    context.close()
    assert not errors, errors


def _screenshot(page: Any, path: Path) -> None:
    """The panel and the outlined maps above it, as docs/seeing.md shows them: on a wide
    screen (a channel's patch, kernel and products on one line), in 128 colours."""
    page.set_viewport_size({"width": 1920, "height": 1100})
    page.wait_for_timeout(300)
    top = page.locator("#layer-maxpool1").bounding_box()
    bottom = page.locator("#explain").bounding_box()
    clip = {
        "x": min(top["x"], bottom["x"]) - 4,
        "y": top["y"] - 4,
        "width": max(top["width"], bottom["width"]) + 8,
        "height": bottom["y"] + bottom["height"] - top["y"] + 8,
    }
    shot = Image.open(io.BytesIO(page.screenshot(clip=clip, full_page=True))).convert("RGB")
    shot.quantize(128).save(path, optimize=True)
    page.set_viewport_size({"width": 1500, "height": 1100})
    page.wait_for_timeout(300)


def test_the_docs_screenshot_shows_the_panel() -> None:
    """docs/seeing.md's picture of the panel: a real screenshot (written by the browser
    test above with NETSPEC_DOCS_SHOTS=1), small, and not blank."""
    assert SCREENSHOT.stat().st_size < 150_000
    pixels = np.asarray(Image.open(io.BytesIO(SCREENSHOT.read_bytes())).convert("RGB"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 100 and pixels.std() > 20
