"""docs/python.md cannot rot: its ```python examples run as one doctest, in order (a later
block uses what an earlier one made, as a reader does), in a fresh folder holding a copy
of specs/lenet.net, where the files they write land."""

from __future__ import annotations

import doctest
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.usefixtures("one_thread")


def _examples(text: str) -> list[doctest.Example]:
    """Every block's examples, each numbered by its line in the page (0-based, as doctest
    counts), so that a failure names the line of docs/python.md."""
    parser = doctest.DocTestParser()
    examples: list[doctest.Example] = []
    for block in BLOCK.finditer(text):
        first = text.count("\n", 0, block.start(1))
        for example in parser.get_examples(block[1]):
            example.lineno += first
            examples.append(example)
    return examples


def test_every_block_is_a_doctest() -> None:
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    assert all(">>> " in block for block in blocks), "a ```python block without a doctest"


def test_the_python_api_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "specs").mkdir()
    shutil.copy(ROOT / "specs" / "lenet.net", tmp_path / "specs" / "lenet.net")
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTest(
        _examples(DOC.read_text(encoding="utf-8")), {}, "python.md", str(DOC), 0, None
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    failed: list[str] = []
    results = runner.run(test, out=failed.append)
    assert results.failed == 0, "".join(failed)
    assert results.attempted == len(test.examples) >= 30
    assert (tmp_path / "lenet.onnx").is_file()


def test_the_readme_links_the_page() -> None:
    assert "(docs/python.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
