"""`netspec compile SPEC --emit python`: the network as a standalone PyTorch file.

One class whose `__init__` makes the layers under the spec's names (blocks as nested
`nn.ModuleDict`s) and whose `forward` applies them in spec order with the shape of every
result in a comment. It is written from the same builder descriptions that `to_torch`
evaluates, so its `state_dict` has the same keys and loads the same weights. The file needs
torch alone: the definitions of netspec's own layers that the network uses (and the `init=`
helpers, if it asks for them) are copied into it from netspec's source, before the network,
with the helpers they call (see `netspec.lower.sources`).
"""

from __future__ import annotations

import keyword
import pprint
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from netspec import __version__
from netspec.ir import Node
from netspec.lower import layers
from netspec.lower.init import init_weights
from netspec.lower.lowered import Call, Lowered
from netspec.lower.module import name_taken
from netspec.lower.sources import Import, Sources, import_lines, of_netspec
from netspec.text import fmt_shape

if TYPE_CHECKING:
    from netspec.compiler import Compiled

_RESERVED = {"self", "torch", "nn", "Tensor", "init_weights"}
# What every emitted file imports (its own code uses them).
_BASE_IMPORTS = (Import("torch"), Import("torch", "Tensor"), Import("torch", "nn"))


def _ident(name: str) -> str:
    """A Python identifier for a tensor or class name."""
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    if not out or out[0].isdigit():
        out = "t_" + out
    return out + "_" if keyword.iskeyword(out) or out in _RESERVED else out


def _class_name(network: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in _ident(network).split("_")) or "Net"


def _access(path: str) -> str:
    top, *rest = path.split(".")
    head = (
        f"self.{top}"
        if top.isidentifier() and not keyword.iskeyword(top)
        else (f'getattr(self, "{top}")')
    )
    return head + "".join(f'["{part}"]' for part in rest)


