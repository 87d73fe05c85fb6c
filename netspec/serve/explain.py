"""POST /api/explain: how one unit's value is computed, with the numbers.

    {"image": {height, width, channels, pixels},     # what POST /api/run takes
     "layer": "conv2", "unit": {"channel": 3, "y": 4, "x": 5}}   # or {"index": 17}

answers with the layer's input (its name and the window the unit reads on its maps: the
channels, inclusive rows and columns), the arithmetic (`netspec.serve.arithmetic`: patch,
kernel, products and their sum, bias, result), the network's own value for the unit and
whether the arithmetic gives it (`matches`, within a float tolerance), then what the same
spec line does next to that value (`then`: its batchnorm, activation, and the pooled unit
that takes it, and whether it won the max).

The numbers come from the network itself: the input tensor is the probe's own output of the
layer before (ONNX Runtime's or PyTorch's), the weights are those of the PyTorch module the
spec lowers to, loaded from the run's weights (or the spec's fixed seed). So the check is
real: a window, a channel or a weight read wrongly gives another value than the network's.
A lone ONNX file has no such module: a unit of a layer with weights is then refused with a
422 that says to serve its run (pooling, activations and the like need no weights).
The network's input is a layer here too: its pixels, normalized.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from netspec.errors import NetspecError
from netspec.ops import REGISTRY
from netspec.probe import LayerView, Probe
from netspec.serve.arithmetic import (
    RULES,
    Array,
    Asked,
    Rule,
    Unexplained,
    Worked,
    activation,
    copy,
    pool_axis,
)
from netspec.serve.images import BadRequest, plain

RTOL = 1e-4  # the recomputed value may differ from the network's by this times its terms' scale
TRACED = Rule(activation, then=True)  # an activation without a formula in RULES
COPY = Rule(copy)
NAMED = {3: ("channel", "y", "x"), 2: ("channel", "x"), 1: ("index",)}  # a unit's coordinates


class Explainer:
    """Answers POST /api/explain for one probe. The PyTorch module that holds the weights is
    built on the first question and kept."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self._modules: Any = None
        self._lock = threading.Lock()
        self._consumers: dict[str, list[str]] = {}
        for view in probe.layers:
            for name in view.inputs:
                self._consumers.setdefault(name, []).append(view.name)

    def __call__(self, image: npt.NDArray[np.uint8], body: Mapping[str, Any]) -> dict[str, Any]:
        """The answer for an image ``(H, W, C)`` uint8 and the request's layer and unit."""
        name = body.get("layer")
        if not isinstance(name, str):
            raise BadRequest("'layer' must be a layer's name", 422)
        shape = self._shape(name)
        unit = parse_unit(body.get("unit"), shape)
        prepared = self.probe.prepare(plain(image))
        outputs = {k: v[0] for k, v in self.probe.run(prepared).items()}
        for given in self.probe.compiled.graph.inputs:  # each network input takes the image
            outputs[given.name] = prepared[0]
        if name == self.probe.input.name:
            return self._pixel(image, prepared[0], unit)
        view = self.probe.layer(name)
        answer = self._explain(view, unit, outputs)
        answer["then"] = self._then(view, unit, outputs)
        return answer

    def _shape(self, name: str) -> tuple[int, ...]:
        if name == self.probe.input.name:
            return self.probe.input_shape
        known = [self.probe.input.name, *(v.name for v in self.probe.layers)]
        if name not in known:
            raise BadRequest(
                f"unknown layer {name[:80]!r}; the layers are {', '.join(known)[:2000]}", 404
            )
        return self.probe.layer(name).shape

    def _explain(
        self, view: LayerView, unit: tuple[int, ...], outputs: Mapping[str, Array]
    ) -> dict[str, Any]:
        """One layer's unit: the rule's arithmetic beside the network's own value."""
        worked = self._work(view, unit, outputs)
        value = float(outputs[view.name][unit])
        matches = None
        if worked.value is not None:
            matches = abs(worked.value - value) <= RTOL * (1.0 + worked.scale + abs(value))
        first = view.inputs[0] if view.inputs else None
        inputs = [{"name": n, "shape": list(outputs[n].shape)} for n in view.inputs]
        return {
            "layer": view.name,
            "op": view.op,
            "kind": worked.kind,
            "spec": view.text,
            "line": view.line,
            "unit": unit_json(unit, view.shape),
            "input": first,
            "inputs": inputs,
            "patch": {
                "channels": worked.channels,
                "rows": None if worked.rows is None else list(worked.rows),
                "cols": None if worked.cols is None else list(worked.cols),
                "marks": worked.marks,
            },
            "numbers": worked.numbers,
            "value": value,
            "recomputed": worked.value,
            "matches": matches,
            "tolerance": RTOL * (1.0 + worked.scale + abs(value)),
        }

    def _work(self, view: LayerView, unit: tuple[int, ...], outputs: Mapping[str, Array]) -> Worked:
        rule = _rule(view.op)
        weights = self._weights(view) if view.params or view.fixed else {}  # torch only then
        if rule is None and REGISTRY[view.op].passes_through and not weights:
            rule = COPY  # moves values only (flatten, dropout at inference, identity)
        if rule is None:
            raise BadRequest(f"layer '{view.name}' ({view.op}) has no worked explanation", 422)
        node = self.probe.compiled.graph.node(view.name)
        inputs = [np.asarray(outputs[n], np.float64) for n in view.inputs]
        asked = Asked(view.op, node.params, weights, inputs, unit, view.shape)
        try:
            return rule.work(asked)
        except Unexplained as e:
            raise BadRequest(f"layer '{view.name}' ({view.op}): {e}", 422) from None

    def _weights(self, view: LayerView) -> dict[str, Array]:
        """The layer's parameters and buffers as its PyTorch module names them (`weight`,
        `bias`, `running_mean`...), float64; empty for a layer without any."""
        from netspec.export.layers import owner

        modules = self._network()
        graph = self.probe.compiled.graph
        try:
            module = modules.get_submodule(owner(graph, graph.node(view.name)))
        except AttributeError:
            return {}
        state = module.state_dict()
        return {k: v.detach().double().numpy() for k, v in state.items() if v.is_floating_point()}

    def _network(self) -> Any:
        """The spec's PyTorch module with the weights the probe runs (built once)."""
        with self._lock:
            if self._modules is None:
                self._modules = _build(self.probe)
            return self._modules

    def _then(
        self, view: LayerView, unit: tuple[int, ...], outputs: Mapping[str, Array]
    ) -> list[dict[str, Any]]:
        """What the same spec line does next with this unit's value: each batchnorm, layer
        scale or activation at the same unit, then the pooled unit whose window holds it."""
        steps: list[dict[str, Any]] = []
        while (after := self._next_on_line(view)) is not None:
            rule = _rule(after.op)
            if rule is not None and rule.then:
                steps.append(_step(self._explain(after, unit, outputs)))
                view = after
                continue
            if rule is not None and rule.window is not None and len(unit) == 3:
                pooled = _pooled_unit(self.probe, after, rule.window, unit)
                if pooled is not None:
                    step = _step(self._explain(after, pooled, outputs))
                    winner = step["numbers"].get("winner")
                    step["won"] = None if winner is None else winner == list(unit[1:])
                    steps.append(step)
            break
        return steps

    def _next_on_line(self, view: LayerView) -> LayerView | None:
        """The one layer that reads ``view``, where the spec wrote it on the same line."""
        readers = self._consumers.get(view.name, [])
        if len(readers) != 1:
            return None
        after = self.probe.layer(readers[0])
        same = after.line == view.line and after.file == view.file and view.line is not None
        return after if same and after.inputs == (view.name,) else None

    def _pixel(
        self, image: npt.NDArray[np.uint8], prepared: Array, unit: tuple[int, ...]
    ) -> dict[str, Any]:
        """A pixel of the input: its byte, and (byte / 255 - mean) / std, the value the
        first layer reads."""
        c, y, x = unit
        info = self.probe.input
        mean = _per_channel(info.mean, c)
        std = _per_channel(info.std, c)
        byte = int(image[y, x, c])
        recomputed = (byte / 255.0 - mean) / std
        value = float(prepared[unit])
        return {
            "layer": info.name,
            "op": "input",
            "kind": "input",
            "spec": None,
            "line": None,
            "unit": unit_json(unit, self.probe.input_shape),
            "input": None,
            "inputs": [],
            "patch": None,
            "numbers": {"pixel": byte, "mean": mean, "std": std},
            "value": value,
            "recomputed": recomputed,
            "matches": abs(recomputed - value) <= RTOL * (1.0 + abs(value)),
            "tolerance": RTOL * (1.0 + abs(value)),
            "then": [],
        }


