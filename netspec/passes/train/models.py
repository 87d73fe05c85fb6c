"""The `train` section's models: what `section.py` validates a section into, and what
`netspec train` runs by (it imports them as `netspec.trainspec`).

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

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from netspec.artifact import MAX_CHANNELS
from netspec.data.registry import SCENE_SWITCHES, Family
from netspec.ops.registry import LossParams, head_losses


class SectionModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


PosFloat = Annotated[float, Field(gt=0)]
P = TypeVar("P", bound=LossParams)


Fraction = Annotated[float, Field(gt=0, le=1)]
Share = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class Normalize(SectionModel):
    """`normalize mean=0.1307 std=0.3081`: pixels in [0, 1] become ``(x - mean) / std``, one
    value for every channel or one per channel (`mean=0.4914,0.4822,0.4465`). `normalize
    auto`: each channel's mean and std computed from the training set when the run is made
    (netspec.train.data.measure), then recorded in the run with ``auto`` kept, so that
    every later use of the run reads them from there."""

    mean: float | Annotated[tuple[float, ...], Field(min_length=1, max_length=MAX_CHANNELS)] = 0.0
    std: (
        PosFloat | Annotated[tuple[PosFloat, ...], Field(min_length=1, max_length=MAX_CHANNELS)]
    ) = 1.0
    auto: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``auto`` only where set, so that a run made before it compares equal on
        `--resume`."""
        data: dict[str, Any] = handler(self)
        if not self.auto:
            data.pop("auto", None)
        return data


CROP_RATIO = (3 / 4, 4 / 3)  # a random resized crop's aspect ratios, as torchvision's


class Augment(SectionModel):
    """Invariance by training: random deformations, fresh every epoch. A random resized crop
    (Szegedy et al. 2015, torchvision's RandomResizedCrop) takes a share ``crop_scale`` of
    the image's area with an aspect ratio in ``crop_ratio`` and resizes it to the input;
    `random_crop` shifts by whole pixels within ``crop_pad`` (a crop of the image padded on
    every side); ``flip`` mirrors left to right with that probability; the colour jitter
    scales brightness, contrast and saturation by factors within 1 plus or minus each."""

    rotate: Annotated[float, Field(ge=0, le=180)] | None = None  # degrees, +-
    scale: tuple[PosFloat, PosFloat] | None = None  # factor range
    shift: Annotated[float, Field(ge=0)] | None = None  # pixels, +-
    shear: Annotated[float, Field(ge=0, lt=90)] | None = None  # degrees, +-
    squeeze: tuple[PosFloat, PosFloat] | None = None  # width x k, height / k: k's range
    elastic_alpha: Annotated[float, Field(ge=0)] | None = None  # displacement scale, pixels
    elastic_sigma: PosFloat = 4.0  # smoothness of the displacement field, pixels
    crop_scale: tuple[Fraction, Fraction] | None = None  # random_resized_crop: area share
    crop_ratio: tuple[PosFloat, PosFloat] | None = None  # its aspect ratios (CROP_RATIO)
    crop_pad: Annotated[int, Field(ge=0, le=4096)] | None = None  # random_crop: pixels, +-
    flip: Share | None = None  # probability of a left-right mirror
    brightness: NonNegative | None = None  # colour jitter: factor within 1 +- this
    contrast: NonNegative | None = None
    saturation: NonNegative | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.words)

    @property
    def words(self) -> tuple[str, ...]:
        """The augmentations on, as the section names them, in the order they apply."""
        on = (
            w
            for w, fields in _SWITCHES.items()
            if any(getattr(self, f) is not None for f in fields)
        )
        return tuple(on)

    @property
    def geometric(self) -> bool:
        """Whether an image moves (anything but the colour jitter)."""
        return any(w != "colour_jitter" for w in self.words)


# each augmentation word, and the fields whose value turns it on
_SWITCHES = {
    "rotate": ("rotate",),
    "scale": ("scale",),
    "shift": ("shift",),
    "shear": ("shear",),
    "squeeze": ("squeeze",),
    "elastic": ("elastic_alpha",),
    "random_resized_crop": ("crop_scale",),
    "random_crop": ("crop_pad",),
    "flip": ("flip",),
    "colour_jitter": ("brightness", "contrast", "saturation"),
}


# The losses a section may name that netspec knows itself; a head's operation brings its own
# (`OpDef.loss`, e.g. `loss ssd`).
BUILT_IN_LOSSES = ("cross_entropy", "rbf", "mse", "yolo")


