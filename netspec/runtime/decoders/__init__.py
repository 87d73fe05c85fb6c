"""The decoders: how a detector file's outputs become boxes, each declared once as a record.

A detector file's metadata says how to read it in one entry, `decoding` (netspec.artifact):
the name of a decoder and its parameters. A decoder is a `Decoder` (netspec.runtime.decoders
.base) made once in its own module of this package and listed in that module's ``RECORDS``;
`discover` finds it there, so a new kind of detector head adds one module here, beside its
operation (whose `OpDef.decoding` export writes) and its task:

- ``name``: what the files' `decoding` calls it;
- ``outputs``: the kinds of the file's outputs it reads (`discover` makes them words of the
  file format, netspec.artifact.KINDS: a new kind of head output is declared here, by the
  decoder that reads it), and ``missing``: what a file with those outputs but no decoding
  lacks;
- ``read``: its parameters checked against the rest of the file, returned as its own record;
- ``decode``: one model-ready image to boxes, through ONNX Runtime (never torch);
- ``background``: the class that means "no object here", where there is one.

- `single_shot`: a single-shot grid's decoded boxes (the `detect` head);
- `sliding_window`: a classifier made fully convolutional (netspec.export.fcn).

netspec.runtime.detect picks the decoder a file names and runs it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from netspec.artifact import register_kinds
from netspec.runtime.decoders.base import Decoder

__all__ = ["DECODERS", "Decoder", "discover"]


def discover() -> dict[str, Decoder[Any]]:
    """Every decoder of every module of this package (its ``RECORDS``), by name; the kinds
    of the outputs each reads registered as the file format's (netspec.artifact.KINDS)."""
    found: list[Decoder[Any]] = []
    for info in pkgutil.iter_modules(__path__, f"{__name__}."):
        found.extend(getattr(importlib.import_module(info.name), "RECORDS", ()))
    names = [d.name for d in found]
    assert len(set(names)) == len(names), f"a decoder defined twice: {names}"
    for decoder in found:
        register_kinds(decoder.outputs, decoder.name)
    return {d.name: d for d in sorted(found, key=lambda d: d.name)}


DECODERS: dict[str, Decoder[Any]] = discover()
