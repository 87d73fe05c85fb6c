"""Running exported models: provider choice, input files to batches, `netspec run` and
`netspec bench`, and clean errors for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import netspec
from netspec.data import write_idx
from netspec.errors import InputError, ProviderError
from netspec.export import ExportOptions, InputInfo, export_compiled
from netspec.export.eager import torch_module
from netspec.runtime.inputs import load_inputs, load_samples
from netspec.runtime.session import choose_providers, open_model
from tests.test_export import MNIST, QUIET, SPECS, invoke

CPU = "CPUExecutionProvider"
LENET5 = InputInfo("image", (1, 32, 32), 0.1307, 0.3081)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "lenet.onnx"
    export_compiled(netspec.compile(SPECS / "lenet.net"), out, **QUIET)
    return out


@pytest.fixture(scope="module")
def lenet5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "lenet5.onnx"
    export_compiled(netspec.compile(SPECS / "lenet5.net"), out, **QUIET)
    return out


def digit(tmp_path: Path, invert: bool = False, size: int = 28) -> Path:
    """A white-on-black digit-like image (a bar and a blob)."""
    pixels = np.zeros((size, size), np.uint8)
    pixels[size // 4 : 3 * size // 4, size // 2 - 2 : size // 2 + 2] = 255
    path = tmp_path / f"digit{'-inv' if invert else ''}{size}.png"
    Image.fromarray(255 - pixels if invert else pixels).save(path)
    return path


# ---- providers ------------------------------------------------------------------------


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    trt, cuda = "TensorrtExecutionProvider", "CUDAExecutionProvider"
    assert choose_providers("auto", [CPU, cuda, trt]) == [trt, cuda, CPU]
    assert choose_providers("auto", [cuda, CPU]) == [cuda, CPU]
    assert choose_providers("auto", ["AzureExecutionProvider", CPU]) == [CPU]
    assert choose_providers("cuda", [cuda, CPU]) == [cuda, CPU]


def test_missing_provider_names_the_available_ones() -> None:
    with pytest.raises(ProviderError, match="available: AzureExecutionProvider, CPU"):
        choose_providers("cuda", ["AzureExecutionProvider", CPU])


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA"
)
def test_run_on_missing_cuda_is_a_usage_error(lenet: Path, tmp_path: Path) -> None:
    result = invoke("run", lenet, digit(tmp_path), "--provider", "cuda")
    assert result.exit_code == 2
    assert "CUDAExecutionProvider" in result.output and CPU in result.output


def test_auto_falls_back_to_cpu_and_says_so(lenet: Path, tmp_path: Path) -> None:
    result = invoke("run", lenet, digit(tmp_path))
    assert result.exit_code == 0
    expected = next(
        p
        for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU)
        if p in ort.get_available_providers()
    )
    assert f"provider: {expected}" in result.output


# ---- inputs ---------------------------------------------------------------------------


def test_png_is_padded_and_normalized_like_training(tmp_path: Path) -> None:
    notices: list[str] = []
    batch = load_inputs([digit(tmp_path)], LENET5, notice=notices.append)
    pixels = np.asarray(Image.open(digit(tmp_path)), np.float32) / 255
    want = (np.pad(pixels, 2) - 0.1307) / 0.3081
    np.testing.assert_allclose(batch.array[0, 0], want, rtol=1e-6)
    assert any("padded" in n for n in notices)


def test_odd_size_is_resized_with_a_notice(tmp_path: Path) -> None:
    notices: list[str] = []
    batch = load_inputs([digit(tmp_path, size=45)], LENET5, notice=notices.append)
    assert batch.array.shape == (1, 1, 32, 32)
    assert any("45x45 resized to the model's 32x32" in n for n in notices)


def test_invert_turns_black_on_white_around(tmp_path: Path) -> None:
    notices: list[str] = []
    plain = load_inputs([digit(tmp_path)], LENET5).array
    inverted = load_inputs([digit(tmp_path, invert=True)], LENET5, invert=True).array
    np.testing.assert_allclose(plain, inverted, atol=1e-6)
    load_inputs([digit(tmp_path, invert=True)], LENET5, notice=notices.append)
    assert any("--invert" in n for n in notices)


def test_colour_image_becomes_grey(tmp_path: Path) -> None:
    path = tmp_path / "rgb.jpg"
    Image.new("RGB", (32, 32), (255, 255, 255)).save(path)
    notices: list[str] = []
    x = load_inputs([path], LENET5, notice=notices.append).array
    assert x.shape == (1, 1, 32, 32) and any("grey" in n for n in notices)


def test_npy_idx_and_directories_batch_together(tmp_path: Path) -> None:
    images = (np.arange(3 * 28 * 28) % 256).astype(np.uint8).reshape(3, 28, 28)
    folder = tmp_path / "inputs"
    folder.mkdir()
    np.save(folder / "a.npy", images[:2])
    write_idx(folder / "b-idx3-ubyte", images[2:])
    Image.fromarray(images[0]).save(folder / "c.png")
    (folder / "notes.txt").write_text("ignored: not an input")
    batch = load_inputs([folder], LENET5)
    assert batch.array.shape == (4, 1, 32, 32)
    assert batch.names[0].endswith("a.npy[0]") and batch.names[3].endswith("c.png")
    np.testing.assert_allclose(batch.array[0], batch.array[3], atol=1e-6)


def test_float_npy_is_used_as_given(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_array_equal(load_inputs([tmp_path / "x.npy"], LENET5).array, x)


def test_idx_with_labels_beside_gives_targets() -> None:
    if not MNIST.is_dir():
        pytest.skip(f"no MNIST at {MNIST}")
    x, y = load_samples(MNIST / "t10k-images-idx3-ubyte.gz", LENET5)
    assert x.shape == (10_000, 1, 32, 32) and y is not None and y[0] == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, not an image", "not an image or array; expected a PNG or JPEG image"),
        (b"\x89PNG\r\n\x1a\n truncated", "cannot read image"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02", "labels; expected images"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message) as e:
        load_inputs([bad], LENET5)
    assert str(bad) in str(e.value)


def test_float_array_of_the_wrong_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(InputError, match=r"x.npy: float samples of shape 1x28x28; .* 1x32x32"):
        load_inputs([tmp_path / "x.npy"], LENET5)


# ---- netspec run ----------------------------------------------------------------------


def test_run_prints_top_k_and_json(lenet: Path, tmp_path: Path) -> None:
    image = digit(tmp_path)
    text = invoke("run", lenet, image, "--top", "2")
    assert text.exit_code == 0
    assert len([ln for ln in text.stdout.splitlines() if ln.startswith(f"{image}: ")]) == 1
    result = invoke("run", lenet, image, image, "--json", "--top", "10")
    rows = json.loads(result.stdout)
    assert [r["input"] for r in rows] == [str(image)] * 2
    probs = [c["probability"] for c in rows[0]["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    assert {c["label"] for c in rows[0]["top"]} == {str(d) for d in range(10)}


def test_run_matches_a_bare_session(lenet5: Path, tmp_path: Path) -> None:
    """RBF distances become softmax(-d); the numbers are ONNX Runtime's own."""
    image = digit(tmp_path)
    rows = json.loads(invoke("run", lenet5, image, "--json", "--top", "10").stdout)
    x = load_inputs([image], LENET5).array
    d = ort.InferenceSession(str(lenet5), providers=[CPU]).run(None, {"image": x})[0][0]
    p = np.exp(-(d - d.min()))
    p /= p.sum()
    got = {c["class"]: c["probability"] for c in rows[0]["top"]}
    np.testing.assert_allclose([got[c] for c in range(10)], p, rtol=1e-5)