@dataclass
class _Writer:
    """The parts of the file as they are written: imports, constants, lines of each method."""

    compiled: Compiled
    lowered: dict[str, Lowered]
    sources: Sources = field(default_factory=Sources)
    constants: list[str] = field(default_factory=list)
    constant_names: set[str] = field(default_factory=set)
    init: list[str] = field(default_factory=list)
    inits: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    made: dict[str, bool] = field(default_factory=dict)  # path -> is a container

    # ---- constructor calls -------------------------------------------------------------

    def fn_name(self, fn: Any) -> str:
        if fn is torch.tensor:
            return "torch.tensor"
        name = str(fn.__name__)
        if getattr(nn, name, None) is fn:
            return f"nn.{name}"
        if of_netspec(fn):
            return self.sources.need(fn)
        raise ValueError(f"cannot write a call to {fn!r}")

    def value(self, v: Any, node: Node, parent: Any) -> str:
        if isinstance(v, Call):
            return self.call(v, node)
        text = repr(v)
        if isinstance(v, list) and len(text) > 60:
            kind = {layers.TableConv2d: "TABLE", torch.tensor: "KERNELS"}.get(parent, "VALUES")
            name = self.constant_name(f"{_ident(node.name).upper()}_{kind}")
            lead = f"{name} = "
            body = pprint.pformat(v, width=100 - len(lead), compact=True)
            self.constants.append(lead + body.replace("\n", "\n" + " " * len(lead)))
            return name
        return text

    def constant_name(self, name: str) -> str:
        """`name`, or `name_2`, ...: not one the carried code or another constant uses."""
        taken, k, out = self.sources.names() | self.constant_names, 1, name
        while out in taken:
            k += 1
            out = f"{name}_{k}"
        self.constant_names.add(out)
        return out

    def call(self, c: Call, node: Node) -> str:
        args = [self.value(a, node, c.fn) for a in c.args]
        args += [f"{k}={self.value(v, node, c.fn)}" for k, v in c.kwargs]
        return f"{self.fn_name(c.fn)}({', '.join(args)})"

    # ---- __init__ ------------------------------------------------------------------------

    def container(self, path: str, node: Node) -> None:
        if path in self.made:
            if not self.made[path]:
                raise ValueError(f"'{path}' is both a layer and a group of layers")
            return
        *parents, leaf = path.split(".")
        if parents:
            self.container(".".join(parents), node)
        self.check_name(leaf, node, nested=bool(parents))
        self.made[path] = True
        self.init.append(f"{_access(path)} = nn.ModuleDict()")

    def check_name(self, part: str, node: Node, nested: bool) -> None:
        if hasattr(nn.ModuleDict if nested else nn.Module, part):
            raise name_taken(part, node)

    def layer(self, node: Node) -> None:
        *parents, leaf = node.name.split(".")
        if parents:
            self.container(".".join(parents), node)
        self.check_name(leaf, node, nested=bool(parents))
        if node.name in self.made:
            raise ValueError(f"'{node.name}' is both a layer and a group of layers")
        self.made[node.name] = False
        low = self.lowered[node.name]
        self.init.append(f"{_access(node.name)} = {self.call(low.call, node)}")
        if low.init != "default":
            self.inits.append(f'init_weights({_access(node.name)}, "{low.init}")')

    def carry(self) -> None:
        """Carry every netspec definition the layers' calls use (an inline merge's module is
        not written), before any constant is named, so that `constant_name` knows all the
        names the carried code binds."""
        for imp in _BASE_IMPORTS:
            self.sources.add_import(imp)
        pending = [low.call for low in self.lowered.values() if low.inline is None]
        while pending:
            c = pending.pop(0)
            if of_netspec(c.fn):
                self.sources.need(c.fn)
            pending += [a for a in (*c.args, *(v for _, v in c.kwargs)) if isinstance(a, Call)]
        if any(low.init != "default" for low in self.lowered.values()):
            self.sources.need(init_weights)

    def carried(self) -> list[str]:
        """The carried definitions, each run from one netspec module under a comment naming
        it, two blank lines apart as PEP 8 has top-level definitions."""
        lines: list[str] = []
        module = None
        for origin, text in self.sources.blocks:
            if origin != module:
                lines.append(f"# ---- from {origin} (netspec {__version__})")
                module = origin
            lines += [text, "", ""]
        return lines


def _short_names() -> Iterator[str]:
    yield from ("y", "z")
    k = 1
    while True:
        yield f"x{k}"
        k += 1


class _Names:
    """Variable names for tensors: a chain reuses one name, a branch gets its own."""

    def __init__(self, compiled: Compiled) -> None:
        graph = compiled.graph
        self.readers = Counter(i for n in graph.nodes for i in n.inputs)
        self.keep = set(graph.outputs)
        self.var = {i.name: _ident(i.name) for i in graph.inputs}
        self.inputs = set(self.var.values())
        self.live = set(self.var.values())

    def result(self, node: Node) -> str:
        dying = []
        for name in node.inputs:
            self.readers[name] -= 1
            if self.readers[name] == 0 and name not in self.keep:
                dying.append(self.var[name])
        self.live.difference_update(dying)
        taken = self.live | self.inputs
        reusable = [v for v in dying if v not in self.inputs]
        if "x" not in taken:
            out = "x"
        elif reusable:
            out = reusable[0]
        else:
            out = next(v for v in _short_names() if v not in taken)
        self.live.add(out)
        self.var[node.name] = out
        return out


def _forward_line(node: Node, args: list[str], out: str, low: Lowered, shape: str) -> str:
    if low.inline is not None:
        expr = low.inline(args)
    else:
        arg = f"torch.flatten({args[0]}, 1)" if low.flatten else args[0]
        expr = f"{_access(node.shares or node.name)}({', '.join([arg, *args[1:]])})"
    note = f"# {shape}" + (f", weights shared with {node.shares}" if node.shares else "")
    line = f"{out} = {expr}"
    return f"{line}  {note}" if len(line) + len(note) <= 90 else f"{note}\n{line}"