def _per_channel(values: Any, c: int) -> float:
    return float(values[c] if isinstance(values, (tuple, list)) else values)


def _step(answer: dict[str, Any]) -> dict[str, Any]:
    keep = ("layer", "op", "kind", "unit", "numbers", "value", "recomputed", "matches")
    return {k: answer[k] for k in keep}


def _rule(op: str) -> Rule | None:
    """The operation's rule: its entry in RULES, or any other activation's traced value."""
    rule = RULES.get(op)
    return TRACED if rule is None and REGISTRY[op].activation else rule


def _pooled_unit(
    probe: Probe, view: LayerView, window: str, unit: tuple[int, ...]
) -> tuple[int, int, int] | None:
    """The first unit of pooling layer ``view`` whose window holds input unit ``unit``."""
    params = probe.compiled.graph.node(view.name).params
    source = probe.layer(view.inputs[0]).shape
    found = []
    for axis in (0, 1):
        at, n_in, n_out = unit[axis + 1], source[axis + 1], view.shape[axis + 1]
        hits = (
            o
            for o in range(n_out)
            if (g := pool_axis(window, params, axis, o, n_in, n_out))
            and at in range(g[0], g[0] + g[1] * g[2], g[2])
        )
        found.append(next(hits, None))
    if found[0] is None or found[1] is None:
        return None
    return unit[0], found[0], found[1]


