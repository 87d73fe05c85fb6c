"""The thread count a command chooses: the user's, else the cores free of other work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netspec import threads
from netspec.errors import UsageError
from netspec.threads import busy_cores, choose_threads, fit_threads, usable_cores


@pytest.mark.parametrize(
    ("cores", "busy", "want"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 2.0, 1), (2, 9.0, 1), (16, 3.2, 13), (1, 0, 1)],
)
def test_free_cores_rounded_and_at_least_one(cores: int, busy: float, want: int) -> None:
    assert fit_threads(cores, busy) == want


def test_the_users_count_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.ENV, "3")
    assert choose_threads(5).threads == 5
    assert choose_threads(5).describe() == "threads: 5 (--threads 5)"
    chosen = choose_threads()
    assert (chosen.threads, chosen.describe()) == (3, "threads: 3 (NETSPEC_THREADS=3)")


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5"])
def test_a_bad_count_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(threads.ENV, text)
    with pytest.raises(UsageError, match="NETSPEC_THREADS"):
        choose_threads()
    with pytest.raises(UsageError, match="--threads 0"):
        choose_threads(0)


def test_measured_choice_stays_within_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    chosen = choose_threads()
    assert chosen.given is None
    assert 1 <= chosen.threads <= chosen.cores == usable_cores()
    assert 0.0 <= chosen.busy <= chosen.cores
    assert chosen.describe().startswith(f"threads: {chosen.threads} (")


@pytest.mark.parametrize(
    ("cpu_max", "want"), [("50000 100000\n", 0.5), ("300000 100000\n", 3.0), ("max 100000\n", None)]
)
def test_cgroup_v2_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str, want: float | None
) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    monkeypatch.setattr(threads, "_CGROUP_V2", path)
    assert threads.cgroup_quota() == want
    if want is not None:
        assert usable_cores() <= max(1, int(-(-want // 1)))


def test_cgroup_v1_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quota, period = tmp_path / "quota", tmp_path / "period"
    quota.write_text("150000\n")
    period.write_text("100000\n")
    monkeypatch.setattr(threads, "_CGROUP_V2", tmp_path / "absent")
    monkeypatch.setattr(threads, "_CGROUP_V1", (quota, period))
    assert threads.cgroup_quota() == 1.5
    quota.write_text("-1\n")
    assert threads.cgroup_quota() is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="measures /proc/stat (Linux)")
def test_busy_processes_are_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes spinning on this machine's cores: whatever else runs, at least one
    core's worth of work is measured (a lower bound only, so load cannot break it)."""
    monkeypatch.delenv(threads.ENV, raising=False)
    cores = usable_cores()
    spin = "import sys\nprint('spinning', flush=True)\nwhile True: pass\n"
    procs = [
        subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "spinning"
        assert busy_cores(cores, sample_s=0.5) >= min(cores, 2) * 0.5
        assert choose_threads(None).threads <= max(1, cores - 1)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_doctests() -> None:
    import doctest

    assert doctest.testmod(threads).failed == 0


TINY = """network tiny(image: 1x28x28) {
    conv 4 5x5 | relu | maxpool 4x4
    dense 10
}

train tiny on mnist {
    epochs 1
    batch 32
}
"""


@pytest.mark.parametrize(
    ("flag", "env", "said", "recorded"),
    [
        (["--threads", "1"], None, "threads: 1 (--threads 1)", 1),
        ([], "1", "threads: 1 (NETSPEC_THREADS=1)", 1),
        ([], "", "threads: ", None),  # measured: whatever is free, within the cores
    ],
)
def test_train_says_and_records_its_threads(
    tmp_path: Path, flag: list[str], env: str | None, said: str, recorded: int | None
) -> None:
    """The real command: its log says the count and why; settings.json records it."""
    import json
    import os

    from tests.conftest import ROOT, write_mnist_subset

    data = write_mnist_subset(tmp_path / "data", 64, 32)
    spec = tmp_path / "tiny.net"
    spec.write_text(TINY)
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    environ.pop(threads.ENV, None)
    if env:
        environ[threads.ENV] = env
    command = ["train", spec, "--data", data, "--out", tmp_path / "runs", "--name", "t", *flag]
    result = subprocess.run(
        [sys.executable, "-m", "netspec", *map(str, command)],
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert said in result.stdout + result.stderr
    settings = json.loads((tmp_path / "runs" / "t" / "settings.json").read_text())
    chosen = settings["runtime"]["threads"]
    assert chosen == recorded if recorded is not None else 1 <= chosen <= usable_cores()


def test_the_page_runs_its_layers_on_the_threads_given(tmp_path: Path) -> None:
    """`netspec serve`'s probe: ONNX Runtime's session and torch take the count."""
    import torch

    import netspec
    from netspec.export import export_compiled
    from netspec.serve.server import open_served
    from tests.conftest import ROOT

    spec = ROOT / "specs" / "lenet.net"
    model = tmp_path / "lenet.onnx"
    export_compiled(netspec.compile(spec), model, log=lambda _: None)
    served = open_served(model, None, lambda _: None, threads=1)
    session = served.probe._runner.session  # the OnnxLayers runner's own session
    assert session.get_session_options().intra_op_num_threads == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert open_served(spec, None, lambda _: None, threads=1).probe.backend == "torch"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_serve_says_its_threads() -> None:
    """The real command: the count and why, in its log before it serves."""
    import signal

    from tests.conftest import ROOT
    from tests.test_serve import serving

    with serving(ROOT / "specs" / "lenet.net", "--threads", "1") as server:
        server.process.send_signal(signal.SIGINT)
        _, err = server.process.communicate(timeout=60)
    assert "threads: 1 (--threads 1)" in err, err
