"""A run directory is data that may have come from anywhere: it never points outside itself,
it keeps every file its spec read, it is checked against what it says it is, and damage
to any of its files is a clear error. Also: what training refuses up front, and how it
writes (the umask, a read-only or full disk, --out naming a file).

Real training on a few hundred MNIST images (synthetic digits where MNIST is not
there), real files, real mounts where allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import save_file

from netspec.cli.export import export_cmd
from netspec.cli.train import eval_cmd, train_cmd
from netspec.errors import OutputError, RunError, UsageError
from netspec.fileio import write_text
from netspec.lower import to_torch
from netspec.train.opening import open_run, read_run
from netspec.train.setup import Request
from netspec.train.sources import SpecFiles
from tests.conftest import needs_mnist, write_mnist_subset

ROOT = Path(__file__).resolve().parents[1]
LIB = """
block stage(c) {
    conv c 5x5 | relu | maxpool 2x2
}
"""
MAIN = """
use "lib/blocks.net"

network tiny(image: 1x28x28) {
    stage(4)
    dense 10
}

train tiny on mnist {
    optimizer sgd lr=0.05 momentum=0.9
    epochs 1
    batch 50
}
"""


def cli(*args: str | Path, command: object = train_cmd) -> Result:
    result = CliRunner().invoke(command, [str(a) for a in args])  # type: ignore[arg-type]
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 training and 100 test images (real MNIST, else synthetic digits: never a skip)."""
    return write_mnist_subset(tmp_path_factory.mktemp("data"), 200, 100)


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run of a spec that uses a library in a subfolder."""
    root = tmp_path_factory.mktemp("spec")
    (root / "lib").mkdir()
    (root / "lib" / "blocks.net").write_text(LIB)
    (root / "tiny.net").write_text(MAIN)
    result = cli(root / "tiny.net", "--data", data, "--out", root / "runs")
    assert result.exit_code == 0, result.output
    return root / "runs" / "tiny"


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run to damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _settings(run: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((run / "settings.json").read_text())
    return data


def _rewrite(run: Path, **fields: object) -> None:
    (run / "settings.json").write_text(json.dumps({**_settings(run), **fields}))


# ---- self-contained ---------------------------------------------------------------------


def test_a_run_keeps_every_file_its_spec_read(trained: Path) -> None:
    assert (trained / "spec" / "tiny.net").read_text() == MAIN
    assert (trained / "spec" / "lib" / "blocks.net").read_text() == LIB
    assert sorted(_settings(trained)["sources"]) == ["lib/blocks.net", "tiny.net"]  # type: ignore[arg-type]
    compiled, weights = open_run(str(trained))  # what `netspec export RUN` compiles
    assert compiled.name == "tiny" and weights == trained / "weights" / "best.safetensors"
    last = trained / "weights" / "last.safetensors"
    assert open_run(last)[1] == last
    with pytest.raises(RunError, match="no such weights file"):
        open_run(trained / "weights" / "other.safetensors")


def test_a_run_whose_spec_uses_a_library_exports(trained: Path, tmp_path: Path) -> None:
    """What `netspec export RUN` does once find_source calls open_run (issue 9: it read
    runs/L/lib.net before and failed with E101)."""
    from netspec.export.onnx_export import export_compiled
    from netspec.lower.weights import load_weights

    compiled, weights = open_run(trained)
    assert weights is not None
    module = to_torch(compiled)
    load_weights(weights, module)
    export_compiled(compiled, tmp_path / "m.onnx", weights=module, log=lambda _: None)
    assert (tmp_path / "m.onnx").is_file()


def test_resume_and_eval_read_the_kept_copy_not_the_original(run: Path, data: Path) -> None:
    original = Path(_settings(run)["spec"])  # type: ignore[arg-type]
    moved = run.parent / "moved"
    shutil.copytree(original.parent, moved)
    (original.parent / "lib" / "blocks.net").write_text("this is no longer a spec")
    try:
        assert cli(run, "--data", data, command=eval_cmd).exit_code == 0
        resumed = cli("--resume", run, "--data", data)
        assert resumed.exit_code == 0 and "resuming" in resumed.output
    finally:
        shutil.copy(moved / "lib" / "blocks.net", original.parent / "lib" / "blocks.net")


# ---- never outside itself ---------------------------------------------------------------


def test_a_crafted_legacy_run_cannot_read_outside(tmp_path: Path) -> None:
    """The issue's case: spec.net says use "passwd", settings say it lives in /etc."""
    run = tmp_path / "crafted"
    (run / "weights").mkdir(parents=True)
    (run / "spec.net").write_text('use "passwd"\nnetwork n(x: 1x4x4) { dense 2 }\n')
    (run / "settings.json").write_text(json.dumps({"spec": "/etc/x.net", "network": "n"}))
    save_file({}, str(run / "weights" / "best.safetensors"))
    result = cli(run, command=eval_cmd)
    assert result.exit_code == 1
    assert "root:" not in result.output and str(run / "passwd") in result.output


