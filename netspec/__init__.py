"""netspec: a compiler for declarative convolutional-network specs.

>>> import netspec
>>> net = netspec.compile("network tiny(x: 1x8x8) {\\n conv 4 3x3 | relu | dense 2\\n}")
>>> net.totals.trainable_params
330

`netspec.to_torch(net)` is the network as a `torch.nn.Module` (`netspec.lower.to_torch`);
docs/python.md shows the whole Python API. The names below are loaded on first use (PEP
562), so `import netspec` itself is instant (and imports no torch): `python -m netspec` can
then answer Ctrl-C from its first moment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netspec.compiler import Compiled, compile, compile_file, compile_text
    from netspec.diagnostics import Diagnostic, SpecError
    from netspec.errors import NetspecError, UsageError
    from netspec.lower import to_torch

__version__ = "0.1.0"

_HOME = {
    "Compiled": "netspec.compiler",
    "compile": "netspec.compiler",
    "compile_file": "netspec.compiler",
    "compile_text": "netspec.compiler",
    "Diagnostic": "netspec.diagnostics",
    "SpecError": "netspec.diagnostics",
    "NetspecError": "netspec.errors",
    "UsageError": "netspec.errors",
    "to_torch": "netspec.lower",
}

__all__ = [
    "Compiled",
    "Diagnostic",
    "NetspecError",
    "SpecError",
    "UsageError",
    "compile",
    "compile_file",
    "compile_text",
    "to_torch",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'netspec' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
