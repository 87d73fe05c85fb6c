"""The `train` section's models: validated here (for the `train` pass, passes/train.py),
used by `netspec train`.

train lenet on mnist {
    normalize mean=0.1307 std=0.3081
    augment {
        rotate 15deg
        scale 0.9..1.1
        elastic alpha=34 sigma=4
    }
    loss cross_entropy smoothing=0.1      # or: loss yolo lambda_coord=5 lambda_noobj=0.5
    optimizer sgd lr=0.05 momentum=0.9 nesterov
    schedule onecycle
    epochs 10
    batch 128
}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netspec.data.registry import DATASETS, SCENE_DATASETS, SCENE_SWITCHES, Family
from netspec.diagnostics import (
    Collector,
    Diagnostic,
    Span,
    SpecError,
    did_you_mean,
    literal_options,
    requirement,
)
from netspec.errors import UsageError
from netspec.passes.values import Evaluator, Interval, Quantity, Word, describe
from netspec.syntax import ast


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


PosFloat = Annotated[float, Field(gt=0)]


class Normalize(_Model):
    mean: float = 0.0
    std: PosFloat = 1.0


class Augment(_Model):
    """Invariance by training: random deformations, fresh every epoch."""

    rotate: Annotated[float, Field(ge=0, le=180)] | None = None  # degrees, +-
    scale: tuple[PosFloat, PosFloat] | None = None  # factor range
    shift: Annotated[float, Field(ge=0)] | None = None  # pixels, +-
    shear: Annotated[float, Field(ge=0, lt=90)] | None = None  # degrees, +-
    squeeze: tuple[PosFloat, PosFloat] | None = None  # width x k, height / k: k's range
    elastic_alpha: Annotated[float, Field(ge=0)] | None = None  # displacement scale, pixels
    elastic_sigma: PosFloat = 4.0  # smoothness of the displacement field, pixels

    @property
    def enabled(self) -> bool:
        return any(
            v is not None
            for v in (
                self.rotate,
                self.scale,
                self.shift,
                self.shear,
                self.squeeze,
                self.elastic_alpha,
            )
        )


class Loss(_Model):
    name: Literal["cross_entropy", "rbf", "mse", "yolo"] = "cross_entropy"
    smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # `loss yolo`: YOLO v1's weights of the box coordinates and of empty cells' confidence;
    # None is the paper's value (5 and 0.5), and keeps the runs made before them resumable
    lambda_coord: Annotated[float, Field(ge=0)] | None = None
    lambda_noobj: Annotated[float, Field(ge=0)] | None = None

    @property
    def yolo_weights(self) -> tuple[float, float]:
        """(lambda_coord, lambda_noobj), the paper's 5 and 0.5 unless the section says."""
        coord = 5.0 if self.lambda_coord is None else self.lambda_coord
        return coord, 0.5 if self.lambda_noobj is None else self.lambda_noobj


class Optimizer(_Model):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PosFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class Schedule(_Model):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    step: Annotated[int, Field(gt=0)] = 10  # epochs between decays (step)
    gamma: PosFloat = 0.1


class Scenes(_Model):
    """`scenes ...` on mnist_scenes or mnist_windows: the scenes drawn to train and test
    on. `randomize` turns every randomization on; one named (`blur=false`) overrides it."""

    size: Annotated[int, Field(ge=16, le=2048)] = 128
    count: Annotated[int, Field(gt=0, le=1_000_000)] = 4000
    test: Annotated[int, Field(gt=0, le=1_000_000)] = 500
    digits: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=1, le=64)]] = (1, 5)
    scale: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] = (14, 56)
    overlap: Annotated[float, Field(ge=0, lt=1)] = 0.1  # the largest IoU of two digits' boxes
    randomize: bool = False
    background: Family | None = None  # draw only this background family
    backgrounds: bool | None = None
    distractors: bool | None = None
    contrast: bool | None = None
    brightness: bool | None = None
    invert: bool | None = None
    blur: bool | None = None
    negatives: Annotated[float, Field(ge=0, le=100)] = 1.0  # background windows per digit
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0

    def switches(self) -> tuple[str, ...]:
        """The randomizations on: each named one as given, the rest as `randomize`
        (a `background` family turns backgrounds on unless told otherwise)."""
        given = {n: getattr(self, n) for n in SCENE_SWITCHES}
        if given["backgrounds"] is None and self.background is not None:
            given["backgrounds"] = True
        return tuple(n for n, on in given.items() if (self.randomize if on is None else on))


