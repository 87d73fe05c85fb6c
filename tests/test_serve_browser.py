"""The page of `netspec serve` in a real headless Chromium (Debian's, driven by Playwright)
against a real server on 127.0.0.1: a stroke drawn with real mouse events changes the
prediction and draws every layer; a hovered unit's box on the input is the receptive field
`netspec compile --json` reports; a clicked gallery digit loads. A screenshot is kept.

Under CI (CI=true) a missing Chromium or Playwright fails these tests; elsewhere it skips
them, with the reason."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import ARGS, CHROMIUM, open_page
from tests.test_serve import LENET, Server, TinyRun, compiled_layers, serving, tiny_run
from tests.test_show import COLOUR_NET, colour_folders

__all__ = ["tiny_run"]  # the session fixture, shared with tests/test_serve.py

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        return f"no Chromium at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}: CI runs the page's browser tests for real (.ci/run)")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tiny_run: TinyRun) -> Iterator[Server]:
    with serving(tiny_run.run, "--data", tiny_run.data) as s:
        yield s


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh context (its own profile) on the page, once the first answer is drawn."""
    opened = open_page(browser, server.url + "/")
    opened.page.wait_for_function("window.netspec.updates >= 1", timeout=60_000)
    yield opened.page
    opened.context.close()
    assert not opened.errors, opened.errors


def probabilities(page: Any) -> list[float]:
    return [
        float(p) for p in page.eval_on_selector_all("#bars .bar", "bs => bs.map(b => b.dataset.p)")
    ]


def drawn_pixels(page: Any) -> dict[str, tuple[int, int]]:
    """For every layer: how many pixels of its maps' canvases are drawn (not transparent),
    and how many distinct colours they have, read back with getImageData."""
    counted = page.eval_on_selector_all(
        "canvas.map",
        """cs => {
            const layers = {};
            for (const c of cs) {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                const seen = layers[c.dataset.layer] ??= {drawn: 0, colours: new Set()};
                for (let i = 0; i < d.length; i += 4) if (d[i + 3]) {
                    seen.drawn++; seen.colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                }
            }
            return Object.entries(layers).map(([k, v]) => [k, v.drawn, v.colours.size]);
        }""",
    )
    return {layer: (drawn, colours) for layer, drawn, colours in counted}


def settle(page: Any, updates: int) -> None:
    """Wait until the page has drawn more than ``updates`` answers and none is in flight."""
    page.wait_for_function(f"window.netspec.updates > {updates}", timeout=60_000)
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('#status').textContent", timeout=60_000)


def stroke(page: Any, points: list[tuple[float, float]]) -> None:
    """A stroke on the drawing canvas with real mouse events, points in [0, 1]."""
    box = page.locator("#draw").bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def test_a_stroke_changes_the_prediction_and_draws_every_layer(page: Any, tmp_path: Path) -> None:
    blank = probabilities(page)
    assert len(blank) == 10
    before = page.evaluate("window.netspec.updates")
    stroke(page, [(0.5, 0.15), (0.5, 0.5), (0.52, 0.85)])
    settle(page, before)
    after = probabilities(page)
    assert after != blank and sum(after) == pytest.approx(1.0, abs=1e-6)
    prediction = page.locator("#prediction").get_attribute("data-class")
    assert prediction == str(max(range(10), key=after.__getitem__))
    layers = list(compiled_layers())
    pixels = drawn_pixels(page)
    assert sorted(pixels) == sorted(layers)
    for layer, (drawn, _) in pixels.items():
        assert drawn > 0, layer
    assert pixels["conv1"][1] > 10  # a stroke's edges: many levels, not a flat map
    seen = page.locator("#input").evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data)"
    )
    column = [seen[(y * 28 + 14) * 4] for y in range(28)]
    assert max(column[6:22]) > min(column[:3]) + 100  # the stroke, as the network sees it


