"""What an exported ONNX file says about itself, in its `metadata_props`.

Everything `netspec run` needs rides in the file: the spec text and every file it
`use`s (`embedded_reader` compiles it from those alone), the network's name, each
input's shape and normalization (a std that is a normal float32), the class labels
and what each output means. Values are strings (ONNX's rule); lists and records are JSON.
Export writes it and the runtime reads it; this module imports neither torch nor
onnx, so `run` can read it cheaply from an ONNX Runtime session's
`custom_metadata_map`.

A file may come from anywhere, so `from_props` trusts nothing it reads: every
field is checked (types, lengths, finite numbers, shapes of positive sizes or
size names, a bounded number of dimensions and of elements, labels a list of
short printable strings, bounded JSON nesting), and a bad one is a
`MetadataError` that names the file and the field. The checks are a pydantic-core
schema, written out field by field below: `netspec run` reads metadata on every start,
and importing pydantic itself to derive the schema from type annotations took 80 ms,
more than half the start-up of a bare onnxruntime script (docs/benchmarks.md, Cold
start):

>>> from_props({"network": "n", "spec": "", "inputs": '[{"name": "x", "shape": [1, 0]}]',
...             "outputs": '[{"name": "y", "kind": "logits"}]'}, "m.onnx")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
netspec.errors.MetadataError: m.onnx: bad netspec metadata: inputs[0].shape[1]: expected ...
"""

from __future__ import annotations

import errno
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic_core import SchemaValidator, ValidationError, from_json
from pydantic_core import core_schema as cs

from netspec.errors import MetadataError
from netspec.text import UNBOUND_SIZE, bound_shape

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# What an output's numbers mean; `run`, `eval` and the export checks act on this, never on
# operation names. The first four are class scores ("rbf_distances": smaller is the class,
# LeNet-5's RBF output); "map" is a dense prediction C x H x W (a reconstruction, a density,
# per-pixel class scores); "embedding" a vector that is not class scores (declared in the
# spec); "boxes" is a detection head's boxes (`SingleShot` says how to read them);
# "class_map" is a classifier made fully convolutional (OverFeat: each position holds one
# window's class scores, `SlidingWindow` says which window); "tensor" is any other shape.
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
MAX_PATH = 4096  # characters in the name of an embedded spec file
FLOAT32_TINY = 2.0**-126  # the smallest normal float32: a std below it normalizes to inf or NaN
FLOAT32_MAX = 3.4028234663852886e38  # the largest float32: inputs are normalized in float32


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


def _std(value: float) -> float:
    """A normalization's std: a normal positive float32 (a subnormal one, 1e-320, divides
    pixels to inf and the outputs to NaN)."""
    if not FLOAT32_TINY <= value <= FLOAT32_MAX:
        raise ValueError(
            f"std must be a normal positive float ({FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}), "
            f"got {value!r}"
        )
    return value


