"""Datasets are records (issue 19): each registered one says how it is fetched, verified and
read, its labels, channels, size and task; stages ask the record, never the name. And a
new dataset is one module (issue 21): Fashion-MNIST, read from Debian's files here.

Under CI=true the Debian package dataset-fashion-mnist must be installed
(.ci/system-packages installs it); elsewhere the tests that read it skip without it.
"""

from __future__ import annotations

import ast
import doctest
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import netspec
from netspec.artifact import OutputInfo
from netspec.data import DataError, read_arrays, registry, write_idx
from netspec.data import record as record_module
from netspec.data.arrays import read_test_split
from netspec.data.datasets.fashion_mnist import LABELS as FASHION_LABELS
from netspec.data.datasets.fashion_mnist import SOURCE as FASHION
from netspec.data.fetch import load_idx_files
from netspec.data.record import DIGITS, IDX_FILES, held_out
from netspec.data.registry import DATASETS, SCENE_DATASETS
from netspec.export.metadata import default_labels
from netspec.serve.digits import read_digits
from tests.conftest import ROOT
from tests.test_data import Mirror, fake_mnist, leftovers, mirror  # noqa: F401 (a fixture)

DEBIAN = Path(FASHION.system[0])
QUIET: Callable[[str], None] = lambda _: None  # noqa: E731
# Files that still compare a dataset's name, each moving to the registry's records
# (issue 19); none may be added.


@pytest.fixture(scope="module")
def debian() -> Path:
    """Debian's Fashion-MNIST folder: a CI run without it fails, others skip."""
    if not (DEBIAN / "t10k-labels-idx1-ubyte.gz").is_file():
        missing = f"no Fashion-MNIST at {DEBIAN} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}: CI installs it (.ci/system-packages)")
        pytest.skip(missing)
    return DEBIAN


# ---- the records ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_record_says_what_stages_ask(name: str) -> None:
    d = DATASETS[name]
    assert d.name == name and d.summary and d.sample and callable(d.reader)
    assert d.task in ("classes", "boxes", None)
    # class names, or a rule for them: the data names or numbers its classes (--data)
    assert d.labels or d.needs_data, name
    assert len(set(d.labels)) == len(d.labels)
    assert d.channels in (None, 1, 3)
    if d.source is not None:  # fetched: verified by a checksum of each of its four files
        assert d.source.files == IDX_FILES and d.source.mirrors and not d.needs_data
        assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in d.source.sha256)
        assert d.channels == 1 and d.size == (28, 28) and d.task == "classes"


def test_the_fetched_datasets_have_their_own_caches() -> None:
    sources = [d.source for d in DATASETS.values() if d.source is not None]
    assert len({s.cache for s in sources}) == len(sources) >= 2


def test_the_scene_datasets_are_the_records_a_scenes_setting_draws() -> None:
    assert SCENE_DATASETS == ("mnist_scenes", "mnist_windows")
    assert [n for n, d in DATASETS.items() if d.windows] == ["mnist_windows"]
    assert DATASETS["mnist_windows"].labels == (*DIGITS, "background")


def test_the_default_dataset_is_registered() -> None:
    assert registry.DEFAULT_DATASET in DATASETS
    assert registry.dataset(None) is None and registry.dataset("cifar99") is None


@pytest.mark.parametrize("module", [registry, record_module], ids=lambda m: m.__name__)
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_every_dataset_is_documented() -> None:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    table = text.split("| dataset | what it is |", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE) == list(DATASETS)


def test_no_stage_compares_a_dataset_by_name() -> None:
    """Outside netspec/data, no `dataset == "mnist"` (nor `!=`, `in`): ask the record."""
    found = []
    for path in sorted((ROOT / "netspec").rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where.startswith("netspec/data/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and _names_a_dataset(node):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def _names_a_dataset(node: ast.Compare) -> bool:
    """A comparison of something called dataset with a registered name (file kinds such as
    runtime's `kind == 'npz'` are not datasets)."""
    names = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in DATASETS}
    return bool(names) and "dataset" in ast.unparse(node)


# ---- one held-out rule ---------------------------------------------------------------------


def test_an_npz_is_split_by_one_rule_for_training_and_the_page(tmp_path: Path) -> None:
    x = np.arange(13 * 4 * 4, dtype=np.uint8).reshape(13, 4, 4)
    y = np.arange(13) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    cut = held_out(13)
    assert cut == 11
    arrays = read_arrays("npz", tmp_path / "d.npz", QUIET)
    assert np.array_equal(arrays.test_x[:, 0], x[cut:]) and len(arrays.train_x) == cut
    digits = read_digits("npz", tmp_path / "d.npz", 1)
    assert digits is not None and np.array_equal(digits.x[..., 0], x[cut:])
    assert digits.y is not None and list(digits.y) == list(y[cut:])


# ---- stages ask the record -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "width", "labels"),
    [
        ("mnist", 10, DIGITS),
        ("fashion_mnist", 10, FASHION_LABELS),
        ("mnist_windows", 11, (*DIGITS, "background")),
        ("mnist", 11, None),  # not one score per name
        ("mnist_scenes", 10, None),  # boxes, not class scores
        ("folders", 3, None),  # the folders name their classes
        (None, 10, None),
    ],
)
def test_export_labels_come_from_the_record(
    dataset: str | None, width: int, labels: tuple[str, ...] | None
) -> None:
    assert default_labels(dataset, OutputInfo("out", "logits", (width,))) == labels


