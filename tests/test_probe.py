"""netspec.probe: every layer's output from a spec (PyTorch hooks) and from an ONNX file
netspec exported (ONNX Runtime, no torch), the two in agreement, shapes as compiled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netspec.compiler import compile_text
from netspec.errors import InputError, ModelError, NetspecError, UsageError
from netspec.export.onnx_export import ExportOptions, export_compiled
from netspec.probe import Probe, open_probe


def rename_tensors(source: Path, path: Path, renames: dict[str, str]) -> None:
    """Write ``source``'s ONNX graph to ``path`` with its tensors renamed by ``renames``, as
    a file from another exporter (or an older netspec) would name them."""
    import onnx

    model = onnx.load(str(source))
    for node in model.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    onnx.save(model, str(path))


ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

pytestmark = pytest.mark.usefixtures("one_thread")


def _small(spec: str, tmp: Path) -> Path:
    """The spec, its 224x224 input bound to 32x32 (the architecture as it is)."""
    path = tmp / f"{spec}.net"
    path.write_text((SPECS / f"{spec}.net").read_text().replace("3x224x224", "3x32x32"))
    return path


def _exported(probe: Probe, out: Path) -> Path:
    """The probe's own network (its seeded weights) exported to `out`."""
    network = probe._runner.network  # type: ignore[attr-defined]
    export_compiled(probe.compiled, out, ExportOptions(), weights=network, log=lambda _: None)
    return out


@pytest.mark.parametrize("spec", ["lenet", "siamese", "resnet18", "lenet5"])
def test_both_backends_agree_and_match_the_compiler(spec: str, tmp_path: Path) -> None:
    spec_file = _small(spec, tmp_path) if spec == "resnet18" else SPECS / f"{spec}.net"
    torch_probe = open_probe(spec_file)
    onnx_probe = open_probe(_exported(torch_probe, tmp_path / "model.onnx"))
    assert (torch_probe.backend, onnx_probe.backend) == ("torch", "onnxruntime")
    x = np.random.default_rng(0).random((2, *torch_probe.input_shape), dtype=np.float32)
    a, b = torch_probe.run(x), onnx_probe.run(x)
    compiled = [(layer.name, tuple(layer.shape)) for layer in torch_probe.compiled.layers]
    for probe, outputs in ((torch_probe, a), (onnx_probe, b)):
        assert [(v.name, v.shape) for v in probe.layers] == compiled
        assert [(k, v.shape[1:]) for k, v in outputs.items()] == compiled
        assert all(len(v) == 2 for v in outputs.values())
    for name in a:
        np.testing.assert_allclose(b[name], a[name], atol=1e-5, rtol=1e-5, err_msg=name)


def test_layer_views_carry_the_compilers_facts() -> None:
    probe = open_probe(SPECS / "lenet.net")
    conv2, relu2 = probe.layer("conv2"), probe.layer("relu2")
    assert (conv2.rf_size, conv2.rf_jump, conv2.rf_start) == ((14, 14), (2, 2), (5.0, 5.0))
    assert (conv2.params, conv2.macs) == (2416, 240000)
    assert conv2.file is not None and conv2.file.endswith("specs/lenet.net")
    assert (conv2.line, conv2.col, conv2.where) == (9, 5, f"{conv2.file}:9:5")
    assert conv2.text == "conv 16 5x5 | relu | maxpool 2x2          # 16@5x5"
    assert relu2.activation_of == "conv2" and conv2.activation_of is None
    assert probe.layer("dense1").rf_size is None and not probe.layer("dense1").spatial
    assert probe.classes == tuple("0123456789")
    with pytest.raises(UsageError, match="no layer 'conv'") as raised:
        probe.layer("conv")
    assert raised.value.hint is not None and "'conv1'" in raised.value.hint


def test_prepare_fits_and_normalizes_a_picture() -> None:
    probe = open_probe(SPECS / "lenet.net")
    white = np.full((280, 280), 255, np.uint8)
    x = probe.prepare(white)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x, (1 - 0.1307) / 0.3081, rtol=1e-5)
    rgb = np.zeros((28, 28, 3), np.float32)
    np.testing.assert_allclose(probe.prepare(rgb), -0.1307 / 0.3081, rtol=1e-5)
    for bad in (np.zeros((2, 2, 2, 2)), np.full((4, 4), 2.0), np.zeros((4, 4), np.int64)):
        with pytest.raises(InputError):
            probe.prepare(bad)
    with pytest.raises(InputError, match="takes 1x28x28 per sample"):
        probe.run(np.zeros((1, 1, 32, 32), np.float32))


def test_fixed_kernels_spec_with_bound_sizes() -> None:
    probe = open_probe(SPECS / "filters.net", overrides={"H": "16", "W": "20"})
    assert probe.input_shape == (1, 16, 20) and probe.classes is None
    x = np.random.default_rng(1).random((1, 1, 16, 20), dtype=np.float32)
    maps = probe.run(x)["concat1"]
    np.testing.assert_allclose(maps[0, 0], x[0, 0], atol=1e-6)  # the identity kernel
    with pytest.raises(UsageError, match="not bound"):
        open_probe(SPECS / "filters.net")


def test_the_onnx_path_imports_no_torch(tmp_path: Path) -> None:
    onnx_file = _exported(open_probe(SPECS / "lenet.net"), tmp_path / "lenet.onnx")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from netspec.probe import open_probe\n"
        f"probe = open_probe(Path({str(onnx_file)!r}))\n"
        "out = probe.run(probe.prepare(np.zeros((28, 28), np.uint8)))\n"
        "assert len(out) == 11, list(out)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'torch' or "
        "m.startswith(('netspec.lower', 'netspec.train.')) or m == 'netspec.train']\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_bad_targets_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    (tmp_path / "empty").mkdir()
    cases = [
        (tmp_path / "missing.net", "no such"),
        (tmp_path / "junk.onnx", "not an ONNX model"),
        (tmp_path / "empty", "not a netspec run"),
    ]
    for target, message in cases:
        with pytest.raises(NetspecError, match=message):
            open_probe(target)


def test_an_onnx_file_without_named_layers_is_refused(tmp_path: Path) -> None:
    """A file whose layers' tensors carry no layer names (as exported before the exporter
    named them): renamed here, it must be refused with advice, not misread."""
    compiled = compile_text((SPECS / "lenet.net").read_text(), str(SPECS / "lenet.net"))
    path = tmp_path / "old.onnx"
    export_compiled(compiled, path, ExportOptions(verify=False), log=lambda _: None)
    rename_tensors(path, path, {"conv1": "/conv1/Conv_output_0"})
    with pytest.raises(ModelError, match=r"exported before netspec named"):
        open_probe(path)
