"""`.npz` files for training maps: `x` with labels, per-pixel classes, float maps, or no `y`
at all; anything else refused with the file and what was found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netspec.data.folders import load_npz_targets
from netspec.errors import DataError

X = np.zeros((4, 8, 8), np.uint8)


@pytest.mark.parametrize(
    ("y", "dtype", "shape"),
    [
        (np.arange(4), np.int64, (4,)),  # labels
        (np.zeros((4, 8, 8), np.uint8), np.int64, (4, 8, 8)),  # per-pixel classes
        (np.zeros((4, 8, 8), np.float64), np.float32, (4, 8, 8)),  # one-channel maps
        (np.zeros((4, 3, 8, 8), np.float32), np.float32, (4, 3, 8, 8)),  # maps
    ],
)
def test_targets_of_every_shape_load(
    tmp_path: Path, y: np.ndarray, dtype: type, shape: tuple[int, ...]
) -> None:
    np.savez(tmp_path / "d.npz", x=X, y=y)
    data = load_npz_targets(tmp_path / "d.npz")
    assert data.y is not None and data.y.dtype == dtype and data.y.shape == shape


def test_no_y_means_the_inputs_are_the_targets(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X)
    data = load_npz_targets(tmp_path / "d.npz")
    assert data.y is None and data.x.shape == (4, 8, 8)


@pytest.mark.parametrize(
    ("arrays", "expect"),
    [
        ({"y": np.arange(4)}, "expected an array 'x' (and 'y'), found: y"),
        ({"x": X, "y": np.zeros((4, 8), np.float32)}, "y must be integer labels"),
        ({"x": X, "y": np.zeros((4, 2, 8, 8), np.int64)}, "found int64 (4, 2, 8, 8)"),
        ({"x": X, "y": np.zeros((3, 8, 8), np.float32)}, "4 inputs in x but 3 targets in y"),
        ({"x": X, "y": np.full((4, 8, 8), np.nan, np.float32)}, "NaN or infinite"),
        ({"x": X, "y": np.array(["a"] * 4)}, "y must be integer labels"),
    ],
)
def test_bad_targets_are_refused(
    tmp_path: Path, arrays: dict[str, np.ndarray], expect: str
) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=r"d\.npz: ") as e:
        load_npz_targets(tmp_path / "d.npz")
    assert expect in str(e.value)
