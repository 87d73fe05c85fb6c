"""Weight sharing: a `shared` sub-network's weights live on the nodes of its first use.

Each later use maps its weighted nodes, by their name relative to the use, to the
node of the first use that holds the weights (`Node.shares`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netspec.syntax import ast

if TYPE_CHECKING:
    from netspec.passes.expand.scope import Scope


@dataclass
class SharedDef:
    """A `shared NAME = ...` definition and, once applied, who owns its weights."""

    definition: ast.Shared
    scope: Scope
    owners: dict[str, str] | None = None  # relative node name -> the node holding the weights

    @property
    def applied(self) -> bool:
        return self.owners is not None


class Sharing:
    """The shared sub-networks being expanded, innermost last."""

    def __init__(self) -> None:
        self._active: list[tuple[str, SharedDef]] = []  # (node-name prefix, definition)

    @contextmanager
    def applying(self, prefix: str, shared: SharedDef) -> Iterator[None]:
        """While one use of `shared`, whose nodes are named `prefix...`, is expanded."""
        if shared.owners is None:
            shared.owners = {}
        self._active.append((prefix, shared))
        try:
            yield
        finally:
            self._active.pop()

    def owner(self, full: str) -> str | None:
        """The node whose weights the weighted node `full` uses; None when it holds its own
        (it is in the first use, or outside every shared sub-network)."""
        if not self._active:
            return None
        prefix, shared = self._active[-1]
        rel = full[len(prefix) :]
        owners = shared.owners
        assert owners is not None
        if rel in owners and owners[rel] != full:
            return owners[rel]
        owners[rel] = full
        return None
