"""The tasks: what a network's outputs are trained as, each declared once as a record.

A task is a `Task` (netspec.tasks.base) made once in its own module of this package and
listed in that module's ``RECORDS``; `discover` finds it there, so a new task is one module
(with its decoder in netspec/runtime/decoders/ if ONNX Runtime decodes its output).
Training and evaluation ask the record everything that differs between tasks and never
compare a task's name:

- facts: ``name`` (for people and files only), ``rank`` (where `target_of` asks it),
  ``outputs`` (how many network outputs it trains), ``metric`` (metrics.csv's accuracy
  column, `acc` or `pixel_acc`; None: the loss alone, and the lowest loss picks the best
  weights), ``per_sample`` (y is one class per sample: predictions are kept for the
  confusion matrix and error count, and the labels go with the sample images and the
  export's check), ``exports_labels`` (the class names go into model.onnx), ``run_out``
  (`netspec run` writes its outputs to files);
- methods: ``target`` (does it train these outputs with this loss: the `Target`, None, or a
  DataError saying why not), ``fit`` (the data's y checked and made tensors),
  ``check_augment`` and ``augment`` (what deforms its targets with their images),
  ``loss_sum``, ``predict`` and ``hits`` (a batch's loss, predictions and accuracy, from a
  tuple of outputs), ``best`` (the score that picks the best weights), ``scores``, ``note``,
  ``tested`` and ``evaluated`` (its words on the epoch's line, after training and in
  `netspec eval`), ``measure`` (metrics beyond loss and accuracy) and ``draw`` (its
  pictures, through what the train layer offers, `Trained`).

`target_of` asks each task in order whether it trains the network's outputs; the first that
answers wins. A network with several heads is a task whose ``outputs`` is their number: its
``loss_sum`` and ``predict`` receive them as a tuple, in the spec's order.

- `classes`: class scores and integer labels (netspec.tasks.classes);
- `map`: a map against target maps, or against the input (netspec.tasks.map);
- `segmentation`: a map of class scores against per-pixel classes;
- `boxes`: a detection head against the scenes' boxes, with `loss yolo`.
"""

from __future__ import annotations

import importlib
import pkgutil

from netspec.compiler import Compiled
from netspec.errors import DataError
from netspec.kinds import output_infos
from netspec.tasks.base import Target, Task
from netspec.tasks.classes import CLASSIFIER
from netspec.text import fmt_shape
from netspec.trainspec import Loss

__all__ = ["CLASSIFIER", "TASKS", "Target", "Task", "discover", "target_of"]


def discover() -> tuple[Task, ...]:
    """Every task of every module of this package (its ``RECORDS``), by rank (then name)."""
    found: list[Task] = []
    for info in pkgutil.iter_modules(__path__, f"{__name__}."):
        found.extend(getattr(importlib.import_module(info.name), "RECORDS", ()))
    names = [t.name for t in found]
    assert len(set(names)) == len(names), f"a task defined twice: {names}"
    return tuple(sorted(found, key=lambda t: (t.rank, t.name)))


# In the order they are asked: a detection head, or loss yolo, is the detector's to refuse.
TASKS: tuple[Task, ...] = discover()


def target_of(compiled: Compiled, loss: Loss) -> Target:
    """What the network's outputs are trained as, or a DataError saying why they cannot be."""
    graph = compiled.graph
    if len(graph.inputs) != 1 or all(t.outputs != len(graph.outputs) for t in TASKS):
        raise DataError(
            f"network '{graph.name}' has {len(graph.inputs)} input(s) and {len(graph.outputs)} "
            "output(s); training needs one of each"
        )
    outputs = output_infos(compiled)
    for task in TASKS:
        target = task.target(compiled, outputs, loss) if task.outputs == len(outputs) else None
        if target is not None:
            return target
    output = outputs[0]
    if output.kind != "map":
        raise DataError(
            f"the output '{output.name}' is {'an' if output.kind[0] in 'ae' else 'a'} "
            f"{output.kind} ({fmt_shape(output.shape or ())}); netspec trains one output of "
            "class scores or one map"
        )
    raise DataError(
        f"loss {loss.name} is for class scores; a map output trains with loss mse "
        "(against maps) or loss cross_entropy (per-pixel classes)"
    )
