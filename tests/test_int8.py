"""int8 export: the default format's structure (QDQ, uint8 activations, int8 weights per
channel, int8 only between int8 convolutions and dense layers: thin convolutions, local
response normalization, the pooling after it and a detector's decoding kept fp32, and kept
fp32 by ONNX Runtime as netspec opens the file), the speed check's decision (a pure function of two
timings, and the command line's refusal where no measurement can pass), agreement with fp32
on real MNIST digits, and calibration data that is refused with a clear message.

No outcome here depends on the machine's load or on a timing: the verdict is tested on
constructed timings, and the command line's path with a minimum no file can meet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from onnx import numpy_helper

import netspec
from cli import main as cli_main
from netspec.data import load_idx_pair, write_idx
from netspec.errors import ExportError
from netspec.export import ExportOptions, export_compiled
from netspec.export.quantize import (
    DEFAULT_INT8,
    Int8Format,
    Int8Speed,
    int8_region,
    judge_int8_speed,
    to_int8,
)
from netspec.lower import to_torch
from netspec.runtime.session import session_options
from tests.conftest import REAL_MNIST, needs_mnist

SPECS = Path(__file__).resolve().parents[1] / "specs"
QUIET = {"log": lambda _: None}
MEAN, STD = 0.1307, 0.3081


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(cli_main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def digits(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` real MNIST digits of `split`, normalized as the specs train them."""
    prefix = "t10k" if split == "test" else "train"
    pair = load_idx_pair(
        REAL_MNIST / f"{prefix}-images-idx3-ubyte.gz", REAL_MNIST / f"{prefix}-labels-idx1-ubyte.gz"
    )
    x = pair.images[:n, None].astype(np.float32) / 255.0
    return ((x - MEAN) / STD).astype(np.float32), pair.labels[:n].astype(np.int64)


def fp32_graph(spec: str, tmp_path: Path) -> onnx.GraphProto:
    out = tmp_path / f"{spec}.onnx"
    export_compiled(
        netspec.compile(SPECS / f"{spec}.net"), out, ExportOptions(verify=False), **QUIET
    )
    return onnx.load(str(out)).graph


# ---- the format ---------------------------------------------------------------------------


def test_default_is_qdq_uint8_activations_int8_weights_per_channel() -> None:
    chosen = DEFAULT_INT8
    assert (chosen.qdq, chosen.signed_activations, chosen.per_channel) == (True, False, True)
    assert chosen.region
    assert DEFAULT_INT8.name == "qdq-u8s8-channel+region"
    assert Int8Format(qdq=False, signed_activations=True, per_channel=False).name == (
        "qoperator-s8s8-tensor+region"
    )


def fp32_ops(graph: onnx.GraphProto) -> list[str]:
    """The operation types outside the int8 region, in graph order."""
    region = int8_region(graph)
    return [n.op_type for n in graph.node if n.name not in region]


def test_a_thin_convolution_and_what_follows_it_stay_fp32(tmp_path: Path) -> None:
    """mnist_fast: conv 16 5x5 over one channel, then maxpool, batchnorm, relu up to the
    next conv (over 16 channels); the rest is int8 up to the last dense layer."""
    graph = fp32_graph("mnist_fast", tmp_path)
    assert fp32_ops(graph) == ["Conv", "MaxPool", "BatchNormalization", "Relu"]
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    assert convs[1] in int8_region(graph)


