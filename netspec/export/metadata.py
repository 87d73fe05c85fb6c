"""The netspec facts of an export that come from the compiled network beyond each output's
name, kind and shape (`netspec.kinds`): the class labels a dataset implies. The file format
is `netspec.artifact`.
"""

from __future__ import annotations

import math

from netspec.artifact import OutputInfo
from netspec.data.registry import dataset as record


def default_labels(dataset: str | None, info: OutputInfo) -> tuple[str, ...] | None:
    """Class names when the training set implies them: its record's (MNIST's digits,
    Fashion-MNIST's garments, the scene windows' digits and `background`), for class
    scores of one per name."""
    known = record(dataset)
    if known is None or not known.names_scores or not info.scores:
        return None
    width = math.prod(d for d in info.shape or () if isinstance(d, int))
    return known.labels if width == len(known.labels) else None
