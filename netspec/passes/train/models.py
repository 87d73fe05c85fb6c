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

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from netspec.data.registry import SCENE_SWITCHES, Family


class SectionModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


PosFloat = Annotated[float, Field(gt=0)]


class Normalize(SectionModel):
    mean: float = 0.0
    std: PosFloat = 1.0


class Augment(SectionModel):
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


class Loss(SectionModel):
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
