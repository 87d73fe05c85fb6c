"""`--emit python` needs torch alone: every spec, every operation's snippet and every layer
netspec has, emitted and run in a Python that can import torch but not netspec.

That Python is this interpreter started with `-S -s` (no site-packages, no `.pth` files, so
no editable install) and `PYTHONPATH` set to a folder of links to everything in torch's
site-packages except netspec's own entries; its first act is to check that `import netspec`
fails. One such process runs every case (torch's import is most of its cost).

Weights: the emitted module built under `torch.manual_seed(0)` here and in that process has
the same state_dict (checked by per-tensor checksums), and here the same state_dict is loaded
into `to_torch(compiled)`, after its buffers (running statistics, prototypes, fixed kernels)
are checked equal to the emitted module's own. Outputs on one batch agree within 1e-5 of the
output's scale.

Sizes: a spec runs at its declared size if that costs at most `FULL_SIZE_MACS` (the LeNets,
the siamese and local nets, ...); a heavier one (AlexNet, VGG, the ResNets, ...) has its
input resized to the smallest multiple of 4 from 32 up at which it compiles: the same layers,
so the same emitted code, at a fraction of the cost. Symbolic sizes (`filters.net`'s H and W)
are set to 16, as `--set H=16` would. A heavy spec that compiles at its declared size only
(U-Net's fixed crops) is built and checked weight for weight there but not run forward: its
operations run forward in their OP_SNIPPETS cases.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import subprocess
import symtable
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import netspec
from netspec.compiler import Compiled
from netspec.errors import NetspecError
from netspec.lower import layers, to_torch
from netspec.lower.emit import emit_python
from netspec.lower.init import init_weights
from netspec.lower.sources import Sources, import_lines
from tests.test_emit import BRANCHES, TWO_OUTPUTS, _load
from tests.test_lower import OP_SNIPPETS, spec

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
FULL_SIZE_MACS = 100_000_000
SMALLEST = 32
SYMBOL_SIZE = 16

# Runs in the torch-only process: argv[1] is the folder with cases.json; writes results.pt.
RUNNER = """
import importlib.util, json, sys, traceback
import torch

def checksum(t):
    t = t.detach().double().flatten()
    return [float(t.sum()), float((t * torch.arange(1, t.numel() + 1)).sum())]

