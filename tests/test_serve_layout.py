"""The page of `netspec serve` laid out for any screen and any network (issue 26), in real
headless Chromium against real servers: LeNet (a run trained here) and MobileNet-v3 small
(its spec, untrained: 167 layers, 1,000 classes). At 700, 1024, 1400 and 1920 pixels wide
no two of the page's boxes overlap (their rectangles are measured), and the screenshot's
maps are drawn; the maps are reached and walked with the keyboard; every map has a legend
with its numbers; a receptive field's rows are inclusive, as `netspec show` prints them;
a large network opens as an overview whose layers open on demand; a many-class network
shows its most probable classes.

With NETSPEC_SCREENSHOTS=DIR the screenshots are kept there, as small palette PNGs (the
ones in docs/seeing.md)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from netspec.probe import open_probe
from netspec.show.pictures import _box_text
from netspec.show.receptive import static_box
from tests.chromium import open_page
from tests.conftest import ROOT
from tests.test_serve import LENET, Server, TinyRun, serving, tiny_run
from tests.test_serve_browser import browser

__all__ = ["browser", "tiny_run"]  # fixtures shared with the other page tests

pytestmark = pytest.mark.slow
LARGE = ROOT / "specs" / "mobilenet_v3_small.net"
WIDTHS = (700, 1024, 1400, 1920)
HEIGHT = 900
OPENED = ("conv2", "bneck2.conv2", "classifier")  # MobileNet's layers the tests open
# what the page records of its own events, before its script runs
RECORD = """
window.recorded = {model: [], answer: [], unit: []};
for (const kind of ["model", "answer", "unit"]) {
  document.addEventListener(`netspec:${kind}`, (e) => window.recorded[kind].push(
    kind === "answer" ? Object.keys(e.detail.layers) : e.detail));
}
"""


@pytest.fixture(scope="module")
def lenet(tiny_run: TinyRun) -> Iterator[Server]:
    with serving(tiny_run.run, "--data", tiny_run.data) as s:
        yield s


@pytest.fixture(scope="module")
def large() -> Iterator[Server]:
    with serving(LARGE) as s:
        yield s


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 224x224 colour picture with edges and shading, so that every layer has something
    to show (a black input leaves an untrained network's maps flat): a yellow square, a blue
    disc and a white stripe on a gradient."""
    y, x = np.mgrid[0:224, 0:224] / 223
    rgb = np.stack([x, y, 1 - x * y], axis=-1) * 200
    rgb[40:110, 120:200] = [240, 200, 40]
    rgb[(x - 0.3) ** 2 + (y - 0.65) ** 2 < 0.04] = [30, 60, 220]
    rgb[np.abs(x - y - 0.1) < 0.025] = 255
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def toggle(page: Any, layer: str) -> Any:
    """The button that opens and closes ``layer``."""
    return page.locator(f'#layers .layer[data-layer="{layer}"] .toggle')


def opened(browser: Any, server: Server, width: int, height: int = HEIGHT) -> tuple[Any, Any]:
    """A fresh context at ``width`` x ``height`` on the page, once its first answer is
    drawn; the page's errors end the test."""
    context, page, errors = open_page(browser, server.url + "/", width, height, RECORD)
    context.errors = errors
    page.wait_for_function("window.netspec.updates >= 1", timeout=120_000)
    return context, page


def closed(context: Any) -> None:
    errors = context.errors
    context.close()
    assert not errors, errors


def answered(page: Any, before: int) -> None:
    """Wait until the page has drawn an answer after the ``before``-th and none is pending."""
    page.wait_for_function(
        f"window.netspec.updates > {before} && !netspecPage.state.busy", timeout=120_000
    )


def upload(page: Any, picture: Path) -> None:
    before = page.evaluate("window.netspec.updates")
    page.set_input_files("#upload", str(picture))
    answered(page, before)


