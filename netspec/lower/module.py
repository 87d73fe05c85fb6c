"""The module a compiled spec becomes: submodules named as in the spec, forward in spec order.

Submodules nest by dotted path (`layer3.1.conv2` is `net.layer3["1"]["conv2"]`), with
`nn.ModuleDict` for the blocks and branches in between; a merge's branches nest under the
merge itself. A node that shares weights (`Node.shares`) calls its owner's module object,
so the parameter exists once and autograd sums the gradients of every use.

The forward is a precomputed plan, not an interpreter: each step is a chain of module calls
(straight-line code for a chain of layers, as in `nn.Sequential`), reading its inputs from a
list of slots and freeing each slot after its last use. No control flow depends on data, so
the module traces and exports to ONNX as it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from netspec.diagnostics import Diagnostic, Span, SpecError
from netspec.ir import Graph, GraphInput, Node, Shape
from netspec.text import first_line, fmt_shape

# (first call, the chain of calls after it, input slots, output slot, slots to free)
Step = tuple[
    Callable[..., Tensor],
    tuple[Callable[[Tensor], Tensor], ...],
    tuple[int, ...],
    int,
    tuple[int, ...],
]


def _tracing() -> bool:
    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined, no-untyped-call]


def flatten(x: Tensor) -> Tensor:
    """What a dense stage does to feature maps before it: keep the batch axis, flatten the rest."""
    return torch.flatten(x, 1)


class Network(nn.Module):
    """A compiled spec as a `torch.nn.Module`.

    `input_names`, `input_shapes` (per sample, symbolic sizes as names) and `output_names`
    come from the spec; `spans` maps every layer's name to where the spec defines it, so that
    a wrong input, or a failure inside a layer, is reported against the spec's line.
    """

    def __init__(
        self,
        name: str,
        inputs: Sequence[GraphInput],
        outputs: Sequence[str],
        spans: dict[str, Span],
        span: Span,
    ) -> None:
        super().__init__()
        self.network_name = name
        self.input_names = tuple(i.name for i in inputs)
        self.input_shapes: tuple[Shape, ...] = tuple(i.shape for i in inputs)
        self.output_names = tuple(outputs)
        self.spans = spans
        self._input_spans = tuple(i.span for i in inputs)
        self._span = span
        self._wants = tuple(
            tuple(d if isinstance(d, int) else None for d in s) for s in self.input_shapes
        )
        self._steps: tuple[Step, ...] = ()
        self._blank: tuple[None, ...] = ()
        self._outputs: tuple[int, ...] = ()
        self._owners: dict[int, str] = {}

    def _get_name(self) -> str:
        return self.network_name

    def extra_repr(self) -> str:
        ins = ", ".join(
            f"{n}: {fmt_shape(s)}" for n, s in zip(self.input_names, self.input_shapes, strict=True)
        )
        return f"inputs=({ins}), outputs=({', '.join(self.output_names)})"

    def forward(self, *inputs: Tensor) -> Any:
        if not (_tracing() or torch.onnx.is_in_onnx_export()):
            self._check(inputs)
        env: list[Any] = [*inputs, *self._blank]
        try:
            for first, rest, args, out, free in self._steps:
                x = first(*[env[i] for i in args])
                for f in rest:
                    x = f(x)
                env[out] = x
                for i in free:
                    env[i] = None
        except (RuntimeError, ValueError) as e:
            diag = self._failure(e)
            if diag is None:
                raise
            raise SpecError([diag]) from e
        if len(self._outputs) == 1:
            return env[self._outputs[0]]
        return tuple(env[i] for i in self._outputs)

    def _check(self, inputs: Sequence[Tensor]) -> None:
        if len(inputs) != len(self.input_names):
            names = ", ".join(self.input_names)
            raise SpecError(
                [
                    Diagnostic(
                        "E601",
                        f"network '{self.network_name}' takes {len(self.input_names)} input(s) "
                        f"({names}), got {len(inputs)}",
                        self._span,
                    )
                ]
            )
        for k, x in enumerate(inputs):
            got, want = x.shape[1:], self._wants[k]
            if got != want and not _fits(got, want):
                raise SpecError([self._wrong_input(k, tuple(x.shape))])

    def _wrong_input(self, k: int, got: tuple[int, ...]) -> Diagnostic:
        name, shape, span = self.input_names[k], self.input_shapes[k], self._input_spans[k]
        if len(got) == len(shape):
            return Diagnostic(
                "E601",
                f"input '{name}' must be a batch of {fmt_shape(shape)}, got one sample "
                f"{fmt_shape(got)}",
                span,
                hint="add a batch axis, e.g. x.unsqueeze(0)",
            )
        return Diagnostic(
            "E601",
            f"input '{name}' must be {fmt_shape(shape)}, got {fmt_shape(got[1:])}",
            span,
            hint=f"the batch is {got[0]} tensors of {fmt_shape(got[1:])}",
        )

    def _failure(self, e: Exception) -> Diagnostic | None:
        """The layer an exception came from, found on its traceback, as a diagnostic."""
        if isinstance(e, torch.OutOfMemoryError):
            return None
        tb = e.__traceback__
        while tb is not None:
            name = self._owners.get(id(tb.tb_frame.f_locals.get("self")))
            if name is not None:
                first = first_line(e)
                return Diagnostic("E602", f"layer '{name}' failed: {first}", self.spans[name])
            tb = tb.tb_next
        return None


def _fits(got: Sequence[int], want: tuple[int | None, ...]) -> bool:
    return len(got) == len(want) and all(
        w is None or w == g for w, g in zip(want, got, strict=True)
    )


def _attach(root: nn.Module, node: Node, module: nn.Module) -> None:
    """Register `module` at the node's dotted path, making containers on the way."""
    *parents, leaf = node.name.split(".")
    parent = root
    for part in parents:
        child = parent._modules.get(part)
        if child is None:
            child = nn.ModuleDict()
            _add(parent, part, child, node)
        parent = child
    existing = parent._modules.get(leaf)
    if existing is None:
        _add(parent, leaf, module, node)
        return
    for key, child in existing.named_children():  # a merge after its branches: adopt them
        module.add_module(key, child)
    parent._modules[leaf] = module


