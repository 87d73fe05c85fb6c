"""Fashion-MNIST: Zalando's 70,000 pictures of ten kinds of garment, 28x28 grey, in MNIST's
four IDX files (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747): a drop-in for MNIST's
digits that is harder to learn. Read from ``--data``, else the cache, else the files
Debian's dataset-fashion-mnist package installs, else fetched from Zalando's own copies,
verified and cached.
"""

from __future__ import annotations

from netspec.data.datasets import idx_reader
from netspec.data.record import Dataset, Source

LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SOURCE = Source(
    title="Fashion-MNIST",
    # SHA-256 of the uncompressed files, computed from Debian's: their MD5s (f4a8712d...,
    # 9018921c..., 8181f547..., 15d48437...) are the ones published for the content of
    # Zalando's .gz files (MD5 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...), which
    # Debian recompressed.
    sha256=(
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    cache="fashion_mnist",
    system=("/usr/share/datasets/fashion-mnist",),
    package="dataset-fashion-mnist",
)

FASHION_MNIST = Dataset(
    "fashion_mnist",
    "Zalando's Fashion-MNIST garments, fetched and cached (or read from --data DIR)",
    idx_reader(SOURCE, LABELS),
    task="classes",
    sample="garment",
    labels=LABELS,
    channels=1,
    size=(28, 28),
    source=SOURCE,
    rank=20,
)

RECORDS = (FASHION_MNIST,)  # what netspec.data.datasets finds here
