"""ONNX export: every spec exports to standard ONNX and matches PyTorch in ONNX Runtime;
shared weights stay one initializer; the metadata makes the file self-describing; a failed
check leaves nothing behind; fp16/int8 report their agreement; the CLI finds weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import save_model
from torch import nn

import netspec
from cli import main as cli_main
from netspec.artifact import from_props
from netspec.errors import ExportError
from netspec.export import ExportOptions, export_compiled
from netspec.export.detection import exported_outputs
from netspec.lower import to_torch

SPECS = Path(__file__).resolve().parents[1] / "specs"
MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
QUIET = {"log": lambda _: None}

# Specs small enough to export and verify in a second or two each.
FAST = ["lenet.net", "lenet5.net", "local.net", "siamese.net", "filters.net", "ciresan2010.net",
        "mnist_fast.net", "lenet5_distorted.net", "digit_window.net", "yolo_digits.net",
        "mnist_deform.net", "signal1d.net", "autoencoder.net", "fashion_mnist.net",
        "espcn.net", "cifar10_resnet.net", "ssd_digits.net", "hog_features.net",
        "haar_features.net", "hog_digits.net", "hog_mnist.net", "viola_jones_digits.net",
        "faster_rcnn_digits.net", "rfcn_digits.net", "rcnn_digits.net",
        "fast_rcnn_digits.net"]  # fmt: skip
# 224x224 inputs and millions of weights: 2 to 30 s each to export and verify here (vgg16,
# 138M weights, the longest; about a minute when the machine is busy).
LARGE = ["resnet18.net", "googlenet.net", "densenet121.net", "resnet50.net", "zfnet.net",
         "alexnet.net", "resnet152.net", "vgg16.net", "mobilenet_v2.net", "efficientnet_b0.net",
         "se_resnet.net", "unet.net", "shufflenet_v2.net", "mobilenet_v3_small.net",
         "convnext_t.net"]  # fmt: skip


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli_main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_every_spec_is_covered() -> None:
    assert sorted(p.name for p in SPECS.glob("*.net")) == sorted([*FAST, *LARGE])


def _export_and_check(name: str, tmp_path: Path) -> None:
    # symbolic sizes given numbers, to run at (tests/test_words_resample.py also exports
    # ESPCN as written, its output's sizes computed: 3*H)
    sizes = {"H": 24, "W": 20} if name in ("filters.net", "espcn.net", "hog_features.net") else {}
    compiled = netspec.compile(SPECS / name, **sizes)
    out = tmp_path / "model.onnx"
    report = export_compiled(compiled, out, **QUIET)
    assert report.checks and all(c.ok for c in report.checks)
    model = onnx.load(str(out))
    # ONNX Runtime's cleanup writes a HardSwish as HardSigmoid and Mul: one node more each
    split = sum(n.op_type == "HardSigmoid" for n in model.graph.node)
    assert report.nodes_after <= report.nodes_before + split
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}  # standard operators only
    shapes = [
        tuple(d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim)
        for i in model.graph.input
    ]
    assert [s[0] for s in shapes] == ["batch"] * len(compiled.graph.inputs)
    # what the file's first output holds: the last layer's map, or a detector's decoded boxes
    inferred = exported_outputs(compiled)[0].shape or ()
    x = [np.zeros((3, *i.shape), np.float32) for i in compiled.graph.inputs]
    got = session(out).run(
        None, {i.name: a for i, a in zip(compiled.graph.inputs, x, strict=True)}
    )[0]
    assert got.shape == (3, *inferred)


@pytest.mark.parametrize("name", FAST)
def test_small_specs_export_and_verify(name: str, tmp_path: Path) -> None:
    _export_and_check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_large_specs_export_and_verify(name: str, tmp_path: Path) -> None:
    _export_and_check(name, tmp_path)


def test_shared_weights_are_one_initializer(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "siamese.net")
    module = to_torch(compiled)
    out = tmp_path / "siamese.onnx"
    export_compiled(compiled, out, weights=module, **QUIET)
    model = onnx.load(str(out))
    conv_weights = [t for t in model.graph.initializer if tuple(t.dims) == (20, 1, 5, 5)]
    assert len(conv_weights) == 1
    unique = {id(p) for p in module.parameters()}
    assert len(model.graph.initializer) == len(unique)  # nothing duplicated, nothing extra
    weights = from_props(props(out), str(out)).weights  # for `bench --vs torch`
    assert weights == {name: name for name in module.state_dict()}


def test_inline_tie_is_one_initializer(tmp_path: Path) -> None:
    spec = (
        "network tied(x: 8) {\n    dense 8 as first | relu\n"
        "    dense 8 tie=first | relu\n    dense 3\n}\n"
    )
    compiled = netspec.compile(spec)
    out = tmp_path / "tied.onnx"
    export_compiled(compiled, out, **QUIET)
    eight_by_eight = [t for t in onnx.load(str(out)).graph.initializer if tuple(t.dims) == (8, 8)]
    assert len(eight_by_eight) == 1


def test_metadata_makes_the_file_self_describing(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "lenet5.net")
    out = tmp_path / "lenet5.onnx"
    export_compiled(compiled, out, **QUIET)
    meta = props(out)
    assert meta["spec"] == (SPECS / "lenet5.net").read_text(encoding="utf-8")
    assert meta["netspec_version"] == netspec.__version__
    assert meta["network"] == "lenet5"
    assert meta["output_kind"] == "rbf_distances"
    assert json.loads(meta["labels"]) == [str(d) for d in range(10)]
    assert json.loads(meta["inputs"]) == [
        {"name": "image", "shape": [1, 32, 32], "mean": 0.1307, "std": 0.3081}
    ]
    info = from_props(meta, str(out))
    assert info.outputs[0].kind == "rbf_distances" and info.precision == "fp32"


def test_given_labels_and_normalization_win(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "lenet.net")
    out = tmp_path / "m.onnx"
    labels = [f"class {i}" for i in range(10)]
    options = ExportOptions(labels=tuple(labels), normalization=(0.5, 0.25))
    export_compiled(compiled, out, options, **QUIET)
    info = from_props(props(out), str(out))
    assert info.labels == tuple(labels)
    assert (info.inputs[0].mean, info.inputs[0].std) == (0.5, 0.25)
    assert info.outputs[0].kind == "logits"


def test_samples_are_verified_too(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "lenet.net")
    samples = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    report = export_compiled(compiled, tmp_path / "m.onnx", samples=samples, **QUIET)
    assert [c.where for c in report.checks] == ["random inputs", "5 samples"]


def test_static_batch(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "lenet.net")
    out = tmp_path / "m.onnx"
    samples = np.zeros((6, 1, 28, 28), np.float32)
    export_compiled(compiled, out, ExportOptions(batch=4), samples=samples, **QUIET)
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4


class _Noisy(nn.Module):
    """Exports fine, but ONNX Runtime draws other random numbers than PyTorch: a real mismatch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y + torch.rand_like(y)


