"""The netspec facts of an export that come from the compiled network beyond each output's
name, kind and shape (`netspec.kinds`): the class labels a dataset implies. The file format
is `netspec.artifact`.
"""

from __future__ import annotations

import math

from netspec.artifact import OutputInfo


def default_labels(dataset: str | None, info: OutputInfo) -> tuple[str, ...] | None:
    """Class names when the training set implies them: MNIST's are its digits, and the
    windows cut from its scenes add `background`."""
    width = math.prod(d for d in info.shape or () if isinstance(d, int))
    if dataset == "mnist" and info.scores and width == 10:
        return tuple(str(d) for d in range(10))
    if dataset == "mnist_windows" and info.scores and width == 11:
        from netspec.data.windows import LABELS

        return LABELS
    return None
