"""What a builder returns: a `Lowered`, a small description of a node's constructor call
(`Call`: class, arguments) plus what the graph walk must do around it.

The same description is evaluated by `to_torch` and written out as source by `emit_python`,
so the two cannot drift apart. A `Builder` makes it from a node's parameters and its input
and output shapes; each module of `netspec.lower` that lowers operations declares its
builders in a module-level ``BUILDERS``, keyed by the operations' names, which
`netspec.lower.discover` collects (netspec.lower.builders holds most; a head's live beside
its modules, as `ssd`'s in netspec.lower.ssd).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from netspec.ir import Shape
from netspec.lower.detection import DecodeRule


@dataclass(frozen=True)
class Call:
    """`fn(*args, **kwargs)`, where an argument may itself be a Call (a tensor, a sub-module)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def build(self) -> Any:
        return self.fn(*(_built(a) for a in self.args), **{k: _built(v) for k, v in self.kwargs})


def _built(value: Any) -> Any:
    return value.build() if isinstance(value, Call) else value


# The emitted Python for an operation written inline, from its argument names: `a + b`.
Inline = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class Lowered:
    """A node's module, its `init=` scheme, and whether its input is flattened first.

    `inline` is set for an operation without parameters that the emitted Python writes as
    an expression (`torch.cat([a, b], 1)`) instead of a layer. `decode` is a head's: what
    its exported graph appends to the network (netspec.lower.detection; export asks it).
    """

    call: Call
    init: str = "default"
    flatten: bool = False
    inline: Inline | None = None
    decode: DecodeRule | None = None

    def build(self) -> nn.Module:
        module = self.call.build()
        assert isinstance(module, nn.Module)
        return module


# An operation's builder: its node's parameters, input shapes and output shape to a Lowered.
Builder = Callable[[Any, Sequence[Shape], Shape], Lowered]