def test_failed_check_keeps_the_old_file_and_leaves_no_part(tmp_path: Path) -> None:
    compiled = netspec.compile("network tiny(x: 4) {\n    dense 3\n}\n")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the user's precious file")
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_compiled(compiled, out, weights=_Noisy(), **QUIET)
    assert out.read_bytes() == b"the user's precious file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_path_may_be_a_string(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    report = export_compiled(
        netspec.compile("network n(x: 4) {\n    dense 3\n}\n"), str(out), **QUIET
    )
    assert report.path == out and out.is_file()


# Six fixed [2e9 -2e9] kernels overflow float32 to +-inf; the dense stage then adds both signs.
OVERFLOW_TO_NAN = (
    "kernel k = [2000000000 -2000000000]\n"
    "network n(x: 1x8x8) {\n    repeat 6 conv fixed=[k]\n    dense 3\n}\n"
)


def test_nan_output_fails_verification_by_name(tmp_path: Path) -> None:
    """Fixed kernels that overflow float32 to +inf and -inf, then add them: NaN in PyTorch and
    ONNX Runtime, which compare as 'max abs err 0' unless NaN is looked for."""
    compiled = netspec.compile(OVERFLOW_TO_NAN)
    out = tmp_path / "m.onnx"
    lines: list[str] = []
    with pytest.raises(ExportError, match=r"PyTorch.s output has [0-9]+ NaN") as caught:
        export_compiled(compiled, out, log=lines.append)
    assert "max abs err 0" not in str(caught.value)
    assert any("NaN: FAILED" in line for line in lines)
    assert not out.exists()


