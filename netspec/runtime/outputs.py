"""What a model's outputs mean for a person: class probabilities and the top classes.

The output's kind comes from the file's metadata (netspec.artifact): logits and
negative RBF distances go through a softmax, probabilities are used as they are, and a
single sigmoid unit becomes the two classes (0, 1).

>>> import numpy as np
>>> probs = scores(np.array([[0.0, 2.0]], np.float32), "logits")
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


def scores(output: npt.NDArray[np.float32], kind: str) -> npt.NDArray[np.float32]:
    """Class probabilities: softmax of logits, softmax of negative RBF distances."""
    flat = output.reshape(len(output), -1).astype(np.float64)
    if kind == "probabilities":
        return flat.astype(np.float32)
    if kind == "sigmoid":
        return (np.concatenate([1 - flat, flat], axis=1) if flat.shape[1] == 1 else flat).astype(
            np.float32
        )
    z = -flat if kind == "rbf_distances" else flat
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs: npt.NDArray[np.float32] = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


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