def test_a_thin_region_ending_in_a_maxpool_stays_fp32_as_netspec_runs_it(
    tmp_path: Path,
) -> None:
    """yolo_digits: conv 16 3x3 on one channel | batchnorm (folded) | leaky_relu | maxpool,
    then a conv: all four stay fp32. ONNX Runtime's QDQ propagation would move the next
    conv's quantization up before that maxpool and pool uint8 in NCHW; netspec's sessions
    turn it off, so the optimized graph pools floats, where a plain session pools uint8."""
    graph = fp32_graph("yolo_digits", tmp_path)
    first = next(n for n in graph.node if n.op_type == "Conv")
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    assert weights[first.input[1]][1:] == (1, 3, 3)
    assert fp32_ops(graph)[:4] == ["Conv", "BatchNormalization", "LeakyRelu", "MaxPool"]
    x = np.random.default_rng(0).standard_normal((8, 1, 128, 128)).astype(np.float32)
    int8 = to_int8(onnx.load(str(tmp_path / "yolo_digits.onnx")), {"image": x})

    def quantized_pools(options: ort.SessionOptions) -> int:
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(int8.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(tmp_path / "optimized.onnx")).graph
        producer = {o: n.op_type for n in optimized.node for o in n.output}
        pools = [n for n in optimized.node if n.op_type == "MaxPool"]
        return sum(producer.get(n.input[0]) == "QuantizeLinear" for n in pools)

    assert quantized_pools(session_options(1)) == 0
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert quantized_pools(plain) == 1  # what the session option prevents


def test_local_response_normalization_and_the_pool_after_it_stay_fp32(tmp_path: Path) -> None:
    """alexnet: each LRN (exported as square, pad, average, power, divide) has no int8
    power, so its pieces and the maxpool it feeds stay fp32; every conv and dense is int8."""
    graph = fp32_graph("alexnet", tmp_path)
    region = int8_region(graph)
    lrn = [n for n in graph.node if n.name.startswith("/lrn")]
    assert lrn and not any(n.name in region for n in lrn)
    producer = {o: n for n in graph.node for o in n.output}
    pools = [n for n in graph.node if n.op_type == "MaxPool"]
    after_lrn = [n for n in pools if producer[n.input[0]].name.startswith("/lrn")]
    assert len(after_lrn) == 2 and not any(n.name in region for n in after_lrn)
    assert all(n.name in region for n in pools if n not in after_lrn)  # after a relu
    assert all(n.name in region for n in graph.node if n.op_type in ("Conv", "Gemm"))


def test_only_ungrouped_convolutions_over_one_channel_are_thin(tmp_path: Path) -> None:
    lenet5 = fp32_graph("lenet5", tmp_path)
    c1 = next(n for n in lenet5.node if n.op_type == "Conv")  # 1x5x5
    assert c1.name not in int8_region(lenet5)
    wide = "network rgb(image: 3x16x16) {\n    conv 16 3x3 | relu | conv 16 3x3 groups=16\n}\n"
    out = tmp_path / "wide.onnx"
    export_compiled(netspec.compile(wide), out, ExportOptions(verify=False), **QUIET)
    assert fp32_ops(onnx.load(str(out)).graph) == []  # an RGB stem; a depthwise conv


def detections_matched(fp32: np.ndarray, int8: np.ndarray, within: float) -> float:
    """The fraction of int8 detections `(x1, y1, x2, y2, score, class)` with an fp32
    detection of the same image and class whose corners all lie within `within` pixels."""
    found = 0
    for ours, theirs in zip(int8, fp32, strict=True):
        for row in ours:
            same = theirs[theirs[:, 5] == row[5], :4]
            found += len(same) > 0 and float(np.abs(same - row[:4]).max(axis=1).min()) <= within
    return found / (int8.shape[0] * int8.shape[1])


def test_ssd_quantizes_with_its_decoding_in_fp32_and_its_boxes_match(tmp_path: Path) -> None:
    """ssd_digits decodes its boxes in the graph (softmax, anchors, top-k): after the last
    conv, so fp32. Quantized whole (ONNX Runtime's own choice) its boxes land tens of pixels
    away; QOperator then failed outright on the decoding's tensors."""
    torch.manual_seed(0)
    graph = fp32_graph("ssd_digits", tmp_path)
    decoding = [n for n in graph.node if n.name.startswith("/decoding/")]
    assert decoding and not int8_region(graph) & {n.name for n in decoding}
    fp32 = onnx.load(str(tmp_path / "ssd_digits.onnx"))
    x = np.random.default_rng(0).random((16, 1, 128, 128)).astype(np.float32)

    def detections(model: onnx.ModelProto) -> np.ndarray:
        options = session_options(1)
        session = ort.InferenceSession(model.SerializeToString(), options)
        return np.asarray(session.run(None, {"image": x})[0])

    reference = detections(fp32)
    assert reference.shape == (16, 50, 6)
    assert detections_matched(reference, detections(to_int8(fp32, {"image": x})), 1.0) >= 0.9
    qoperator = to_int8(fp32, {"image": x}, Int8Format(qdq=False))
    assert detections_matched(reference, detections(qoperator), 1.0) >= 0.9
    whole = to_int8(fp32, {"image": x}, Int8Format(region=False))
    assert detections_matched(reference, detections(whole), 1.0) < 0.5


