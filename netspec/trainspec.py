"""The `train` section's models: validated here (for the `train` pass, passes/train.py),
used by `netspec train`.

train lenet on mnist {
    normalize mean=0.1307 std=0.3081
    augment {
        rotate 15deg
        scale 0.9..1.1
        elastic alpha=34 sigma=4
    }
    loss cross_entropy smoothing=0.1
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

from netspec.data.registry import DATASETS
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
    name: Literal["cross_entropy", "rbf", "mse"] = "cross_entropy"
    smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0


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


def train_config(train: ast.Train, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Validate a train section (with --set overrides applied) into a TrainConfig."""
    errors = Collector()
    if train.dataset not in DATASETS:
        errors.add(_unknown_dataset(train))
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
