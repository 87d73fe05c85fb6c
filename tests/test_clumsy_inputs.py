"""What a hostile or clumsy user found in `run`, `bench`, `export` and the command line after
issue 9: inputs of no samples or NaN, FIFOs where files should be, metadata whose shapes
the graph does not take, stdout on a full disk, bounds that disagree between a flag and
the spec. Real ONNX files, real FIFOs, real processes; each case ends in a clear message
and the right exit code, and none waits for ever.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import netspec
from netspec.cli import main
from netspec.cli.options import MAX_EPOCHS, MAX_TRAIN_BATCH
from netspec.cli.train import augment_cmd, eval_cmd, train_cmd
from netspec.data import write_idx
from netspec.errors import InputError
from netspec.export import export_compiled
from netspec.runtime.inputs import load_inputs
from netspec.runtime.session import open_model
from netspec.trainspec import TrainConfig
from tests.test_export import QUIET, SPECS
from tests.test_inputs_hostile import with_metadata

ROOT = Path(__file__).resolve().parents[1]
NO_TRAIN = "network nt(image: 1x28x28) {\n    flatten | dense 10\n}\n"


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "lenet.onnx"
    export_compiled(netspec.compile(SPECS / "lenet.net"), out, **QUIET)
    return out


def netspec_cli(
    *args: str | Path, stdout: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, killed (and the test failed) if it waits."""
    result = subprocess.run(
        [sys.executable, "-m", "netspec", *map(str, args)],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.output


# ---- 1. no samples; 10. NaN --------------------------------------------------------------


def test_inputs_of_no_samples_are_refused(lenet: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 28, 28), np.float32))
    write_idx(tmp_path / "empty-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    for name in ("empty.npy", "empty-images-idx3-ubyte"):
        code, output = invoke("run", lenet, tmp_path / name)
        assert code == 1 and "no samples" in output, output
    code, output = invoke(
        "export",
        SPECS / "lenet.net",
        "-o",
        tmp_path / "m.onnx",
        "--samples",
        tmp_path / "empty.npy",
    )
    assert code == 1 and "no samples" in output and "verify (0 samples)" not in output, output
    assert not (tmp_path / "m.onnx").exists()


def test_nan_inputs_are_refused(lenet: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "nan.npy", np.full((2, 1, 28, 28), np.nan, np.float32))
    code, output = invoke("run", lenet, tmp_path / "nan.npy")
    assert code == 1 and "NaN or infinite" in output and "(nan)" not in output, output
    info = open_model(lenet).info.inputs[0]
    with pytest.raises(InputError, match="NaN or infinite"):
        load_inputs([tmp_path / "nan.npy"], info)


# ---- 2. FIFOs ----------------------------------------------------------------------------


def test_a_fifo_input_is_refused_without_waiting(lenet: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "ff" / "t10k-images-idx3-ubyte"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    result = netspec_cli("run", lenet, fifo)
    assert result.returncode == 1 and "not a regular file" in result.stderr, result.stderr
    spec = SPECS / "lenet.net"
    for flags in (["--samples", fifo], ["--int8", "--calibrate", fifo]):
        result = netspec_cli("export", spec, "-o", tmp_path / "m.onnx", "--no-verify", *flags)
        assert result.returncode == 1 and "not a regular file" in result.stderr, result.stderr


# ---- 3. metadata the graph does not take -------------------------------------------------


def test_metadata_shapes_are_checked_against_the_graph(lenet: Path, tmp_path: Path) -> None:
    inputs = [{"name": "image", "shape": [1, 1, 1], "mean": 0.1, "std": 0.3}]
    wrong = with_metadata(lenet, tmp_path / "wrong.onnx", inputs=inputs)
    np.save(tmp_path / "one.npy", np.zeros((1, 1, 1, 1), np.float32))
    for args in (
        ("bench", wrong, "--batch", "1", "--rounds", "1"),
        ("run", wrong, tmp_path / "one.npy"),
    ):
        code, output = invoke(*args)
        assert code == 1, output
        assert "declares input 'image' as 1x1x1 per sample; the graph takes 1x28x28" in output


def test_bench_reports_what_onnx_runtime_refuses_as_run_does(lenet: Path, tmp_path: Path) -> None:
    """Symbolic sizes agree with any graph; bench's random 32x32 inputs then fail in ORT."""
    inputs = [{"name": "image", "shape": [1, "H", "W"], "mean": 0.1, "std": 0.3}]
    symbolic = with_metadata(lenet, tmp_path / "symbolic.onnx", inputs=inputs)
    code, output = invoke("bench", symbolic, "--batch", "1", "--rounds", "1")
    assert code == 1 and "cannot run on inputs of shape 1x32x32" in output, output


# ---- 4. stdout on a full disk ------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["compile", "--help"]])
def test_help_and_version_to_a_full_disk_are_clear_errors(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        result = netspec_cli(*args, stdout=full.fileno())
    assert result.returncode == 1, result.stderr
    assert "error: cannot write to stdout (No space left on device)" in result.stderr
    assert "Exception ignored" not in result.stderr


# ---- 5. one source for each bound --------------------------------------------------------


def test_flags_take_exactly_what_the_spec_and_the_exporter_take(tmp_path: Path) -> None:
    TrainConfig(network="n", dataset="mnist", epochs=MAX_EPOCHS, batch=MAX_TRAIN_BATCH)
    spec = SPECS / "lenet.net"
    code, output = invoke("export", spec, "-o", tmp_path / "m.onnx", "--batch", "10000")
    assert code == 2 and "from 1 to 4096" in output, output
    for flag, bound in (("--epochs", MAX_EPOCHS), ("--batch", MAX_TRAIN_BATCH)):
        code, output = invoke("train", spec, flag, str(bound + 1), "--out", tmp_path)
        assert code == 2 and flag in output, output


# ---- 8. overrides on a spec with no train section ----------------------------------------


@pytest.mark.parametrize(
    ("setting", "says"),
    [("lr=-1", "--set lr=-1: optimizer lr must be greater than 0"), ("seed=1e30", "--set seed=")],
)
def test_defaults_name_the_flag_of_a_bad_override(tmp_path: Path, setting: str, says: str) -> None:
    spec = tmp_path / "nt.net"
    spec.write_text(NO_TRAIN)
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)  # refused before the data: reading it would block
    result = CliRunner().invoke(
        train_cmd, [str(spec), "--set", setting, "--data", str(fifo), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and says in result.output, result.output
    assert "Input should" not in result.output and "Unable to parse" not in result.output


# ---- 11, 12. hints and flags that fit the command ----------------------------------------


def test_eval_and_augment_say_nothing_of_resuming_on_ctrl_c() -> None:
    assert "--resume" in train_cmd.interrupted  # type: ignore[attr-defined]
    for command in (eval_cmd, augment_cmd):
        assert "resume" not in command.interrupted  # type: ignore[attr-defined]


def test_calibrate_without_int8_is_a_usage_error(tmp_path: Path) -> None:
    np.save(tmp_path / "cal.npy", np.zeros((2, 1, 28, 28), np.float32))
    spec = SPECS / "lenet.net"
    code, output = invoke(
        "export", spec, "-o", tmp_path / "m.onnx", "--calibrate", tmp_path / "cal.npy"
    )
    assert code == 2 and "--calibrate is for --int8 only" in output, output
    assert not (tmp_path / "m.onnx").exists()


# ---- 15. the compile limits on every command that compiles -------------------------------


def test_the_limits_are_flags_of_every_command_that_compiles(tmp_path: Path) -> None:
    spec = tmp_path / "three.net"
    spec.write_text(
        "network three(image: 1x28x28) {\n"
        "    conv 4 3x3 pad=1 | relu | conv 4 3x3 pad=1 | relu | conv 4 3x3 pad=1 | relu\n"
        "    flatten | dense 10\n}\n"
    )
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)  # the limit is met while compiling, before any data is read
    for args in (
        ("export", spec, "-o", tmp_path / "m.onnx"),
        ("train", spec, "--data", fifo, "--out", tmp_path),
        ("augment", spec, "--data", fifo, "-o", tmp_path / "a.png"),
    ):
        code, output = invoke(*args, "--max-nodes", "4")
        assert code == 1 and "E403" in output and "more than 4 layers" in output, output
    code, output = invoke(
        "export", spec, "-o", tmp_path / "m.onnx", "--no-verify", "--max-nodes", "9"
    )
    assert code == 0 and (tmp_path / "m.onnx").is_file(), output