@pytest.mark.parametrize("case", ["not-onnx", "not-netspec", "wrong-shape", "not-input", "missing"])
def test_run_errors_are_clean(lenet: Path, tmp_path: Path, case: str) -> None:
    model, inputs = lenet, [digit(tmp_path)]
    if case == "not-onnx":
        model = digit(tmp_path)
        expect = "not a valid ONNX model"
    elif case == "not-netspec":
        import onnx
        from onnx import helper

        node = helper.make_node("Relu", ["x"], ["y"])
        graph = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", 1, [1])],
            [helper.make_tensor_value_info("y", 1, [1])],
        )
        model = tmp_path / "plain.onnx"
        onnx.save(helper.make_model(graph), str(model))
        expect = "not exported by netspec"
    elif case == "wrong-shape":
        inputs = [tmp_path / "x.npy"]
        np.save(inputs[0], np.zeros((1, 3, 28, 28), np.float32))
        expect = "x.npy"
    elif case == "not-input":
        inputs = [SPECS / "lenet.net"]
        expect = "not an image or array"
    else:
        inputs = [tmp_path / "nope.png"]
        expect = "no such file or directory"
    result = invoke("run", model, *inputs)
    assert result.exit_code == 1, result.output
    assert expect in result.output


def test_run_refuses_two_input_models(tmp_path: Path) -> None:
    out = tmp_path / "siamese.onnx"
    export_compiled(netspec.compile(SPECS / "siamese.net"), out, **QUIET)
    result = invoke("run", out, digit(tmp_path))
    assert result.exit_code == 2 and "takes 2 inputs (left, right)" in result.output


# ---- netspec bench --------------------------------------------------------------------


def test_bench_json_with_torch(lenet: Path) -> None:
    result = invoke(
        "bench",
        lenet,
        "--batch",
        "1,4",
        "--vs",
        "torch",
        "--rounds",
        "5",
        "--threads",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    engines = {(t["engine"], t["batch"]) for t in data["timings"]}
    assert engines == {(e, b) for e in ("onnxruntime", "torch") for b in (1, 4)}
    assert all(t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"] for t in data["timings"])
    assert set(data["speedup_vs_torch"]) == {"1", "4"}


@pytest.mark.parametrize("spec", ["lenet5.net", "siamese.net", "local.net"])
def test_torch_rebuilt_from_metadata_has_the_files_weights(spec: str, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    compiled = netspec.compile(SPECS / spec)
    export_compiled(compiled, out, **QUIET)
    model = open_model(out, "cpu")
    module = torch_module(out, model.info)
    xs = [
        np.random.default_rng(i).standard_normal((2, *s.shape)).astype(np.float32)
        for i, s in enumerate(model.info.inputs)
    ]
    with torch.no_grad():
        want = module(*(torch.from_numpy(x) for x in xs)).numpy()
    np.testing.assert_allclose(model.run(*xs)[0], want, rtol=1e-3, atol=1e-5)


def test_bench_int8_vs_torch_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "m8.onnx"
    x = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    export_compiled(
        netspec.compile(SPECS / "lenet.net"),
        out,
        ExportOptions(precision="int8"),
        calibration=x,
        **QUIET,
    )
    result = invoke("bench", out, "--vs", "torch", "--batch", "1", "--rounds", "2")
    assert result.exit_code == 1 and "int8 file keeps no fp32 weights" in result.output
