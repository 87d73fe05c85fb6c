"""What an exported ONNX file says about itself, in its `metadata_props`.

Everything `netspec run` needs rides in the file: the spec text, the network's
name, each input's shape and normalization, the class labels and what each
output means. Values are strings (ONNX's rule); lists and records are JSON.
Export writes it and the runtime reads it; this module imports neither torch nor
onnx, so `run` can read it cheaply from an ONNX Runtime session's
`custom_metadata_map`.

A file may come from anywhere, so `from_props` trusts nothing it reads: every
field is checked (types, lengths, finite numbers, shapes of positive sizes or
size names, a bounded number of dimensions and of elements, labels a list of
short printable strings, bounded JSON nesting), and a bad one is a
`MetadataError` that names the file and the field:

>>> from_props({"network": "n", "spec": "", "inputs": '[{"name": "x", "shape": [1, 0]}]',
...             "outputs": '[{"name": "y", "kind": "logits"}]'}, "m.onnx")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
netspec.errors.MetadataError: m.onnx: bad netspec metadata: inputs[0].shape[1]: expected ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, TypeAdapter, ValidationError
from pydantic_core import from_json

from netspec.errors import MetadataError
from netspec.text import UNBOUND_SIZE, bound_shape

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# What an output's numbers mean; `run`, `eval` and the export checks act on this, never on
# operation names. The first four are class scores ("rbf_distances": smaller is the class,
# LeNet-5's RBF output); "map" is a dense prediction C x H x W (a reconstruction, a density,
# per-pixel class scores); "embedding" a vector that is not class scores (declared in the
# spec); "boxes" is reserved for detection heads; "class_map" is a classifier made fully
# convolutional (OverFeat: each position holds one window's class scores, `SlidingWindow`
# says which window); "tensor" is any other shape.
OutputKind = Literal[
    "logits",
    "rbf_distances",
    "probabilities",
    "sigmoid",
    "map",
    "embedding",
    "boxes",
    "class_map",
    "tensor",
]
SCORES: tuple[OutputKind, ...] = ("logits", "rbf_distances", "probabilities", "sigmoid")
Precision = Literal["fp32", "fp16", "int8"]

MAX_DIMS = 8  # per-sample axes of one input
MAX_ELEMENTS = 1 << 26  # values per sample (256 MiB of float32), a symbolic size as UNBOUND_SIZE
MAX_NAME = 256  # characters in a name or a label
MAX_ENTRIES = 1 << 17  # labels, inputs, outputs, weight names
MAX_TEXT = 16 << 20  # characters in one metadata value
MAX_DEPTH = 64  # JSON nesting (the format needs three levels)


def _dim(value: object) -> int | str:
    """A per-sample size: a positive int, or the name of a symbolic size (`H`)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ELEMENTS:
        return value
    if isinstance(value, str) and value.isidentifier() and len(value) <= MAX_NAME:
        return value
    raise ValueError(f"expected positive sizes or symbolic names, got {value!r:.40}")


def _elements(shape: tuple[int | str, ...]) -> tuple[int | str, ...]:
    total = math.prod(bound_shape(shape))
    if total > MAX_ELEMENTS:
        raise ValueError(
            f"{total:,} values per sample (a symbolic size counted as {UNBOUND_SIZE}); "
            f"netspec runs inputs of at most {MAX_ELEMENTS:,}"
        )
    return shape


def check_shape(shape: tuple[object, ...]) -> tuple[int | str, ...]:
    """The one check of a declared per-sample shape, for metadata read here and for a
    ModelInfo made elsewhere: positive sizes or names, at most MAX_ELEMENTS values."""
    return _elements(tuple(_dim(d) for d in shape))


def _printable(text: str) -> str:
    if any(not ch.isprintable() for ch in text):
        raise ValueError(f"control characters in {text!r:.60}")
    return text


