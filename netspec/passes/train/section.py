"""Validating a `train` section, with the `--set` training values applied, into a
TrainConfig (models.py); and the dataset check that `netspec compile` only warns about
(W506) and `netspec train` refuses (E506).

>>> from netspec.syntax.parser import parse
>>> section = parse("train n on mnist {\\n    epochs 3\\n    optimizer adam lr=0.001\\n}").items[0]
>>> config = train_config(section, {"batch": 32})
>>> config.epochs, config.batch, config.optimizer.name, config.optimizer.lr
(3, 32, 'adam', 0.001)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from netspec.data.registry import DATASETS, SCENE_DATASETS
from netspec.diagnostics import (
    Collector,
    Diagnostic,
    Severity,
    Span,
    SpecError,
    did_you_mean,
    literal_options,
    requirement,
)
from netspec.errors import UsageError
from netspec.passes.hints import setting_hint
from netspec.passes.train.models import (
    Cascade,
    Loss,
    Normalize,
    Optimizer,
    Scenes,
    Schedule,
    SectionModel,
    TrainConfig,
)
from netspec.passes.values import Evaluator, Interval, Quantity, Word, describe
from netspec.syntax import ast

# setting name -> (its model or a scalar field of TrainConfig, positional fields)
_SECTIONS: dict[str, tuple[type[SectionModel] | None, tuple[str, ...]]] = {
    "normalize": (Normalize, ("mean", "std")),
    "loss": (Loss, ("name",)),
    "optimizer": (Optimizer, ("name",)),
    "schedule": (Schedule, ("name",)),
    "epochs": (None, ("value",)),
    "batch": (None, ("value",)),
    "clip": (None, ("value",)),
    "seed": (None, ("value",)),
    "scenes": (Scenes, ()),
    "resize": (None, ("value",)),
    "cascade": (Cascade, ()),
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
    "resize": ("resize",),
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
    op: ast.Op, positional: tuple[str, ...], model: type[SectionModel] | None
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


@dataclass(frozen=True)
class _Word:
    """An augmentation word: the Augment fields its values set, in positional order, the
    names its arguments may have, and what the word alone sets."""

    fields: tuple[str, ...]
    names: Mapping[str, str] = field(default_factory=dict)  # argument name -> field
    alone: Mapping[str, Any] = field(default_factory=dict)

    @property
    def described(self) -> str:
        """Its values in order, each by the name an argument gives it."""
        by_field = {f: n for n, f in self.names.items()}
        return ", ".join(by_field.get(f, f) for f in self.fields)


_JITTER = _Word(
    ("brightness", "contrast", "saturation"),
    alone={"brightness": 0.4, "contrast": 0.4, "saturation": 0.4},
)
_AUGMENTS: dict[str, _Word] = {
    "rotate": _Word(("rotate",)),
    "scale": _Word(("scale",)),
    "shift": _Word(("shift",)),
    "shear": _Word(("shear",)),
    "squeeze": _Word(("squeeze",)),
    "elastic": _Word(
        ("elastic_alpha", "elastic_sigma"), {"alpha": "elastic_alpha", "sigma": "elastic_sigma"}
    ),
    "random_resized_crop": _Word(
        ("crop_scale", "crop_ratio"),
        {"scale": "crop_scale", "ratio": "crop_ratio"},
        {"crop_scale": (0.08, 1.0)},  # torchvision's RandomResizedCrop
    ),
    "random_crop": _Word(("crop_pad",), {"pad": "crop_pad"}),
    "flip": _Word(("flip",), {"p": "flip"}, {"flip": 0.5}),
    "colour_jitter": _JITTER,
    "color_jitter": _JITTER,
}


def _augment(ops: tuple[ast.Op, ...], errors: Collector) -> tuple[dict[str, Any], dict[str, Span]]:
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    for op in ops:
        word = _AUGMENTS.get(op.name)
        if word is None:
            errors.error(
                "E502",
                f"unknown augmentation '{op.name}'",
                op.name_span,
                hint=did_you_mean(op.name, _AUGMENTS) or f"known: {', '.join(_AUGMENTS)}",
            )
            continue
        ev = Evaluator({})
        pos = iter(word.fields)
        if not op.args:
            values.update(word.alone)
            spans.update(dict.fromkeys(word.alone, op.span))
        for arg in op.args:
            key = word.names.get(arg.name, arg.name) if arg.name else next(pos, "")
            if key not in word.fields:
                errors.error("E503", f"'{op.name}' takes {word.described}", arg.span)
                continue
            values[key], spans[key] = _plain(ev.value(arg.value)), arg.span
    return values, spans


def _shown(loc: tuple[str, ...]) -> str:
    """A setting's place as the section writes it: `augment crop_scale` is `augment
    random_resized_crop scale`, `augment flip` as it is."""
    field = loc[1] if loc[0] == "augment" and len(loc) > 1 else ""
    word = next((w for w in _AUGMENTS.values() if field in w.fields and len(w.fields) > 1), None)
    if word is None:
        return " ".join(loc)
    spoken = next((w for w, d in _AUGMENTS.items() if d is word), field)
    name = next((n for n, f in word.names.items() if f == field), field)
    return f"augment {spoken} {name}"


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


def unknown_dataset(train: ast.Train, severity: Severity) -> Diagnostic | None:
    """A dataset netspec cannot load, with those it can: a warning (W506) for `netspec
    compile`, which checks the network alone; an error (E506) for `netspec train`."""
    if train.dataset in DATASETS:
        return None
    warning = severity == "warning"
    diag = Diagnostic(
        "W506" if warning else "E506",
        f"netspec cannot load a dataset called '{train.dataset}'"
        + (": `netspec train` refuses it" if warning else ""),
        train.dataset_span,
        severity,
        hint=did_you_mean(train.dataset, DATASETS)
        or "netspec loads the datasets below; for other images, name their format "
        "(idx, folders or npz) and pass --data PATH",
    )
    for d in DATASETS.values():
        diag = diag.with_note(f"{d.name}: {d.summary}")
    return diag


def require_dataset(train: ast.Train | None) -> None:
    """Raise SpecError (E506) when netspec cannot load the dataset `train` names: what
    `netspec train` checks before it reads anything (no section: the defaults, MNIST)."""
    refused = unknown_dataset(train, "error") if train is not None else None
    if refused is not None:
        raise SpecError([refused])


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


def _normalize(
    values: dict[str, Any], spans: Mapping[str, Span], channels: int | None, errors: Collector
) -> None:
    """Check a `normalize` setting's values where the section wrote them, before the model
    does: `auto` or numbers, not both; a list of as many values as the input has channels
    (a list of one is a number); every std above 0."""
    if values.get("auto") is True and ("mean" in values or "std" in values):
        errors.error(
            "E508",
            "'normalize auto' computes the mean and std from the training set",
            spans.get("mean") or spans["std"],
            hint="give them, or auto, not both",
        )
    for key in ("mean", "std"):
        if key not in values:
            continue
        value = values[key]
        listed = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in listed):
            errors.error(
                "E505",
                f"normalize {key} must be numbers, one for every channel or one per channel, "
                f"got {describe(next(v for v in listed if not isinstance(v, int | float)))}",
                spans[key],
            )
            continue
        if len(listed) == 1:
            values[key] = listed[0]
        elif channels is not None and len(listed) != channels:
            errors.error(
                "E508",
                f"normalize {key} has {len(listed)} values, but the input has "
                f"{channels} channel{'s' if channels != 1 else ''}",
                spans[key],
                hint="give one value"
                if channels == 1
                else f"give one value for every channel, or {channels}, one per channel",
            )
        if key == "std" and (low := min(listed)) <= 0:
            errors.error(
                "E505", f"normalize std must be greater than 0, got {describe(low)}", spans[key]
            )


def train_config(
    train: ast.Train, overrides: Mapping[str, Any] | None = None, channels: int | None = None
) -> TrainConfig:
    """Validate a train section (with --set overrides applied) into a TrainConfig;
    ``channels`` are the network's input's, that a per-channel normalization must list. The
    dataset may be one netspec cannot load (see `unknown_dataset`)."""
    errors = Collector()
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
                hint=setting_hint(op, {k: m for k, (m, _) in _SECTIONS.items()}, TRAIN_KEYS),
            )
            continue
        model, positional = _SECTIONS[op.name]
        values, where = _setting_args(op, positional, model)
        if model is None:
            data[op.name] = values.get("value")
            spans[(op.name,)] = op.span
        else:
            if op.name == "normalize":
                _normalize(values, where, channels, errors)
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
                f"{_shown(loc)} must be {requirement(errs)}, got {describe(given)}",
                spans.get(loc) or spans.get(loc[:1]) or train.span,
                hint=did_you_mean(given, options) if options and isinstance(given, str) else None,
            )
        raise SpecError(errors.items) from None
