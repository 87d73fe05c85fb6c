"""What an exported ONNX file says about itself, in its `metadata_props`.

Everything `netspec run` needs rides in the file: the spec text and every file it
`use`s (`embedded_reader` compiles it from those alone), the network's name, each
input's shape and normalization (a std that is a normal float32), the class labels
and what each output means. Values are strings (ONNX's rule); lists and records are JSON.
Export writes it and the runtime reads it; this module imports neither torch nor
onnx, so `run` can read it cheaply from an ONNX Runtime session's
`custom_metadata_map`.

A detector also says how its outputs become boxes, in one generic entry, `decoding`: a flat
JSON object `{"decoder": NAME, ...params}` naming one of the runtime's decoders
(netspec.runtime.decoders) and its parameters. Export takes it from the operation of the
network's head (`OpDef.decoding`) or from the conversion that made the model (the fully
convolutional one), so a new kind of head adds no field here: this module checks the entry
only as a bounded record of plain values (`Decoding`), and the decoder it names checks its
own parameters when `netspec detect` or `netspec eval` reads them. Files written before the
entry existed held a `single_shot` or a `sliding_window` entry instead: each is read as the
`decoding` of the decoder of that name, so those files keep working; only `decoding` is
written.

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
import re
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
# operation names. A kind is a name of `KINDS`, the file format's words for outputs. The
# built-in ones: the first four are class scores (`SCORES`; "rbf_distances": smaller is the
# class, LeNet-5's RBF output); "map" is a dense prediction C x H x W (a reconstruction, a
# density, per-pixel class scores); "embedding" a vector that is not class scores (declared
# in the spec); "tensor" any other shape. A detector's kinds ("boxes": a single-shot head's
# proposed boxes, "class_map": a classifier made fully convolutional, ...) are not written
# here: each is registered by the runtime decoder that reads it (netspec.runtime.decoders
# registers its decoders' `outputs` when it is imported, as importing netspec.runtime does),
# so a new kind of head adds no word to this module, and a file naming a kind that no part
# of this netspec reads is still refused.
OutputKind = str
SCORES: tuple[OutputKind, ...] = ("logits", "rbf_distances", "probabilities", "sigmoid")
# Each kind this netspec reads, and who declared it: "netspec" for the built-in ones, else
# the decoder that reads it.
KINDS: dict[OutputKind, str] = dict.fromkeys((*SCORES, "map", "embedding", "tensor"), "netspec")


def register_kinds(kinds: tuple[OutputKind, ...], by: str) -> None:
    """Make ``kinds`` words of the file format, declared ``by`` a decoder (its name): the
    kinds of the outputs a decoder reads (netspec.runtime.decoders.discover). A kind is an
    identifier of at most MAX_DECODER characters; two decoders may read one kind."""
    for kind in kinds:
        if not (kind.isidentifier() and len(kind) <= MAX_DECODER):
            raise ValueError(f"output kind {kind!r:.40}: expected a short identifier")
        KINDS.setdefault(kind, by)


Precision = Literal["fp32", "fp16", "int8"]

MAX_DIMS = 8  # per-sample axes of one input
MAX_CHANNELS = 4096  # values of a per-channel mean or std
MAX_ELEMENTS = 1 << 26  # values per sample (256 MiB of float32), a symbolic size as UNBOUND_SIZE
MAX_NAME = 256  # characters in a name or a label
MAX_ENTRIES = 1 << 17  # labels, inputs, outputs, weight names
MAX_TEXT = 16 << 20  # characters in one metadata value
MAX_DEPTH = 64  # JSON nesting (the format needs three levels)
MAX_PATH = 4096  # characters in the name of an embedded spec file
FLOAT32_TINY = 2.0**-126  # the smallest normal float32: a std below it normalizes to inf or NaN
FLOAT32_MAX = 3.4028234663852886e38  # the largest float32: inputs are normalized in float32
# A detector's `decoding`: its decoder's name and parameter names (identifiers of at most
# MAX_DECODER characters), at most MAX_PARAMS parameters, a string parameter at most MAX_NAME
# characters, a list (or each row of a table) at most MAX_ENTRIES numbers, a table's rows at
# most MAX_ROW numbers, and MAX_DECODING_VALUES numbers in all.
MAX_DECODER = 64
MAX_PARAMS = 64
MAX_ROW = 64
MAX_DECODING_VALUES = 1 << 20
MAX_EXACT_INT = 2**53  # an integer parameter: one a JSON reader's double holds exactly
DECODER = "decoder"  # the key of the decoder's name in a `decoding` entry


# A size computed from symbolic ones, as inference writes it (`3*H`, `(H-1)//2+1`): names,
# whole numbers, + - * // % and parentheses. It is only shown and bound, never evaluated.
_COMPUTED = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*|\d+|//|[-+*%() ])+")
MAX_COMPUTED = 1024  # characters of a computed size


def _dim(value: object) -> int | str:
    """A per-sample size: a positive int, the name of a symbolic size (`H`), or a size
    computed from them (`3*H`)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ELEMENTS:
        return value
    if isinstance(value, str) and value.isidentifier() and len(value) <= MAX_NAME:
        return value
    if (
        isinstance(value, str)
        and len(value) <= MAX_COMPUTED
        and _COMPUTED.fullmatch(value)
        and re.search(r"[A-Za-z_]", value)
    ):
        return value
    raise ValueError(
        f"expected positive sizes, symbolic names or sizes computed from them, got {value!r:.40}"
    )


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


