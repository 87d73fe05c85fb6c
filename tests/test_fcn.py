"""`netspec convert --fully-convolutional` (netspec.export.fcn): a classifier's dense stages
as convolutions, its score at each position equal to the classifier run on that window
(within 1e-5), the metadata that maps a position back to its window, and every network
that cannot convert refused with the reason. Untrained weights are enough: the
equivalence holds for any weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import netspec
from netspec.artifact import from_props
from netspec.cli import main
from netspec.errors import ExportError
from netspec.export.fcn import (
    ATOL,
    export_fcn,
    fcn_module,
    fully_convolutional,
    ink_boxes,
    windows,
)
from netspec.lower import to_torch
from netspec.runtime.decoders.sliding_window import SlidingWindow

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = Path(__file__).resolve().parents[1] / "specs"
DIGITS = (*(str(d) for d in range(10)), "background")

# LeNet without padding: 28 -> 24 -> 12 -> 8 -> 4, then dense 120, 84, 11 (stride 4).
LENET_VALID = """network lenet_valid(image: 1x28x28) {
    conv 6 5x5 | relu | maxpool 2x2
    conv 16 5x5 | relu | maxpool 2x2
    dense 120 | relu
    dense 84 | relu
    dense 11
}
"""
# A window classifier with what converts beside dense: batch norm before and after the
# dense stages, an explicit flatten, dropout, overlapping pooling, a stride, a softmax.
WINDOW = """network window(image: 1x20x20) {
    conv 4 3x3 stride=1 | batchnorm | relu | maxpool 3x3 stride=2
    conv 8 3x3 | tanh | flatten
    dense 16 | batchnorm | relu | dropout 0.5
    dense 5 | softmax
}
"""
# 29 -> 25 -> 12 (one row dropped) -> 8 -> 4: the map has positions past the last window.
ODD = """network odd(image: 1x29x29) {
    conv 3 5x5 | relu | avgpool 2x2
    conv 4 5x5 | maxpool 2x2
    dense 3
}
"""
# The other operations the registry declares `sliding`: 14 -> 12 -> 6 -> 3 (stride 4).
POOLS = """network pools(image: 1x14x14) {
    conv 3 3x3 | lppool 2x2 | subsample 2x2 | prelu
    dense 3
}
"""
# Dense straight on the image (Ciresan's MLP, smaller): a window every pixel.
MLP = """network mlp(image: 1x9x9) {
    dense 12 | relu
    dense 3
}
"""


def classifier(spec: str, seed: int = 0) -> tuple[netspec.Compiled, torch.nn.Module]:
    """The compiled spec and a module with random weights, batch norm statistics included."""
    compiled = netspec.compile(spec)
    torch.manual_seed(seed)
    module = to_torch(compiled).eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return compiled, module


def sliding(
    module: torch.nn.Module, image: np.ndarray, window: tuple[int, int], jump: tuple[int, int]
) -> np.ndarray:
    """The classifier on every window, arranged as a map (K, rows, cols): the naive way."""
    crops = windows(image, window, jump)
    rows, cols = crops.shape[:2]
    with torch.no_grad():
        out = module(torch.from_numpy(crops.reshape(rows * cols, *crops.shape[2:]))).numpy()
    return out.T.reshape(-1, rows, cols)


def test_the_window_spec_equals_its_sliding_window_on_a_scene() -> None:
    """specs/digit_window.net, the scenes' window classifier, on a 128x128 scene."""
    from netspec.data.scenes import DigitPool, SceneConfig, make_scene

    digits = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    pool = DigitPool(digits, np.arange(20, dtype=np.int64) % 10)
    scene = make_scene(SceneConfig.randomized(), pool, 0)
    compiled = netspec.compile(SPECS / "digit_window.net")
    torch.manual_seed(0)
    module = to_torch(compiled).eval()
    fcn = fully_convolutional(compiled)
    image = ((scene.image.astype(np.float32) / 255 - 0.5) / 0.5)[None, None]
    with torch.no_grad():
        scores = fcn_module(fcn, module)(torch.from_numpy(image)).numpy()[0]
    want = sliding(module, image, fcn.window, fcn.jump)
    assert want.shape == scores.shape == (11, 26, 26)
    assert np.abs(scores - want).max() <= ATOL