def loss_names() -> tuple[str, ...]:
    """Every loss a section may name: the built-in ones, then those the heads bring."""
    heads = tuple(head_losses())
    assert not set(heads) & set(BUILT_IN_LOSSES), f"a head's loss is built in: {heads}"
    return BUILT_IN_LOSSES + heads


class Loss(SectionModel):
    """`loss NAME key=value ...`: a built-in loss, whose parameters are the fields below, or
    the loss a head's operation brings (`OpDef.loss`: `loss ssd match=0.6`), whose other
    parameters that operation's model checks (located at their keys like any field's) and
    `params` returns; a dump writes them beside the fields, as the section does."""

    name: str = "cross_entropy"
    smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # `loss yolo`: YOLO v1's weights of the box coordinates and of empty cells' confidence;
    # None is the paper's value (5 and 0.5), and keeps the runs made before them resumable
    lambda_coord: Annotated[float, Field(ge=0)] | None = None
    lambda_noobj: Annotated[float, Field(ge=0)] | None = None
    _head: LossParams | None = PrivateAttr(default=None)  # a head's loss's parameters

    @field_validator("name", mode="before")
    @classmethod
    def _known(cls, name: Any) -> Any:
        """Refuse a name no loss has as a Literal would: the error lists every name."""
        names = loss_names()
        if name not in names:
            expected = ", ".join(f"'{n}'" for n in names[:-1]) + f" or '{names[-1]}'"
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return name

    @model_validator(mode="wrap")
    @classmethod
    def _head_params(cls, data: Any, handler: ModelWrapValidatorHandler[Loss]) -> Loss:
        """A head's loss: the keys that are no field checked by its parameter model."""
        name = data.get("name") if isinstance(data, dict) else None
        head = head_losses().get(name) if isinstance(name, str) else None
        if head is None:
            return handler(data)
        loss = handler({k: v for k, v in data.items() if k in cls.model_fields})
        rest = {k: v for k, v in data.items() if k not in cls.model_fields}
        loss._head = head.params.model_validate(rest)
        return loss

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        """A head's loss's parameters beside the fields."""
        data = handler(self)
        if self._head is not None:
            data.update(self._head.model_dump(mode=info.mode))
        return data

    def params(self, model: type[P]) -> P:
        """The parameters of the head's loss this is, as its operation's ``model``."""
        if not isinstance(self._head, model):
            raise TypeError(f"loss {self.name} has no {model.__name__}")
        return self._head

    @property
    def yolo_weights(self) -> tuple[float, float]:
        """(lambda_coord, lambda_noobj), the paper's 5 and 0.5 unless the section says."""
        coord = 5.0 if self.lambda_coord is None else self.lambda_coord
        return coord, 0.5 if self.lambda_noobj is None else self.lambda_noobj


class Optimizer(SectionModel):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PosFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class Schedule(SectionModel):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    step: Annotated[int, Field(gt=0)] = 10  # epochs between decays (step)
    gamma: PosFloat = 0.1


class Scenes(SectionModel):
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


class Cascade(SectionModel):
    """`cascade stages=6 features=[2, 5, 10, 20, 40, 60] detection=0.99 false_positive=0.5`:
    a Viola-Jones cascade boosted stage by stage (netspec.tasks.cascade) instead of trained
    by gradient steps. Stage k adds stumps, at most ``features[k]``, until it lets through
    at most ``false_positive`` of its negatives, its threshold lowered so that it keeps at
    least ``detection`` of its positives; ``negatives`` background windows train each stage
    (those the stages before it let through)."""

    stages: Annotated[int, Field(gt=0, le=64)]
    features: Annotated[tuple[Annotated[int, Field(gt=0, le=10_000)], ...], Field(min_length=1)]
    detection: Annotated[float, Field(gt=0, lt=1)] = 0.99
    false_positive: Annotated[float, Field(gt=0, lt=1)] = 0.5
    negatives: Annotated[int, Field(gt=0, le=1_000_000)] = 4000

    @field_validator("features", mode="after")
    @classmethod
    def _one_per_stage(cls, features: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        stages = info.data.get("stages")
        if isinstance(stages, int) and len(features) != stages:
            raise PydanticCustomError(
                "stage_count",
                "{stages} counts (one per stage)",
                {"stages": stages},
            )
        return features


class TrainConfig(SectionModel):
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
    # `resize N`: each image's shorter side scaled to N pixels (at least enough to cover
    # the input), then its centre cut to the input's size (netspec.data.sizing)
    resize: Annotated[int, Field(gt=0, le=65536)] | None = None
    cascade: Cascade | None = None  # a Viola-Jones cascade's boosting (netspec.tasks.cascade)