def _build(probe: Probe) -> Any:
    """The PyTorch module of the probe's network, with its weights: a run's (best, else
    last), or a spec's fixed seed. A run is served through its model.onnx when it has one
    (the probe then compiled the run's kept spec, not the file's own); a lone ONNX file
    has no weights to read beside it (a 422)."""
    from netspec.probe.torch_side import build_network

    source = probe.source
    from_run = source.suffix == ".onnx" and Path(probe.compiled.program.main_file) != source
    try:
        if source.is_dir() or from_run:
            from netspec.train.opening import open_run

            compiled, weights = open_run(source if source.is_dir() else source.parent)
            return build_network(compiled, weights)
        if source.suffix == ".onnx":
            raise BadRequest(
                f"{source.name}: an ONNX file keeps its weights inside its graph, where they "
                "are not read here; serve its run directory or its spec to see the arithmetic",
                422,
            )
        return build_network(probe.compiled, None)
    except NetspecError as e:
        raise BadRequest(f"cannot read the network's weights: {e.message}", 422) from None


def parse_unit(unit: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A unit of a layer of ``shape``: ``{"channel", "y", "x"}`` for maps, ``{"channel",
    "x"}`` for a signal, ``{"index"}`` (into the output in C order) for any layer."""
    if not isinstance(unit, dict):
        raise BadRequest("'unit' must be {channel, y, x} or {index}", 422)
    size = int(np.prod(shape))
    if "index" in unit:
        index = unit["index"]
        if not _whole_number(index) or not 0 <= index < size:
            raise BadRequest(f"'index' must be a whole number from 0 to {size - 1}", 422)
        return tuple(int(v) for v in np.unravel_index(index, shape))
    keys = NAMED.get(len(shape))
    if keys is None:
        raise BadRequest(f"a unit of a {len(shape)}-D layer is given by its 'index'", 422)
    given = [unit.get(k) for k in keys]
    whole = [v for v in given if _whole_number(v)]
    if len(whole) != len(keys):
        raise BadRequest(f"'unit' must give {', '.join(keys)} as whole numbers", 422)
    for key, value, n in zip(keys, whole, shape, strict=True):
        if not 0 <= value < n:
            raise BadRequest(f"unit {key} {value} is outside 0..{n - 1}", 422)
    return tuple(whole)


def _whole_number(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def unit_json(unit: tuple[int, ...], shape: tuple[int, ...]) -> dict[str, int]:
    """A unit as the page names it: channel, y, x (as far as the shape has them), index."""
    named = dict(zip(NAMED.get(len(shape), ()), unit, strict=False))
    return {**named, "index": int(np.ravel_multi_index(unit, shape))}


__all__ = ["Explainer", "Unexplained", "Worked", "parse_unit", "unit_json"]
