"""What each layer computes: one object that `netspec show` and `netspec serve` share.

    from netspec.probe import open_probe

    probe = open_probe(Path("runs/demo"))          # or specs/lenet.net, or model.onnx
    x = probe.prepare(image)                       # H x W [x C], uint8 or [0, 1] floats
    outputs = probe.run(x)                         # {layer name: (N, *shape) float32}
    for view in probe.layers:                      # network order
        view.name, view.op, view.shape, view.rf_size, view.where, view.text

`open_probe(target, *, overrides={})` takes
- a run directory (`runs/NAME`), opened and checked as `netspec eval` opens a run (no link
  out of it, every kept spec file against its digest): its `model.onnx` when it has one
  (and no overrides), compiled from the run's kept files, else its spec with its weights;
- a `.net` spec: weights drawn from a fixed seed, or only the fixed kernels it declares
  (`specs/filters.net`); symbolic sizes bound by `overrides` (`{"H": "64", "W": "64"}`);
- an `.onnx` file netspec wrote: its metadata's spec gives the layers, its `use`s read
  from the files the metadata embeds (never from beside it), its external data from its
  own folder.
A target that is none of these, or damaged, is a `NetspecError` with a clear message.

`Probe`:
- `layers`: a `LayerView` per layer (every node whose output is a tensor), network order;
- `input_shape` (`(1, 28, 28)`), `input` (its `InputInfo`: name, shape, mean, std),
  `output` (the first output's `OutputInfo`: kind, shape), `output_layer` (its layer);
- `classes`: class names when the output is class scores, else None;
- `prepare(image) -> (1, C, H, W)`: the picture as the network sees it (fitted as `netspec
  run` fits an image file, then normalized by the metadata's or the train section's
  mean and std);
- `run(x) -> {layer: array}`: every layer's output, batch first, in network order (a
  network of several inputs gets `x` on each); `probabilities(outputs)`: class
  probabilities from those, for a classifier; `layer(name)`: one view, or a UsageError
  that suggests the nearest names;
- `backend`: "onnxruntime" or "torch".

`LayerView`: `name`, `op`, `shape` (no batch axis), `rf_size`, `rf_jump`, `rf_start` (per
spatial axis, as `netspec compile` reports them; None for a layer that sees the whole
input), `file`, `line`, `col`, `text` (the spec line that made it), `params`
(trainable), `fixed`, `macs`, `inputs`, `activation_of` (for an activation: the layer whose
maps it rectifies) and `spatial` (C x H x W maps with a receptive field).

Backends: ONNX Runtime for an ONNX file, every layer's tensor (named after its layer by
netspec's exporter, netspec.export.layers) added as a graph output; this path never
imports torch. PyTorch forward hooks on `netspec.lower.to_torch`'s module for a spec, or a
run without `model.onnx`.
"""

from __future__ import annotations

from netspec.probe.probe import Probe, open_probe
from netspec.probe.views import LayerView, layer_views

__all__ = ["LayerView", "Probe", "layer_views", "open_probe"]