def _add(parent: nn.Module, part: str, module: nn.Module, node: Node) -> None:
    try:
        parent.add_module(part, module)
    except KeyError:
        raise name_taken(part, node) from None


def name_taken(part: str, node: Node) -> SpecError:
    """A layer named like an attribute every torch module has (`forward`, `training`)."""
    return SpecError(
        [
            Diagnostic(
                "E603",
                f"'{part}' cannot name a layer in PyTorch: a module already has an "
                f"attribute called '{part}' (in '{node.name}')",
                node.span,
                hint="rename the layer (e.g. with 'as')",
            )
        ]
    )


def _runs(graph: Graph) -> list[list[Node]]:
    """Nodes grouped into chains: each continues the previous node, its only reader."""
    readers = Counter(i for n in graph.nodes for i in n.inputs)
    outputs = set(graph.outputs)
    runs: list[list[Node]] = []
    for node in graph.nodes:
        tail = runs[-1][-1].name if runs else None
        if (
            tail is not None
            and node.inputs == (tail,)
            and readers[tail] == 1
            and tail not in outputs
        ):
            runs[-1].append(node)
        else:
            runs.append([node])
    return runs


def plan(
    graph: Graph, modules: dict[str, nn.Module], flattens: set[str]
) -> tuple[tuple[Step, ...], int, tuple[int, ...]]:
    """The forward's steps, the number of slots, and the output slots."""
    runs = _runs(graph)
    slot = {i.name: k for k, i in enumerate(graph.inputs)}
    last_read: dict[str, int] = {}
    for r, run in enumerate(runs):
        last_read.update((name, r) for name in run[0].inputs)
        slot[run[-1].name] = len(graph.inputs) + r
    keep = set(graph.outputs)
    steps: list[Step] = []
    for r, run in enumerate(runs):
        calls: list[Callable[..., Tensor]] = []
        for node in run:
            if node.name in flattens:
                calls.append(flatten)
            calls.append(modules[node.name])
        free = tuple(
            sorted({slot[n] for n in run[0].inputs if last_read[n] == r and n not in keep})
        )
        args = tuple(slot[n] for n in run[0].inputs)
        steps.append((calls[0], tuple(calls[1:]), args, slot[run[-1].name], free))
    return tuple(steps), len(graph.inputs) + len(runs), tuple(slot[n] for n in graph.outputs)


def assemble(graph: Graph, modules: dict[str, nn.Module], flattens: set[str]) -> Network:
    """The Network of `graph`, given each node's module (a sharer's is its owner's object)."""
    spans = {n.name: n.span for n in graph.nodes}
    net = Network(graph.name, graph.inputs, graph.outputs, spans, graph.span)
    for node in graph.nodes:
        if node.shares is None:
            _attach(net, node, modules[node.name])
            net._owners[id(modules[node.name])] = node.name
    net._steps, slots, net._outputs = plan(graph, modules, flattens)
    net._blank = (None,) * (slots - len(graph.inputs))
    return net