@pytest.mark.parametrize(
    "fields",
    [
        {"main": "../../../etc/passwd"},
        {"main": "/etc/passwd"},
        {"sources": {"/etc/passwd": "0" * 64, "tiny.net": "0" * 64}},
        {"sources": {"../settings.json": "0" * 64}},
    ],
    ids=["main-up", "main-absolute", "source-absolute", "source-up"],
)
def test_stored_names_never_leave_the_run(run: Path, fields: dict[str, object]) -> None:
    _rewrite(run, **fields)
    with pytest.raises(RunError, match=r"leaves the run's spec/ directory|not among"):
        read_run(run)
    result = cli("--resume", run)
    assert result.exit_code == 1 and "root:" not in result.output


def test_a_link_out_of_the_run_is_refused(run: Path) -> None:
    lib = run / "spec" / "lib" / "blocks.net"
    lib.unlink()
    lib.symlink_to("/etc/passwd")
    with pytest.raises(RunError, match="not a regular file inside the run"):
        read_run(run)


def test_reserved_override_names_are_refused(run: Path) -> None:
    _rewrite(run, overrides={"allow_outside": True})
    with pytest.raises(RunError, match="bad override name"):
        read_run(run)


# ---- checked against what it says it is -------------------------------------------------


def test_an_edited_kept_file_is_named(run: Path, data: Path) -> None:
    lib = run / "spec" / "lib" / "blocks.net"
    lib.write_text(LIB.replace("relu", "tanh"))
    for args in ((run, "--data", data), ("--resume", run, "--data", data)):
        result = cli(*args, command=eval_cmd if args[0] == run else train_cmd)
        assert result.exit_code == 1, result.output
        assert "blocks.net: changed since the run was made" in result.output
    with pytest.raises(RunError, match=r"blocks\.net: changed"):
        open_run(run)


def test_weights_of_another_spec_are_refused_naming_what_changed(run: Path, data: Path) -> None:
    """Edit a kept file and its recorded hash too: the weights still know their spec."""
    lib = run / "spec" / "lib" / "blocks.net"
    lib.write_text(LIB.replace("relu", "tanh"))
    settings = _settings(run)
    texts = {n: (run / "spec" / n).read_text() for n in settings["sources"]}  # type: ignore[attr-defined]
    files = SpecFiles("tiny.net", texts)
    _rewrite(run, sources=files.hashes(), spec_sha256=files.digest())
    with pytest.raises(RunError, match=r"trained on another spec than the run's \(lib/blocks.net"):
        open_run(run)
    result = cli(run, "--data", data, command=eval_cmd)
    assert result.exit_code == 1 and "lib/blocks.net: changed" in result.output


# ---- damaged files ----------------------------------------------------------------------


def _state(run: Path) -> Path:
    (state,) = (run / "state").iterdir()
    return state


def _foreign_state(run: Path) -> None:
    save_file({"x": torch.zeros(2)}, str(_state(run)))