class TrainConfig(_Model):
    network: str
    dataset: str
    normalize: Normalize = Normalize()
    augment: Augment = Augment()
    loss: Loss = Loss()
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    epochs: Annotated[int, Field(gt=0, le=100_000)] = 10
    batch: Annotated[int, Field(gt=0, le=1_000_000)] = 128
    clip: PosFloat | None = None
    seed: int = 0
    scenes: Scenes | None = None


# setting name -> (its model or a scalar field of TrainConfig, positional fields)
_SECTIONS: dict[str, tuple[type[_Model] | None, tuple[str, ...]]] = {
    "normalize": (Normalize, ("mean", "std")),
    "loss": (Loss, ("name",)),
    "optimizer": (Optimizer, ("name",)),
    "schedule": (Schedule, ("name",)),
    "epochs": (None, ("value",)),
    "batch": (None, ("value",)),
    "clip": (None, ("value",)),
    "seed": (None, ("value",)),
    "scenes": (Scenes, ()),
}
# --set keys for training values, and where each lands
TRAIN_KEYS: dict[str, tuple[str, ...]] = {
    "epochs": ("epochs",),
    "batch": ("batch",),
    "clip": ("clip",),
    "seed": ("seed",),
    "lr": ("optimizer", "lr"),
    "momentum": ("optimizer", "momentum"),
    "weight_decay": ("optimizer", "weight_decay"),
    "optimizer": ("optimizer", "name"),
    "schedule": ("schedule", "name"),
    "loss": ("loss", "name"),
    "smoothing": ("loss", "smoothing"),
    "lambda_coord": ("loss", "lambda_coord"),
    "lambda_noobj": ("loss", "lambda_noobj"),
    "randomize": ("scenes", "randomize"),
    "background": ("scenes", "background"),
}


def _plain(value: Any) -> Any:
    if isinstance(value, Quantity):
        return value.value
    if isinstance(value, Interval):
        return (_plain(value.low), _plain(value.high))
    if isinstance(value, Word):
        return str(value)
    return value


def _setting_args(
    op: ast.Op, positional: tuple[str, ...], model: type[_Model] | None
) -> tuple[dict[str, Any], dict[str, Span]]:
    ev = Evaluator({})
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    flags = {k for k, f in (model.model_fields.items() if model else ()) if f.annotation is bool}
    pos = iter(positional)
    for arg in op.args:
        value = ev.value(arg.value)
        if arg.name is None and isinstance(value, Word) and value in flags:
            key, value = str(value), True
        elif arg.name is None:
            key = next(pos, "")
            if not key:
                raise SpecError(
                    [
                        Diagnostic(
                            "E501",
                            f"too many values for '{op.name}'",
                            arg.span,
                            hint="give the others by name, e.g. lr=0.1",
                        )
                    ]
                )
        else:
            key = arg.name
        values[key], spans[key] = _plain(value), arg.span
    return values, spans


_AUGMENTS: dict[str, tuple[str, ...]] = {
    "rotate": ("rotate",),
    "scale": ("scale",),
    "shift": ("shift",),
    "shear": ("shear",),
    "squeeze": ("squeeze",),
    "elastic": ("elastic_alpha", "elastic_sigma"),
}


