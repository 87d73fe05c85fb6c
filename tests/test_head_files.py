"""A new kind of head is four modules and its documentation, with no shared list to edit
(issue 19): its operation in netspec/ops/ (with the loss it trains with), its torch half in
netspec/lower/ (with its builder), its task in netspec/tasks/ and its decoder in
netspec/runtime/decoders/. Each package discovers its modules.

The proof: a toy head, `centre` (the best position of a heat map, as a box), written here as
those four modules and dropped beside each package's own, compiles with its `loss centre`
checked where the section is, lowers, trains through the loop, exports and is found again
by `detect` through ONNX Runtime; and SSD, the head that came this way, is named by no
module that collects the others."""

from __future__ import annotations

import ast
import math
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import netspec
import netspec.lower
import netspec.ops
import netspec.runtime.decoders
import netspec.runtime.detect
import netspec.tasks
from netspec.artifact import KINDS
from netspec.diagnostics import SpecError
from netspec.export.onnx_export import export_compiled
from netspec.lower import BUILDERS, to_torch
from netspec.ops import REGISTRY, head_losses
from netspec.runtime.detect import DetectOptions, detect
from netspec.runtime.session import open_model
from netspec.tasks import target_of
from netspec.train.data import Tensors
from netspec.train.loop import Place, evaluate, make_parts, train_epoch

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread

NETSPEC = Path(netspec.__file__).resolve().parent

OP = """
from typing import Annotated

from pydantic import Field

from netspec.artifact import Decoding
from netspec.ir import OpParams
from netspec.ops.registry import HeadLoss, LossParams, OpDef, Pos, ShapeError, register, spatial


class CentreParams(OpParams):
    size: Pos = 4  # the side of the box around the best position, in input pixels


class CentreLoss(LossParams):
    weight: Annotated[float, Field(gt=0)] = 1.0


def _shape(p, ins):
    c, h, w = spatial(ins[0], "centre")
    if c != 1:
        raise ShapeError(f"centre reads one heat map, got {c} channels")
    return ins[0]


def _decoding(p, shape, rf, image):
    return Decoding("centre", {"size": p.size})


register(
    OpDef(
        name="centre",
        params=CentreParams,
        shape=_shape,
        output="centres",
        head=True,
        decoding=_decoding,
        loss=HeadLoss("centre", CentreLoss),
        doc="A heat map's best position, as a box of `size` pixels.",
    )
)
"""

LOWER = '''
import torch
from torch import nn

from netspec.lower.detection import Exported
from netspec.lower.lowered import Call, Lowered


class Best(nn.Module):
    """(N, 1, H, W) heat map -> (N, 1, 5): the best position's box, x1 y1 x2 y2 score."""

    def __init__(self, size, map_hw, image_hw):
        super().__init__()
        (h, w), (ih, iw) = map_hw, image_hw
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centres = torch.stack([(xs + 0.5) * iw / w, (ys + 0.5) * ih / h], -1).reshape(-1, 2)
        self.register_buffer("centres", centres.float(), persistent=False)
        self.half = size / 2

    def forward(self, heat):
        score, at = heat.flatten(1).max(1)
        centre = self.centres[at]
        box = torch.cat([centre - self.half, centre + self.half], -1)
        return torch.cat([box, torch.sigmoid(score)[:, None]], -1)[:, None, :]


def decoding(site):
    return Exported(Best(site.params.size, site.shape[-2:], site.image[-2:]), "centres", (1, 5))


BUILDERS = {"centre": lambda p, ins, out: Lowered(Call(nn.Identity), decode=decoding)}
'''

TASK = """
import torch
import torch.nn.functional as F

from netspec.errors import DataError
from netspec.ops.centre import CentreLoss
from netspec.tasks.base import Fitted, Target, Task


class Centres(Task):
    def target(self, compiled, outputs, loss):
        if outputs[0].kind != "centres":
            return None
        if loss.name != "centre":
            raise DataError(f"a centre head trains with loss centre, not loss {loss.name}")
        return Target(self, outputs[0].shape)

    def fit(self, given, target, images, device, log):
        train, test = (torch.as_tensor(v, device=device) for v in (given.train_y, given.test_y))
        return Fitted(target, train.float(), test.float())

    def check_augment(self, spec, target):
        if spec.enabled:
            raise DataError("a centre head trains without augment")

    def augment(self, x, y, deform, target):
        return x, y

    def loss_sum(self, outs, y, loss, target):
        each = F.binary_cross_entropy_with_logits(outs[0], y, reduction="none")
        return each.flatten(1).sum(1).sum() * loss.params(CentreLoss).weight

    def predict(self, outs, loss, target):
        return outs[0].flatten(1).argmax(1)

    def scores(self, loss, acc):
        return f"loss {loss:.4g}"

    def tested(self, test, n):
        return f"loss {test.loss:.4g} on {n} maps"

    def draw(self, trained):
        return []


RECORDS = (Centres("centre", rank=10),)
"""

