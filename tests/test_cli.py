"""`netspec compile` from the outside: its table, its JSON, its flags and its exit codes
(0 ok, 1 a mistake in the spec, 2 a usage error), in process through click's runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import numpy as np
import pytest
from click.testing import CliRunner, Result

import netspec
from cli import main
from netspec.text import fmt_shape
from tests.conftest import interruptible

ROOT = Path(__file__).resolve().parents[1]
LENET5 = ROOT / "specs" / "lenet5.net"
LENET5_LAYERS = [
    "c1", "s2", "c3", "s4", "c5", "f6", "output",
    *(f"scaled_tanh{i}" for i in range(1, 7)),
]  # fmt: skip

SIZED = """\
const width = 8

network fcn(image: 1xHxW) {
    conv width 3x3 pad=same | relu
    avgpool global | dense 2
}
"""

TWO = """\
network small(image: 1x8x8) {
    dense 10
}

network large(image: 1x8x8) {
    dense 100 | relu | dense 10
}
"""


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the person
    return result


def compiled_json(*args: str | Path) -> dict[str, object]:
    result = invoke("compile", *args, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def sized(tmp_path: Path) -> Path:
    path = tmp_path / "fcn.net"
    path.write_text(SIZED, encoding="utf-8")
    return path


def test_table_lists_every_layer_and_the_totals() -> None:
    result = invoke("compile", LENET5)
    assert result.exit_code == 0
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert set(LENET5_LAYERS) <= rows
    assert "parameters    60,000 trainable, 840 fixed" in result.stdout
    assert result.stderr == ""


def test_json_has_layers_and_totals() -> None:
    data = compiled_json(LENET5)
    layers, totals = data["layers"], data["totals"]
    assert isinstance(layers, list) and isinstance(totals, dict)
    assert [layer["name"] for layer in layers] == [
        "c1", "scaled_tanh1", "s2", "scaled_tanh2", "c3", "scaled_tanh3", "s4",
        "scaled_tanh4", "c5", "scaled_tanh5", "f6", "scaled_tanh6", "output",
    ]  # fmt: skip
    assert {"params", "trainable_params", "macs"} <= totals.keys()
    assert totals["trainable_params"] == 60_000
    assert totals["params"] == 60_840
    assert layers[0]["shape"] == [6, 28, 28]


def test_set_overrides_a_constant(sized: Path) -> None:
    eight = compiled_json(sized, "--set", "H=16", "--set", "W=16")
    sixteen = compiled_json(sized, "--set", "H=16", "--set", "W=16", "--set", "width=16")
    assert eight["layers"][0]["shape"] == [8, 16, 16]  # type: ignore[index]
    assert sixteen["layers"][0]["shape"] == [16, 16, 16]  # type: ignore[index]
    # conv: 16 * 9 + 16; dense: 16 * 2 + 2
    assert sixteen["totals"]["trainable_params"] == 160 + 34  # type: ignore[index]


def test_set_binds_a_symbolic_size(sized: Path) -> None:
    free = compiled_json(sized)
    bound = compiled_json(sized, "--set", "H=20", "--set", "W=12")
    assert free["layers"][0]["shape"] == [8, "H", "W"]  # type: ignore[index]
    assert free["totals"]["macs"] is None  # type: ignore[index]
    assert bound["layers"][0]["shape"] == [8, 20, 12]  # type: ignore[index]
    assert bound["totals"]["macs"] >= 8 * 9 * 20 * 12  # type: ignore[index]


def test_set_unknown_name_is_a_usage_error_with_a_suggestion(sized: Path) -> None:
    result = invoke("compile", sized, "--set", "widht=4")
    assert result.exit_code == 2
    assert "no constant, symbolic size or training setting is called 'widht'" in result.stderr
    assert "did you mean 'width'?" in result.stderr


def test_network_picks_one_of_several(tmp_path: Path) -> None:
    spec = tmp_path / "two.net"
    spec.write_text(TWO, encoding="utf-8")
    assert compiled_json(spec, "--network", "large")["network"] == "large"
    assert compiled_json(spec, "-n", "small")["totals"]["trainable_params"] == 650  # type: ignore[index]
    missing = invoke("compile", spec)
    assert missing.exit_code == 2
    assert "choose one with --network NAME" in missing.stderr
    typo = invoke("compile", spec, "--network", "lage")
    assert typo.exit_code == 2
    assert "did you mean 'large'?" in typo.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("compile", tmp_path / "nowhere.net")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no such spec file")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["compile", "--bogus"],
        ["compile", str(LENET5), "--max-params", "0"],
        ["compile", str(LENET5), "--max-repeat", "many"],
        ["compile", str(LENET5), "--emit", "rust"],
        ["compile", str(LENET5), "--set", "epochs"],
        ["compile", str(LENET5), "--set", "3d=1"],
        ["compile", str(LENET5), "--network", "lenet"],
        ["compile", str(ROOT / "specs")],
        ["compile"],
        ["frobnicate"],
    ],
    ids=lambda a: " ".join(a[1:] if len(a) > 1 else a).replace(str(ROOT), ""),
)
def test_bad_flags_are_usage_errors(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "rror" in result.stderr


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        (["--set", "H=0"], 2),
        (["--set", "H=2.5"], 2),
        (["--set", "width=many"], 1),
        (["--set", "width=-3"], 1),
        (["--set", "H=1", "--set", "W=1", "--set", "width=0"], 1),
        (["--set", "epochs=3"], 0),
    ],
)
def test_odd_values_never_raise(sized: Path, flags: list[str], code: int) -> None:
    result = invoke("compile", sized, *flags)
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert netspec.__version__ in result.stdout


def test_spec_error_exits_1_with_a_located_message(tmp_path: Path) -> None:
    spec = tmp_path / "bad.net"
    spec.write_text("network n(x: 1x8x8) {\n    conv 4 3x3 | relu | maxpol 2x2\n}\n")
    result = invoke("compile", spec)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{spec}:2:25: error[E202]: unknown operation 'maxpol'" in result.stderr
    assert "did you mean 'maxpool'?" in result.stderr


HEAVY = ("torch", "numpy", "onnx", "onnxruntime", "matplotlib", "PIL", "kornia")


@pytest.mark.parametrize(
    "args",
    [["compile", "specs/lenet5.net", "--json"], ["compile", "specs/lenet5.net"], ["--help"]],
    ids=" ".join,
)
def test_compile_imports_no_heavy_library(args: list[str]) -> None:
    """In a fresh interpreter, through the real entry point: the commands are loaded lazily
    and none of them imports numpy, torch or ONNX at module level."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['netspec', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('netspec', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_library_never_imports_the_cli() -> None:
    """Importing every library package leaves netspec.cli unimported."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "netspec").rglob("*.py")
        if p.relative_to(ROOT / "netspec").parts[0] not in ("cli", "__main__.py")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert not [m for m in sys.modules if m.startswith('netspec.cli')]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_brackets_in_a_message_are_printed_as_written(sized: Path) -> None:
    """Messages go through rich: `[...]` in them must not be taken for markup."""
    result = invoke("compile", sized, "--set", "x[gpu]=1")
    assert result.exit_code == 2
    assert "'x[gpu]=1'" in result.stderr


# ---- printing: user text literally, failed output reported ---------------------------


def test_spec_text_is_printed_literally(tmp_path: Path) -> None:
    """A quoted spec line reaches the terminal as text: no escape sequences, no emoji."""
    spec = tmp_path / "esc.net"
    spec.write_text("network n(x: 1x8x8) {\n    maxpol 2x2  # \x1b[31m red :x: \x07\n}\n")
    result = invoke("compile", spec)
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "# \\x1b[31m red :x: \\x07" in result.stderr
    assert "\N{CROSS MARK}" not in result.stderr


def run_netspec(
    *args: str | Path, stdout: IO[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "netspec", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_stdout_on_a_full_disk_is_a_clear_error() -> None:
    with open("/dev/full", "w") as full:
        result = run_netspec("compile", LENET5, stdout=full)
    assert result.returncode == 1
    assert "error: cannot write to stdout (No space left on device)" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_emitted_python_names_a_unicode_path_in_ascii(tmp_path: Path) -> None:
    """--emit python escapes the spec's path in its docstring, so the module is plain ASCII
    Python that any stdout can take (a name stdout cannot print is tests/test_inputs_hostile)."""
    here = tmp_path / "ünïcode"
    here.mkdir()
    spec = here / "lenet5.net"
    spec.write_text(LENET5.read_text())
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    result = run_netspec("compile", spec, "--emit", "python", env=env)
    assert result.returncode == 0, result.stderr
    assert "\\xfcn\\xefcode" in result.stdout and result.stdout.isascii()
    compile(result.stdout, "lenet5.py", "exec")  # still valid Python


# ---- Ctrl-C ---------------------------------------------------------------------------


# Run netspec as its entry point does, printing a marker on stderr when the code of the
# file named by argv[1] starts to run (netspec/cli/__init__.py: the command line is
# loading; netspec/cli/train.py: the lazy group is loading the command).
MARKED = """\
import runpy, sys
marked = sys.argv[1]
def hook(event, args):
    if event == "exec" and getattr(args[0], "co_filename", "").endswith(marked):
        print("MARK", file=sys.stderr, flush=True)
