"""What a model's outputs mean for a person: the top classes, from the class probabilities
that `netspec.artifact.class_scores` makes of the output's kind (the file's metadata).

>>> import numpy as np
>>> from netspec.artifact import class_scores
>>> probs = class_scores(np.array([[0.0, 2.0]], np.float32), "logits")
>>> [round(float(p), 3) for p in probs[0]]
[0.119, 0.881]
>>> top_k(probs, 1, ["cat", "dog"])[0][0]["label"]
'dog'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def top_k(
    probs: npt.NDArray[np.float32], k: int, labels: Sequence[str] | None
) -> list[list[dict[str, Any]]]:
    """The `k` likeliest classes of each sample, likeliest first: class, label, probability."""
    rows = []
    for p in probs:
        order = np.argsort(-p, kind="stable")[:k]
        rows.append(
            [
                {
                    "class": int(c),
                    "label": labels[c] if labels and c < len(labels) else str(int(c)),
                    "probability": float(p[c]),
                }
                for c in order
            ]
        )
    return rows
