"""The task registry (netspec.tasks): each network is trained as the first task that takes
it, a task with two heads trains through the same loop, and nothing above the registry
compares a task by its name."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import netspec
import netspec.tasks
from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.data import DataError
from netspec.lower import to_torch
from netspec.tasks import TASKS, Target, base, target_of
from netspec.tasks.base import Deform, Fitted, Given, Log, Outputs, Task, Trained
from netspec.train.data import Tensors
from netspec.train.loop import Place, evaluate, make_parts, train_epoch
from netspec.trainspec import Augment, Loss, Optimizer, TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
# The layers above the registry: they hold task records, so they ask them, never names.
ABOVE = ("train", "cli", "show", "serve", "probe", "detect")

NETWORKS = {
    "classes": ("network n(x: 1x8x8) {\n    dense 10\n}\n", "cross_entropy"),
    "map": ("network n(x: 1x8x8) {\n    conv 1 3x3 pad=same\n}\n", "mse"),
    "segmentation": ("network n(x: 1x8x8) {\n    conv 3 3x3 pad=same\n}\n", "cross_entropy"),
    "boxes": (
        "network n(x: 1x32x32) {\n    conv 8 1x1 | maxpool 4x4\n"
        "    b = conv 8 1x1 | detect boxes=1 classes=3\n    output b\n}\n",
        "yolo",
    ),
}
TWO_HEADS = """
network two(x: 1x8x8) {
    trunk = conv 4 3x3 pad=same | relu
    left = trunk | conv 1 3x3 pad=same
    right = trunk | conv 1 1x1
    output left, right
}
"""


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_each_network_is_trained_as_the_task_that_takes_it(name: str) -> None:
    text, loss = NETWORKS[name]
    target = target_of(netspec.compile(text), Loss(name=loss))  # type: ignore[arg-type]
    assert target.task.name == name
    assert target.task in TASKS


def test_a_map_with_a_loss_for_scores_is_refused() -> None:
    with pytest.raises(DataError, match="loss rbf is for class scores; a map output trains"):
        target_of(netspec.compile(NETWORKS["map"][0]), Loss(name="rbf"))


@dataclass(frozen=True)
class TwoMaps(Task):
    """Two map heads, each trained to reconstruct the input: a task of two outputs."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        maps = all(o.kind == "map" for o in outputs)
        return Target(self, outputs[0].shape or (), reconstruct=True) if maps else None

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        return Fitted(target, images[0], images[1])

    def check_augment(self, spec: Augment, target: Target) -> None:
        """The targets are the inputs: they deform together."""

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, deform: Deform, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = deform.images(x)
        return x, x

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        each = [F.mse_loss(o, y, reduction="none").flatten(1).mean(1).sum() for o in outs]
        return torch.stack(each).sum()

    def predict(self, outs: Outputs, loss: Loss, target: Target) -> torch.Tensor:
        return torch.stack(outs, 1)

    def scores(self, loss: float, acc: float) -> str:
        return f"loss {loss:.4g}"

    def tested(self, test: base.Tested, n: int) -> str:
        return f"loss {test.loss:.4g} on {n} maps"

    def draw(self, trained: Trained) -> list[Path]:
        return trained.maps()


def test_a_task_of_two_heads_trains_through_the_same_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled = netspec.compile(TWO_HEADS)
    with pytest.raises(DataError, match=r"1 input\(s\) and 2 output\(s\); training needs one"):
        target_of(compiled, Loss(name="mse"))
    two = TwoMaps("two maps", outputs=2)
    monkeypatch.setattr(netspec.tasks, "TASKS", (*TASKS, two))
    target = target_of(compiled, Loss(name="mse"))
    assert target.task is two and target.shape == (1, 8, 8)

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=gen)
    data = Tensors(x, x, x[:16], x[:16], "random", (), target)
    config = TrainConfig(
        network="two",
        dataset="random",
        loss=Loss(name="mse"),
        optimizer=Optimizer(name="adam", lr=0.01),
        batch=16,
    )
    place = Place(torch.device("cpu"))
    torch.manual_seed(0)
    module = to_torch(compiled)
    parts = make_parts(module, module, config, len(x), place)
    before = evaluate(module, data.test_x, data.test_y, config, place, target)
    for epoch in range(1, 4):
        result = train_epoch(parts, data, config, place, epoch, lambda *_: None)
        assert math.isfinite(result.loss)
    after = evaluate(module, data.test_x, data.test_y, config, place, target)
    assert after.loss < before.loss and math.isnan(after.acc)


def _task_names_compared(path: Path, names: set[str]) -> list[str]:
    """`x.task == "boxes"`, `task in ("map", "boxes")` and the like in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        about_task = any("task" in ast.unparse(s) for s in sides)
        strings = {
            c.value
            for s in sides
            for c in ast.walk(s)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        }
        if about_task and strings & names:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_layer_above_the_registry_compares_a_task_by_name() -> None:
    names = {t.name for t in TASKS}
    files = [p for layer in ABOVE for p in sorted((ROOT / "netspec" / layer).rglob("*.py"))]
    assert files
    found = [hit for path in files for hit in _task_names_compared(path, names)]
    assert not found, "ask the task record (netspec.tasks) instead:\n" + "\n".join(found)