# every pair of the boxes that overlap (by more than half a pixel), and every box that
# leaves the one it belongs in
MEASURE = """() => {
  const rect = (e) => e.getBoundingClientRect();
  const shown = (e) => e && !e.hidden && rect(e).width > 0 && rect(e).height > 0;
  const overlap = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 &&
    Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
  const outside = (a, b) => a.left < b.left - 0.5 || a.right > b.right + 0.5;
  const named = (e) => e.id || e.dataset.layer + (e.dataset.channel ? ":" + e.dataset.channel : "");
  const bad = [];
  const pairs = (els) => {
    const rs = els.map((e) => [named(e), rect(e)]).sort((a, b) => a[1].top - b[1].top);
    for (let i = 0; i < rs.length; i++)
      for (let j = i + 1; j < rs.length && rs[j][1].top < rs[i][1].bottom; j++)
        if (overlap(rs[i][1], rs[j][1])) bad.push(`${rs[i][0]} overlaps ${rs[j][0]}`);
  };
  const inside = (els, outer) => {
    for (const e of els)
      if (outside(rect(e), rect(outer))) bad.push(`${named(e)} leaves ${named(outer)}`);
  };
  const main = ["header", "left", "maps", "right", "gallery-section"]
    .map((id) => document.getElementById(id) || document.querySelector(id)).filter(shown);
  pairs(main);
  const layers = [...document.querySelectorAll("#layers .layer")];
  pairs(layers);
  inside(layers, document.getElementById("maps"));
  const tiles = [...document.querySelectorAll(".tile canvas.map")].filter(shown);
  pairs(tiles);
  for (const t of tiles) inside([t], t.closest(".layer"));
  inside([...document.querySelectorAll("#left .frame, #left .legend, #bars")],
         document.getElementById("left"));
  inside([document.querySelector("#right .scroll")], document.getElementById("right"));
  if (document.documentElement.scrollWidth > innerWidth) bad.push("the page scrolls sideways");
  const m = rect(document.getElementById("maps"));
  return {bad, tiles: tiles.length, layers: layers.length,
          maps: [m.left, m.top, Math.min(m.right, innerWidth), Math.min(m.bottom, innerHeight)]};
}"""


def screenshot(page: Any, name: str) -> Image.Image:
    """The viewport's screenshot, kept as NETSPEC_SCREENSHOTS/NAME.png (a 128-colour
    palette PNG) when that is set."""
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    keep = os.environ.get("NETSPEC_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        small = shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(Path(keep) / f"{name}.png", optimize=True)
    return shot


def assert_maps_drawn(shot: Image.Image, area: list[float]) -> None:
    """The maps' part of the screenshot is a picture, not a blank or flat box: many
    colours, spread over a wide range."""
    left, top, right, bottom = (round(v) for v in area)
    crop = np.asarray(shot.crop((left, top, right, bottom)), dtype=np.int64)
    colours = np.unique(crop.reshape(-1, 3) @ np.array([1 << 16, 1 << 8, 1]))
    assert len(colours) > 200, len(colours)
    assert crop.std() > 30


@pytest.mark.parametrize("width", WIDTHS)
def test_lenet_fits_every_width(browser: Any, lenet: Server, width: int) -> None:
    context, page = opened(browser, lenet, width)
    page.wait_for_selector("#gallery figure", timeout=60_000)
    before = page.evaluate("window.netspec.updates")
    page.locator("#gallery figure").first.click()
    answered(page, before)
    page.evaluate("document.querySelector('.layer[data-layer=conv2]').scrollIntoView()")
    box = page.locator('canvas.map[data-layer="conv2"][data-channel="3"]').bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.55)
    assert shown_unit(page) == {"layer": "conv2", "channel": 3, "y": 5, "x": 4, "index": 354}
    field = page.locator("#rf-box-draw").bounding_box()  # the left column stays in view
    assert field["y"] >= 0 and field["y"] + field["height"] <= HEIGHT
    measured = page.evaluate(MEASURE)
    assert measured["bad"] == [], measured["bad"]
    assert measured["layers"] == 11 and measured["tiles"] == 6 * 3 + 16 * 3 + 5
    shot = screenshot(page, f"serve-lenet-{width}")
    assert shot.size == (width, HEIGHT)
    assert_maps_drawn(shot, measured["maps"])
    closed(context)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_large_network_fits_every_width(
    browser: Any, large: Server, photo: Path, width: int
) -> None:
    context, page = opened(browser, large, width)
    upload(page, photo)
    for name in OPENED:
        before = page.evaluate("window.netspec.updates")
        toggle(page, name).click()
        answered(page, before)
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator('canvas.map[data-layer="conv2"][data-channel="5"]').bounding_box()
    assert box["y"] + box["height"] <= HEIGHT  # the first maps are on the first screen
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.3)
    assert shown_unit(page)["layer"] == "conv2"
    field = page.locator("#rf-box").bounding_box()
    assert field["y"] >= 0 and field["y"] + field["height"] <= HEIGHT
    measured = page.evaluate(MEASURE)
    assert measured["bad"] == [], measured["bad"]
    assert measured["layers"] == 167 and measured["tiles"] == 16 + 96 + 1
    shot = screenshot(page, f"serve-mobilenet-{width}")
    assert_maps_drawn(shot, measured["maps"])
    closed(context)