def _relative(name: str) -> str:
    """An embedded spec file's name: a relative POSIX path that stays in the spec's folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or name != path.as_posix():
        raise ValueError(f"not a relative path inside the spec's folder: {name!r:.60}")
    return name


@dataclass(frozen=True)
class InputInfo:
    """One model input: its per-sample shape and the normalization applied to pixels in [0, 1]."""

    name: str
    shape: tuple[int | str, ...]
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class OutputInfo:
    """One model output: its ONNX name (the spec's), what its numbers mean, and its
    per-sample shape (None in files written before netspec recorded it)."""

    name: str
    kind: OutputKind
    shape: tuple[int | str, ...] | None = None

    @property
    def scores(self) -> bool:
        """Class scores: `run` prints the top classes, export checks top-1 agreement."""
        return self.kind in SCORES


@dataclass(frozen=True)
class SlidingWindow:
    """What a `class_map` output's positions are (netspec.export.fcn writes it): the scores
    at output position (row i, column j) are the classifier's on the window of `window`
    pixels (H, W) whose receptive field is centred at `start + (i, j) * jump` and spans
    `size` (all in input pixels, per axis (H, W); a pixel's centre is at +0.5). `scores`
    says what the numbers are (the classifier's own: logits or probabilities) and
    `background` which class means "no object here". `boxes`, where known, is each class's
    box (H, W) as shares of the window, centred in it (how the training windows framed
    their objects); without it a box is the receptive field."""

    window: tuple[int, int]
    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]
    scores: Literal["logits", "probabilities"]
    background: int
    boxes: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class SingleShot:
    """What a single-shot detector's `boxes` output holds (netspec.export.detection writes
    it): every one of the grid's `grid` x `grid` cells proposes `boxes` boxes, each its
    corners x1, y1, x2, y2 in the pixels of an input of `image` (H, W), then `classes`
    class-specific confidences; `netspec detect` keeps those of at least `score` and
    suppresses, per class, a box overlapping a better one by more than `iou`."""

    grid: int
    boxes: int
    classes: int
    image: tuple[int, int]
    score: float
    iou: float


@dataclass(frozen=True)
class ModelInfo:
    """The netspec facts of an exported model.

    Built freely by export; `from_props` checks every field of one read from a file.
    """

    network: str
    spec: str
    version: str
    inputs: tuple[InputInfo, ...]
    outputs: tuple[OutputInfo, ...]
    labels: tuple[str, ...] | None = None
    precision: Precision = "fp32"
    weights: dict[str, str] = field(default_factory=dict)  # torch name -> initializer name
    sizes: dict[str, int] = field(default_factory=dict)  # symbolic sizes bound at export (--set)
    # a `class_map` output's windows (a sliding-window detector); None for any other model
    sliding_window: SlidingWindow | None = None
    # a `boxes` output's grid and thresholds (a single-shot detector); None for any other
    single_shot: SingleShot | None = None
    # the text of every file the spec `use`s, by its POSIX path relative to the spec's
    # folder: an embedded spec reads its `use`s from here, never from beside the file
    sources: dict[str, str] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """The `metadata_props` entries, all strings (the detectors' facts only where set)."""
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
        if self.sources:
            props["sources"] = json.dumps(self.sources)
        return props


# ---- the checks of metadata read from a file: pydantic-core's schema, field by field ---------


def _text(max_length: int, min_length: int = 0) -> cs.CoreSchema:
    """A name, label or version: bounded, printable."""
    schema = cs.str_schema(min_length=min_length or None, max_length=max_length)
    return cs.no_info_after_validator_function(_printable, schema)


_NAME = _text(MAX_NAME, min_length=1)
_SHAPE = cs.no_info_after_validator_function(
    _elements,
    cs.tuple_schema(
        [cs.no_info_plain_validator_function(_dim)], variadic_item_index=0, max_length=MAX_DIMS
    ),
)
_BOUNDED_TEXT = cs.str_schema(max_length=MAX_TEXT)


def _entries(item: cs.CoreSchema) -> cs.CoreSchema:
    """The inputs or the outputs: one at least."""
    return cs.tuple_schema([item], variadic_item_index=0, min_length=1, max_length=MAX_ENTRIES)


def _record(cls: type[Any], fields: dict[str, cs.CoreSchema]) -> cs.CoreSchema:
    """One of the dataclasses above, from a JSON object, each field checked by its schema."""
    name = cls.__name__
    args = cs.dataclass_args_schema(name, [cs.dataclass_field(f, s) for f, s in fields.items()])
    return cs.dataclass_schema(cls, args, list(fields), config={"title": name})


_INPUT = _record(
    InputInfo,
    {
        "name": _NAME,
        "shape": _SHAPE,
        "mean": cs.with_default_schema(
            cs.float_schema(ge=-FLOAT32_MAX, le=FLOAT32_MAX, allow_inf_nan=False), default=0.0
        ),
        "std": cs.with_default_schema(
            cs.no_info_after_validator_function(_std, cs.float_schema(allow_inf_nan=False)),
            default=1.0,
        ),
    },
)
_OUTPUT = _record(
    OutputInfo,
    {
        "name": _NAME,
        "kind": cs.literal_schema(list(get_args(OutputKind))),
        "shape": cs.with_default_schema(cs.nullable_schema(_SHAPE), default=None),
    },
)
_SIZE = cs.int_schema(strict=True, gt=0, le=MAX_ELEMENTS)
_COUNT = cs.int_schema(strict=True, gt=0, le=MAX_ENTRIES)
_SHARE_OF_ONE = cs.float_schema(ge=0, le=1, allow_inf_nan=False)


def _pair(item: cs.CoreSchema) -> cs.CoreSchema:
    """(H, W): one value per spatial axis."""
    return cs.tuple_schema([item, item])


def _optional(schema: cs.CoreSchema) -> cs.CoreSchema:
    """A field that may be absent or null."""
    return cs.with_default_schema(cs.nullable_schema(schema), default=None)


_SLIDING_WINDOW = _record(
    SlidingWindow,
    {
        "window": _pair(_SIZE),
        "size": _pair(cs.float_schema(ge=0, le=MAX_ELEMENTS, allow_inf_nan=False)),
        "jump": _pair(cs.float_schema(gt=0, le=MAX_ELEMENTS, allow_inf_nan=False)),
        "start": _pair(cs.float_schema(ge=-MAX_ELEMENTS, le=MAX_ELEMENTS, allow_inf_nan=False)),
        "scores": cs.literal_schema(["logits", "probabilities"]),
        "background": cs.int_schema(strict=True, ge=0, lt=MAX_ENTRIES),
        "boxes": _optional(
            cs.tuple_schema(
                [_pair(cs.float_schema(gt=0, le=1, allow_inf_nan=False))],
                variadic_item_index=0,
                max_length=MAX_ENTRIES,
            )
        ),
    },
)
_SINGLE_SHOT = _record(
    SingleShot,
    {
        "grid": _COUNT,
        "boxes": _COUNT,
        "classes": _COUNT,
        "image": _pair(_SIZE),
        "score": _SHARE_OF_ONE,
        "iou": _SHARE_OF_ONE,
    },
)
_SOURCE_NAME = cs.no_info_after_validator_function(_relative, _text(MAX_PATH, min_length=1))
_LABELS = cs.tuple_schema([_text(MAX_NAME)], variadic_item_index=0, max_length=MAX_ENTRIES)
_MODEL_INFO = SchemaValidator(
    _record(
        ModelInfo,
        {
            "network": _NAME,
            "spec": _BOUNDED_TEXT,
            "version": _text(MAX_NAME),
            "inputs": _entries(_INPUT),
            "outputs": _entries(_OUTPUT),
            "labels": cs.with_default_schema(cs.nullable_schema(_LABELS), default=None),
            "precision": cs.with_default_schema(
                cs.literal_schema(list(get_args(Precision))), default="fp32"
            ),
            "weights": cs.with_default_schema(
                cs.dict_schema(_BOUNDED_TEXT, _BOUNDED_TEXT, max_length=MAX_ENTRIES),
                default_factory=dict,
            ),
            "sizes": cs.with_default_schema(
                cs.dict_schema(_NAME, _SIZE, max_length=MAX_DIMS * MAX_ENTRIES),
                default_factory=dict,
            ),
            "sliding_window": _optional(_SLIDING_WINDOW),
            "single_shot": _optional(_SINGLE_SHOT),
            "sources": cs.with_default_schema(
                cs.dict_schema(_SOURCE_NAME, _BOUNDED_TEXT, max_length=MAX_ENTRIES),
                default_factory=dict,
            ),
        },
    )
)
_REQUIRED = ("network", "spec", "inputs", "outputs")
_JSON = (
    "inputs",
    "outputs",
    "labels",
    "weights",
    "sizes",
    "sliding_window",
    "single_shot",
    "sources",
)
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
        info: ModelInfo = _MODEL_INFO.validate_python(raw)
    except ValidationError as e:
        raise MetadataError(f"{source}: bad netspec metadata: {_first_error(e)}") from None
    problem = _single_shot_problem(info)
    if problem is not None:
        raise MetadataError(f"{source}: bad netspec metadata: single_shot: {problem}")
    return info


def _single_shot_problem(info: ModelInfo) -> str | None:
    """What is wrong with a single-shot entry, checked against the rest: its image must be
    the input's own (H, W), which bounds what `netspec detect` resizes a picture to, and
    its grid's boxes must fit `MAX_ELEMENTS` values."""
    shot = info.single_shot
    if shot is None:
        return None
    own = tuple(info.inputs[0].shape[-2:])
    if shot.image != own:
        h, w = shot.image
        return f"image {h}x{w} is not the input's size ({'x'.join(map(str, own))})"
    values = shot.grid * shot.grid * shot.boxes * (4 + shot.classes)
    if values > MAX_ELEMENTS:
        return (
            f"{shot.grid}x{shot.grid} cells of {shot.boxes} boxes and {shot.classes} classes "
            f"are {values:,} values; netspec reads at most {MAX_ELEMENTS:,}"
        )
    return None


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


# ---- the spec a file embeds ---------------------------------------------------------------


def relative_sources(main_file: str, texts: Mapping[str, str]) -> dict[str, str]:
    """What export embeds as `ModelInfo.sources`: the text of every file but the main one,
    by its POSIX path relative to the main file's folder (a string's: the current one), as
    `use` paths resolve. A file outside that folder (`--allow-outside`) is left out: a spec
    embedded in a file reads nothing from outside it.

    >>> relative_sources("/s/net.net", {"/s/net.net": "main", "/s/lib/b.net": "b", "/x.net": ""})
    {'lib/b.net': 'b'}
    """
    root = _folder(main_file)
    main = Path(main_file).resolve() if not main_file.startswith("<") else None
    out: dict[str, str] = {}
    for file, text in texts.items():
        path = Path(file).resolve()
        if file != main_file and path != main and path.is_relative_to(root):
            out[path.relative_to(root).as_posix()] = text
    return dict(sorted(out.items()))


def embedded_reader(file: str, sources: Mapping[str, str], holder: str) -> Callable[[Path], str]:
    """The reader `netspec.compiler.analyze` takes to compile a spec read as ``file`` whose
    `use`d files are the ones ``holder`` keeps (an ONNX file's `ModelInfo.sources`, a run's
    kept files): a `use`d file's text is the one ``sources`` holds under its path relative
    to ``file``'s folder, never what lies on the disk beside it; any other is an OSError
    that names what ``holder`` holds.

    >>> read = embedded_reader("/m/model.onnx", {"lib/b.net": "const k = 2"}, "model.onnx")
    >>> read(Path("/m/lib/b.net"))
    'const k = 2'
    >>> read(Path("/m/passwd"))
    Traceback (most recent call last):
        ...
    FileNotFoundError: [Errno 2] not among the spec files model.onnx holds (lib/b.net)
    """
    root = _folder(file)

    def read(path: Path) -> str:
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else None
        if name is None or name not in sources:
            held = ", ".join(sorted(sources)[:8]) or "none"
            raise FileNotFoundError(
                errno.ENOENT, f"not among the spec files {holder} holds ({held})"
            )
        return sources[name]

    return read


def _folder(file: str) -> Path:
    """The folder a spec's `use` paths are relative to, as the load pass finds it."""
    return Path.cwd().resolve() if file.startswith("<") else Path(file).resolve().parent


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