sys.addaudithook(hook)
sys.argv = ["netspec", *sys.argv[2:]]
runpy.run_module("netspec", run_name="__main__")
"""


@pytest.mark.parametrize("marker", ["netspec/cli/__init__.py", "netspec/cli/train.py"])
def test_ctrl_c_during_start_up_exits_130(tmp_path: Path, marker: str) -> None:
    """SIGINT while the command is still starting (the command line or the command's
    module loading, then its flags, torch's import, the data): whatever it is doing
    then, it exits 130 with a message and no traceback, never click's "Aborted!" and 1."""
    data = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 255, (16, 28, 28), np.uint8), y=rng.integers(0, 10, 16))
    command = [sys.executable, "-c", MARKED, marker, "augment", str(ROOT / "specs" / "lenet.net"),
               "--data", str(data), "-o", str(tmp_path / "grid.png")]  # fmt: skip
    with subprocess.Popen(
        command, cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    ) as process:
        assert process.stderr is not None
        line = process.stderr.readline()
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        code = process.wait(timeout=120)
    assert line == "MARK\n", line + rest
    assert code == 130, rest[-2000:]
    assert "error: interrupted" in rest
    assert "Traceback" not in rest and "Aborted!" not in rest


LONG_NAMES = """\
block a_block_with_a_rather_long_name(c) {
    conv c 3x3 stride=2 as the_convolution_of_this_block | relu
}

network narrow(image: 1xHxW) {
    a_block_with_a_rather_long_name(16) as the_first_stage_of_the_network
    a_block_with_a_rather_long_name(32) as the_second_stage_of_the_network
}
"""


def _table(spec: Path, *flags: str) -> list[str]:
    env = {**os.environ, "COLUMNS": "50"}
    result = subprocess.run(
        [sys.executable, "-m", "netspec", "compile", str(spec), *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("flags", [(), ("--wide",)], ids=["narrow", "wide"])
def test_names_and_symbolic_shapes_print_whole(tmp_path: Path, flags: tuple[str, ...]) -> None:
    """In a 50-column console names are never cut mid-word and symbolic sizes print in
    parentheses; with --wide each layer is one line."""
    spec = tmp_path / "narrow.net"
    spec.write_text(LONG_NAMES, encoding="utf-8")
    compiled = netspec.compile(spec)
    lines = _table(spec, *flags)
    text = "\n".join(lines)
    assert "…" not in text
    assert "16x((H-3)//2+1)x((W-3)//2+1)" in text
    for layer in compiled.layers:
        assert layer.name in text
        if flags:
            (row,) = [line for line in lines if line.startswith(layer.name + " ")]
            assert row.split()[2] == fmt_shape(layer.shape)