def active(page: Any) -> dict[str, Any]:
    """The focused element: its layer and channel, and whether its focus is drawn."""
    return dict(
        page.evaluate(
            """() => {
              const e = document.activeElement, style = getComputedStyle(e);
              return {layer: e.dataset.layer, channel: e.dataset.channel,
                      outline: style.outlineStyle, width: parseFloat(style.outlineWidth)};
            }"""
        )
    )


def shown_unit(page: Any) -> dict[str, Any]:
    """The unit the info box shows, as netspec:unit would say it."""
    return dict(json.loads(page.locator("#unit").get_attribute("data-unit")))


def test_the_keyboard_walks_the_maps_and_chooses_a_unit(browser: Any, lenet: Server) -> None:
    context, page = opened(browser, lenet, 1400)
    page.focus('#layers .layer[data-layer="conv2"] .toggle')
    page.keyboard.press("Tab")  # the layer's maps: one tab stop, its first map
    assert active(page) == {"layer": "conv2", "channel": "0", "outline": "solid", "width": 3}
    for key in ("ArrowRight", "ArrowRight", "ArrowDown"):
        page.keyboard.press(key)
    unit = {"layer": "conv2", "channel": 0, "y": 1, "x": 2, "index": 12}
    assert shown_unit(page) == unit
    mark = page.locator("#hover-mark")
    assert mark.evaluate("m => m.parentElement.querySelector('canvas').dataset.channel") == "0"
    canvas = page.locator('canvas.map[data-layer="conv2"][data-channel="0"]').bounding_box()
    drawn = mark.bounding_box()  # the unit's square in its tile: 8 screen pixels a unit
    assert drawn["x"] == pytest.approx(canvas["x"] + 2 * 8, abs=1.5)
    assert drawn["y"] == pytest.approx(canvas["y"] + 1 * 8, abs=1.5)
    assert page.evaluate("window.recorded.unit") == []
    page.keyboard.press("Enter")
    assert page.evaluate("window.recorded.unit") == [unit]
    assert page.locator("#pin-mark").is_visible()
    shot = screenshot(page, "serve-keyboard")  # the focus ring and the chosen unit, drawn
    ring = shot.crop(
        (
            round(canvas["x"]) - 6,
            round(canvas["y"]) - 6,
            round(canvas["x"]),
            round(canvas["y"] + canvas["height"]),
        )
    )
    assert (np.abs(np.asarray(ring, np.int64) - (0x1A, 0x73, 0xE8)).sum(axis=2) < 60).sum() > 20
    unit_px = shot.crop(
        (
            round(drawn["x"]),
            round(drawn["y"]),
            round(drawn["x"] + drawn["width"]),
            round(drawn["y"] + drawn["height"]),
        )
    )
    assert (np.abs(np.asarray(unit_px, np.int64) - (0xFF, 0xB0, 0x00)).sum(axis=2) < 90).sum() > 8
    for _ in range(8):  # to the map's right side, and past it: the next map's first column
        page.keyboard.press("ArrowRight")
    assert shown_unit(page) == {"layer": "conv2", "channel": 1, "y": 1, "x": 0, "index": 110}
    assert active(page)["channel"] == "1"
    tabbable = page.eval_on_selector_all(
        'canvas.map[data-layer="conv2"]', "cs => cs.filter(c => c.tabIndex === 0).length"
    )
    assert tabbable == 1  # one tab stop per layer, wherever the keyboard is
    page.keyboard.press("PageDown")
    page.keyboard.press(" ")
    chosen = {"layer": "conv2", "channel": 2, "y": 1, "x": 0, "index": 210}
    assert page.evaluate("window.recorded.unit")[-1] == chosen
    # a vector: one tile, rows of 30 units; down moves 30 units on
    page.focus('canvas.map[data-layer="dense1"]')
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    dense = {"layer": "dense1", "channel": 31, "y": None, "x": None, "index": 31}
    assert page.evaluate("window.recorded.unit")[-1] == dense
    # the mouse chooses too
    pooled = page.locator('canvas.map[data-layer="maxpool1"][data-channel="4"]')
    pooled.scroll_into_view_if_needed()
    box = pooled.bounding_box()
    page.mouse.click(box["x"] + 6.5 * 6, box["y"] + 3.5 * 6)  # 6 screen pixels a unit
    clicked = {"layer": "maxpool1", "channel": 4, "y": 3, "x": 6, "index": 4 * 196 + 3 * 14 + 6}
    assert page.evaluate("window.recorded.unit")[-1] == clicked
    closed(context)


