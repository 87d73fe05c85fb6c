"""The wheel: built from the checkout, it holds only the `netspec` package (with the
grammar and the `netspec.cli` package inside it, and not the checkout's top-level
`cli.py`), and once installed it compiles a spec from any directory without the
checkout on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built_by = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built_by.returncode == 0, built_by.stdout[-2000:] + built_by.stderr[-2000:]
    (built,) = out.glob("netspec-*.whl")
    return built


def test_wheel_holds_only_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"netspec"}, sorted(tops)
    assert len(dist_info) == 1
    assert "netspec/grammar/netspec.lark" in names
    assert "netspec/cli/__init__.py" in names
    assert "netspec/cli/compile.py" in names
    assert "netspec/cli.py" not in names
    assert "netspec/__main__.py" in names
    assert "cli.py" not in names
    assert not any(n.startswith(("tests/", "specs/", "grammar/")) for n in names)
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "netspec = netspec.__main__:main" in scripts


def test_installed_wheel_compiles_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert not (target / "cli.py").exists()
    # Only the installed copy and the venv's dependencies: no checkout, no editable finder.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(target)
    code = (
        "import importlib.util, os, runpy\n"
        f"assert {str(ROOT)!r} not in [os.path.abspath(p) for p in sys.path], sys.path\n"
        "assert importlib.util.find_spec('cli') is None\n"
        "import netspec, netspec.syntax.parser as parser\n"
        f"assert netspec.__file__.startswith({str(target)!r}), netspec.__file__\n"
        "sys.argv = ['netspec', 'compile', sys.argv[1], '--json']\n"
        "runpy.run_module('netspec', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", _with_site(code), str(ROOT / "specs" / "lenet5.net")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    totals = json.loads(result.stdout)["totals"]
    assert totals["trainable_params"] == 60_000


def _with_site(code: str) -> str:
    """Start without `site` (so the editable install's .pth hook cannot put the checkout
    on the path), then add this environment's site-packages for the dependencies."""
    purelib = sysconfig.get_paths()["purelib"]
    return f"import sys\nsys.path.append({purelib!r})\n" + code
