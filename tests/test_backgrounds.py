"""The background families nearer to photographs (issue 24, "reality gap"): `pink` has
the 1/f power spectrum it declares, `print` has strokes in both polarities, every family
is the same for the same seed and stays in [0, BACKGROUND_TOP], `cells` stays held out,
and `netspec scenes --background` draws the new ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

import netspec
from netspec.cli import main
from netspec.data import randomize as dr
from netspec.data.registry import FAMILIES as REGISTERED
from netspec.data.scenefiles import png_bytes
from netspec.data.scenes import (
    FAMILIES,
    HELD_OUT,
    TRAINING_FAMILIES,
    DigitPool,
    SceneConfig,
    make_scene,
)
from tests.conftest import write_mnist_subset

NEW = ("pink", "leaves", "print")
SEEDS = range(24)
EDGES = 0.04  # the least share of a `print` canvas's pixels on a stroke's edge


def _draw(family: str, seed: int, h: int = 128, w: int = 128) -> npt.NDArray[np.float32]:
    return dr.BACKGROUNDS[family](np.random.default_rng(seed), h, w)


def spectral_slope(x: npt.NDArray[np.float32]) -> float:
    """The log-log slope of the radially averaged power spectrum of a square canvas
    (Hann-windowed, so that its edges add no cross), fitted from 4 cycles per side to a
    third of the sampling rate."""
    n = x.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fftshift(np.fft.fft2((x - x.mean()) * window))) ** 2
    yy, xx = np.indices(power.shape) - n // 2
    ring = np.hypot(yy, xx).astype(np.int64).ravel()
    radial = np.bincount(ring, power.ravel()) / np.bincount(ring)
    k = np.arange(4, n // 3)
    return float(np.polyfit(np.log(k), np.log(radial[k]), 1)[0])


def edge_share(x: npt.NDArray[np.float32]) -> float:
    """The share of pixels whose gradient exceeds a tenth of the canvas's range."""
    unit = (x - x.min()) / (x.max() - x.min())
    gy, gx = np.gradient(unit)
    return float((np.hypot(gx, gy) > 0.1).mean())


def test_the_new_families_train_and_cells_stays_held_out() -> None:
    assert set(NEW) <= set(TRAINING_FAMILIES)
    assert HELD_OUT == "cells" and "cells" not in TRAINING_FAMILIES
    assert "cells" not in SceneConfig.randomized().families
    assert FAMILIES == REGISTERED and FAMILIES[-1] == "cells"


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_background_in_range(family: str) -> None:
    for h, w in ((128, 128), (48, 80), (16, 16)):
        x = _draw(family, 3, h, w)
        assert x.dtype == np.float32 and x.shape == (h, w)
        assert np.array_equal(x, _draw(family, 3, h, w))
        assert x.min() >= 0.0 and x.max() <= dr.BACKGROUND_TOP + 1e-6
    assert not np.array_equal(_draw(family, 3), _draw(family, 4))


@pytest.mark.parametrize("family", NEW)
def test_same_seed_same_scene(family: str) -> None:
    digits = np.zeros((10, 28, 28), np.uint8)
    digits[:, 4:24, 12:16] = 255
    pool = DigitPool(digits, np.arange(10, dtype=np.int64))
    config = SceneConfig.randomized(size=64, scale=(14, 28), families=(family,))
    a, b = make_scene(config, pool, 5), make_scene(config, pool, 5)
    assert png_bytes(a.image) == png_bytes(b.image) and np.array_equal(a.boxes, b.boxes)


def test_pink_has_the_declared_spectral_slope() -> None:
    """Each canvas's fitted slope lies in PINK_SLOPE, give or take the scatter of one
    random field's spectrum; white noise and gratings do not."""
    low, high = dr.PINK_SLOPE
    slopes = [spectral_slope(_draw("pink", seed)) for seed in SEEDS]
    assert all(low - 0.3 <= s <= high + 0.3 for s in slopes), slopes
    assert low <= float(np.median(slopes)) <= high
    white = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    assert abs(spectral_slope(white)) < 0.3


def test_print_has_strokes_in_both_polarities() -> None:
    """Strokes: many pixels on an edge (a smooth ramp has none). Polarity: ink covers
    less than the paper, so dark ink pulls the mean under the median, light ink over it."""
    shares = [edge_share(_draw("print", seed)) for seed in SEEDS]
    assert min(shares) > EDGES, shares
    assert edge_share(_draw("gradient", 0)) < EDGES
    dark = [float(np.median(x) - x.mean()) > 0 for x in (_draw("print", s) for s in SEEDS)]
    assert 0 < sum(dark) < len(dark)


def test_leaves_are_patches_cut_by_edges() -> None:
    """Dead leaves: occluding edges, but smooth within a leaf (white noise is nearly all
    edge), and many greys."""
    for seed in range(6):
        x = _draw("leaves", seed)
        assert 0.01 < edge_share(x) < 0.4
        assert len(np.unique(np.round(x * 255))) > 20


def test_a_train_section_names_a_new_family() -> None:
    spec = (
        "network win(w: 1x28x28) { dense 11 }\n"
        "train win on mnist_windows { scenes randomize background=leaves }"
    )
    scenes = netspec.compile(spec).train.scenes  # type: ignore[union-attr]
    assert scenes is not None and scenes.background == "leaves"


@pytest.mark.parametrize("family", NEW)
def test_cli_draws_a_new_family(tmp_path: Path, family: str) -> None:
    mnist = write_mnist_subset(tmp_path / "mnist", 20, 20)
    out = tmp_path / "out"
    args = ["scenes", "-o", out, "--count", "2", "--size", "64", "--background", family]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--mnist", mnist]])
    assert result.exit_code == 0, result.output
    assert len(list((out / "images").glob("*.png"))) == 2
    made = json.loads((out / "scenes.json").read_text())
    assert made["config"]["families"] == [family]