def test_class_box_shapes_are_the_median_ink_box_framed_as_the_windows_frame_it() -> None:
    images = np.zeros((4, 28, 28), np.uint8)
    images[0, 4:24, 11:17] = 255  # a "1": 20 tall, 6 wide
    images[1, 4:24, 10:18] = 200  # another, 8 wide
    images[2, 6:22, 4:24] = 255  # a wide one: 16 tall, 20 wide
    images[3, 10:12, 10:12] = 30  # too faint to be ink: its class keeps a square
    labels = np.array([1, 1, 0, 2], np.int64)
    shapes = ink_boxes(images, labels, ("0", "1", "2", "background"), share=0.5, ink=0.25)
    assert shapes == ((0.4, 0.5), (0.5, 0.175), (0.5, 0.5), (0.5, 0.5))


@pytest.mark.parametrize(
    ("spec", "size", "jump"),
    [
        (LENET_VALID, (61, 75), (4, 4)),
        (WINDOW, (37, 30), (2, 2)),
        (ODD, (41, 50), (4, 4)),
        (MLP, (14, 11), (1, 1)),
        (POOLS, (30, 27), (4, 4)),
    ],
    ids=["lenet_valid", "window", "odd", "mlp", "pools"],
)
def test_the_fcn_equals_the_classifier_on_every_window(
    spec: str, size: tuple[int, int], jump: tuple[int, int]
) -> None:
    compiled, module = classifier(spec)
    fcn = fully_convolutional(compiled)
    assert fcn.jump == jump
    assert fcn.window == tuple(compiled.graph.inputs[0].shape[1:])
    net = fcn_module(fcn, module)
    image = np.random.default_rng(1).standard_normal((1, 1, *size)).astype(np.float32)
    with torch.no_grad():
        scores = net(torch.from_numpy(image)).numpy()[0]
    want = sliding(module, image, fcn.window, fcn.jump)
    rows, cols = want.shape[1:]
    assert scores.shape[1] >= rows and scores.shape[2] >= cols
    assert np.abs(scores[:, :rows, :cols] - want).max() <= ATOL
    assert np.abs(want).max() > 1e-3  # the numbers compared are not all zero


def test_the_receptive_field_maps_position_zero_to_the_first_window() -> None:
    fcn = fully_convolutional(netspec.compile(LENET_VALID))
    assert fcn.rf.size == (28, 28)
    assert fcn.rf.jump == (4, 4)
    assert fcn.rf.start == (14, 14)  # the centre of the window at (0, 0)
    assert fcn.converted == ("dense1", "dense2", "dense3")
    layers = {layer.name: layer for layer in fcn.compiled.layers}
    assert layers["dense1"].op == "conv" and layers["dense1"].shape[0] == 120


def test_export_writes_a_checked_file_whose_metadata_says_what_each_position_is(
    tmp_path: Path,
) -> None:
    compiled, module = classifier(LENET_VALID)
    path = tmp_path / "fcn.onnx"
    scene = np.random.default_rng(3).standard_normal((1, 1, 64, 96)).astype(np.float32)
    report = export_fcn(compiled, path, module, labels=DIGITS, images=[scene], log=lambda _: None)
    assert [c.ok for c in report.checks] == [True, True]
    assert report.checks[1].positions == 10 * 18
    model = onnx.load(str(path))
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.input, *model.graph.output)
    ]
    assert dims == [["batch", 1, "H", "W"], ["batch", 11, "rows", "cols"]]
    assert {n.op_type for n in model.graph.node} <= {"Conv", "Relu", "MaxPool"}
    info = from_props({p.key: p.value for p in model.metadata_props}, str(path))
    assert info.outputs[0].kind == "class_map" and info.labels == DIGITS
    assert info.decoding is not None and info.decoding.decoder == "sliding_window"
    window = SlidingWindow.from_params(info.decoding.params, str(path))
    assert (window.window, window.size, window.jump, window.start) == (
        (28, 28),
        (28, 28),
        (4, 4),
        (14, 14),
    )
    assert window.scores == "logits" and window.background == 10
    # ONNX Runtime at another size: the same numbers as the classifier on every window
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = np.random.default_rng(4).standard_normal((1, 1, 40, 33)).astype(np.float32)
    got = session.run(None, {"image": other})[0][0]
    want = sliding(module, other, (28, 28), (4, 4))
    assert got.shape == want.shape == (11, 4, 2)
    assert np.abs(got - want).max() <= ATOL


