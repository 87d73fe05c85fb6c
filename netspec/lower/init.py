"""Initialization schemes a spec can ask for with `init=`.

`default` keeps PyTorch's own initialization (each module's `reset_parameters`). The others
redraw a layer's weights from its fan-in and fan-out:

- `lecun`: U(-2.4/F_in, 2.4/F_in), as in LeNet-5 (LeCun et al., 1998), biases too; a layer
  with a connection table uses each output map's own fan-in.
- `kaiming`: N(0, 2/fan) for ReLU nets (He et al., 2015), fan-out for convolutions as
  torchvision does, fan-in for dense stages; biases zero.
- `xavier`: U(±sqrt(6/(F_in + F_out))) (Glorot & Bengio, 2010); biases zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from netspec.lower.layers import LocallyConnected2d, Subsample2d, TableConv2d


def _fans(module: nn.Module) -> tuple[float, float, bool]:
    """(fan-in, fan-out, convolutional?) of a layer the schemes know."""
    if isinstance(module, nn.Conv2d):
        receptive = module.weight[0, 0].numel()
        return module.weight.shape[1] * receptive, module.weight.shape[0] * receptive, True
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if isinstance(module, LocallyConnected2d):
        kh, kw = module.kernel
        return module.fan_in, module.out_channels * kh * kw, True
    if isinstance(module, TableConv2d):
        links, taps = module.weight.shape[0], module.kernel[0] * module.kernel[1]
        return links / module.out_channels * taps, links / module.in_channels * taps, True
    if isinstance(module, Subsample2d):
        taps = module.kernel[0] * module.kernel[1]
        return taps, taps, False
    raise TypeError(f"init= does not apply to {type(module).__name__}")


def _draw(weight: Tensor, scheme: str, fan_in: float, fan_out: float, conv: bool) -> None:
    if scheme == "lecun":
        bound = 2.4 / fan_in
        weight.uniform_(-bound, bound)
    elif scheme == "kaiming":
        weight.normal_(0.0, math.sqrt(2.0 / (fan_out if conv else fan_in)))
    elif scheme == "xavier":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weight.uniform_(-bound, bound)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")


def _bias(bias: Tensor | None, scheme: str, fan_in: float) -> None:
    if bias is None:
        return
    if scheme == "lecun":
        bias.uniform_(-2.4 / fan_in, 2.4 / fan_in)
    else:
        bias.zero_()


def _lecun_table(module: TableConv2d) -> None:
    """LeCun's rule per output map: each sees only its own rows of the table."""
    taps = module.kernel[0] * module.kernel[1]
    start = 0
    for o, row in enumerate(module.table):
        fan_in = len(row) * taps
        _draw(module.weight[start : start + len(row)], "lecun", fan_in, fan_in, True)
        _bias(None if module.bias is None else module.bias[o : o + 1], "lecun", fan_in)
        start += len(row)


def init_weights(module: nn.Module, scheme: str) -> None:
    """Redraw `module`'s weights (and biases) by `scheme`; `default` leaves them as built."""
    if scheme == "default":
        return
    with torch.no_grad():
        if scheme == "lecun" and isinstance(module, TableConv2d):
            _lecun_table(module)
            return
        fan_in, fan_out, conv = _fans(module)
        weight = module.weight
        assert isinstance(weight, Tensor)
        _draw(weight, scheme, fan_in, fan_out, conv)
        bias = getattr(module, "bias", None)
        _bias(bias if isinstance(bias, Tensor) else None, scheme, fan_in)
