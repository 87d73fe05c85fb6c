"""Initialization schemes a spec can ask for with `init=`.

`default` keeps PyTorch's own initialization (each module's `reset_parameters`). The others
redraw a layer's weights from its fan-in and fan-out:

- `lecun`: U(-2.4/F_in, 2.4/F_in), as in LeNet-5 (LeCun et al., 1998), biases too; a layer
  with a connection table uses each output map's own fan-in.
- `kaiming`: N(0, 2/fan) for ReLU nets (He et al., 2015), fan-out for convolutions as
  torchvision does, fan-in for dense stages; biases zero.
- `xavier`: U(±sqrt(6/(F_in + F_out))) (Glorot & Bengio, 2010); biases zero.

The fans come from the module, not from a list of classes: a layer of netspec's own says
them with `fans() -> (fan-in, fan-out, convolutional?)` (and, where its output maps differ,
`fan_in_groups()` for LeCun's rule); any other module with an `(out, in, ...)` weight, as
`nn.Conv2d` and `nn.Linear` have, gets PyTorch's fans of that weight. A new weighted
operation needs nothing here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def _fans(module: nn.Module) -> tuple[float, float, bool]:
    """(fan-in, fan-out, convolutional?) of `module`'s weight."""
    own = getattr(module, "fans", None)
    if callable(own):
        fans: tuple[float, float, bool] = own()
        return fans
    weight = getattr(module, "weight", None)
    if isinstance(weight, Tensor) and weight.dim() >= 2:
        receptive = weight[0, 0].numel()
        return weight.shape[1] * receptive, weight.shape[0] * receptive, weight.dim() > 2
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


Groups = Iterator[tuple[Tensor, Tensor | None, float]]


def _lecun_groups(module: nn.Module) -> Groups | None:
    """Per-output-map (weights, bias, fan-in), where the module gives them."""
    groups = getattr(module, "fan_in_groups", None)
    return groups() if callable(groups) else None


def init_weights(module: nn.Module, scheme: str) -> None:
    """Redraw `module`'s weights (and biases) by `scheme`; `default` leaves them as built."""
    if scheme == "default":
        return
    with torch.no_grad():
        groups = _lecun_groups(module) if scheme == "lecun" else None
        if groups is not None:
            for part, part_bias, part_fan_in in groups:
                _draw(part, "lecun", part_fan_in, part_fan_in, True)
                _bias(part_bias, "lecun", part_fan_in)
            return
        fan_in, fan_out, conv = _fans(module)
        weight = module.weight
        assert isinstance(weight, Tensor)
        _draw(weight, scheme, fan_in, fan_out, conv)
        bias = getattr(module, "bias", None)
        _bias(bias if isinstance(bias, Tensor) else None, scheme, fan_in)