def _mean(value: float) -> float:
    if not -FLOAT32_MAX <= value <= FLOAT32_MAX:  # NaN fails both
        raise ValueError(f"expected a finite float32, got {value!r}")
    return value


def _per_channel(check: Callable[[float], float]) -> cs.CoreSchema:
    """A mean or a std: one number for every channel, or a list of one per channel."""

    def number(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r:.40}")
        return check(float(value))

    def read(value: object) -> float | tuple[float, ...]:
        if not isinstance(value, list | tuple):
            return number(value)
        if not 1 <= len(value) <= MAX_CHANNELS:
            raise ValueError(f"expected 1 to {MAX_CHANNELS} values, got {len(value)}")
        return tuple(number(v) for v in value)

    return cs.no_info_plain_validator_function(read)


def _channels_agree(info: InputInfo) -> InputInfo:
    """A per-channel mean or std has a value for each of the input's channels (C x H x W)."""
    for name, value in (("mean", info.mean), ("std", info.std)):
        channels = info.shape[0] if len(info.shape) == 3 else None
        if isinstance(value, tuple) and len(value) > 1 and channels != len(value):
            raise ValueError(f"{name} has {len(value)} values for an input of {list(info.shape)}")
    return info


def _relative(name: str) -> str:
    """An embedded spec file's name: a relative POSIX path that stays in the spec's folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or name != path.as_posix():
        raise ValueError(f"not a relative path inside the spec's folder: {name!r:.60}")
    return name


Values = float | tuple[float, ...]  # a mean or a std: one for every channel, or one per channel


@dataclass(frozen=True)
class InputInfo:
    """One model input: its per-sample shape and the normalization applied to pixels in
    [0, 1], one mean and std for every channel or a tuple of one per channel; ``resize``,
    the train section's `resize N`: an image's shorter side scaled to N, then its centre cut
    to the input's size (None: an image is padded when it fits evenly, else resized)."""

    name: str
    shape: tuple[int | str, ...]
    mean: Values = 0.0
    std: Values = 1.0
    resize: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry as written (``resize`` only where set: older readers know the rest)."""
        entry = asdict(self)
        if self.resize is None:
            del entry["resize"]
        return entry

    def normalize(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Pixels in [0, 1], ``(..., C, H, W)``, as the model takes them: ``(x - mean) / std``,
        per channel."""
        mean, std = self._spread()
        return ((x - mean) / std).astype(x.dtype)  # type: ignore[no-any-return]

    def pixels(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """What `normalize` undoes: the model's input ``(..., C, H, W)`` as pixels."""
        mean, std = self._spread()
        return (x * std + mean).astype(x.dtype)  # type: ignore[no-any-return]

    def _spread(self) -> tuple[Any, Any]:
        """mean and std as numbers, or per channel shaped to broadcast over C x H x W."""
        import numpy as np

        def spread(v: Values) -> Any:
            if not isinstance(v, tuple):
                return v
            return v[0] if len(v) == 1 else np.asarray(v, np.float32).reshape(-1, 1, 1)

        return spread(self.mean), spread(self.std)


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


# One parameter of a detector's decoding: a number, a flag, a word, a list of numbers, or a
# table of numbers (a list of rows), as JSON carries it (lists read back as tuples).
Number = int | float
DecodingParam = bool | Number | str | tuple[Number, ...] | tuple[tuple[Number, ...], ...]


@dataclass(frozen=True)
class Decoding:
    """How a detector's outputs become boxes: the name of the runtime's decoder that reads
    them (netspec.runtime.decoders) and its parameters (the grid and thresholds of a
    single-shot head, the windows of a sliding one), written as one flat JSON object
    `{"decoder": NAME, ...params}`."""

    decoder: str
    params: Mapping[str, DecodingParam] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if DECODER in self.params:
            raise ValueError(f"a decoding parameter may not be called {DECODER!r}")

    def as_json(self) -> dict[str, Any]:
        """The entry as written: `{"decoder": NAME, ...params}`."""
        return {DECODER: self.decoder, **self.params}


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
    # how a detector's outputs become boxes (its decoder and parameters); None for any other
    decoding: Decoding | None = None
    # the text of every file the spec `use`s, by its POSIX path relative to the spec's
    # folder: an embedded spec reads its `use`s from here, never from beside the file
    sources: dict[str, str] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """The `metadata_props` entries, all strings (a detector's decoding only where set)."""
        props = {
            "netspec_version": self.version,
            "network": self.network,
            "spec": self.spec,
            "inputs": json.dumps([i.as_json() for i in self.inputs]),
            "outputs": json.dumps([asdict(o) for o in self.outputs]),
            "output_kind": self.outputs[0].kind if self.outputs else "logits",
            "labels": json.dumps(list(self.labels) if self.labels is not None else None),
            "precision": self.precision,
            "weights": json.dumps(self.weights),
            "sizes": json.dumps(self.sizes),
        }
        if self.decoding is not None:
            props["decoding"] = json.dumps(self.decoding.as_json())
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


def record_schema(cls: type[Any], fields: dict[str, cs.CoreSchema]) -> cs.CoreSchema:
    """One of the dataclasses above (or a decoder's parameters, netspec.runtime.decoders),
    from a JSON object, each field checked by its schema."""
    name = cls.__name__
    args = cs.dataclass_args_schema(name, [cs.dataclass_field(f, s) for f, s in fields.items()])
    return cs.dataclass_schema(cls, args, list(fields), config={"title": name})


_INPUT = cs.no_info_after_validator_function(
    _channels_agree,
    record_schema(
        InputInfo,
        {
            "name": _NAME,
            "shape": _SHAPE,
            "mean": cs.with_default_schema(_per_channel(_mean), default=0.0),
            "std": cs.with_default_schema(_per_channel(_std), default=1.0),
            "resize": cs.with_default_schema(
                cs.nullable_schema(cs.int_schema(strict=True, gt=0, le=MAX_ELEMENTS)), default=None
            ),
        },
    ),
)


def _known_kind(kind: str) -> str:
    """An output's kind: one of `KINDS` (a head's, once its decoder is registered)."""
    if kind not in KINDS:
        raise ValueError(
            f"expected an output kind this netspec reads ({', '.join(KINDS)}), got {kind!r:.40}"
        )
    return kind


_OUTPUT = record_schema(
    OutputInfo,
    {
        "name": _NAME,
        "kind": cs.no_info_after_validator_function(_known_kind, _NAME),
        "shape": cs.with_default_schema(cs.nullable_schema(_SHAPE), default=None),
    },
)
_SIZE = cs.int_schema(strict=True, gt=0, le=MAX_ELEMENTS)


# ---- a detector's decoding: a bounded record of plain values, whatever its decoder ----------


def _number(value: object) -> Number:
    """A decoding's number: an int a double holds exactly, or a finite float (never a bool)."""
    if type(value) is int and abs(value) <= MAX_EXACT_INT:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    raise ValueError("not a number")


def _decoding(params: dict[str, DecodingParam]) -> Decoding:
    """The entry split into its decoder's name and its parameters, the numbers counted."""
    name = params.pop(DECODER, None)
    if not isinstance(name, str) or not name.isidentifier() or len(name) > MAX_DECODER:
        raise ValueError(
            f"expected the decoder's name (an identifier of at most {MAX_DECODER} characters) "
            f"under {DECODER!r}, got {name!r:.40}"
        )
    if len(params) > MAX_PARAMS:
        raise ValueError(f"{len(params)} parameters; a decoding has at most {MAX_PARAMS}")
    values = 0
    for value in params.values():
        rows = value if isinstance(value, tuple) else ()
        values += sum(len(row) if isinstance(row, tuple) else 1 for row in rows)
    if values > MAX_DECODING_VALUES:
        raise ValueError(f"{values:,} numbers; a decoding holds at most {MAX_DECODING_VALUES:,}")
    return Decoding(name, params)


_NUMBER = cs.no_info_plain_validator_function(_number)
_PARAM = cs.union_schema(
    [
        cs.bool_schema(strict=True),
        _NUMBER,
        _text(MAX_NAME),
        cs.tuple_schema([_NUMBER], variadic_item_index=0, max_length=MAX_ENTRIES),
        cs.tuple_schema(
            [cs.tuple_schema([_NUMBER], variadic_item_index=0, max_length=MAX_ROW)],
            variadic_item_index=0,
            max_length=MAX_ENTRIES,
        ),
    ],
    custom_error_type="decoding_param",
    custom_error_message=(
        f"expected a number, true or false, a string of at most {MAX_NAME} characters, or a "
        f"list of at most {MAX_ENTRIES:,} numbers or of rows of at most {MAX_ROW}"
    ),
)
_PARAM_NAME = cs.str_schema(pattern=rf"^[A-Za-z_][A-Za-z0-9_]{{0,{MAX_DECODER - 1}}}$")
_DECODING = SchemaValidator(
    cs.no_info_after_validator_function(_decoding, cs.dict_schema(_PARAM_NAME, _PARAM))
)
# The entries files held before `decoding`: each one decoder's parameters, under its name.
_LEGACY = ("single_shot", "sliding_window")


# ---- the whole record ----------------------------------------------------------------------


_SOURCE_NAME = cs.no_info_after_validator_function(_relative, _text(MAX_PATH, min_length=1))
_LABELS = cs.tuple_schema([_text(MAX_NAME)], variadic_item_index=0, max_length=MAX_ENTRIES)
_MODEL_INFO = SchemaValidator(
    record_schema(
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
            # checked on its own (`_read_decoding`), so that an error names the entry read
            "decoding": cs.with_default_schema(
                cs.nullable_schema(cs.is_instance_schema(Decoding)), default=None
            ),
            "sources": cs.with_default_schema(
                cs.dict_schema(_SOURCE_NAME, _BOUNDED_TEXT, max_length=MAX_ENTRIES),
                default_factory=dict,
            ),
        },
    )
)
_REQUIRED = ("network", "spec", "inputs", "outputs")
_JSON = ("inputs", "outputs", "labels", "weights", "sizes", "sources")
_TEXT = {
    "network": "network",
    "spec": "spec",
    "netspec_version": "version",
    "precision": "precision",
}


