"""Runtime: exported models on ONNX Runtime, never torch.

`session` opens a file and reads its metadata (netspec.artifact), `inputs` turns files
into model-ready batches, `batching` runs a model over them, `outputs` turns its numbers
into classes, `bench` times it. The command line (netspec.cli.run) calls them in that order.
`detect` finds boxes with a detector file, by the decoder its metadata names (one module
each in `decoders/`), `detect_files` runs it over image files and draws them (`netspec
detect`), `evaluate` scores it on test scenes (`netspec eval --scenes`).
"""

from __future__ import annotations

# A file's output kinds are checked when its metadata is read (netspec.artifact.from_props);
# the kinds of a detector's outputs are those its decoders read, registered when the
# decoders are found: importing any of the runtime finds them first.
from netspec.runtime import decoders as decoders