Dim = Annotated[int | str, PlainValidator(_dim)]
Shape = Annotated[tuple[Dim, ...], Field(max_length=MAX_DIMS), AfterValidator(_elements)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_printable)]
Label = Annotated[str, Field(max_length=MAX_NAME), AfterValidator(_printable)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Spread = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Size = Annotated[int, Field(strict=True, gt=0, le=MAX_ELEMENTS)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]


@dataclass(frozen=True)
class InputInfo:
    """One model input: its per-sample shape and the normalization applied to pixels in [0, 1]."""

    name: Name
    shape: Shape
    mean: Finite = 0.0
    std: Spread = 1.0


@dataclass(frozen=True)
class OutputInfo:
    """One model output: its ONNX name (the spec's), what its numbers mean, and its
    per-sample shape (None in files written before netspec recorded it)."""

    name: Name
    kind: OutputKind
    shape: Shape | None = None

    @property
    def scores(self) -> bool:
        """Class scores: `run` prints the top classes, export checks top-1 agreement."""
        return self.kind in SCORES


Pixels = Annotated[float, Field(ge=0, le=MAX_ELEMENTS, allow_inf_nan=False)]
Jump = Annotated[float, Field(gt=0, le=MAX_ELEMENTS, allow_inf_nan=False)]
Coordinate = Annotated[float, Field(ge=-MAX_ELEMENTS, le=MAX_ELEMENTS, allow_inf_nan=False)]


@dataclass(frozen=True)
class SlidingWindow:
    """What a `class_map` output's positions are (netspec.export.fcn writes it): the scores
    at output position (row i, column j) are the classifier's on the window of `window`
    pixels (H, W) whose receptive field is centred at `start + (i, j) * jump` and spans
    `size` (all in input pixels, per axis (H, W); a pixel's centre is at +0.5). `scores`
    says what the numbers are (the classifier's own: logits or probabilities) and
    `background` which class means "no object here"."""

    window: tuple[Size, Size]
    size: tuple[Pixels, Pixels]
    jump: tuple[Jump, Jump]
    start: tuple[Coordinate, Coordinate]
    scores: Literal["logits", "probabilities"]
    background: Annotated[int, Field(strict=True, ge=0, lt=MAX_ENTRIES)]


@dataclass(frozen=True)
class SingleShot:
    """What a single-shot detector's `boxes` output holds (netspec.export.detection writes
    it): every one of the grid's `grid` x `grid` cells proposes `boxes` boxes, each its
    corners x1, y1, x2, y2 in the pixels of an input of `image` (H, W), then `classes`
    class-specific confidences; `netspec detect` keeps those of at least `score` and
    suppresses, per class, a box overlapping a better one by more than `iou`."""

    grid: Annotated[int, Field(strict=True, gt=0, le=MAX_ENTRIES)]
    boxes: Annotated[int, Field(strict=True, gt=0, le=MAX_ENTRIES)]
    classes: Annotated[int, Field(strict=True, gt=0, le=MAX_ENTRIES)]
    image: tuple[Size, Size]
    score: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    iou: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


@dataclass(frozen=True)
class ModelInfo:
    """The netspec facts of an exported model.

    Built freely by export; `from_props` checks every field of one read from a file.
    """

    network: Name
    spec: Text
    version: Annotated[str, Field(max_length=MAX_NAME), AfterValidator(_printable)]
    inputs: Annotated[tuple[InputInfo, ...], Field(min_length=1, max_length=MAX_ENTRIES)]
    outputs: Annotated[tuple[OutputInfo, ...], Field(min_length=1, max_length=MAX_ENTRIES)]
    labels: Annotated[tuple[Label, ...], Field(max_length=MAX_ENTRIES)] | None = None
    precision: Precision = "fp32"
    # torch name -> initializer name
    weights: Annotated[dict[Text, Text], Field(max_length=MAX_ENTRIES)] = field(
        default_factory=dict
    )
    # symbolic sizes bound at export (--set)
    sizes: Annotated[dict[Name, Size], Field(max_length=MAX_DIMS * MAX_ENTRIES)] = field(
        default_factory=dict
    )
    # a `class_map` output's windows (a sliding-window detector); None for any other model
    sliding_window: SlidingWindow | None = None
    # a `boxes` output's grid and thresholds (a single-shot detector); None for any other
    single_shot: SingleShot | None = None

    def to_props(self) -> dict[str, str]:
        """The `metadata_props` entries, all strings (`sliding_window` only where set)."""
        props = {
            "netspec_version": self.version,
            "network": self.network,
            "spec": self.spec,
            "inputs": json.dumps([asdict(i) for i in self.inputs]),
            "outputs": json.dumps([asdict(o) for o in self.outputs]),
            "output_kind": self.outputs[0].kind if self.outputs else "logits",
            "labels": json.dumps(list(self.labels) if self.labels is not None else None),
            "precision": self.precision,
            "weights": json.dumps(self.weights),
            "sizes": json.dumps(self.sizes),
        }
        if self.sliding_window is not None:
            props["sliding_window"] = json.dumps(asdict(self.sliding_window))
        if self.single_shot is not None:
            props["single_shot"] = json.dumps(asdict(self.single_shot))
        return props


_MODEL_INFO: TypeAdapter[ModelInfo] = TypeAdapter(ModelInfo)
_REQUIRED = ("network", "spec", "inputs", "outputs")
_JSON = ("inputs", "outputs", "labels", "weights", "sizes", "sliding_window", "single_shot")
_TEXT = {
    "network": "network",
    "spec": "spec",
    "netspec_version": "version",
    "precision": "precision",
}


def from_props(props: Mapping[str, str], source: str) -> ModelInfo:
    """Read back what `ModelInfo.to_props` wrote, checking every field; raise MetadataError
    naming `source` and the field."""
    missing = [k for k in _REQUIRED if k not in props]
    if missing:
        raise MetadataError(
            f"{source}: not exported by netspec (no {', '.join(missing)} in its metadata); "
            "expected a file written by `netspec export` or `netspec compile -o`"
        )
    raw: dict[str, Any] = {"version": "?"}
    for key, name in _TEXT.items():
        if key in props:
            raw[name] = props[key]
    for key in _JSON:
        if key in props:
            raw[key] = _json(props[key], key, source)
    try:
        return _MODEL_INFO.validate_python(raw)
    except ValidationError as e:
        raise MetadataError(f"{source}: bad netspec metadata: {_first_error(e)}") from None


def _json(text: object, key: str, source: str) -> Any:
    """One JSON value, its size and nesting bounded."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise MetadataError(f"{source}: bad netspec metadata: {key}: not JSON text of a sane size")
    try:
        value = from_json(text)
    except ValueError as e:  # pydantic_core bounds recursion itself: no RecursionError
        raise MetadataError(f"{source}: bad netspec metadata: {key}: not JSON ({e})") from None
    if _depth(value) > MAX_DEPTH:
        raise MetadataError(f"{source}: bad netspec metadata: {key}: JSON nested too deeply")
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iteratively: no recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _first_error(e: ValidationError) -> str:
    """`inputs[0].std: Input should be greater than 0`, from pydantic's first error."""
    error = e.errors(include_url=False)[0]
    where = ""
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where or 'metadata'}: {message}"


