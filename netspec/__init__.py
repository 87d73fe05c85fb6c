"""netspec: a compiler for declarative convolutional-network specs.

>>> import netspec
>>> net = netspec.compile("network tiny(x: 1x8x8) {\\n conv 4 3x3 | relu | dense 2\\n}")
>>> net.totals.trainable_params
298
"""

from __future__ import annotations

from netspec.compiler import Compiled, compile, compile_file, compile_text
from netspec.diagnostics import Diagnostic, SpecError
from netspec.errors import NetspecError, UsageError

__version__ = "0.1.0"

__all__ = [
    "Compiled",
    "Diagnostic",
    "NetspecError",
    "SpecError",
    "UsageError",
    "compile",
    "compile_file",
    "compile_text",
]
