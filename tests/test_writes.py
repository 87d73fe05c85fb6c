"""What `-o` does to what is already at the path (netspec/fileio.py): a regular file is
replaced atomically, keeping its mode; a symlink is followed and stays a link; a character
device or a FIFO is written in place and stays what it was; a dangling link, a directory,
a block device and a socket are refused with a clear error (exit 1, no traceback).

The device nodes are twins of /dev/null and /dev/full made in a temp directory (root only;
under CI=true a failure to make one fails the test instead of skipping it).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

import netspec
from netspec.errors import OutputError
from netspec.export import export_compiled
from netspec.fileio import (
    TMP_SUFFIX,
    atomic_path,
    output_target,
    write_atomic,
    write_bytes,
    write_text,
)

ROOT = Path(__file__).resolve().parents[1]
LENET5 = ROOT / "specs" / "lenet5.net"
NULL, FULL = 3, 7  # minor numbers of /dev/null and /dev/full (major 1)
MAP_SPEC = "network m(image: 1x8x8) {\n    conv 1 3x3 pad=same\n}\n"  # a map: `run` saves it


def char_device(path: Path, minor: int) -> Path:
    """A character device at ``path`` that is /dev/null's or /dev/full's twin."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except PermissionError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("making a device node needs root")
    return path


def is_device(path: Path, minor: int) -> bool:
    info = os.lstat(path)
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, minor)


class FifoReader:
    """A FIFO at ``path`` and a thread reading everything written into it."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:  # waits for a writer
            self.data = f.read()

    def received(self, timeout: float = 120) -> bytes:
        """What was written; if nothing opened the FIFO in ``timeout`` seconds, b""."""
        self.thread.join(timeout)
        if self.thread.is_alive():  # no writer came: open one ourselves, to end the read
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self.thread.join(timeout)
        return self.data


def netspec_cli(*args: str | Path, mask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process with umask ``mask``; never a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "netspec", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        umask=mask,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def leftovers(*directories: Path) -> list[Path]:
    return [p for d in directories for p in d.iterdir() if p.name.endswith(TMP_SUFFIX)]


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second directory, for the files that links point to."""
    return tmp_path_factory.mktemp("elsewhere")


