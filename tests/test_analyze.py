"""`analyze`, the entry for tools: whatever the passes reached, every diagnostic, every
comment, `use`d files from a caller's reader; and the compile functions built on it, which
raise as before. Also the dataset netspec cannot load: a warning at compile, an error at
train."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import netspec
from cli import main
from netspec.compiler import analyze, compile_text
from netspec.diagnostics import Span
from netspec.limits import Limits
from netspec.passes.load import Unreadable

ROOT = Path(__file__).resolve().parents[1]
TYPO = """\
network n(x: 1x28x28) {
    conv 6 5x5 | relu
    dense widht
}
"""
COMMENTED = """\
# a small net
const width = 8   # channels

network n(x: 1x8x8) {  # one input
    conv width 3x3 pad=same
    # a comment line the chain crosses
    | relu   # after relu
    dense 2
}
# the end"""


def test_a_mistake_in_the_network_leaves_the_program_and_a_located_error() -> None:
    a = analyze(TYPO, file="typo.net")
    assert a.items is not None and a.program is not None and a.network is not None
    assert list(a.program.networks) == ["n"] and a.values == {}
    assert a.graph is None and a.inferred is None and a.train is None
    (diag,) = a.diagnostics
    assert (diag.code, diag.severity, diag.message) == ("E201", "error", "unknown name 'widht'")
    assert diag.span == Span("typo.net", 3, 11, 3, 16)
    assert a.errors == [diag] and a.warnings == [] and a.refused is None
    assert a.sources.line("typo.net", 3) == "    dense widht"


def test_a_syntax_error_leaves_no_items_and_one_diagnostic() -> None:
    a = analyze("network n(x: 1x8x8) {\n    conv 4 3x3 |\n}\n")
    assert a.items == [] and a.program is None and a.graph is None
    (diag,) = a.diagnostics
    assert (diag.code, diag.message) == ("E002", "a chain cannot end with '|'")
    assert diag.span == Span("<string>", 2, 16, 2, 17) and a.comments == []
    assert a.sources.texts == {"<string>": "network n(x: 1x8x8) {\n    conv 4 3x3 |\n}\n"}


def test_a_clean_spec_reaches_every_pass() -> None:
    text = (ROOT / "specs" / "lenet5.net").read_text(encoding="utf-8")
    a = analyze(text, file=str(ROOT / "specs" / "lenet5.net"))
    assert a.diagnostics == [] and a.graph is not None and a.inferred is not None
    assert a.compiled().layers == netspec.compile(ROOT / "specs" / "lenet5.net").layers


def test_an_unsaved_used_file_comes_from_the_reader(tmp_path: Path) -> None:
    main_file, lib = tmp_path / "main.net", tmp_path / "lib" / "blocks.net"
    assert not lib.exists()
    asked: list[Path] = []

    def read(path: Path) -> str:
        asked.append(path)
        return "# unsaved\nblock unit(c) {\n    conv c 3x3 pad=same | relu\n}\n"

    text = 'use "lib/blocks.net"\nnetwork n(x: 1x8x8) {\n    unit(4) | dense 2\n}\n'
    a = analyze(text, file=str(main_file), read=read)
    assert asked == [lib.resolve()]
    assert a.diagnostics == [] and a.inferred is not None
    assert [layer.name for layer in a.inferred.layers] == ["unit1.conv1", "unit1.relu1", "dense1"]
    assert [(c.text, c.span.file, c.span.line) for c in a.comments] == [
        ("# unsaved", str(lib.resolve()), 1)
    ]
    assert a.sources.texts[str(lib.resolve())].startswith("# unsaved")


def test_what_a_reader_cannot_read_is_an_error_at_the_use(tmp_path: Path) -> None:
    def missing(path: Path) -> str:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    def refused(path: Path) -> str:
        raise Unreadable("E102", f"'{path.name}' is too large", "split it")

    text = 'network n(x: 1x8x8) {\n    relu\n}\nuse "gone.net"\n'
    for read, code in ((missing, "E101"), (refused, "E102"), (None, "E101")):
        a = analyze(text, file=str(tmp_path / "main.net"), read=read)
        (diag,) = a.diagnostics
        assert diag.code == code and diag.span == Span(str(tmp_path / "main.net"), 4, 1, 4, 15)
        assert a.program is None and [type(i).__name__ for i in a.items or ()] == ["Network"]
        if code == "E101":  # the disk reader (None) says what a reader's OSError says
            gone = (tmp_path / "gone.net").resolve()
            assert diag.message == f"cannot read '{gone}': No such file or directory"


