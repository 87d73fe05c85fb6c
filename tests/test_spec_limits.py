"""Hostile and clumsy spec inputs: every read bounded, every refusal a located diagnostic
(or a usage error naming the flag), never a hang, a traceback or an exhausted memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import netspec
from cli import main
from netspec.diagnostics import Diagnostic
from netspec.limits import MAX_VALUE, Limits

ROOT = Path(__file__).resolve().parents[1]
NET = "network n(x: 1x8x8) {{\n    {}\n}}\n"


def refused(source: str | Path, **kwargs: object) -> Diagnostic:
    """The first diagnostic of a spec that must fail, checked to be located."""
    with pytest.raises(netspec.SpecError) as info:
        netspec.compile(source, **kwargs)  # type: ignore[arg-type]
    diag = info.value.diagnostics[0]
    assert diag.span.line >= 1 and diag.span.col >= 1, diag
    return diag


# ---- reads are bounded -------------------------------------------------------------------


def test_use_of_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lib.net")
    spec = tmp_path / "main.net"
    spec.write_text('use "lib.net"\n' + NET.format("relu"), encoding="utf-8")
    # A subprocess, so that a regression fails on the timeout instead of hanging the suite.
    run = subprocess.run(
        [sys.executable, "-m", "cli", "compile", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 1, run.stderr
    assert "error[E101]: cannot read" in run.stderr
    assert "it is a FIFO, not a regular file" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_fifo_as_the_spec_itself_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "spec.net")
    diag = refused(tmp_path / "spec.net")
    assert diag.code == "E101" and "a FIFO" in diag.message


def test_use_of_dev_zero_reads_nothing_unbounded(tmp_path: Path) -> None:
    spec = tmp_path / "main.net"
    spec.write_text('use "/dev/zero"\n' + NET.format("relu"), encoding="utf-8")
    diag = refused(spec, allow_outside=True)
    assert diag.code == "E101" and "character device" in diag.message
    assert (diag.span.line, diag.span.col) == (1, 1)


def test_use_of_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    spec = tmp_path / "main.net"
    spec.write_text('use "lib"\n' + NET.format("relu"), encoding="utf-8")
    diag = refused(spec)
    assert diag.code == "E101" and "a directory" in diag.message


def test_the_byte_limit_counts_what_is_read(tmp_path: Path) -> None:
    (tmp_path / "lib.net").write_text("const a = 1\n" * 20, encoding="utf-8")
    spec = tmp_path / "main.net"
    spec.write_text('use "lib.net"\n' + NET.format("relu"), encoding="utf-8")
    diag = refused(spec, limits=Limits(max_file_bytes=100))
    assert diag.code == "E102" and "is 240 bytes; the limit is 100" in diag.message


def test_the_byte_limit_holds_for_a_file_that_claims_to_be_empty(tmp_path: Path) -> None:
    """/proc files are regular files that say they hold 0 bytes."""
    if not Path("/proc/self/maps").is_file():
        pytest.skip("no /proc here")
    spec = tmp_path / "main.net"
    spec.write_text('use "/proc/self/maps"\n' + NET.format("relu"), encoding="utf-8")
    diag = refused(spec, allow_outside=True, limits=Limits(max_file_bytes=200))
    assert diag.code == "E102" and "more than the limit of 200 bytes" in diag.message
    assert diag.span.line == 1  # at the `use`


# ---- work is bounded before it is done ---------------------------------------------------


def test_a_one_mib_spec_is_refused_by_the_token_limit() -> None:
    text = NET.format("\n    ".join(["relu"] * 116_000))
    assert len(text) > 1_000_000
    diag = refused(text)
    assert diag.code == "E406" and "more than 100,000 tokens" in diag.message
    assert diag.span.line == 99_994  # the first token past the limit (line 1 has 8)


@pytest.mark.parametrize("depth", [51, 161, 5000])
def test_deeply_nested_groups_are_refused(depth: int) -> None:
    text = NET.format("concat {\n" * depth + "relu\n" + "}\n" * depth)
    diag = refused(text)
    assert diag.code == "E407" and "more than 50 levels" in diag.message
    assert diag.span.line == 52


def test_nesting_at_the_limit_compiles() -> None:
    """The deepest nesting allowed goes through every pass, recursive ones included."""
    depth = Limits().max_nesting
    compiled = netspec.compile(NET.format("concat {\nrelu\n" * depth + "relu\n" + "}\n" * depth))
    assert compiled.totals.layers == 2 * depth + 1


def test_a_long_sum_is_refused_as_nesting() -> None:
    diag = refused(NET.format("conv " + " + ".join(["1"] * 3000) + " 1x1"))
    assert diag.code == "E407"


# ---- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "words"),
    [("9" * 5000, "5000 digits"), ("1" * 19, "19 digits"), ("1e999", "too large")],
)
def test_huge_literals_are_refused_where_written(literal: str, words: str) -> None:
    diag = refused(f"const a = {literal}\n" + NET.format("conv a 3x3"))
    assert diag.code == "E005" and words in diag.message
    assert (diag.span.line, diag.span.col) == (1, 11)


def test_a_huge_size_literal_is_refused() -> None:
    diag = refused(NET.format(f"conv 4 {'3' * 40}x3"))
    assert diag.code == "E005"


def test_arithmetic_that_explodes_is_refused() -> None:
    text = "const a = 999999999 * 999999999 * 999999999\n" + NET.format("conv a 3x3")
    diag = refused(text)
    assert diag.code == "E208" and diag.span.line == 1


@pytest.mark.parametrize("key", ["stride", "pad", "dilation"])
def test_values_over_32_bits_are_refused(key: str) -> None:
    diag = refused(NET.format(f"conv 4 3x3 {key}=1000000000000"))
    assert diag.code == "E226" and f"at most {MAX_VALUE:,}" in diag.message


def test_a_receptive_field_too_large_to_compute_is_refused() -> None:
    diag = refused(NET.format(f"repeat 40 conv 1 1x1 stride={MAX_VALUE}"))
    assert diag.code == "E304" and "receptive field" in diag.message


@pytest.mark.parametrize("key", ["stride=", "pad=", "repeat "])
@pytest.mark.parametrize("factor", [10**3, 10**12, 10**200])
def test_resnet50_with_huge_values_fails_cleanly(key: str, factor: int) -> None:
    import re

    text = (ROOT / "specs" / "resnet50.net").read_text(encoding="utf-8")
    text = re.sub(re.escape(key) + r"(\d+)", lambda m: key + str(int(m[1]) * factor), text)
    try:
        netspec.compile(text, limits=Limits(max_nodes=3000))
    except netspec.SpecError as e:
        assert all(d.span.line >= 1 for d in e.diagnostics)


# ---- definitions ---------------------------------------------------------------------------


def test_a_kernel_divided_by_zero_is_refused_at_the_zero() -> None:
    diag = refused("kernel k = [1 2; 3 4] / 0\n" + NET.format("conv fixed=[k]"))
    assert diag.code == "E204" and (diag.span.line, diag.span.col) == (1, 25)


def test_a_kernel_divisor_still_divides() -> None:
    compiled = netspec.compile("kernel k = [1 1; 1 1] / 4\n" + NET.format("conv fixed=[k]"))
    assert compiled.totals.fixed_params == 4


@pytest.mark.parametrize("shape", ["0x8x8", "1x0x8", "0", "1.5", f"1x{MAX_VALUE + 1}x8"])
def test_an_input_size_under_one_or_over_32_bits_is_refused(shape: str) -> None:
    diag = refused(f"network n(x: {shape}) {{\n    relu\n}}\n")
    assert diag.code == "E109" and diag.span.line == 1


# ---- command-line values -------------------------------------------------------------------


def test_a_bad_set_value_is_a_usage_error_naming_the_flag() -> None:
    result = CliRunner().invoke(main, ["compile", str(ROOT / "specs/lenet.net"), "--set", "lr=-1"])
    assert result.exit_code == 2, result.output
    assert "error: --set lr=-1: optimizer lr must be greater than 0" in result.stderr
    assert "lenet.net:" not in result.stderr  # no caret on the spec's own lr=0.05


def test_a_bad_set_value_in_the_api_raises_usage_error() -> None:
    with pytest.raises(netspec.UsageError, match=r"--set epochs=0: epochs must be"):
        netspec.compile(ROOT / "specs/lenet.net", epochs=0)


@pytest.mark.parametrize("value", [0, MAX_VALUE + 1])
def test_a_symbolic_size_out_of_range_is_a_usage_error(value: int) -> None:
    with pytest.raises(netspec.UsageError, match=r"--set H="):
        netspec.compile("network n(x: 1xHxW) {\n    relu\n}\n", H=value, W=8)


@pytest.mark.parametrize("setting", ["lr=inf", "momentum=nan", "clip=-inf"])
def test_a_non_finite_training_value_is_a_usage_error(setting: str) -> None:
    result = CliRunner().invoke(main, ["compile", str(ROOT / "specs/lenet.net"), "--set", setting])
    assert result.exit_code == 2, result.output
    assert f"error: --set {setting}: " in result.stderr
