"""A single-shot detector's ONNX file holds its decoding: ONNX Runtime's boxes and scores
on real scenes equal PyTorch's decoding of the same network's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import netspec
from netspec.data.scenes import DigitPool, SceneConfig, make_scenes
from netspec.export.onnx_export import export_compiled
from netspec.kinds import detection_head
from netspec.lower import to_torch
from netspec.train.yolo import decode
from tests.conftest import REAL_MNIST, synthetic_digits

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """
network tiny(image: 1x64x64) {
    conv 8 3x3 pad=same | batchnorm | leaky_relu 0.1 | maxpool 2x2
    conv 8 3x3 pad=same | batchnorm | leaky_relu 0.1 | maxpool 2x2 | maxpool 2x2
    boxes = conv 17 1x1 | detect boxes=2 classes=7 score=0.3 iou=0.4
}
"""


def _pool() -> DigitPool:
    if REAL_MNIST.is_dir():
        from netspec.data import load_mnist

        return DigitPool.of(load_mnist(REAL_MNIST), "test")
    images, labels = synthetic_digits(200, 0)
    return DigitPool(images, labels.astype(np.int64))


def _scenes(n: int) -> np.ndarray:
    config = SceneConfig.randomized(size=64, digits=(1, 3), scale=(14, 32), split="test")
    images = [s.image for s in make_scenes(config, _pool(), n)]
    return (np.stack(images)[:, None] / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    compiled = netspec.compile(SPEC)
    torch.manual_seed(0)
    module = to_torch(compiled)
    with torch.no_grad():  # weights that give boxes of every size, not all near zero
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path_factory.mktemp("yolo") / "tiny.onnx"
    export_compiled(compiled, path, weights=module.eval(), samples=_scenes(8), log=lambda _: None)
    return path, module


def test_onnx_decoding_equals_the_pytorch_decoding_on_scenes(
    exported: tuple[Path, torch.nn.Module],
) -> None:
    path, module = exported
    x = _scenes(16)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x})
    head = detection_head(netspec.compile(SPEC))
    assert head is not None
    with torch.no_grad():
        boxes, scores = decode(module(torch.from_numpy(x)), head)
    assert got.shape == (16, 8 * 8 * 2, 4 + 7)
    np.testing.assert_allclose(got[..., :4], boxes.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got[..., 4:], scores.numpy(), rtol=1e-4, atol=1e-5)
    assert np.ptp(got[..., 2] - got[..., 0]) > 1  # boxes of different widths, in pixels


def test_the_metadata_says_what_the_output_is(exported: tuple[Path, torch.nn.Module]) -> None:
    from netspec.runtime.session import open_model

    info = open_model(exported[0]).info
    (out,) = info.outputs
    assert (out.name, out.kind, out.shape) == ("boxes", "boxes", (128, 11))


def test_netspec_detect_finds_what_pytorch_finds(exported: tuple[Path, torch.nn.Module]) -> None:
    """ONNX Runtime's boxes after `netspec detect`'s threshold and class-wise NMS are
    PyTorch's decoded boxes after training's (the same numpy NMS), at the thresholds the
    file records."""
    from netspec.runtime.detect import DetectOptions, detect
    from netspec.runtime.session import open_model
    from netspec.train.yolo import detect as torch_detect

    path, module = exported
    model = open_model(path)
    decoding = model.info.decoding
    assert decoding is not None and decoding.decoder == "single_shot"
    assert (decoding.params["score"], decoding.params["iou"]) == (0.3, 0.4)
    head = detection_head(netspec.compile(SPEC))
    assert head is not None
    x = _scenes(12)
    with torch.no_grad():
        want = torch_detect(module(torch.from_numpy(x)), head)
    total = 0
    for image, expected in zip(x, want, strict=True):
        got = detect(model, image[None], DetectOptions())
        assert len(got) == len(expected.scores)
        want_rows = np.concatenate(
            [
                expected.classes[:, None],
                expected.scores[:, None],
                expected.boxes.clip(0, 64),
            ],
            1,
        )
        for cls, score, box in zip(got.classes, got.scores, got.boxes, strict=True):
            row = np.concatenate([[cls, score], box])
            assert np.isclose(want_rows, row, atol=1e-3).all(1).any(), row
        total += len(got)
    assert total > 0


def test_an_image_of_another_size_is_resized_and_its_boxes_scaled_back(
    exported: tuple[Path, torch.nn.Module],
) -> None:
    from netspec.runtime.detect import DetectOptions, detect
    from netspec.runtime.session import open_model

    model = open_model(exported[0])
    x = _scenes(1)
    small = detect(model, x, DetectOptions(threshold=0.0, max_detections=1000))
    big = detect(
        model,
        np.kron(x, np.ones((1, 1, 2, 2), np.float32)),
        DetectOptions(threshold=0.0, max_detections=1000),
    )
    assert len(big) and small.boxes.max() <= 64 < big.boxes.max() <= 128  # each in its pixels
    assert abs(float(big.boxes.mean()) - 2 * float(small.boxes.mean())) < 1.0


def test_netspec_detect_draws_and_prints_a_single_shot_models_boxes(
    exported: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner
    from PIL import Image

    from netspec.cli import main

    scene = tmp_path / "scene.png"
    Image.fromarray((_scenes(1)[0, 0] * 255).round().astype(np.uint8), "L").save(scene)
    run = CliRunner().invoke(main, ["detect", str(exported[0]), str(scene), "--json"])
    assert run.exit_code == 0, run.output
    (record,) = json.loads(run.stdout)
    assert record["detections"] and all(0 <= d["class"] < 7 for d in record["detections"])
    assert all(d["score"] >= 0.3 for d in record["detections"])  # the file's own threshold
    drawn = CliRunner().invoke(
        main, ["detect", str(exported[0]), str(scene), "-o", str(tmp_path / "out")]
    )
    assert drawn.exit_code == 0, drawn.output
    picture = np.asarray(Image.open(tmp_path / "out" / "scene.png").convert("RGB"))
    assert (picture[..., 0] != picture[..., 1]).any()  # coloured boxes on a grey scene
