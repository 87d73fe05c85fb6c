"""Deployment does not load PyTorch (issue 14): the commands that only read an ONNX file
import neither torch, kornia nor matplotlib, `netspec compile` none of the numeric
libraries, and a command loads its own module of netspec.cli and no other command's.

`modules_loaded(argv)` runs `python -m netspec ARGV` in a fresh interpreter, as a user
starts it, and returns every module that process imported; a row of ROWS is a command
line with `{model}`, `{png}`, `{dir}`, `{spec}`, `{detector}` and `{scene}` standing for
the files the fixtures make. A command that runs until it is stopped (a server) is given
`until=`, the text it prints once it is up: it is then interrupted as Ctrl-C would and its
modules read as it exits.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import netspec
from netspec.cli import COMMANDS
from netspec.export import export_compiled
from tests.conftest import ROOT, interruptible
from tests.test_export import QUIET, SPECS

# Run in the child: record sys.modules at exit (after the command's own exit, a Ctrl-C's
# included), then run netspec as `python -m netspec` does.
CHILD = """\
import atexit, json, runpy, sys
out = sys.argv.pop(1)
def record():
    with open(out, "w", encoding="utf-8") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(record)
sys.argv[0] = "netspec"
runpy.run_module("netspec", run_name="__main__", alter_sys=True)
"""
TIMEOUT_S = 120
DEPLOYMENT_FORBIDDEN = frozenset({"torch", "kornia", "matplotlib"})
COMPILE_FORBIDDEN = DEPLOYMENT_FORBIDDEN | {"numpy", "onnx", "onnxruntime", "PIL"}


def modules_loaded(argv: Sequence[str], until: str | None = None) -> set[str]:
    """Every module `python -m netspec ARGV` imported, read as the process exits; the
    command must succeed. With `until`, the command runs until it prints that text (on
    stdout or stderr), is then sent SIGINT, and must exit 0 or 130 (interrupted)."""
    with tempfile.TemporaryDirectory(prefix="netspec-modules-") as tmp:
        out = Path(tmp) / "modules.json"
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(out), *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=interruptible,
        ) as child:
            watchdog = threading.Timer(TIMEOUT_S, child.kill)  # a hung child fails the test
            watchdog.start()
            try:
                text = _read_until(child, until)
            finally:
                watchdog.cancel()
        allowed = (0,) if until is None else (0, 130)
        assert child.returncode in allowed, f"netspec {' '.join(argv)}: {child.returncode}\n{text}"
        loaded: list[str] = json.loads(out.read_text(encoding="utf-8"))
    return set(loaded)


def _read_until(child: subprocess.Popen[str], until: str | None) -> str:
    """The child's output to its end, interrupting it once `until` appears."""
    assert child.stdout is not None
    seen: list[str] = []
    for line in child.stdout:
        seen.append(line)
        if until is not None and until in line:
            child.send_signal(signal.SIGINT)
            until = None
    child.wait()
    return "".join(seen)


def roots(modules: set[str]) -> set[str]:
    """Top-level packages: `torch` for `torch.nn`."""
    return {m.partition(".")[0] for m in modules}


def command_modules(modules: set[str]) -> set[str]:
    """The modules of netspec.cli that hold commands (console and options are shared)."""
    homes = {target.partition(":")[0] for target in COMMANDS.values()}
    return modules & homes


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An untrained LeNet and an untrained single-shot detector exported to ONNX, one digit
    PNG, a folder of three, and a 128x128 scene."""
    tmp = tmp_path_factory.mktemp("cold")
    model = tmp / "lenet.onnx"
    export_compiled(netspec.compile(SPECS / "lenet.net"), model, **QUIET)
    detector = tmp / "yolo.onnx"
    export_compiled(netspec.compile(SPECS / "yolo_digits.net"), detector, **QUIET)
    scene = tmp / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128), np.uint8)).save(scene)
    folder = tmp / "digits"
    folder.mkdir()
    for k in range(3):
        pixels = np.zeros((28, 28), np.uint8)
        pixels[6:22, 8 + 4 * k : 12 + 4 * k] = 255
        Image.fromarray(pixels).save(folder / f"{k}.png")
    return {
        "model": str(model),
        "png": str(folder / "0.png"),
        "dir": str(folder),
        "spec": str(SPECS / "lenet.net"),
        "detector": str(detector),
        "scene": str(scene),
    }


# (command line, what it must not import, the COMMANDS entry whose module alone it loads,
#  the text it prints once it is up where it runs until stopped)
ROWS = [
    pytest.param(["run", "{model}", "{png}"], DEPLOYMENT_FORBIDDEN, "run", None, id="run one PNG"),
    pytest.param(
        ["run", "{model}", "{dir}"], DEPLOYMENT_FORBIDDEN, "run", None, id="run a directory"
    ),
    pytest.param(
        ["run", "--json", "{model}", "{png}"], DEPLOYMENT_FORBIDDEN, "run", None, id="run --json"
    ),
    pytest.param(
        ["bench", "{model}", "--batch", "1,4", "--rounds", "3"],
        DEPLOYMENT_FORBIDDEN,
        "bench",
        None,
        id="bench",
    ),
    pytest.param(
        ["bench", "{model}", "--batch", "1", "--rounds", "1000000"],
        DEPLOYMENT_FORBIDDEN,
        "bench",
        "provider:",
        id="bench interrupted while it times",
    ),
    pytest.param(["compile", "{spec}"], COMPILE_FORBIDDEN, "compile", None, id="compile"),
    pytest.param(
        ["detect", "--json", "{detector}", "{scene}"],
        DEPLOYMENT_FORBIDDEN,
        "detect",
        None,
        id="detect --json",
    ),
    pytest.param(
        ["serve", "{model}", "--port", "0"], DEPLOYMENT_FORBIDDEN, "serve", "serving", id="serve"
    ),
]


@pytest.mark.parametrize(("argv", "forbidden", "command", "until"), ROWS)
def test_command_loads_only_what_it_needs(
    files: dict[str, str],
    argv: list[str],
    forbidden: frozenset[str],
    command: str,
    until: str | None,
) -> None:
    modules = modules_loaded([a.format(**files) for a in argv], until)
    assert "netspec.cli" in modules  # the command really ran through the CLI
    assert not roots(modules) & forbidden, sorted(roots(modules) & forbidden)
    assert command_modules(modules) == {COMMANDS[command].partition(":")[0]}


def test_bench_vs_torch_does_load_torch(files: dict[str, str]) -> None:
    """The check can fail: `--vs torch` is the one deployment path that needs PyTorch."""
    argv = ["bench", files["model"], "--batch", "1", "--rounds", "3", "--vs", "torch"]
    assert "torch" in roots(modules_loaded(argv))


# The child of the light-install test: `import torch` fails as on a machine without it.
WITHOUT_TORCH = """\
import runpy, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
sys.argv[0] = "netspec"
runpy.run_module("netspec", run_name="__main__", alter_sys=True)
"""


def without_torch(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """`python -m netspec ARGV` where `import torch` fails."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_without_torch_a_command_that_needs_it_names_it(
    files: dict[str, str], tmp_path: Path
) -> None:
    """The light install (README): `compile -o` exports through torch; where torch cannot
    be imported it exits 1 naming the package, with no traceback and no file written,
    while `run` works."""
    out = tmp_path / "m.onnx"
    export = without_torch(["compile", files["spec"], "-o", str(out)])
    assert export.returncode == 1
    assert "error: this command needs the Python package 'torch'" in export.stderr
    assert "Traceback" not in export.stderr and not out.exists()
    run = without_torch(["run", files["model"], files["png"]])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(files["png"] + ": ")