def from_props(props: Mapping[str, str], source: str) -> ModelInfo:
    """Read back what `ModelInfo.to_props` wrote (or an older netspec did), checking every
    field; raise MetadataError naming `source` and the field."""
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
    raw["decoding"] = _read_decoding(props, source)
    try:
        info: ModelInfo = _MODEL_INFO.validate_python(raw)
    except ValidationError as e:
        raise MetadataError(f"{source}: bad netspec metadata: {first_error(e)}") from None
    return info


def _read_decoding(props: Mapping[str, str], source: str) -> Decoding | None:
    """The file's `decoding`, or the legacy entry of one decoder read as its decoding: the
    name checked, the parameters plain values of bounded count and size (the decoder checks
    what they mean); None where there is none."""
    keys = [key for key in ("decoding", *_LEGACY) if key in props]
    if not keys:
        return None
    if len(keys) > 1:
        raise MetadataError(
            f"{source}: bad netspec metadata: {' and '.join(keys)}: a file has one decoding"
        )
    key = keys[0]
    value = _json(props[key], key, source)
    if value is None:
        return None
    if key in _LEGACY:
        if not isinstance(value, dict):
            raise MetadataError(f"{source}: bad netspec metadata: {key}: expected a JSON object")
        value = {**value, DECODER: key}
    try:
        decoding: Decoding = _DECODING.validate_python(value)
    except ValidationError as e:
        raise MetadataError(f"{source}: bad netspec metadata: {first_error(e, key)}") from None
    return decoding


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


def first_error(e: ValidationError, root: str = "") -> str:
    """`inputs[0].std: Input should be greater than 0`, from pydantic's first error, its
    place under `root` (the entry a record was read from, where it is not the whole)."""
    error = e.errors(include_url=False)[0]
    where = root
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
