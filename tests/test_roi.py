"""RoI max pooling and RoIAlign (netspec.lower.roi) against NumPy references written here from
torchvision's C++ kernels (roi_pool_kernel.cpp, roi_align_kernel.cpp), in torch and, exported
to ONNX, in ONNX Runtime: both aligned modes, empty and many RoIs, boxes past the map."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from netspec.lower.roi import RoIAlign, RoIPool

TOL = 1e-5
SCALE = 0.25  # a map at stride 4


def c_round(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def ref_roi_pool(x: np.ndarray, rois: np.ndarray, out: tuple[int, int], scale: float) -> np.ndarray:
    _, c, h, w = x.shape
    ph, pw = out
    result = np.zeros((len(rois), c, ph, pw), np.float32)
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sx, sy, ex, ey = (c_round(v * scale) for v in (x1, y1, x2, y2))
        bh, bw = max(ey - sy + 1, 1) / ph, max(ex - sx + 1, 1) / pw
        for i in range(ph):
            h0 = min(max(math.floor(i * bh) + sy, 0), h)
            h1 = min(max(math.ceil((i + 1) * bh) + sy, 0), h)
            for j in range(pw):
                w0 = min(max(math.floor(j * bw) + sx, 0), w)
                w1 = min(max(math.ceil((j + 1) * bw) + sx, 0), w)
                if h1 > h0 and w1 > w0:
                    result[k, :, i, j] = x[int(b), :, h0:h1, w0:w1].max(axis=(1, 2))
    return result


def bilinear(m: np.ndarray, y: float, x: float) -> np.ndarray:
    _, h, w = m.shape
    if y < -1 or y > h or x < -1 or x > w:
        return np.zeros(m.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * m[:, y0, x0]
        + (1 - ly) * lx * m[:, y0, x1]
        + ly * (1 - lx) * m[:, y1, x0]
        + ly * lx * m[:, y1, x1]
    )


def ref_roi_align(
    x: np.ndarray,
    rois: np.ndarray,
    out: tuple[int, int],
    scale: float,
    sampling: int,
    aligned: bool,
) -> np.ndarray:
    ph, pw = out
    off = 0.5 if aligned else 0.0
    result = np.zeros((len(rois), x.shape[1], ph, pw))
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sx, sy = x1 * scale - off, y1 * scale - off
        rw, rh = x2 * scale - off - sx, y2 * scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        for i in range(ph):
            for j in range(pw):
                total = np.zeros(x.shape[1])
                for iy in range(sampling):
                    for ix in range(sampling):
                        yy = sy + i * bh + (iy + 0.5) * bh / sampling
                        xx = sx + j * bw + (ix + 0.5) * bw / sampling
                        total += bilinear(x[int(b)].astype(np.float64), yy, xx)
                result[k, :, i, j] = total / sampling**2
    return result.astype(np.float32)


def make(k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps 2 x 3 x 10 x 12 and k boxes in 48 x 40 input pixels, some reaching past it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 10, 12, generator=g)
    corners = torch.rand(k, 2, 2, generator=g) * torch.tensor([60.0, 52.0]) - 6
    low, high = corners.min(1).values, corners.max(1).values
    batch = torch.randint(0, 2, (k, 1), generator=g).float()
    return x, torch.cat([batch, low, high], 1)


FIXED = torch.tensor(
    [
        [0, 0, 0, 47, 39],  # the whole input
        [1, 4, 4, 4, 4],  # one point
        [0, 30, 20, 100, 90],  # past the far corner
        [1, -20, -20, -2, -2],  # before the map: empty bins
        [0, 2.0, 6.0, 2.0, 3.0],  # x2 < x1 nowhere, y2 < y1
    ]
)


@pytest.mark.parametrize("k", [5, 300])
def test_roi_pool_matches_reference(k: int) -> None:
    x, rois = make(k)
    rois[:5] = FIXED
    got = RoIPool((3, 4), SCALE)(x, rois)
    want = ref_roi_pool(x.numpy(), rois.numpy(), (3, 4), SCALE)
    assert got.shape == (k, 3, 3, 4)
    np.testing.assert_allclose(got.numpy(), want, atol=TOL)
    assert (got[3] == 0).all()  # every bin of the box before the map is empty


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [5, 300])
def test_roi_align_matches_reference(k: int, aligned: bool) -> None:
    x, rois = make(k, seed=1)
    rois[:5] = FIXED
    got = RoIAlign((2, 3), SCALE, 2, aligned)(x, rois)
    want = ref_roi_align(x.numpy(), rois.numpy(), (2, 3), SCALE, 2, aligned)
    np.testing.assert_allclose(got.numpy(), want, atol=TOL)


def test_aligned_shifts_by_half_a_cell() -> None:
    x, rois = make(8, seed=2)
    a = RoIAlign((2, 2), SCALE, 2, True)(x, rois)
    b = RoIAlign((2, 2), SCALE, 2, False)(x, rois)
    assert not torch.allclose(a, b)


def test_empty_roi_set() -> None:
    x, _ = make(0)
    rois = torch.zeros(0, 5)
    assert RoIPool((7, 7), SCALE)(x, rois).shape == (0, 3, 7, 7)
    assert RoIAlign((7, 7), SCALE, 2, True)(x, rois).shape == (0, 3, 7, 7)


def test_gradients_reach_the_maps() -> None:
    x, rois = make(6, seed=3)
    x.requires_grad_(True)
    (
        RoIPool((2, 2), SCALE)(x, rois).sum() + RoIAlign((2, 2), SCALE, 2, True)(x, rois).sum()
    ).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def ref_roi_pool_grad(x: np.ndarray, rois: np.ndarray, out: tuple[int, int]) -> np.ndarray:
    """The gradient of the pooled values' sum: one for each bin's largest cell (the values are
    distinct), counted once per bin that reads it."""
    grad = np.zeros_like(x)
    _, _, h, w = x.shape
    for b, x1, y1, x2, y2 in rois:
        sx, sy, ex, ey = (c_round(v * SCALE) for v in (x1, y1, x2, y2))
        bh, bw = max(ey - sy + 1, 1) / out[0], max(ex - sx + 1, 1) / out[1]
        for i in range(out[0]):
            h0 = min(max(math.floor(i * bh) + sy, 0), h)
            h1 = min(max(math.ceil((i + 1) * bh) + sy, 0), h)
            for j in range(out[1]):
                w0 = min(max(math.floor(j * bw) + sx, 0), w)
                w1 = min(max(math.ceil((j + 1) * bw) + sx, 0), w)
                if h1 > h0 and w1 > w0:
                    for ch in range(x.shape[1]):
                        window = x[int(b), ch, h0:h1, w0:w1]
                        r, q = np.unravel_index(window.argmax(), window.shape)
                        grad[int(b), ch, h0 + r, w0 + q] += 1
    return grad


def test_roi_pool_sends_each_bins_gradient_to_its_largest_cell() -> None:
    x, rois = make(40, seed=4)
    rois[:5] = FIXED
    x.requires_grad_(True)
    RoIPool((3, 4), SCALE)(x, rois).sum().backward()
    assert x.grad is not None
    want = ref_roi_pool_grad(x.detach().numpy(), rois.numpy(), (3, 4))
    np.testing.assert_array_equal(x.grad.numpy(), want)


def test_sampling_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sampling"):
        RoIAlign((2, 2), SCALE, 0, True)


class _Two(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x, rois)
        return out


def onnx_session(module: nn.Module, opset: int = 17) -> object:
    import onnxruntime as ort

    x, rois = make(4)
    buffer = io.BytesIO()
    torch.onnx.export(
        _Two(module),
        (x, rois),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=["x", "rois"],
        output_names=["out"],
        dynamic_axes={"x": {0: "n"}, "rois": {0: "k"}, "out": {0: "k"}},
    )
    return ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])


def node_ops(module: nn.Module) -> list[str]:
    import onnx

    x, rois = make(4)
    buffer = io.BytesIO()
    torch.onnx.export(_Two(module), (x, rois), buffer, dynamo=False, opset_version=17)
    return [n.op_type for n in onnx.load_from_string(buffer.getvalue()).graph.node]


def test_roi_pool_exports_max_roi_pool() -> None:
    ops = node_ops(RoIPool((3, 4), SCALE))
    assert "MaxRoiPool" in ops and "RoiAlign" not in ops


@pytest.mark.parametrize("k", [0, 5, 300])
def test_roi_pool_in_onnx_runtime(k: int) -> None:
    session = onnx_session(RoIPool((3, 4), SCALE))
    x, rois = make(k, seed=4)
    rois[: min(k, 5)] = FIXED[: min(k, 5)]
    (got,) = session.run(None, {"x": x.numpy(), "rois": rois.numpy()})  # type: ignore[attr-defined]
    want = ref_roi_pool(x.numpy(), rois.numpy(), (3, 4), SCALE)
    assert got.shape == (k, 3, 3, 4)
    np.testing.assert_allclose(got, want, atol=TOL)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [0, 5, 300])
def test_roi_align_in_onnx_runtime(k: int, aligned: bool) -> None:
    session = onnx_session(RoIAlign((2, 3), SCALE, 2, aligned))
    x, rois = make(k, seed=5)
    rois[: min(k, 5)] = FIXED[: min(k, 5)]
    (got,) = session.run(None, {"x": x.numpy(), "rois": rois.numpy()})  # type: ignore[attr-defined]
    want = ref_roi_align(x.numpy(), rois.numpy(), (2, 3), SCALE, 2, aligned)
    assert got.shape == (k, 3, 2, 3)
    np.testing.assert_allclose(got, want, atol=TOL)


def test_aligned_needs_opset_16() -> None:
    with pytest.raises(Exception, match="opset 16"):
        onnx_session(RoIAlign((2, 2), SCALE, 2, True), opset=15)
    onnx_session(RoIAlign((2, 2), SCALE, 2, False), opset=15)