DECODER = """
import numpy as np

from netspec.detection.boxes import Detections, as_boxes
from netspec.errors import MetadataError
from netspec.runtime.decoders.base import Decoder, run_image


def read(params, info, source):
    size = params.get("size")
    if not isinstance(size, int):
        raise MetadataError(f"{source}: bad netspec metadata: centre.size: not a whole number")
    return size


def decode(model, size, image, options):
    rows = run_image(model, image)[0]
    held = rows[rows[:, 4] >= options.chosen()[0]]
    return Detections(as_boxes(held[:, :4]), held[:, 4], np.zeros(len(held), np.int64))


RECORDS = (
    Decoder(name="centre", outputs=("centres",), missing="centres", read=read, decode=decode),
)
"""

# The four modules of the head, and the package each goes into.
HEAD = {
    netspec.ops: OP,
    netspec.lower: LOWER,
    netspec.tasks: TASK,
    netspec.runtime.decoders: DECODER,
}

SPEC = """network spot(x: 1x8x8) {{
    conv 1 3x3 pad=same | centre size=2
}}
train spot on mnist {{
    {loss}
}}
"""


@pytest.fixture
def centre(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The head's four modules beside each package's own, every package discovered again
    (what each finds replacing what it found at import); the registries as they were after."""
    registry, kinds = dict(REGISTRY), dict(KINDS)
    for package, text in HEAD.items():
        folder = tmp_path / package.__name__
        folder.mkdir()
        (folder / "centre.py").write_text(text)
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    try:
        assert "netspec.ops.centre" in netspec.ops.discover()
        monkeypatch.setattr(netspec.lower, "BUILDERS", netspec.lower.discover())
        monkeypatch.setattr(netspec.tasks, "TASKS", netspec.tasks.discover())
        decoders = netspec.runtime.decoders.discover()
        monkeypatch.setattr(netspec.runtime.detect, "DECODERS", decoders)
        yield
    finally:
        for package in HEAD:
            sys.modules.pop(f"{package.__name__}.centre", None)
            vars(package).pop("centre", None)
        REGISTRY.clear()
        REGISTRY.update(registry)
        KINDS.clear()
        KINDS.update(kinds)


def _spot(pixel: tuple[int, int]) -> np.ndarray:
    """A 1x1x8x8 image, dark but for one pixel at (row, column)."""
    image = np.zeros((1, 1, 8, 8), np.float32)
    image[0, 0, pixel[0], pixel[1]] = 1.0
    return image


@pytest.mark.usefixtures("centre")
def test_a_head_of_four_modules_compiles_trains_exports_and_detects(tmp_path: Path) -> None:
    assert "centre" in REGISTRY and "centre" in netspec.lower.BUILDERS
    assert list(head_losses()) == ["ssd", "faster_rcnn", "centre"]
    compiled = netspec.compile_text(SPEC.format(loss="loss centre weight=2"))
    assert compiled.train is not None
    loss = compiled.train.loss
    weight = loss.params(sys.modules["netspec.ops.centre"].CentreLoss).weight
    assert (loss.name, weight) == ("centre", 2.0)
    assert loss.model_dump()["weight"] == 2.0  # the run's settings keep it beside the rest
    target = target_of(compiled, loss)
    assert target.task.name == "centre" and target.shape == (1, 8, 8)

    gen = torch.Generator().manual_seed(0)
    at = torch.randint(0, 8, (96, 2), generator=gen)
    x = torch.zeros(96, 1, 8, 8)
    x[torch.arange(96), 0, at[:, 0], at[:, 1]] = 1.0
    data = Tensors(x[:64], x[:64], x[64:], x[64:], "spots", (), target)  # the spot is the map
    place = Place(torch.device("cpu"))
    config = compiled.train.model_copy(update={"batch": 16})
    torch.manual_seed(0)
    module = to_torch(compiled)
    parts = make_parts(module, module, config, 64, place)
    before = evaluate(module, data.test_x, data.test_y, config, place, target)
    for epoch in range(1, 6):
        assert math.isfinite(train_epoch(parts, data, config, place, epoch, lambda *_: None).loss)
    after = evaluate(module, data.test_x, data.test_y, config, place, target)
    assert after.loss < before.loss

    path = tmp_path / "spot.onnx"
    report = export_compiled(compiled, path, weights=module.eval(), log=lambda _: None)
    assert report.checks and all(c.ok for c in report.checks)  # ONNX Runtime = PyTorch
    model = open_model(path)
    assert model.info.decoding is not None and model.info.decoding.decoder == "centre"
    found = detect(model, _spot((5, 2)), DetectOptions(threshold=0.0))
    assert found.boxes.tolist() == [[1.5, 4.5, 3.5, 6.5]]  # 2 pixels around (2.5, 5.5)


@pytest.mark.usefixtures("centre")
def test_the_heads_loss_is_checked_where_the_section_is() -> None:
    with pytest.raises(SpecError) as bad:
        netspec.compile_text(SPEC.format(loss="loss centre weight=0"))
    (diag,) = bad.value.diagnostics
    assert diag.message == "loss weight must be greater than 0, got 0"
    assert (diag.span.line, diag.span.col) == (5, 17)
    with pytest.raises(SpecError) as misspelled:
        netspec.compile_text(SPEC.format(loss="loss centr"))
    (diag,) = misspelled.value.diagnostics
    assert "'yolo', 'ssd', 'faster_rcnn' or 'centre', got 'centr'" in diag.message
    assert diag.hint == "did you mean 'centre'?"
    with pytest.raises(SpecError, match="loss weight must be Extra inputs are not permitted"):
        netspec.compile_text(SPEC.format(loss="loss cross_entropy weight=2"))


# ---- nothing collects by name ---------------------------------------------------------------


def _defines(path: Path, name: str) -> bool:
    """Whether the module at `path` assigns `name` at its top level."""
    for stmt in ast.parse(path.read_text()).body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        if isinstance(stmt, ast.AnnAssign):
            targets = [stmt.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


def test_every_module_of_ops_and_lower_is_discovered() -> None:
    ops = {m.name for m in pkgutil.iter_modules(netspec.ops.__path__)}
    assert {n.rsplit(".", 1)[1] for n in netspec.ops.discover()} == ops
    lower = NETSPEC / "lower"
    modules = [p for p in lower.glob("*.py") if p.stem != "__init__"]  # which collects them
    contributing = {p.stem for p in modules if _defines(p, "BUILDERS")}
    assert {"builders", "ssd"} <= contributing
    collected = {
        op: m for m in contributing for op in vars(sys.modules[f"netspec.lower.{m}"])["BUILDERS"]
    }
    assert collected.keys() == BUILDERS.keys() == REGISTRY.keys()
    assert collected["ssd"] == "ssd"


def _names_ssd(path: Path) -> list[str]:
    """Where the code of the module at `path` (its prose aside) names `ssd`: the word as a
    string, or an import or a name that holds it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        words: list[str] = []
        if isinstance(node, ast.Constant) and node.value == "ssd":
            words = ["ssd"]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            words = [getattr(node, "module", None) or "", *(a.name for a in node.names)]
        elif isinstance(node, ast.Name | ast.Attribute):
            words = [node.id if isinstance(node, ast.Name) else node.attr]
        found += [f"{path.name}:{node.lineno}: {w}" for w in words if "ssd" in w.lower()]
    return found


def test_ssd_is_named_by_no_module_that_collects_the_others() -> None:
    """SSD came as its four modules: `ssd`'s operation, builder and loss are found, and the
    modules that gather operations, builders and losses do not name it."""
    assert REGISTRY["ssd"].head and REGISTRY["ssd"].loss is not None
    assert "ssd" in BUILDERS and "ssd" in head_losses()
    collectors = [
        NETSPEC / "ops" / "__init__.py",
        NETSPEC / "lower" / "__init__.py",
        NETSPEC / "lower" / "builders.py",
        *sorted((NETSPEC / "passes" / "train").glob("*.py")),
    ]
    assert [w for path in collectors for w in _names_ssd(path)] == []
    assert _names_ssd(NETSPEC / "lower" / "ssd.py")  # the check itself: it finds the word
