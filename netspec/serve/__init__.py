"""`netspec serve`: a local page where a person draws on a canvas and watches every layer
of the network respond, in the spirit of Adam Harley's interactive MNIST demo, for any
spec with an image input.

The server (Starlette under uvicorn, netspec.serve.app and netspec.serve.server) answers
a small JSON API over `netspec.probe`, which computes what each layer outputs; the page
(static/, plain JavaScript, no build step) draws the maps. Nothing here imports torch on
an ONNX target: the probe's ONNX backend runs it on ONNX Runtime.
"""

from __future__ import annotations