def test_a_format_dataset_without_data_is_refused() -> None:
    with pytest.raises(DataError, match=r"the dataset 'folders' is read from --data: pass"):
        read_arrays("folders", None, QUIET)


def test_the_page_reads_no_test_set_for_drawn_data() -> None:
    assert read_digits("mnist_windows", None, 1) is None
    assert read_digits("npz", None, 1) is None


# ---- Fashion-MNIST -------------------------------------------------------------------------


def test_fashion_mnist_from_debian(
    debian: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETSPEC_CACHE_DIR", str(tmp_path))
    arrays = read_arrays("fashion_mnist", None, QUIET)
    assert arrays.source == str(debian) and arrays.labels == FASHION_LABELS
    assert arrays.train_x.shape == (60_000, 1, 28, 28) and arrays.test_x.shape[0] == 10_000
    assert arrays.train_y is not None and np.bincount(arrays.train_y).tolist() == [6000] * 10
    mean, std = arrays.train_x.mean() / 255, arrays.train_x.std() / 255
    assert (round(mean, 3), round(std, 3)) == (0.286, 0.353)  # specs/fashion_mnist.net's
    assert not (tmp_path / FASHION.cache).exists() or leftovers(tmp_path / FASHION.cache) == []


def test_the_page_shows_fashion_mnist_without_fetching(
    debian: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETSPEC_CACHE_DIR", str(tmp_path))
    digits = read_digits("fashion_mnist", None, 1)
    assert digits is not None and len(digits) == 10_000 and digits.source == str(debian)


def test_fashion_mnist_reads_mnist_files_given_as_data(tmp_path: Path) -> None:
    """--data DIR with MNIST's four files (the same format): read, named as garments."""
    fake_mnist(tmp_path / "mnist")
    arrays = read_arrays("fashion_mnist", tmp_path / "mnist", QUIET)
    assert arrays.train_x.shape == (6, 1, 5, 4) and arrays.labels == FASHION_LABELS
    assert arrays.source == str(tmp_path / "mnist")


def test_a_forged_download_is_refused_and_nothing_is_cached(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    served: Mirror = request.getfixturevalue("mirror")  # tests/test_data.py's loopback one
    fake_mnist(served.root)  # the right names, the wrong bytes
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        load_idx_files(FASHION, cache_dir=cache, mirrors=[served.url], system=())
    message = str(caught.value)
    assert message.startswith("could not get Fashion-MNIST: no verified train-images-idx3")
    assert f"{served.url}/t10k-labels-idx1-ubyte.gz: checksum mismatch" in message
    assert "Or install dataset-fashion-mnist, which puts them in /usr/share" in message
    assert "npm" not in message  # Fashion-MNIST has no npm package to try
    assert leftovers(cache) == [] and len(served.requests) == 4


def test_a_corrupt_cached_file_is_replaced_by_a_verified_one(tmp_path: Path) -> None:
    sums = fake_mnist(tmp_path / "system")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b junk")
    said: list[str] = []
    data = load_idx_files(
        FASHION,
        cache_dir=cache,
        mirrors=(),
        system=[str(tmp_path / "system")],
        checksums=sums,
        log=said.append,
    )
    assert data.train_x.shape == (6, 5, 4) and data.source == str(tmp_path / "system")
    assert leftovers(cache) == [] and said[0].startswith("discarding the cached file")


def test_a_bad_system_file_is_named_and_left_alone(tmp_path: Path) -> None:
    sums = fake_mnist(tmp_path / "system")
    bad = tmp_path / "system" / "t10k-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((4, 5, 4), np.uint8))
    with pytest.raises(DataError) as caught:
        load_idx_files(
            FASHION,
            cache_dir=tmp_path / "cache",
            mirrors=(),
            system=[str(tmp_path / "system")],
            checksums=sums,
        )
    assert f"{bad}: checksum mismatch for t10k-images-idx3-ubyte" in str(caught.value)
    assert bad.is_file() and leftovers(tmp_path / "cache") == []


def test_a_spec_trains_on_fashion_mnist() -> None:
    compiled = netspec.compile(ROOT / "specs" / "fashion_mnist.net")
    assert compiled.train is not None and compiled.train.dataset == "fashion_mnist"
    assert (compiled.train.normalize.mean, compiled.train.normalize.std) == (0.2860, 0.3530)
    assert compiled.warnings == []


def test_a_fashion_mnist_test_split_given_as_data(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    split = read_test_split(tmp_path, 1, FASHION)
    assert split.x.shape == (4, 5, 4) and split.y is not None and len(split.y) == 4