def _in_docstring(text: str) -> str:
    """`text` as the source of a triple-quoted docstring that reads back as `text`: backslashes,
    quotes, control and non-ASCII characters escaped (a Windows path, a name with triple
    quotes)."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def _header(compiled: Compiled, cls: str, carried: bool) -> list[str]:
    t, g = compiled.totals, compiled.graph
    ins = ", ".join(f"{i.name} {fmt_shape(i.shape)}" for i in g.inputs)
    fixed = f"; {t.fixed_params:,} fixed" if t.fixed_params else ""
    source = _in_docstring(str(g.span.file))
    own = ["It needs torch alone: netspec's own layers that it uses are defined below."]
    return [
        f'"""{g.name}: a PyTorch module generated by netspec {__version__} from {source}.',
        "",
        f"{t.trainable_params:,} trainable parameters{fixed}. Input: {ins} (each with a "
        "batch axis first).",
        f"Use: `model = {cls}()`, then `model(...)` on batches.",
        *(own if carried else []),
        '"""',
    ]


def _demo(compiled: Compiled, cls: str) -> list[str]:
    shapes = [i.shape for i in compiled.graph.inputs]
    if not all(isinstance(d, int) for s in shapes for d in s):
        return []
    zeros = ", ".join(f"torch.zeros(1, {', '.join(str(d) for d in s)})" for s in shapes)
    return ["", "", 'if __name__ == "__main__":', f"    print({cls}()({zeros}))"]


def _after_imports(body: list[str]) -> list[str]:
    """The blank lines isort puts after the imports: two before a definition, else one."""
    code = next((line for line in body if line and not line.startswith("#")), "class")
    return ["", ""] if code.startswith(("class ", "def ", "async def ", "@", "class")) else [""]


def _unique_class(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "Net"
    return name


def emit_python(compiled: Compiled) -> str:
    """The compiled network as the source of one standalone PyTorch module."""
    from netspec.lower import lowerings

    graph, lowered = compiled.graph, lowerings(compiled)
    w, names = _Writer(compiled, lowered), _Names(compiled)
    w.carry()
    shapes = {layer.name: layer.shape for layer in compiled.layers}
    for node in graph.nodes:
        if lowered[node.name].inline is None and node.shares is None:
            w.layer(node)
        args = [names.var[i] for i in node.inputs]
        shape = fmt_shape(shapes[node.name])
        w.forward.append(_forward_line(node, args, names.result(node), lowered[node.name], shape))
    cls = _unique_class(_class_name(graph.name), w.sources.names() | w.constant_names)
    outs = [names.var[o] for o in graph.outputs]
    params = ", ".join(f"{names.var[i.name]}: Tensor" for i in graph.inputs)
    ret = "Tensor" if len(outs) == 1 else f"tuple[{', '.join('Tensor' for _ in outs)}]"
    if w.inits:
        w.init += ["", "# init= from the spec", *w.inits]
    head = _header(compiled, cls, carried=bool(w.sources.blocks))
    lines = [*head, "", "from __future__ import annotations", ""]
    body = [*w.carried(), *([*(f"{c}\n" for c in w.constants), ""] if w.constants else [])]
    lines += [*import_lines(w.sources.imports.values()), *_after_imports(body), *body]
    lines += [f"class {cls}(nn.Module):", "    def __init__(self) -> None:"]
    lines += ["        super().__init__()", *(f"        {x}" if x else "" for x in w.init), ""]
    lines += [f"    def forward(self, {params}) -> {ret}:"]
    steps = [part for line in w.forward for part in line.split("\n")]
    lines += [*(f"        {x}" for x in steps), f"        return {', '.join(outs)}"]
    lines += _demo(compiled, cls)
    return "\n".join(lines) + "\n"