def test_hovered_unit_box_is_the_receptive_field(page: Any) -> None:
    table = compiled_layers()
    for layer, unit in (("conv2", (4, 5)), ("maxpool1", (7, 6)), ("dense1", None)):
        canvas = page.locator(f'canvas.map[data-layer="{layer}"][data-channel="0"]')
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        layout = page.evaluate(f"state.layouts[{layer!r}]")
        if unit is None:
            page.mouse.move(box["x"] + 3, box["y"] + 3)
        else:
            y, x = unit
            page.mouse.move(
                box["x"] + (x + 0.5) * layout["sx"], box["y"] + (y + 0.5) * layout["sy"]
            )
        rf = page.locator("#rf-box")
        data = rf.evaluate("e => ({...e.dataset, hidden: e.hidden})")
        assert data["layer"] == layer and data["hidden"] is False
        field = table[layer]["receptive_field"]
        if field["whole_input"]:
            assert data["whole"] == "true"
            assert (float(data["height"]), float(data["width"])) == (28, 28)
        else:
            assert data["unit"] == f"0,{unit[0]},{unit[1]}"
            size, jump, start = field["size"], field["jump"], field["start"]
            assert [float(data["height"]), float(data["width"])] == size
            assert float(data["y0"]) == start[0] + unit[0] * jump[0] - size[0] / 2
            assert float(data["x0"]) == start[1] + unit[1] * jump[1] - size[1] / 2
        scale = float(data["scale"])
        drawn = rf.bounding_box()
        assert drawn["height"] == pytest.approx(float(data["height"]) * scale, abs=1)
        assert drawn["width"] == pytest.approx(float(data["width"]) * scale, abs=1)
        spec = page.locator("#unit .spec").text_content()
        line = table[layer]["line"]
        assert f"lenet.net:{line}:" in spec
        assert LENET.read_text().splitlines()[line - 1].strip() in spec


def test_clicking_a_gallery_digit_loads_it(page: Any, server: Server, tmp_path: Path) -> None:
    page.wait_for_selector("#gallery figure", timeout=60_000)
    _, gallery = server.get("/api/gallery")
    figure = page.locator("#gallery figure").nth(1)
    index = int(figure.get_attribute("data-index"))
    listed = next(d for d in gallery["digits"] if d["index"] == index)
    before = page.evaluate("window.netspec.updates")
    figure.click()
    settle(page, before)
    assert page.locator("#source").get_attribute("data-index") == str(index)
    assert page.locator("#prediction").get_attribute("data-class") == str(listed["predicted"])
    assert "loaded" in (figure.get_attribute("class") or "")
    shot = tmp_path / "serve.png"
    page.locator("#draw").hover()
    c = page.locator('canvas.map[data-layer="conv2"]').first.bounding_box()
    page.mouse.move(c["x"] + 20, c["y"] + 20)
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_the_pad_is_only_for_a_grey_input_and_a_colour_gallery_is_in_colour(
    page: Any, browser: Any, tmp_path: Path
) -> None:
    """Issue 21: LeNet on MNIST keeps its drawing pad and says "digit"; a 3x32x32 net on
    folders of red and green photographs has no pad, says "image", and its gallery's
    thumbnails are in colour."""
    assert page.locator("#draw").count() == 1
    assert page.locator("#random").text_content() == "Random test digit"
    spec = tmp_path / "col.net"
    spec.write_text(COLOUR_NET)
    with serving(spec, "--data", colour_folders(tmp_path / "photos")) as colour:
        context, opened, errors = open_page(browser, colour.url + "/")
        opened.wait_for_function(  # the first answer, or the error the page shows instead
            "window.netspec.updates >= 1 || /error/.test(document.querySelector('#status')"
            ".textContent)",
            timeout=120_000,
        )
        assert opened.evaluate("window.netspec.updates") >= 1, opened.text_content("#status")
        opened.wait_for_selector("#gallery figure", timeout=60_000)
        assert opened.locator("#draw").count() == 0 and opened.locator("#clear").count() == 0
        assert opened.locator("#random").text_content() == "Random test image"
        assert opened.locator("#gallery-title").text_content() == "Misclassified test images"
        coloured = opened.eval_on_selector(
            "#gallery figure canvas",
            """c => {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - d[i + 1]) > 40) n++;
                return n;
            }""",
        )
        assert coloured > 100  # a 32x32 red or green photograph, not grey
        opened.locator("#gallery figure").first.click()
        opened.wait_for_function(
            "/^test image #/.test(document.querySelector('#source').textContent)"
        )
        context.close()
    assert not errors, errors