@needs_mnist
def test_the_file_has_the_default_formats_structure(tmp_path: Path) -> None:
    x, _ = digits("train", 64)
    out = tmp_path / "m8.onnx"
    report = export_compiled(
        netspec.compile(SPECS / "mnist_fast.net"),
        out,
        ExportOptions(precision="int8", verify=False),
        calibration=x,
        **QUIET,
    )
    graph = onnx.load(str(out)).graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert {n.op_type for n in graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert not any(n.op_type.startswith("QLinear") for n in graph.node)  # QDQ, not QOperator
    # conv1 (1x5x5) reads fp32 weights; conv2 (16x3x3) reads int8 ones, one scale per channel
    assert inits[convs[0].input[1]].data_type == onnx.TensorProto.FLOAT
    dq = producers[convs[1].input[1]]
    assert dq.op_type == "DequantizeLinear"
    assert inits[dq.input[0]].data_type == onnx.TensorProto.INT8
    assert numpy_helper.to_array(inits[dq.input[1]]).shape == (32,)
    # activations: uint8 with a zero point (U8S8)
    q = next(n for n in graph.node if n.op_type == "QuantizeLinear")
    assert inits[q.input[2]].data_type == onnx.TensorProto.UINT8
    assert report.int8_speed is not None and report.int8_speed.batch == 32


# ---- the speed check ----------------------------------------------------------------------


def speed(fp32_s: float, int8_s: float) -> Int8Speed:
    return Int8Speed(fp32_s=fp32_s, int8_s=int8_s, batch=32, threads=2)


def test_faster_int8_passes_silently() -> None:
    assert speed(1.0, 0.5).ratio == 2.0
    assert judge_int8_speed(speed(1.0, 0.5)) is None
    assert judge_int8_speed(speed(1.0, 0.5), minimum=1.5) is None
    assert judge_int8_speed(speed(1.0, 1.0)) is None  # as fast: nothing to warn of


def test_slower_int8_is_a_warning_with_the_ratio() -> None:
    said = judge_int8_speed(speed(0.61, 1.0))
    assert said is not None and said.startswith("warning: the int8 file runs at 0.61x")
    assert "batch 32, 2 threads" in said and "--int8-min-speedup 1" in said


def test_int8_under_the_asked_minimum_is_refused_with_the_ratio_and_a_hint() -> None:
    with pytest.raises(ExportError) as refused:
        judge_int8_speed(speed(1.2, 1.0), minimum=1.5)
    assert "runs at 1.20x the fp32 file's speed (batch 32, 2 threads" in refused.value.message
    assert "under the 1.5x asked for" in refused.value.message
    assert "nothing was written" in refused.value.message
    assert refused.value.hint is not None and "export fp32" in refused.value.hint


def test_a_zero_timing_reads_as_infinitely_fast() -> None:
    assert speed(1.0, 0.0).ratio == float("inf")
    assert judge_int8_speed(speed(1.0, 0.0), minimum=4.0) is None


@pytest.fixture(scope="module")
def calibration_idx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 digits as an IDX images file (real MNIST where it is there, else noise)."""
    out = tmp_path_factory.mktemp("cal") / "cal-images-idx3-ubyte"
    if REAL_MNIST.is_dir():
        images = load_idx_pair(
            REAL_MNIST / "train-images-idx3-ubyte.gz", REAL_MNIST / "train-labels-idx1-ubyte.gz"
        ).images[:64]
    else:
        images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), np.uint8)
    write_idx(out, images)
    return out


def test_cli_refuses_under_the_minimum_and_keeps_the_old_file(
    tmp_path: Path, calibration_idx: Path
) -> None:
    """The command line's path with real ONNX Runtime sessions timed; the decision's input
    is constructed: a minimum of infinity, which no measured ratio meets."""
    out = tmp_path / "m8.onnx"
    out.write_bytes(b"the previous file")
    result = invoke(
        "export", SPECS / "mnist_fast.net", "-o", out, "--int8", "--calibrate", calibration_idx,
        "--int8-min-speedup", "inf",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "int8 speed: " in result.output  # the measurement, whatever it was
    assert "x the fp32 file's speed (batch 32," in result.output
    assert "under the infx asked for with --int8-min-speedup; nothing was written" in result.output
    assert "export fp32 (without --int8)" in result.output  # the hint
    assert out.read_bytes() == b"the previous file"


def test_cli_says_the_measured_speed_and_writes_the_file(
    tmp_path: Path, calibration_idx: Path
) -> None:
    out = tmp_path / "m8.onnx"
    result = invoke(
        "export", SPECS / "mnist_fast.net", "-o", out, "--int8", "--calibrate", calibration_idx,
        "--no-verify",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("int8 speed: "))
    assert "x the fp32 file's speed (batch 32, " in line and "threads: " in line
    assert out.is_file()


def test_the_minimum_is_for_int8_only_and_positive(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = invoke("export", SPECS / "lenet.net", "-o", out, "--int8-min-speedup", "1.5")
    assert result.exit_code == 2 and "--int8-min-speedup is for --int8 only" in result.output
    result = invoke("export", SPECS / "lenet.net", "-o", out, "--int8-min-speedup", "0")
    assert result.exit_code == 2 and "--int8-min-speedup" in result.output
    with pytest.raises(ExportError, match="must be above 0"):
        ExportOptions(precision="int8", int8_min_speedup=-1.0)


# ---- accuracy -----------------------------------------------------------------------------


def trained_mnist_fast() -> torch.nn.Module:
    """mnist_fast after one pass of Adam over 3,000 real training digits (seeded)."""
    torch.manual_seed(0)
    module = to_torch(netspec.compile(SPECS / "mnist_fast.net"))
    x, y = digits("train", 3000)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.005)
    module.train()
    for start in range(0, len(x), 64):
        batch, target = (
            torch.from_numpy(x[start : start + 64]),
            torch.from_numpy(y[start : start + 64]),
        )
        loss = torch.nn.functional.cross_entropy(module(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()


@needs_mnist
def test_int8_agrees_with_fp32_on_real_digits(tmp_path: Path) -> None:
    module = trained_mnist_fast()
    calibration, _ = digits("train", 256)
    x, y = digits("test", 300)
    report = export_compiled(
        netspec.compile(SPECS / "mnist_fast.net"),
        tmp_path / "m8.onnx",
        ExportOptions(precision="int8"),
        weights=module,
        calibration=calibration,
        samples=x,
        targets=y,
        **QUIET,
    )
    reduced = report.reduced
    assert reduced is not None and reduced.accuracy is not None
    assert reduced.accuracy_fp32 is not None and reduced.accuracy_fp32 > 0.9  # it learnt
    assert reduced.agreement >= 0.98  # at most 6 of 300 digits change class
    assert abs(reduced.accuracy - reduced.accuracy_fp32) <= 0.01


# ---- calibration data ---------------------------------------------------------------------


def test_calibration_with_nan_is_refused_clearly_by_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "cal.npy"
    bad = np.random.default_rng(0).random((8, 28, 28)).astype(np.float32)
    bad[3, 5, 5] = np.nan
    np.save(data, bad)
    out = tmp_path / "m8.onnx"
    result = invoke("export", SPECS / "lenet.net", "-o", out, "--int8", "--calibrate", data)
    assert result.exit_code == 1, result.output
    assert "cal.npy: holds NaN or infinite values; expected finite numbers" in result.output
    assert not out.exists()