def test_a_softmax_classifier_gives_probabilities(tmp_path: Path) -> None:
    compiled, module = classifier(WINDOW)
    names = ("a", "b", "c", "d", "background")
    report = export_fcn(compiled, tmp_path / "w.onnx", module, labels=names, log=lambda _: None)
    assert report.window.scores == "probabilities" and report.window.background == 4


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def test_convert_checks_on_the_images_it_is_given(tmp_path: Path) -> None:
    spec = tmp_path / "lenet_valid.net"
    spec.write_text(LENET_VALID)
    pixels = np.random.default_rng(0).integers(0, 256, (50, 70), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "scene.png")
    labels = ",".join(DIGITS)
    out = tmp_path / "fcn.onnx"
    result = invoke(
        "convert",
        spec,
        "--fully-convolutional",
        "-o",
        out,
        "--labels",
        labels,
        "--check-on",
        tmp_path / "scene.png",
    )
    assert result.exit_code == 0, result.output
    assert "untrained" in result.output
    assert result.output.count("): ok") == 2  # the random image and the scene
    assert "each of 66 windows" in result.output  # (50-28)//4+1 x (70-28)//4+1: 6 x 11
    assert out.is_file()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("conv 4 3x3 pad=same | relu | dense 3", "pads its input"),
        ("conv 4 3x3 | maxpool 2x2 pad=1 | dense 3", "pads its input"),
        ("conv 4 3x3 | avgpool global | dense 3", "pools the whole map"),
        ("conv 4 5x5 | avgpool to 2x2 | dense 3", "pools the whole map"),
        ("conv 4 3x3 | maxpool 3x3 stride=2 ceil=true | dense 3", "rounds up"),
        ("conv 4 3x3 | relu | conv 3 6x6", "no dense stage"),
        ("local 4 3x3 | dense 3", "locally connected"),
        ("conv 4 3x3 | layernorm | dense 3", "normalizes over the whole window"),
        ("conv 4 3x3 | dense 3 | sigmoid", "a detector needs class scores"),
        ("conv 4 3x3 | rbf 3 prototypes=random", "a detector needs class scores"),
        ("a = conv 4 3x3\n    b = conv 4 3x3\n    add(a, b) | dense 3", "merges 2 tensors"),
    ],
)
def test_what_cannot_slide_is_refused_with_the_reason(body: str, says: str) -> None:
    compiled = netspec.compile(f"network n(image: 1x8x8) {{\n    {body}\n}}\n")
    with pytest.raises(ExportError, match=says):
        fully_convolutional(compiled)


def test_a_dense_stage_over_a_vector_is_refused() -> None:
    compiled = netspec.compile("network v(x: 64) {\n    dense 10\n}\n")
    with pytest.raises(ExportError, match="fixed C x H x W images"):
        fully_convolutional(compiled)


def test_labels_must_name_the_background(tmp_path: Path) -> None:
    compiled, module = classifier(MLP)
    out = tmp_path / "m.onnx"
    for labels, says in [
        (None, "have no names"),
        (("a", "b", "c"), "no class is 'background'"),
        (("a", "background"), "2 labels for 3 classes"),
    ]:
        with pytest.raises(ExportError, match=says):
            export_fcn(compiled, out, module, labels=labels, log=lambda _: None)
    assert not out.exists()


def test_convert_refusals_exit_nonzero_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fcn.onnx"
    result = invoke("convert", SPECS / "lenet.net", "--fully-convolutional", "-o", out)
    assert result.exit_code == 1 and "pads its input" in result.output
    result = invoke("convert", SPECS / "lenet.net", "-o", out)
    assert result.exit_code == 2 and "--fully-convolutional" in result.output
    result = invoke("convert", tmp_path / "missing.net", "--fully-convolutional", "-o", out)
    assert result.exit_code == 2 and "no such file" in result.output
    spec = tmp_path / "mlp.net"
    spec.write_text(MLP)
    result = invoke(
        "convert", spec, "--fully-convolutional", "-o", out, "--labels", "a,,background"
    )
    assert result.exit_code == 2 and "none empty" in result.output
    assert not out.exists()