def test_the_page_tells_other_scripts_what_it_draws(browser: Any, lenet: Server) -> None:
    """netspec:model once, netspec:answer after every answer, and window.netspecPage."""
    context, page = opened(browser, lenet, 1024)
    before = page.evaluate("window.netspec.updates")
    page.click("#random")
    answered(page, before)
    recorded = page.evaluate("window.recorded")
    assert len(recorded["model"]) == 1
    assert [la["name"] for la in recorded["model"][0]["layers"]][:3] == [
        "conv1",
        "relu1",
        "maxpool1",
    ]
    assert len(recorded["answer"]) == page.evaluate("window.netspec.updates") >= 2
    assert "dense3" in recorded["answer"][-1]
    found = page.evaluate(
        """() => [netspecPage.tileFor("conv2", 5).dataset.channel,
                  netspecPage.tileFor("conv2", 5).parentElement.className,
                  getComputedStyle(netspecPage.tileFor("conv2", 5).parentElement).position,
                  netspecPage.tileFor("dense1", 77) === netspecPage.tileFor("dense1", 0),
                  netspecPage.tileFor("nothing", 0),
                  netspecPage.unitRect("conv2", 5, 2, 3),
                  netspecPage.unitRect("dense1", 77, null, null)]"""
    )
    assert found[:5] == ["5", "tile", "relative", True, None]
    assert found[5] == {"left": 24, "top": 16, "width": 8, "height": 8}
    assert found[6] == {"left": 17 * 9, "top": 2 * 9, "width": 9, "height": 9}
    closed(context)


