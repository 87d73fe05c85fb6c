"""Running a model over many samples: chunks of a size ONNX Runtime takes, padded to the
model's batch when the file fixes one, and outputs joined back in order.

>>> import numpy as np
>>> double = lambda xs: [x * 2 for x in xs]
>>> run_batched(double, [np.arange(5, dtype=np.float32)], fixed=None, chunk=2)[0]
array([0., 2., 4., 6., 8.], dtype=float32)
>>> run_batched(double, [np.arange(3, dtype=np.float32)], fixed=2)[0]
array([0., 2., 4.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from netspec.errors import InputError
from netspec.runtime.session import Model
from netspec.text import first_line, fmt_shape

Arrays = list[npt.NDArray[np.float32]]
CHUNK = 256  # samples per call when the batch axis is dynamic


def chunks(n: int, size: int) -> list[slice]:
    """`n` samples in consecutive slices of at most `size`."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def padded(array: npt.NDArray[np.float32], batch: int) -> npt.NDArray[np.float32]:
    """A static-batch model takes exactly `batch` rows: repeat the last to fill a short chunk."""
    if len(array) == batch:
        return array
    return np.concatenate([array, np.repeat(array[-1:], batch - len(array), axis=0)])


def run_batched(
    fn: Callable[[Arrays], Arrays], inputs: Arrays, fixed: int | None, chunk: int = CHUNK
) -> Arrays:
    """`fn` over `inputs` in chunks: of exactly `fixed` rows when the model's batch is
    fixed (the last one padded, its extra outputs dropped), else of at most `chunk`."""
    parts: list[Arrays] = []
    for part in chunks(len(inputs[0]), fixed or chunk):
        n = part.stop - part.start
        outs = fn([x[part] if fixed is None else padded(x[part], fixed) for x in inputs])
        parts.append([o[:n] for o in outs])
    return [np.concatenate(col) for col in zip(*parts, strict=True)]


def fixed_batch(model: Model) -> int | None:
    """The batch size the file fixes, or None when its batch axis is dynamic."""
    first = model.session.get_inputs()[0].shape[0]
    return first if isinstance(first, int) else None


def run_model(model: Model, array: npt.NDArray[np.float32], chunk: int = CHUNK) -> Arrays:
    """The model's outputs on every sample of `array` (a one-input model); an InputError,
    naming the file and the shapes, when ONNX Runtime cannot take them."""
    try:
        return run_batched(lambda xs: model.run(*xs), [array], fixed_batch(model), chunk)
    except Exception as e:  # ONNX Runtime's own error types for shapes it cannot take
        raise run_failure(model, array, e) from None


def run_failure(model: Model, array: npt.NDArray[np.float32], e: Exception) -> InputError:
    """The error for ONNX Runtime refusing `array` (the first input), naming the file and
    the shapes; `run` and `bench` say the same."""
    return InputError(
        f"{model.path}: cannot run on inputs of shape {fmt_shape(array.shape[1:])}; "
        f"expected {fmt_shape(model.info.inputs[0].shape)} per sample ({first_line(e)})"
    )