def run(case):
    spec = importlib.util.spec_from_file_location(case["module"], case["file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if case["cls"] is None:
        return sorted(vars(module))
    torch.manual_seed(0)
    model = getattr(module, case["cls"])().eval()
    state = model.state_dict()
    sums = [checksum(v) for v in state.values()]
    if case["inputs"] is None:
        return {"keys": list(state), "sums": sums, "outputs": None}
    with torch.no_grad():
        out = model(*torch.load(case["inputs"]))
    outputs = list(out) if isinstance(out, tuple) else [out]
    return {"keys": list(state), "sums": sums, "outputs": outputs}

folder = sys.argv[1]
try:
    import netspec
except ImportError:
    found = None
else:
    found = repr(netspec)
torch.set_num_threads(1)
results = {"netspec": found}
for case in json.loads(open(folder + "/cases.json").read()):
    try:
        results[case["module"]] = run(case)
    except Exception:
        results[case["module"]] = traceback.format_exc()
torch.save(results, folder + "/results.pt")
"""


def _resized(text: str, size: int) -> str:
    """`text` with every image input of its network declared `size`x`size` (channels kept)."""
    head = re.search(r"network\s+\w+\s*\(([^)]*)\)", text)
    assert head is not None
    inputs = re.sub(r"(\d+)x\d+x\d+", rf"\1x{size}x{size}", head.group(1))
    return text[: head.start(1)] + inputs + text[head.end(1) :]


def _compiled_spec(path: Path) -> tuple[Compiled, bool]:
    """The spec at its declared size if that is cheap, else at the smallest size that compiles;
    and whether to run it forward (not if it is heavy and compiles at its declared size only)."""
    compiled = netspec.compile(path)
    symbols = {d for i in compiled.graph.inputs for d in i.shape if isinstance(d, str)}
    if symbols:
        return netspec.compile(path, **dict.fromkeys(symbols, SYMBOL_SIZE)), True
    if (compiled.totals.macs or 0) <= FULL_SIZE_MACS:
        return compiled, True
    text = path.read_text(encoding="utf-8")
    declared = max(int(d) for i in compiled.graph.inputs for d in i.shape)
    for size in range(SMALLEST, declared, 4):
        small = _resized(text, size)
        if small == text:
            break  # no input declared CxHxW: nothing to resize
        try:
            return netspec.compile(small), True
        except NetspecError:
            continue
    return compiled, False


CASES: dict[str, Any] = {f"spec_{p.stem}": p for p in sorted(SPECS.glob("*.net"))}
CASES |= {f"op_{op}": OP_SNIPPETS[op] for op in sorted(OP_SNIPPETS)}
CASES |= {"branches": BRANCHES, "two_outputs": TWO_OUTPUTS}


def _compiled(source: Any) -> tuple[Compiled, bool]:
    if isinstance(source, Path):
        return _compiled_spec(source)
    return (netspec.compile(source) if "network" in source else spec(source)), True


def _torch_only_path(tmp: Path) -> Path:
    """A folder of links to what torch's site-packages holds, netspec's entries left out."""
    site = Path(torch.__file__).resolve().parent.parent
    farm = tmp / "site"
    farm.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("netspec", "_editable_impl_netspec", "__editable__")):
            continue
        if entry.suffix != ".pth":
            (farm / entry.name).symlink_to(entry)
    return farm


def _torch_only(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -S -s ARGS` with torch importable and netspec not, from an empty folder."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(_torch_only_path(tmp))}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    return subprocess.run(
        [sys.executable, "-S", "-s", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@dataclass
class _Case:
    """What this process computed for one case, to compare with the torch-only process."""

    want: list[torch.Tensor] | None  # None: built there, not run (too heavy at its only size)
    sums: list[list[float]]
    keys: list[str]
    imports: set[str]  # the top-level packages the emitted file imports


def _checksum(t: torch.Tensor) -> list[float]:
    t = t.detach().double().flatten()
    return [float(t.sum()), float((t * torch.arange(1, t.numel() + 1)).sum())]


def _imported(source: str) -> set[str]:
    tree = ast.parse(source)
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    return {name.split(".")[0] for name in names}


def _prepare(name: str, source: Any, folder: Path) -> tuple[_Case, dict[str, Any]]:
    """Emit the case, build it here, load its weights into to_torch's module, run both."""
    compiled, run = _compiled(source)
    text = emit_python(compiled)
    (folder / f"{name}.py").write_text(text, encoding="utf-8")
    torch.manual_seed(0)
    emitted = _load(text)().eval()
    state = emitted.state_dict()
    reference = to_torch(compiled).eval()
    own = reference.state_dict()
    assert list(own) == list(state)
    params = {k for k, _ in reference.named_parameters()}
    for key in own.keys() - params:
        assert torch.equal(own[key], state[key]), f"buffer {key} differs"
    sums = [_checksum(v) for v in state.values()]
    job = {"module": name, "file": f"{name}.py", "cls": type(emitted).__name__, "inputs": None}
    case = _Case(None, sums, list(state), _imported(text))
    if not run:
        return case, job
    reference.load_state_dict(state)
    generator = torch.Generator().manual_seed(1)
    shapes = [tuple(int(d) for d in i.shape) for i in compiled.graph.inputs]
    inputs = [torch.randn(2, *s, generator=generator) for s in shapes]
    torch.save(inputs, folder / f"{name}.inputs.pt")
    with torch.no_grad():
        out = reference(*inputs)
    case.want = list(out) if isinstance(out, tuple) else [out]
    return case, job | {"inputs": f"{name}.inputs.pt"}


def _every_layer() -> tuple[str, list[str]]:
    """A file carrying every public class and function of netspec.lower.layers, and init=."""
    wanted = [
        obj
        for name, obj in vars(layers).items()
        if getattr(obj, "__module__", None) == layers.__name__
        and callable(obj)
        and not name.startswith("_")
    ]
    sources = Sources()
    names = [sources.need(obj) for obj in [*wanted, init_weights]]
    blocks = [text for _, text in sources.blocks]
    body = "\n\n\n".join(["\n".join(import_lines(sources.imports.values())), *blocks])
    return "from __future__ import annotations\n\n" + body + "\n", names


def _unbound_globals(source: str) -> set[str]:
    """Names the code reads as globals that it neither defines, imports nor has as builtins."""
    top = symtable.symtable(source, "<carried>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    missing: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        tables += table.get_children()
        for s in table.get_symbols():
            if s.is_global() and s.is_referenced() and s.get_name() not in bound:
                missing.add(s.get_name())
    return missing - set(dir(builtins))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case prepared here, then run at once in one torch-only process."""
    folder = tmp_path_factory.mktemp("standalone")
    cases, jobs, failed = {}, [], {}
    for name, source in CASES.items():
        try:
            cases[name], job = _prepare(name, source, folder)
        except Exception as error:  # reported by that case's own test
            failed[name] = error
            continue
        jobs.append(job)
    try:
        every: tuple[str, list[str]] | Exception = _every_layer()
    except ValueError as error:  # a layer that cannot be carried: reported by its test
        every = error
    else:
        (folder / "every_layer.py").write_text(every[0], encoding="utf-8")
        jobs.append({"module": "every_layer", "file": "every_layer.py", "cls": None})
    for job in jobs:
        job["file"] = str(folder / job["file"])
        if job.get("inputs"):
            job["inputs"] = str(folder / job["inputs"])
    (folder / "cases.json").write_text(json.dumps(jobs), encoding="utf-8")
    (folder / "runner.py").write_text(RUNNER, encoding="utf-8")
    done = _torch_only(folder, str(folder / "runner.py"), str(folder))
    assert done.returncode == 0, done.stderr
    results = torch.load(folder / "results.pt")
    return {"cases": cases, "failed": failed, "results": results, "every": every}


def test_netspec_is_not_importable_there(runs: dict[str, Any]) -> None:
    assert runs["results"]["netspec"] is None, runs["results"]["netspec"]


@pytest.mark.parametrize("name", list(CASES))
def test_emitted_module_runs_with_torch_alone(name: str, runs: dict[str, Any]) -> None:
    if name in runs["failed"]:
        raise runs["failed"][name]
    case: _Case = runs["cases"][name]
    got = runs["results"][name]
    assert case.imports - set(sys.stdlib_module_names) <= {"torch"}
    assert not isinstance(got, str), got  # a traceback from the torch-only process
    assert got["keys"] == case.keys
    assert got["sums"] == case.sums, "the emitted module built other weights there"
    if case.want is None:  # heavy, and compiles at its declared size only: built, not run
        return
    assert len(got["outputs"]) == len(case.want)
    for g, w in zip(got["outputs"], case.want, strict=True):
        assert torch.isfinite(w).all()
        scale = float(w.abs().max()) or 1.0
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * scale)


def test_every_layer_of_netspec_is_carried_standalone(runs: dict[str, Any]) -> None:
    if isinstance(runs["every"], Exception):
        raise runs["every"]
    source, names = runs["every"]
    ast.parse(source)
    assert _unbound_globals(source) == set()
    defined = runs["results"]["every_layer"]
    assert not isinstance(defined, str), defined
    assert set(names) <= set(defined)


def test_emitted_file_runs_as_a_script_with_torch_alone(tmp_path: Path) -> None:
    path = tmp_path / "lenet5.py"
    path.write_text(emit_python(netspec.compile(SPECS / "lenet5.net")), encoding="utf-8")
    done = _torch_only(tmp_path, str(path))
    assert done.returncode == 0, done.stderr
    assert "tensor(" in done.stdout


def test_a_network_named_like_a_carried_layer_keeps_both() -> None:
    clash = emit_python(netspec.compile("network subsample2d(x: 6x8x8) {\n  subsample 2x2\n}"))
    assert "class Subsample2d(nn.Module):" in clash
    assert "class Subsample2dNet(nn.Module):" in clash
    assert _load(clash).__name__ == "Subsample2dNet"


RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed beside this Python")
@pytest.mark.parametrize("name", ["lenet5", "filters", "local"])
def test_emitted_file_passes_ruff_check(name: str, tmp_path: Path) -> None:
    """Carried code and all: pyflakes-clean (no undefined, unused or redefined names) and
    isort-clean (the imports merged from every carried module, sorted)."""
    path = tmp_path / f"{name}.py"
    path.write_text(emit_python(netspec.compile(SPECS / f"{name}.net")), encoding="utf-8")
    args = ["check", "--isolated", "--line-length", "100", "--select", "F,I", str(path)]
    done = subprocess.run([str(RUFF), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_only_what_the_network_uses_is_carried() -> None:
    """A merge written inline (`x + y`) carries no module; a net of PyTorch's layers, nothing
    (but the `init=` helpers if it asks for them)."""
    branches = emit_python(netspec.compile(BRANCHES))
    assert "class Add(" not in branches and "class Concat(" not in branches
    assert "def init_weights(" in branches  # `dense 10 init=kaiming`
    resnet = emit_python(netspec.compile(SPECS / "resnet18.net"))
    assert "# ---- from netspec" not in resnet and "defined below" not in resnet