# ---- what an output kind means ---------------------------------------------------------


def class_scores(output: npt.NDArray[Any], kind: OutputKind) -> npt.NDArray[np.float32]:
    """Class probabilities per sample: softmax of logits or of negative RBF distances, the
    probabilities as given, and a single sigmoid unit as (1 - p, p)."""
    import numpy as np

    flat = output.reshape(len(output), -1).astype(np.float64)
    if kind == "probabilities":
        return flat.astype(np.float32)
    if kind == "sigmoid":
        pairs = np.concatenate([1 - flat, flat], axis=1) if flat.shape[1] == 1 else flat
        return pairs.astype(np.float32)
    z = -flat if kind == "rbf_distances" else flat
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs: npt.NDArray[np.float32] = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


def predicted_class(output: npt.NDArray[Any], kind: OutputKind) -> npt.NDArray[np.int64]:
    """Top-1 class per sample: the nearest prototype for RBF distances, a single sigmoid unit
    above one half, else the largest output."""
    import numpy as np

    flat = output.reshape(len(output), -1)
    if kind == "sigmoid" and flat.shape[1] == 1:
        return (flat[:, 0] > 0.5).astype(np.int64)
    chosen = flat.argmin(axis=1) if kind == "rbf_distances" else flat.argmax(axis=1)
    return np.asarray(chosen, np.int64)