DAMAGE = {
    "empty-state": (lambda r: _state(r).write_bytes(b""), "not a netspec training state"),
    "foreign-state": (_foreign_state, "not a netspec training state"),
    "binary-spec": (
        lambda r: (r / "spec" / "tiny.net").write_bytes(b"\xff\xfe\0binary"),
        "not UTF-8 text",
    ),
    "train": (lambda r: _rewrite(r, train={"epochs": "many"}), "bad 'train' settings"),
    "limit": (lambda r: _rewrite(r, limit=-3), "bad field 'limit'"),
    "network": (lambda r: _rewrite(r, network=["a"]), "bad field 'network'"),
    "threads": (lambda r: _rewrite(r, runtime={"threads": "x"}), "bad field 'runtime.threads'"),
    "many-threads": (
        lambda r: _rewrite(r, runtime={"threads": 10**6}),
        "bad field 'runtime.threads'",
    ),
    "json": (lambda r: (r / "settings.json").write_text("[1, 2"), "settings.json: cannot read"),
    "csv": (lambda r: (r / "metrics.csv").write_text("epoch\nx\n"), "not a netspec metrics"),
    "weights": (
        lambda r: (r / "weights" / "last.safetensors").write_bytes(b"junk"),
        "not a netspec weights file",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_run_files_are_clear_errors(run: Path, data: Path, case: str) -> None:
    damage, message = DAMAGE[case]
    damage(run)
    result = cli("--resume", run, "--data", data)  # a finished run still loads its checkpoint
    assert result.exit_code == 1, result.output
    assert message in result.output
    if case not in ("csv", "weights") and "state" not in case:  # eval reads the others
        result = cli(run, "--data", data, command=eval_cmd)
        assert result.exit_code == 1 and message in result.output, result.output


# ---- refused up front, stopped when it diverges -----------------------------------------


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_values_are_refused(trained: Path, value: str) -> None:
    spec = trained / "spec" / "tiny.net"
    for args in (("--lr", value), ("--set", f"lr={value}"), ("--set", f"momentum={value}")):
        result = cli(spec, *args, "--out", trained.parent / "never")
        assert result.exit_code == 2, result.output  # a bad flag value is a usage error
        assert "Traceback" not in result.output
    assert not (trained.parent / "never").exists()
    with pytest.raises(UsageError, match="finite"):
        Request(spec, overrides={"lr": float(value)})


def test_a_seed_torch_cannot_take_is_refused(trained: Path, data: Path) -> None:
    spec = trained / "spec" / "tiny.net"
    result = cli(spec, "--data", data, "--seed", str(10**23), "--out", trained.parent / "seed")
    assert result.exit_code == 2 and "--seed" in result.output, result.output


@needs_mnist  # lr=1e30 diverges on MNIST; the synthetic digits' ReLUs just die
def test_a_diverging_run_stops_naming_epoch_and_step(trained: Path, data: Path) -> None:
    spec = trained / "spec" / "tiny.net"
    result = cli(spec, "--data", data, "--lr", "1e30", "--out", trained.parent / "nan")
    assert result.exit_code == 1, result.output
    assert "epoch 1, step" in result.output and "not finite" in result.output


# ---- how files are written --------------------------------------------------------------


@pytest.fixture
def mask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("mask")
def test_written_files_honour_the_umask(trained: Path, tmp_path: Path) -> None:
    for path in (trained / "settings.json", trained / "weights" / "last.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path  # readable by others
    os.umask(0o027)
    write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    os.umask(0o022)
    write_text(str(tmp_path / "b.txt"), "x")  # str paths too
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644


def test_out_naming_a_file_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("keep me")
    result = cli(trained / "spec" / "tiny.net", "--out", file, "--epochs", "1")
    assert result.exit_code == 1 and str(file) in result.output, result.output
    assert file.read_text() == "keep me"
    with pytest.raises(OutputError, match=r"is not a directory"):
        write_text(file / "x.txt", "x")


def _mount(target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; the reason it could not be mounted, or None."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run mount: {e}"
    return None if proc.returncode == 0 else f"mount refused: {proc.stderr.strip()}"


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "mnt"
    yield target
    subprocess.run(["umount", str(target)], capture_output=True, timeout=10)


def test_a_read_only_out_is_a_clear_error(trained: Path, data: Path, mounted: Path) -> None:
    reason = _mount(mounted, "ro,size=64k")
    if reason is not None:
        print(reason)
        pytest.skip(reason)
    result = cli(trained / "spec" / "tiny.net", "--data", data, "--out", mounted / "runs")
    assert result.exit_code == 1, result.output
    assert "Read-only file system" in result.output and str(mounted) in result.output


def test_a_full_disk_is_a_clear_error_and_keeps_the_checkpoint(
    trained: Path, data: Path, mounted: Path
) -> None:
    reason = _mount(mounted, "size=64k")
    if reason is not None:
        print(reason)
        pytest.skip(reason)
    result = cli(trained / "spec" / "tiny.net", "--data", data, "--out", mounted)
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output
    for run in mounted.iterdir():  # what was committed before the disk filled is whole
        if (run / "weights" / "last.safetensors").is_file():
            open_run(run)
        assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_the_python_api_takes_str_paths(trained: Path, data: Path, tmp_path: Path) -> None:
    from netspec.data import load_idx_pair, load_mnist, read_arrays, read_idx, write_idx
    from netspec.train.run import read_metrics, weights_meta

    assert len(read_metrics(str(trained / "metrics.csv"))) == 1
    assert weights_meta(str(trained / "weights" / "best.safetensors"))["epoch"] == 1
    images = str(data / "t10k-images-idx3-ubyte.gz")
    assert read_idx(images).shape == (100, 28, 28)
    assert len(load_idx_pair(images, str(data / "t10k-labels-idx1-ubyte.gz")).labels) == 100
    assert len(load_mnist(str(data)).test_y) == 100
    assert len(read_arrays("mnist", str(data), lambda _: None).test_y) == 100
    write_idx(str(tmp_path / "x.idx"), np.zeros((2, 2), np.uint8))
    assert read_idx(tmp_path / "x.idx").shape == (2, 2)


def test_oversized_and_special_run_files_are_refused(run: Path) -> None:
    lib = run / "spec" / "lib" / "blocks.net"
    lib.write_bytes(b"#" * (2**20 + 1))
    with pytest.raises(RunError, match="over the spec size limit"):
        read_run(run)
    lib.unlink()
    os.mkfifo(lib)  # would block a plain read forever
    with pytest.raises(RunError, match="not a regular file"):
        read_run(run)
    (run / "settings.json").unlink()
    os.mkfifo(run / "settings.json")
    with pytest.raises(RunError, match=r"not a netspec run \(no settings\.json\)"):
        read_run(run)


SINGLE = """
network one(image: 1x28x28) {
    conv 4 5x5 | relu | maxpool 2x2
    dense 10
}
"""


def test_a_run_of_the_old_layout_is_opened_and_checked(tmp_path: Path, data: Path) -> None:
    """Before spec/: spec.net beside settings.json, the weights' metadata naming its SHA-256."""
    from safetensors.torch import save_model

    from netspec.compiler import compile
    from netspec.train.sources import sha256

    run = tmp_path / "old"
    (run / "weights").mkdir(parents=True)
    (run / "spec.net").write_text(SINGLE)
    train = {"network": "one", "dataset": "mnist"}
    (run / "settings.json").write_text(json.dumps({"network": "one", "train": train}))
    module = to_torch(compile(run / "spec.net"))
    meta = {"epoch": "1", "spec_sha256": sha256(SINGLE)}
    save_model(module, str(run / "weights" / "best.safetensors"), metadata=meta)
    assert cli(run, "--data", data, command=eval_cmd).exit_code == 0
    (run / "spec.net").write_text(SINGLE.replace("relu", "tanh"))
    result = cli(run, "--data", data, command=eval_cmd)
    assert result.exit_code == 1 and "trained on another spec" in result.output


# ---- what a clumsy or hostile user found after issue 9 ------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"overrides": {"epochs": -1}}, "epochs"), ({"network": "nope"}, "nope")],
    ids=["override", "network"],
)
def test_damaged_stored_settings_are_run_errors_naming_settings_json(
    run: Path, data: Path, fields: dict[str, object], named: str
) -> None:
    """A bad value stored in settings.json is damage in the run (exit 1), not a flag the
    user typed (exit 2, "--set epochs=-1")."""
    _rewrite(run, **fields)
    resume = ("--resume", run, "--data", data)
    for args, command in (((run, "--data", data), eval_cmd), (resume, train_cmd)):
        result = cli(*args, command=command)
        assert result.exit_code == 1, result.output
        assert "settings.json" in result.output and named in result.output, result.output


def test_a_stored_data_path_outside_the_cache_is_not_followed(run: Path) -> None:
    _rewrite(run, data="/etc")
    for args, command in (((run,), eval_cmd), (("--resume", run), train_cmd)):
        result = cli(*args, command=command)
        assert result.exit_code == 2, result.output
        assert "pass --data" in result.output and '--data "/etc"' in result.output
        assert not {"passwd", "hostname", "found:"} & set(result.output.split()), result.output


def test_a_stored_data_path_inside_the_cache_is_followed(
    run: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETSPEC_CACHE_DIR", str(tmp_path / "cache"))
    cached = shutil.copytree(data, tmp_path / "cache" / "datasets" / "mine")
    _rewrite(run, data=str(cached))
    result = cli(run, command=eval_cmd)
    assert result.exit_code == 0, result.output
    assert f"on {cached}" in result.output


def test_a_bad_run_name_is_refused_before_the_data_is_read(trained: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)  # reading it would block: the name must be refused first
    spec = trained / "spec" / "tiny.net"
    result = cli(spec, "--data", fifo, "--name", "../../escape", "--out", tmp_path / "runs")
    assert result.exit_code == 2 and "--name '../../escape'" in result.output, result.output
    with pytest.raises(UsageError, match="--name"):
        Request(spec, name="a/b")


def test_eval_on_other_data_keeps_the_runs_plots(run: Path, data: Path, tmp_path: Path) -> None:
    before = {n: (run / n).read_bytes() for n in ("confusion.png", "errors.png", "curves.png")}
    other = shutil.copytree(data, tmp_path / "other data")
    result = cli(run, "--data", other, command=eval_cmd)
    assert result.exit_code == 0, result.output
    assert {n: (run / n).read_bytes() for n in before} == before
    assert (run / "eval" / "other_data" / "confusion.png").is_file()
    assert str(run / "eval" / "other_data" / "errors.png") in result.output


def test_eval_refuses_nan_images(run: Path, tmp_path: Path) -> None:
    x = np.full((6, 1, 28, 28), np.nan, np.float32)
    np.savez(tmp_path / "n6.npz", x=x, y=np.arange(6))
    result = cli(run, "--data", tmp_path / "n6.npz", command=eval_cmd)
    assert result.exit_code == 1 and "NaN or infinite" in result.output, result.output
    assert "accuracy" not in result.output


def test_another_runs_weights_are_said_to_belong_to_another_spec(
    run: Path, data: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.net"
    other.write_text(MAIN.replace('use "lib/blocks.net"', LIB).replace("stage(4)", "stage(6)"))
    made = cli(other, "--data", data, "--out", tmp_path / "runs")
    assert made.exit_code == 0, made.output
    shutil.copy(tmp_path / "runs" / "tiny" / "weights" / "best.safetensors", run / "weights")
    result = cli(run, "--data", data, command=eval_cmd)
    assert result.exit_code == 1 and "trained on another spec" in result.output
    assert "belong to another spec" in result.output and "edited after" not in result.output


def test_a_legacy_runs_use_outside_it_names_no_missing_flag(tmp_path: Path) -> None:
    (tmp_path / "lib.net").write_text(LIB)
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "spec.net").write_text('use "../../lib.net"\n' + MAIN.split("\n", 2)[2])
    result = CliRunner().invoke(export_cmd, [str(run), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1, result.output
    assert "E103" in result.output and "kept inside the run" in result.output
    assert "--allow-outside" not in result.output


def test_weights_outside_a_run_are_named(trained: Path, tmp_path: Path) -> None:
    weights = shutil.copy(trained / "weights" / "best.safetensors", tmp_path / "w.safetensors")
    result = CliRunner().invoke(export_cmd, [str(weights), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1, result.output
    assert f"{weights}: not in a netspec run" in result.output