def test_compile_output_reports_export_errors(tmp_path: Path) -> None:
    spec = tmp_path / "lp.net"
    spec.write_text(OVERFLOW_TO_NAN)
    result = invoke("compile", spec, "-o", tmp_path / "lp.onnx")
    assert result.exit_code == 1 and "NaN" in result.output
    spec.write_text("network n(x: 1x8x8) {\n    conv 2 3x3 | lppool 2x2 p=0 | dense 3\n}\n")
    result = invoke("compile", spec, "-o", tmp_path / "lp.onnx")
    assert result.exit_code == 1 and "p must be greater than 0" in result.output
    assert not (tmp_path / "lp.onnx").exists()


@pytest.mark.parametrize("batch", [0, -1, 99999999999, True, "big"])
def test_bad_batch_is_refused_before_anything_is_made(batch: object) -> None:
    with pytest.raises(ExportError, match="batch"):
        ExportOptions(batch=batch)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"opset": 7}, "opset 7"), ({"precision": "int4"}, "precision"),
     ({"normalization": (0.5, 0.0)}, "std > 0"),
     ({"normalization": (float("nan"), 1.0)}, "finite")],
    ids=["opset", "precision", "std", "mean"],
)  # fmt: skip
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ExportError, match=re.escape(message)):
        ExportOptions(**options)  # type: ignore[arg-type]


def test_a_batch_too_large_for_the_input_is_refused(tmp_path: Path) -> None:
    compiled = netspec.compile("network n(x: 3x512x512) {\n    avgpool global | dense 3\n}\n")
    with pytest.raises(ExportError, match="input values to trace"):
        export_compiled(compiled, tmp_path / "m.onnx", ExportOptions(batch=4096), **QUIET)


@pytest.mark.parametrize(
    ("samples", "message"),
    [(np.zeros((0, 1, 28, 28), np.float32), "at least one sample"),
     (np.full((4, 1, 28, 28), np.nan, np.float32), "NaN or infinite")],
    ids=["empty", "nan"],
)  # fmt: skip
def test_bad_int8_calibration_is_an_export_error(
    samples: np.ndarray, message: str, tmp_path: Path
) -> None:
    compiled = netspec.compile(SPECS / "lenet.net")
    with pytest.raises(ExportError, match=message):
        export_compiled(
            compiled,
            tmp_path / "m.onnx",
            ExportOptions(precision="int8"),
            calibration=samples,
            **QUIET,
        )


def test_int8_needs_calibration_and_only_int8_takes_it(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "lenet.net")
    with pytest.raises(ExportError, match="int8 needs calibration"):
        export_compiled(compiled, tmp_path / "m.onnx", ExportOptions(precision="int8"), **QUIET)
    with pytest.raises(ExportError, match="for int8 only"):
        export_compiled(
            compiled, tmp_path / "m.onnx", calibration=np.zeros((1, 1, 28, 28)), **QUIET
        )


def test_log_reports_errors_and_node_counts(tmp_path: Path) -> None:
    lines: list[str] = []
    export_compiled(netspec.compile(SPECS / "lenet5.net"), tmp_path / "m.onnx", log=lines.append)
    text = "\n".join(lines)
    assert "max abs err" in text and "max rel err" in text
    assert "nodes as traced" in text and "after cleanup" in text


def test_fp16_reports_agreement_and_keeps_float_io(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "lenet.net")
    out = tmp_path / "m16.onnx"
    samples = np.random.default_rng(1).standard_normal((32, 1, 28, 28)).astype(np.float32)
    report = export_compiled(
        compiled, out, ExportOptions(precision="fp16"), samples=samples, **QUIET
    )
    assert report.reduced is not None and report.reduced.precision == "fp16"
    assert report.reduced.agreement >= 0.9
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert props(out)["precision"] == "fp16"