def test_the_disk_reader_keeps_the_file_size_limit(tmp_path: Path) -> None:
    (tmp_path / "big.net").write_text("const a = 1\n" * 100, encoding="utf-8")
    a = analyze('use "big.net"\n', file=str(tmp_path / "m.net"), limits=Limits(max_file_bytes=64))
    (diag,) = a.diagnostics
    assert diag.code == "E102" and "the limit is 64" in diag.message
    assert diag.hint == "raise it with --max-file-bytes if it is meant to be this large"


def test_every_comment_is_kept_with_its_exact_span() -> None:
    a = analyze(COMMENTED, file="c.net")
    assert a.diagnostics == [] and a.graph is not None
    lines = COMMENTED.split("\n")
    found = [(c.text, c.span.line, c.span.col, c.span.end_col) for c in a.comments]
    assert found == [
        ("# a small net", 1, 1, 14),
        ("# channels", 2, 19, 29),
        ("# one input", 4, 24, 35),
        ("# a comment line the chain crosses", 6, 5, 39),
        ("# after relu", 7, 14, 26),
        ("# the end", 10, 1, 10),
    ]
    for c in a.comments:
        assert c.span.file == "c.net" and c.span.end_line == c.span.line
        assert lines[c.span.line - 1][c.span.col - 1 : c.span.end_col - 1] == c.text


def test_comments_of_a_crlf_file_leave_the_carriage_return_out() -> None:
    a = analyze("# one\r\nnetwork n(x: 1x8x8) {\r\n    relu  # two\r\n}\r\n")
    assert [(c.text, c.span.line, c.span.col, c.span.end_col) for c in a.comments] == [
        ("# one", 1, 1, 6),
        ("# two", 3, 11, 16),
    ]


def test_a_mistake_in_the_request_is_kept_not_raised() -> None:
    a = analyze("const k = 2\n", overrides={"k": 3})
    assert a.program is not None and a.network is None and a.diagnostics == []
    assert isinstance(a.refused, netspec.UsageError)
    assert str(a.refused) == "this spec defines no network"
    with pytest.raises(netspec.UsageError, match="defines no network"):
        a.compiled()


# ---- the compile functions, built on analyze, raise as before ---------------------------


def test_compile_text_raises_the_errors_analyze_returns() -> None:
    with pytest.raises(netspec.SpecError) as e:
        compile_text(TYPO, "typo.net")
    assert e.value.diagnostics == analyze(TYPO, file="typo.net").errors
    with pytest.raises(netspec.UsageError, match="--set nope"):
        compile_text(TYPO.replace("widht", "6"), nope=1)
    with pytest.raises(netspec.UsageError, match="no network named 'm'"):
        compile_text(TYPO.replace("widht", "6"), network="m")


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "googlenet", "yolo_digits"])
def test_compile_text_gives_what_analyze_reached(name: str) -> None:
    spec = ROOT / "specs" / f"{name}.net"
    text = spec.read_text(encoding="utf-8")
    compiled = compile_text(text, str(spec))
    a = analyze(text, file=str(spec))
    assert compiled.graph == a.graph and compiled.layers == a.compiled().layers
    assert compiled.train == a.train and compiled.warnings == a.warnings


# ---- a dataset netspec cannot load ---------------------------------------------------------

UNKNOWN_DATASET = """\
network x(image: 3x32x32) {
    conv 8 3x3 pad=same | relu | maxpool 2x2
    avgpool global | dense 10
}

train x on cifar99 {
    epochs 1
}
"""


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="netspec")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the person
    return result


def test_compile_warns_about_a_dataset_it_cannot_load(tmp_path: Path) -> None:
    spec = tmp_path / "x.net"
    spec.write_text(UNKNOWN_DATASET, encoding="utf-8")
    result = invoke("compile", spec)
    assert result.exit_code == 0, result.stderr
    assert "warning[W506]: netspec cannot load a dataset called 'cifar99'" in result.stderr
    assert "`netspec train` refuses it" in result.stderr and "note: mnist:" in result.stderr
    assert "Traceback" not in result.output


def test_train_refuses_a_dataset_it_cannot_load(tmp_path: Path) -> None:
    spec = tmp_path / "x.net"
    spec.write_text(UNKNOWN_DATASET, encoding="utf-8")
    result = invoke("train", spec, "--out", tmp_path / "runs")
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.endswith("x.net:6:12: error[E506]: netspec cannot load a dataset called 'cifar99'")
    assert "    train x on cifar99 {" in result.stderr and "note: mnist:" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