def test_receptive_field_rows_are_inclusive_as_show_prints_them(
    browser: Any, lenet: Server
) -> None:
    """Hovered units of every spatial layer, corners and middle: the page's rows and
    columns are `netspec show`'s, first..last inclusive and clipped to the input."""
    views = {view.name: view for view in open_probe(LENET).layers}
    context, page = opened(browser, lenet, 1920)
    sizes = set()
    for layer in ("conv1", "maxpool1", "conv2", "relu2", "maxpool2"):
        lay = page.evaluate(f"netspecPage.state.layouts[{layer!r}]")
        h, w = lay["h"], lay["w"]
        canvas = page.locator(f'canvas.map[data-layer="{layer}"][data-channel="1"]')
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        for y, x in ((0, 0), (h // 2, w // 2 - 1), (h - 1, w - 1), (1, w - 2)):
            page.mouse.move(box["x"] + (x + 0.5) * lay["sx"], box["y"] + (y + 0.5) * lay["sy"])
            assert shown_unit(page) == {
                "layer": layer,
                "channel": 1,
                "y": y,
                "x": x,
                "index": (h + y) * w + x,
            }
            field = static_box(views[layer], y, x, 28, 28)
            assert field is not None
            said = page.locator("#unit").text_content()
            assert _box_text(field) in said, (layer, y, x, said)
            sizes.add(field.size)
    assert (14, 14) in sizes  # a whole field of conv2: "rows 6..19" style, 14 rows
    closed(context)


def test_every_map_has_a_legend_with_its_numbers(
    browser: Any, lenet: Server, large: Server, photo: Path
) -> None:
    for server in (lenet, large):
        context, page = opened(browser, server, 1400)
        if server is large:
            upload(page, photo)
            toggle(page, "conv1").click()
            page.wait_for_function("netspecPage.tileFor('conv1', 0) !== null")
            answered(page, 0)
            page.wait_for_function("'conv1' in netspecPage.state.last.layers")
        legends = page.evaluate(
            """() => [...document.querySelectorAll("#layers .layer")].map((box) => {
              const key = box.querySelector(box.classList.contains("open")
                ? ".detail .legend" : ".summary .legend");
              const ramp = key.querySelector("canvas").getContext("2d")
                .getImageData(0, 0, 256, 1).data;
              const [lo, hi] = [key.querySelector(".lo"), key.querySelector(".hi")];
              return {layer: box.dataset.layer, open: box.classList.contains("open"),
                      min: Number(key.dataset.min), max: Number(key.dataset.max),
                      lo: lo && lo.textContent, hi: hi && hi.textContent,
                      ramp: [ramp[0], ramp[1], ramp[2], ramp[1020], ramp[1021], ramp[1022]]};
            })"""
        )
        layers = server.get("/api/model")[1]["layers"]
        assert [k["layer"] for k in legends] == [la["name"] for la in layers]
        for key in legends:
            assert key["min"] <= key["max"], key
            assert float(key["lo"]) == pytest.approx(key["min"], rel=1e-3, abs=1e-3), key
            assert float(key["hi"]) == pytest.approx(key["max"], rel=1e-3, abs=1e-3), key
            assert key["ramp"] == [68, 1, 84, 253, 231, 37]  # viridis, dark to bright
        opens = [k for k in legends if k["open"]]
        assert len(opens) == (11 if server is lenet else 1)
        assert all(k["max"] > k["min"] for k in opens)
        closed(context)


def test_a_large_network_opens_as_an_overview(browser: Any, large: Server, photo: Path) -> None:
    """One strip per layer, a cell per map; a layer's maps are asked for, and drawn,
    when it is opened with the keyboard; closed, its strip is back."""
    context, page = opened(browser, large, 1024)
    upload(page, photo)
    assert page.locator("canvas.map").count() == 0
    strips = page.eval_on_selector_all(
        "#layers canvas.strip", "cs => cs.map(c => [c.dataset.layer, c.width])"
    )
    model = large.get("/api/model")[1]
    assert strips == [[la["name"], la["shape"][0]] for la in model["layers"]]
    assert page.evaluate("Object.keys(netspecPage.state.last.layers)") == []
    before = page.evaluate("window.netspec.updates")
    toggle(page, "bneck2.conv2").focus()
    page.keyboard.press("Enter")
    answered(page, before)
    assert page.evaluate("Object.keys(netspecPage.state.last.layers)") == ["bneck2.conv2"]
    tiles = page.locator('canvas.map[data-layer="bneck2.conv2"]')
    assert tiles.count() == 96
    assert page.evaluate("netspecPage.tileFor('bneck2.conv2', 7).dataset.channel") == "7"
    levels = tiles.nth(7).evaluate(
        """c => {
          const d = c.getContext('2d').getImageData(0, 0, 14, 14).data;
          return new Set(Array.from({length: 14 * 14}, (_, i) => d[4 * i])).size;
        }"""
    )
    assert levels > 20
    assert toggle(page, "bneck2.conv2").get_attribute("aria-expanded") == "true"
    page.keyboard.press("Enter")
    assert toggle(page, "bneck2.conv2").get_attribute("aria-expanded") == "false"
    assert page.locator('.layer[data-layer="bneck2.conv2"] canvas.strip').is_visible()
    assert page.evaluate("netspecPage.tileFor('bneck2.conv2', 7)") is None
    closed(context)


def test_a_many_class_network_shows_its_top_classes(
    browser: Any, large: Server, photo: Path
) -> None:
    context, page = opened(browser, large, 1400)
    upload(page, photo)
    probabilities = page.evaluate("netspecPage.state.last.probabilities")
    assert len(probabilities) == 1000
    top = sorted(range(1000), key=lambda i: -probabilities[i])[:10]
    bars = page.eval_on_selector_all(
        "#bars .bar",
        "bs => bs.map(b => [Number(b.dataset.index), b.dataset.class,"
        " b.querySelector('.name').textContent])",
    )
    classes = large.get("/api/model")[1]["classes"]
    assert [i for i, _, _ in bars] == top
    assert [name for _, name, _ in bars] == [classes[i] for i in top]
    assert [text for _, _, text in bars] == [classes[i] for i in top]
    assert page.locator("#bars-note").text_content() == "(the top 10 of 1,000 classes)"
    assert page.locator("#prediction").get_attribute("data-class") == classes[top[0]]
    closed(context)


def test_a_deep_units_field_stays_in_view(browser: Any, lenet: Server) -> None:
    """Scrolled down to the last maps, a hovered unit's box on the drawing is on screen,
    and the unit is marked in its map."""
    context, page = opened(browser, lenet, 1024, 768)
    canvas = page.locator('canvas.map[data-layer="maxpool2"][data-channel="15"]')
    canvas.scroll_into_view_if_needed()
    assert page.evaluate("window.scrollY") > 500
    box = canvas.bounding_box()
    assert page.evaluate("netspecPage.state.layouts.maxpool2.sx") == 12  # pixels a unit
    page.mouse.move(box["x"] + 3.5 * 12, box["y"] + 1.5 * 12)
    field = page.locator("#rf-box-draw").bounding_box()
    assert field is not None and field["width"] > 100  # 16 of 28 pixels, on a 280 pad
    assert field["y"] >= 0 and field["y"] + field["height"] <= 768
    frame = page.locator("#draw-frame").bounding_box()
    assert frame["y"] >= 0 and frame["y"] + frame["height"] <= 768
    mark = page.locator("#hover-mark").bounding_box()
    assert mark["x"] == pytest.approx(box["x"] + 3 * 12, abs=1.5)
    assert mark["y"] == pytest.approx(box["y"] + 1 * 12, abs=1.5)
    assert shown_unit(page)["index"] == (15 * 5 + 1) * 5 + 3
    closed(context)