def _mnist(n: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    from netspec.data import load_idx_pair

    if not MNIST.is_dir():
        pytest.skip(f"no MNIST at {MNIST}")
    pair = load_idx_pair(MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz")
    x = pair.images[:n, None].astype(np.float32) / 255.0
    pad = (size - 28) // 2
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return ((x - 0.1307) / 0.3081).astype(np.float32), pair.labels[:n]


def test_int8_is_qdq_and_reports_accuracy(tmp_path: Path) -> None:
    compiled = netspec.compile(SPECS / "lenet.net")
    x, y = _mnist(300)
    out = tmp_path / "m8.onnx"
    report = export_compiled(
        compiled,
        out,
        ExportOptions(precision="int8"),
        calibration=x[:200],
        samples=x[200:],
        targets=y[200:],
        **QUIET,
    )
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert report.reduced is not None and report.reduced.accuracy is not None
    assert report.reduced.agreement >= 0.9
    assert props(out)["precision"] == "int8"


# ---- the command line -----------------------------------------------------------------


def _run_dir(tmp_path: Path, spec: str) -> tuple[Path, nn.Module]:
    """A run directory as training writes it: spec.net and weights/best.safetensors."""
    run = tmp_path / "runs" / "demo"
    (run / "weights").mkdir(parents=True)
    (run / "spec.net").write_text((SPECS / spec).read_text(encoding="utf-8"), encoding="utf-8")
    torch.manual_seed(7)
    module = to_torch(netspec.compile(run / "spec.net")).eval()
    save_model(module, str(run / "weights" / "best.safetensors"))
    return run, module


@pytest.mark.parametrize("which", ["dir", "weights"])
def test_export_from_a_run_uses_its_weights(tmp_path: Path, which: str) -> None:
    run, module = _run_dir(tmp_path, "siamese.net")
    source = run if which == "dir" else run / "weights" / "best.safetensors"
    out = tmp_path / "out.onnx"
    result = invoke("export", source, "-o", out)
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    got = session(out).run(None, {"left": x, "right": x[::-1].copy()})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x), torch.from_numpy(x[::-1].copy())).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_export_weights_that_do_not_fit(tmp_path: Path) -> None:
    run, _ = _run_dir(tmp_path, "siamese.net")
    (run / "spec.net").write_text((SPECS / "lenet.net").read_text(encoding="utf-8"))
    result = invoke("export", run, "-o", tmp_path / "x.onnx")
    assert result.exit_code == 1
    assert "best.safetensors: cannot load into this network" in result.output
    assert not (tmp_path / "x.onnx").exists()


def test_export_cli_errors(tmp_path: Path) -> None:
    result = invoke("export", SPECS / "lenet.net", "-o", tmp_path / "m.onnx", "--int8")
    assert result.exit_code == 2 and "--calibrate" in result.output
    result = invoke("export", tmp_path / "missing.net", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2 and "no such file" in result.output
    lone = tmp_path / "w.safetensors"
    lone.write_bytes(b"")
    result = invoke("export", lone, "-o", tmp_path / "m.onnx")  # weights outside any run
    assert result.exit_code == 1 and "not a netspec run" in result.output


def test_export_cli_int8_with_idx_calibration(tmp_path: Path) -> None:
    if not MNIST.is_dir():
        pytest.skip(f"no MNIST at {MNIST}")
    result = invoke(
        "export",
        SPECS / "lenet.net",
        "-o",
        tmp_path / "m8.onnx",
        "--int8",
        "--calibrate",
        MNIST / "t10k-images-idx3-ubyte.gz",
    )
    assert result.exit_code == 0, result.output
    assert "int8 on" in result.output and "accuracy" in result.output


def test_compile_then_run_a_real_digit(tmp_path: Path) -> None:
    """The issue's acceptance line: `netspec compile lenet5.net -o m.onnx && netspec run`."""
    from PIL import Image

    from netspec.data import read_idx

    if not MNIST.is_dir():
        pytest.skip(f"no MNIST at {MNIST}")
    digit = tmp_path / "digit.png"
    Image.fromarray(read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[0]).save(digit)
    model = tmp_path / "m.onnx"
    assert invoke("compile", SPECS / "lenet5.net", "-o", model).exit_code == 0
    result = invoke("run", model, digit)
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith(str(digit)))
    assert len(line.split("(")) == 4  # top 3 classes with probabilities


def test_the_absolute_tolerance_scales_with_the_outputs_size() -> None:
    """A box edge that ends near 0 in a 128-pixel scene carries the rounding of the
    coordinates it came from (cx - w/2); the same error on outputs of size 1 fails."""
    from netspec.export.verify import ATOL, compare

    edge = np.array([[0.02, 64.0, 128.0]], np.float32)
    off = edge + np.array([[3.7e-4, 0.0, 0.0]], np.float32)
    result = compare([off], [edge], "boxes")
    assert result.ok and result.atol == pytest.approx(ATOL * 128)
    small = np.array([[0.02, 0.5, 1.0]], np.float32)
    result = compare([small + np.float32(3.7e-4) * (small == small.min())], [small], "scores")
    assert not result.ok and result.atol == ATOL