def _augment(ops: tuple[ast.Op, ...], errors: Collector) -> tuple[dict[str, Any], dict[str, Span]]:
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    for op in ops:
        fields = _AUGMENTS.get(op.name)
        if fields is None:
            errors.error(
                "E502",
                f"unknown augmentation '{op.name}'",
                op.name_span,
                hint=did_you_mean(op.name, _AUGMENTS) or f"known: {', '.join(_AUGMENTS)}",
            )
            continue
        named = {"alpha": "elastic_alpha", "sigma": "elastic_sigma"}
        ev = Evaluator({})
        pos = iter(fields)
        for arg in op.args:
            key = named.get(arg.name, arg.name) if arg.name else next(pos, "")
            if key not in fields:
                errors.error("E503", f"'{op.name}' takes {', '.join(fields)}", arg.span)
                continue
            values[key], spans[key] = _plain(ev.value(arg.value)), arg.span
    return values, spans


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _refuse_flags(
    by_field: Mapping[tuple[str, ...], list[Any]], flags: Mapping[tuple[str, ...], str]
) -> None:
    """A bad value given with --set is a usage error (exit 2) that names the flag, not a
    mistake in the spec."""
    for loc, errs in by_field.items():
        if loc in flags:
            raise UsageError(f"{flags[loc]}: {' '.join(loc)} must be {requirement(errs)}")


def _unknown_dataset(train: ast.Train) -> Diagnostic:
    diag = Diagnostic(
        "E506",
        f"netspec cannot load a dataset called '{train.dataset}'",
        train.dataset_span,
        hint=did_you_mean(train.dataset, DATASETS)
        or "netspec loads the datasets below; for other images, name their format "
        "(idx, folders or npz) and pass --data PATH",
    )
    for d in DATASETS.values():
        diag = diag.with_note(f"{d.name}: {d.summary}")
    return diag


def _scenes_elsewhere(train: ast.Train) -> Diagnostic | None:
    """A `scenes` setting on a dataset that draws no scenes."""
    if train.dataset in SCENE_DATASETS or train.dataset not in DATASETS:
        return None
    op = next((o for o in train.settings if o.name == "scenes"), None)
    if op is None:
        return None
    return Diagnostic(
        "E507",
        f"'scenes' sets up generated scenes, but this section trains on '{train.dataset}'",
        op.name_span,
        hint=f"train on {' or '.join(SCENE_DATASETS)}, or remove the setting",
    )


def train_config(train: ast.Train, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Validate a train section (with --set overrides applied) into a TrainConfig."""
    errors = Collector()
    if train.dataset not in DATASETS:
        errors.add(_unknown_dataset(train))
    if (misplaced := _scenes_elsewhere(train)) is not None:
        errors.add(misplaced)
    data: dict[str, Any] = {"network": train.network, "dataset": train.dataset}
    spans: dict[tuple[str, ...], Span] = {}
    for op in train.settings:
        if op.name not in _SECTIONS:
            errors.error(
                "E504",
                f"unknown training setting '{op.name}'",
                op.name_span,
                hint=did_you_mean(op.name, [*_SECTIONS, "augment"]),
            )
            continue
        model, positional = _SECTIONS[op.name]
        values, where = _setting_args(op, positional, model)
        if model is None:
            data[op.name] = values.get("value")
            spans[(op.name,)] = op.span
        else:
            data[op.name] = values
            spans.update({(op.name, k): s for k, s in where.items()})
            spans[(op.name,)] = op.span
    data["augment"], aspans = _augment(train.augment, errors)
    spans.update({("augment", k): s for k, s in aspans.items()})
    flags: dict[tuple[str, ...], str] = {}  # where a --set value landed -> the flag
    for key, value in (overrides or {}).items():
        _set(data, TRAIN_KEYS[key], value)
        flags[TRAIN_KEYS[key]] = f"--set {key}={value}"
    errors.raise_if_any()
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        by_field: dict[tuple[str, ...], list[Any]] = {}
        for err in e.errors():
            by_field.setdefault(tuple(str(p) for p in err["loc"])[:2], []).append(err)
        _refuse_flags(by_field, flags)
        for loc, errs in by_field.items():
            given = errs[0].get("input")
            options = literal_options(errs)
            errors.error(
                "E505",
                f"{' '.join(loc)} must be {requirement(errs)}, got {describe(given)}",
                spans.get(loc) or spans.get(loc[:1]) or train.span,
                hint=did_you_mean(given, options) if options and isinstance(given, str) else None,
            )
        raise SpecError(errors.items) from None
