"""An image folder too large to hold, read a batch at a time (issue 21).

A folder of photographs decoded whole is gigabytes (10,000 images of 3x256x256 are
1.97 GB as bytes, four times that as the floats training holds). So the training split
of an image folder is held in memory only while its decoded images are at most
`stream_above` bytes (`MAX_DECODED` unless ``NETSPEC_STREAM_ABOVE`` lowers it): held, it
is decoded once, and each epoch only deforms it, the fastest. Over that, it streams: every
file is listed and its header checked up front, as for a held folder (unreadable files
skipped or refused by their share, netspec.data.folders), and each batch is decoded when
training asks for it, in worker threads (Pillow releases the GIL while it decodes), at
most a few batches ahead (`StreamedImages.batches`), so memory follows that depth and the
batch size, never the folder's size.

A batch is made by one worker from its step number and its images alone, so the batches
are the same whatever the number of threads and however they are scheduled; they are
handed over in step order. A file whose header was readable but whose pixels are not (a
truncated JPEG) is dropped from its batch, named once the pass ends, and counted against
the share of unreadable files a folder may have.

This layer imports no torch: what a batch becomes (floats, deformed) is the caller's
``make``, run in the worker beside the decoding.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from netspec.data.folders import (
    MAX_DECODED,
    Headers,
    ImageFolder,
    Log,
    Unreadable,
    decode_folder,
    read_headers,
)
from netspec.errors import UsageError
from netspec.text import fmt_shape
from netspec.threads import usable_cores

__all__ = [
    "STREAM_ENV",
    "THREADS_ENV",
    "StreamedImages",
    "loader_threads",
    "open_image_folder",
    "stream_above",
]

STREAM_ENV = "NETSPEC_STREAM_ABOVE"  # bytes of decoded training images held in memory
THREADS_ENV = "NETSPEC_LOADER_THREADS"  # decoding threads of a streamed folder
MAX_THREADS = 8  # decoding threads by default, at most
T = TypeVar("T")
# (step, images uint8 (B, C, H, W), labels int64 (B,)) -> what the step trains on
Make = Callable[[int, npt.NDArray[np.uint8], npt.NDArray[np.int64]], T]


def stream_above() -> int:
    """Bytes of decoded training images over which an image folder streams:
    ``NETSPEC_STREAM_ABOVE``, else `MAX_DECODED` (every folder netspec held before
    streaming existed is still held, and trains as it did)."""
    return _positive_env(STREAM_ENV, MAX_DECODED)


def loader_threads() -> int:
    """Decoding threads of a streamed folder: ``NETSPEC_LOADER_THREADS``, else half the
    usable cores, at least 2 (one decodes while another hands over) and at most
    `MAX_THREADS`. Training computes on the other half; on a GPU they keep it fed."""
    return _positive_env(THREADS_ENV, min(MAX_THREADS, max(2, usable_cores() // 2)))


def _positive_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name}={text}: expected a positive whole number")
    return int(text)


def open_image_folder(
    path: Path,
    size: int | tuple[int, int] | None,
    channels: int,
    *,
    resize: int | None = None,
    log: Log | None = None,
    stream_over: int | None = None,
) -> ImageFolder | StreamedImages:
    """``path/<class>/<image>`` as `load_image_folder` reads it, decoded into one array;
    or, when its decoded images would be more than ``stream_over`` bytes (None: never),
    listed and header-checked only, to be decoded a batch at a time."""
    headers = read_headers(path, channels)
    hw = headers.fitted(size)
    total = math.prod(headers.decoded(hw))
    if stream_over is None or total <= stream_over:
        return decode_folder(headers, hw, resize, log)
    streamed = StreamedImages(headers, hw, resize, log)
    if log is not None:
        if headers.skipped.named:
            log(headers.skipped.summary())
        log(
            f"{path}: {len(streamed):,} images of {fmt_shape(streamed.shape[1:])} decode to "
            f"{total:,} bytes, over the {stream_over:,} held in memory ({STREAM_ENV}): "
            f"decoded a batch at a time by {loader_threads()} threads ({THREADS_ENV})"
        )
    return streamed


class StreamedImages:
    """The readable images of a listed folder, decoded on demand at ``hw`` (netspec.data.
    folders.ImageFiles.read: the `resize` rule, else resized to ``hw``), and their labels."""

    def __init__(
        self,
        headers: Headers,
        hw: tuple[int, int],
        resize: int | None,
        log: Log | None,
        count: int | None = None,
    ) -> None:
        self.headers, self.hw, self.resize, self.log = headers, hw, resize, log
        self.index = np.array(sorted(headers.sizes), np.int64)[:count]  # into the files
        self.y = headers.files.labels[self.index]
        self.classes = headers.files.classes
        self._lock = threading.Lock()
        self._unreadable: dict[int, str] = {}  # file index -> why, found while decoding
        self._named: set[int] = set()  # of them, those a summary has named

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, C, H, W)``, as a held folder's array would be."""
        return len(self), self.headers.files.channels, *self.hw

    def first(self, count: int) -> StreamedImages:
        """The first ``count`` images (``--limit``)."""
        return StreamedImages(self.headers, self.hw, self.resize, self.log, count)

    def decode(
        self, picks: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """Images ``picks`` (indices into this split) as uint8 ``(B, C, H, W)`` and their
        labels; an image that cannot be decoded is left out, and kept for the summary."""
        files = self.headers.files
        kept: list[int] = []
        x = np.empty((len(picks), files.channels, *self.hw), np.uint8)
        for k in picks.tolist():
            i = int(self.index[k])
            try:
                x[len(kept)] = files.chw(i, self.hw, self.resize)
            except Unreadable as e:
                with self._lock:
                    self._unreadable[i] = e.message.removeprefix(f"{files.files[i]}: ")
                continue
            kept.append(k)
        return x[: len(kept)], self.y[kept]

    def batches(
        self,
        picks: Sequence[npt.NDArray[np.int64]],
        make: Make[T],
        threads: int | None = None,
        depth: int | None = None,
    ) -> Iterator[T]:
        """``make(step, images, labels)`` of each step's images, made in ``threads``
        worker threads (`loader_threads`) and yielded in step order. At most ``depth``
        batches (``threads + 1`` by default) are made ahead of the one the caller holds.
        A pass that decodes to the end names the files it found unreadable."""
        threads = threads or loader_threads()
        depth = max(1, depth or threads + 1)
        steps = iter(enumerate(picks))
        pool = ThreadPoolExecutor(threads, thread_name_prefix="netspec-decode")
        pending: deque[Future[T]] = deque()

        def submit() -> None:
            following = next(steps, None)
            if following is not None:
                step, chosen = following
                pending.append(pool.submit(self._made, step, chosen, make))

        try:
            for _ in range(depth):
                submit()
            while pending:
                made = pending.popleft().result()
                submit()
                yield made
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._report()

    def _made(self, step: int, picks: npt.NDArray[np.int64], make: Make[T]) -> T:
        x, y = self.decode(picks)
        return make(step, x, y)

    def _report(self) -> None:
        """Name the files found unreadable since the last report, in the folder's order, and
        refuse the folder when they and the header pass's are over the share it may skip."""
        skipped = self.headers.skipped
        with self._lock:
            found = sorted(f for f in self._unreadable.items() if f[0] not in self._named)
            self._named.update(i for i, _ in found)
        if not found:
            return
        files = self.headers.files.files
        for i, why in found:
            skipped.unreadable.append((files[i], why))
            skipped.named.append((files[i], why))
        skipped.check()
        if self.log is not None:
            self.log(skipped.summary())