@pytest.fixture(scope="module")
def map_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ONNX model whose output is a map, and an input: `netspec run MODEL X --out DIR`
    writes DIR/x.conv1.npy and DIR/x.conv1.png, a cheap writer of files in a directory."""
    root = tmp_path_factory.mktemp("map")
    model, sample = root / "m.onnx", root / "x.npy"
    export_compiled(netspec.compile_text(MAP_SPEC), model, log=lambda _: None)
    np.save(sample, np.zeros((1, 8, 8), np.float32))
    return model, sample


def run_map(model: tuple[Path, Path], out: Path) -> subprocess.CompletedProcess[str]:
    return netspec_cli("run", model[0], model[1], "--out", out)


# ---- the writer itself -------------------------------------------------------------------


@pytest.fixture
def mask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("mask")
def test_a_new_file_honours_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path: Path) -> None:
    os.umask(0o027)
    write_bytes(tmp_path / "new", b"x")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640
    old = tmp_path / "old"
    old.write_text("old")
    old.chmod(0o600)
    os.umask(0o002)
    write_text(old, "new")
    assert old.read_text() == "new" and stat.S_IMODE(old.stat().st_mode) == 0o600
    old.chmod(0o755)
    write_atomic(old, lambda tmp: tmp.write_text("newer"))
    assert old.read_text() == "newer" and stat.S_IMODE(old.stat().st_mode) == 0o755
    assert leftovers(tmp_path) == []


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path, elsewhere: Path) -> None:
    target = elsewhere / "real.txt"
    target.write_text("old")
    target.chmod(0o600)
    link, chain = tmp_path / "link", tmp_path / "chain"
    link.symlink_to(target)
    chain.symlink_to("link")  # relative, and a link to a link
    write_text(link, "one")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "one" and stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(chain, lambda tmp: tmp.write_bytes(b"two"))
    assert chain.is_symlink() and os.readlink(chain) == "link" and link.is_symlink()
    assert target.read_bytes() == b"two"
    assert output_target(chain).path == target
    assert leftovers(tmp_path, elsewhere) == []


def test_a_dangling_symlink_is_refused(tmp_path: Path, elsewhere: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(elsewhere / "missing.onnx")
    with pytest.raises(OutputError, match=r"link: it is a symlink to .*missing\.onnx, which"):
        write_bytes(link, b"x")
    with pytest.raises(OutputError, match="does not exist"):
        write_atomic(link, lambda tmp: tmp.write_bytes(b"x"))
    assert link.is_symlink() and not (elsewhere / "missing.onnx").exists()
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    with pytest.raises(OutputError, match=r"loop: Too many levels of symbolic links"):
        write_text(loop, "x")
    assert loop.is_symlink()


def test_a_directory_a_socket_and_a_block_device_are_refused(
    tmp_path: Path, elsewhere: Path
) -> None:
    (tmp_path / "to-dir").symlink_to(elsewhere)
    with pytest.raises(OutputError, match=r"elsewhere\d*: it is a directory, not a file"):
        write_bytes(elsewhere, b"x")
    with pytest.raises(OutputError, match=r"to-dir: it is a symlink to a directory"):
        write_text(tmp_path / "to-dir", "x")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        with pytest.raises(OutputError, match=r"sock: it is a socket"):
            write_atomic(tmp_path / "sock", lambda tmp: tmp.write_bytes(b"x"))
        assert stat.S_ISSOCK(os.lstat(tmp_path / "sock").st_mode)
    try:
        os.mknod(tmp_path / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    except PermissionError:
        return
    with pytest.raises(OutputError, match=r"blk: it is a block device"):
        write_bytes(tmp_path / "blk", b"x")
    assert stat.S_ISBLK(os.lstat(tmp_path / "blk").st_mode)
    assert leftovers(tmp_path, elsewhere) == []


def test_a_character_device_is_written_in_place(tmp_path: Path) -> None:
    null, full = char_device(tmp_path / "null", NULL), char_device(tmp_path / "full", FULL)
    write_bytes(null, b"x" * 100_000)
    write_atomic(null, lambda tmp: tmp.write_bytes(b"y"))
    assert is_device(null, NULL)
    with pytest.raises(OutputError, match=r"full: No space left on device"):
        write_text(full, "x")
    with (
        pytest.raises(OutputError, match=r"full: No space left on device"),
        atomic_path(full) as tmp,
    ):
        tmp.write_bytes(b"x")
    assert is_device(full, FULL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]


def test_a_fifo_gets_the_bytes_and_stays_a_fifo(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)  # more than a pipe holds, and several chunks
    reader = FifoReader(tmp_path / "direct")
    write_bytes(reader.path, big)
    assert reader.received() == big
    reader = FifoReader(tmp_path / "spooled")
    write_atomic(reader.path, lambda tmp: tmp.write_bytes(big[:1000]))
    assert reader.received() == big[:1000]
    assert all(stat.S_ISFIFO(os.lstat(p).st_mode) for p in tmp_path.iterdir())
    assert len(list(tmp_path.iterdir())) == 2


def test_a_failed_writer_never_opens_the_fifo(tmp_path: Path) -> None:
    """Opening a FIFO with no reader would wait forever: a writer that fails must not."""
    os.mkfifo(tmp_path / "fifo")
    errors: list[Exception] = []

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    def attempt() -> None:
        try:
            write_atomic(tmp_path / "fifo", fail)
        except OutputError as e:
            errors.append(e)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():  # it opened the FIFO and waits on a reader: let it go, then fail
        os.close(os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK))
    assert not thread.is_alive() and "fifo: disk full" in str(errors[0])


# ---- the command line --------------------------------------------------------------------


def test_compile_o_into_a_null_device(tmp_path: Path, map_model: tuple[Path, Path]) -> None:
    null = char_device(tmp_path / "null.onnx", NULL)
    result = netspec_cli("compile", LENET5, "-o", null)
    assert result.returncode == 0, result.stderr
    assert is_device(null, NULL) and leftovers(tmp_path) == []
    out = tmp_path / "out"
    out.mkdir()
    char_device(out / "x.conv1.npy", NULL)
    result = run_map(map_model, out)
    assert result.returncode == 0, result.stderr
    assert is_device(out / "x.conv1.npy", NULL) and (out / "x.conv1.png").is_file()


def test_compile_o_into_a_full_device_is_a_clear_error(
    tmp_path: Path, map_model: tuple[Path, Path]
) -> None:
    full = char_device(tmp_path / "full.onnx", FULL)
    result = netspec_cli("compile", LENET5, "-o", full)
    assert result.returncode == 1, result.stderr
    assert f"error: cannot write {full}: No space left on device" in result.stderr
    assert is_device(full, FULL) and leftovers(tmp_path) == []
    char_device(tmp_path / "x.conv1.npy", FULL)
    result = run_map(map_model, tmp_path)
    assert result.returncode == 1 and "x.conv1.npy: No space left on device" in result.stderr


def test_compile_o_into_a_fifo(tmp_path: Path, map_model: tuple[Path, Path]) -> None:
    reader = FifoReader(tmp_path / "model.onnx")
    result = netspec_cli("compile", LENET5, "-o", reader.path)
    assert result.returncode == 0, result.stderr
    model = onnx.load_from_string(reader.received())
    onnx.checker.check_model(model)
    assert model.graph.name == "lenet5"
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode) and leftovers(tmp_path) == []
    reader = FifoReader(tmp_path / "x.conv1.npy")
    result = run_map(map_model, tmp_path)
    assert result.returncode == 0, result.stderr
    assert reader.received().startswith(b"\x93NUMPY")
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode)


def test_compile_o_through_a_symlink(
    tmp_path: Path, elsewhere: Path, map_model: tuple[Path, Path]
) -> None:
    target, link = elsewhere / "real.onnx", tmp_path / "link.onnx"
    target.write_text("old")
    target.chmod(0o604)
    link.symlink_to(target)
    result = netspec_cli("compile", LENET5, "-o", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    onnx.checker.check_model(onnx.load(str(target)))
    assert stat.S_IMODE(target.stat().st_mode) == 0o604
    (tmp_path / "x.conv1.npy").symlink_to(elsewhere / "saved.npy")
    (elsewhere / "saved.npy").write_bytes(b"old")
    result = run_map(map_model, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.conv1.npy").is_symlink()
    assert np.load(elsewhere / "saved.npy").shape == (1, 8, 8)
    assert leftovers(tmp_path, elsewhere) == []


def test_compile_o_refuses_a_dangling_symlink_and_a_directory(
    tmp_path: Path, elsewhere: Path, map_model: tuple[Path, Path]
) -> None:
    link = tmp_path / "link.onnx"
    link.symlink_to(elsewhere / "missing.onnx")
    result = netspec_cli("compile", LENET5, "-o", link)
    assert result.returncode == 1, result.stderr
    assert f"{link}: it is a symlink to {elsewhere / 'missing.onnx'}, which does not exist" in (
        result.stderr
    )
    assert "exporting" not in result.stderr  # refused before the export, not after
    assert link.is_symlink() and list(elsewhere.iterdir()) == []
    (tmp_path / "x.conv1.npy").mkdir()
    result = run_map(map_model, tmp_path)
    assert result.returncode == 1 and "x.conv1.npy: it is a directory" in result.stderr
    assert (tmp_path / "x.conv1.npy").is_dir()


def test_compile_o_honours_the_umask(tmp_path: Path, map_model: tuple[Path, Path]) -> None:
    result = netspec_cli("compile", LENET5, "-o", tmp_path / "new.onnx", mask=0o027)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "new.onnx").stat().st_mode) == 0o640
    out = tmp_path / "out"
    result = netspec_cli("run", *map_model, "--out", out, mask=0o077)
    assert result.returncode == 0, result.stderr
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o600}


def test_compile_o_dev_stdout_into_a_redirected_file(tmp_path: Path) -> None:
    """`-o /dev/stdout > out`: the shell's file is written in place (the same file, its
    table first, then the model), never replaced by a new one."""
    out = tmp_path / "out.bin"
    out.write_bytes(b"")
    before = os.stat(out).st_ino
    with out.open("ab") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "netspec", "compile", "specs/lenet5.net", "-o", "/dev/stdout"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr
    assert os.stat(out).st_ino == before
    data = out.read_bytes()
    assert data.startswith(b"network lenet5") and len(data) > 50_000
