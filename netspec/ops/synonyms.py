"""Other frameworks' words for netspec's operations and parameters, so that a mistake
is answered by meaning as well as by spelling.

A spelling match alone misleads: `deconv` is one letter from `conv`, but a transposed
convolution is not a convolution, and `upsample` is close to `subsample`, its opposite.
An unknown word found here is answered with the operation it means, and only with
what that word means (never a near spelling); a suggestion is shown only if the
operation it names is registered.

>>> meant_ops("convtranspose", ["conv", "deconv"])
['deconv']
>>> meant_ops("upsampling", ["subsample"])
[]
>>> op_hint("fc", ["conv", "dense"])
"netspec calls it 'dense'"
>>> op_hint("logsoftmax", ["log_softmax", "softmax"])
"did you mean 'log_softmax'?"
>>> op_hint("deconv", ["conv", "dense"]) is None  # no transposed convolution: say nothing
True
>>> PARAMS["padding"]
'pad'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from netspec.diagnostics import did_you_mean, nearest

# A word from PyTorch, Keras, ONNX or the literature -> the netspec operations it means.
OPS: dict[str, tuple[str, ...]] = {
    # transposed convolution
    "convtranspose": ("deconv",),
    "conv_transpose": ("deconv",),
    "convtranspose2d": ("deconv",),
    "conv2dtranspose": ("deconv",),
    "transposed_conv": ("deconv",),
    "transpose_conv": ("deconv",),
    "transconv": ("deconv",),
    "upconv": ("deconv", "upsample"),
    "deconvolution": ("deconv",),
    # upsampling
    "upsampling": ("upsample",),
    "upsampling2d": ("upsample",),
    "interpolate": ("upsample", "resize"),
    "unpool": ("upsample",),
    "nearest": ("upsample",),
    "bilinear": ("upsample",),
    # dense stages
    "linear": ("dense",),
    "fc": ("dense",),
    "fully_connected": ("dense",),
    "affine": ("dense",),
    "gemm": ("dense",),
    "matmul": ("dense",),
    # convolutions and pools
    "conv2d": ("conv",),
    "convolution": ("conv",),
    "depthwise": ("conv",),
    "locally_connected": ("local",),
    "maxpool2d": ("maxpool",),
    "max_pool": ("maxpool",),
    "avgpool2d": ("avgpool",),
    "avg_pool": ("avgpool",),
    "meanpool": ("avgpool",),
    "global_avgpool": ("avgpool global",),
    "global_average_pooling": ("avgpool global",),
    "global_maxpool": ("maxpool global",),
    "global_max_pooling": ("maxpool global",),
    "adaptive_avgpool": ("avgpool to",),
    "adaptive_maxpool": ("maxpool to",),
    "pool": ("maxpool", "avgpool"),
    # activations
    "swish": ("silu",),
    "hard_swish": ("hardswish",),
    "hswish": ("hardswish",),
    "hard_sigmoid": ("hardsigmoid",),
    "hsigmoid": ("hardsigmoid",),
    "logsoftmax": ("log_softmax",),
    "leakyrelu": ("leaky_relu",),
    "lrelu": ("leaky_relu",),
    "clamp": ("hardtanh",),
    "clip": ("hardtanh",),
    # normalization
    "bn": ("batchnorm",),
    "batchnorm2d": ("batchnorm",),
    "batch_norm": ("batchnorm",),
    "ln": ("layernorm",),
    "layer_norm": ("layernorm",),
    "gn": ("groupnorm",),
    "group_norm": ("groupnorm",),
    "instance_norm": ("instancenorm",),
    "in_norm": ("instancenorm",),
    "localresponsenorm": ("lrn",),
    "layernorm2d": ("layernorm",),
    "l2_norm": ("l2norm",),
    "l2normalize": ("l2norm",),
    "layerscale": ("layer_scale",),
    "stochastic_depth": ("drop_path",),
    "stochasticdepth": ("drop_path",),
    "droppath": ("drop_path",),
    # merges and shapes
    "sum": ("add",),
    "plus": ("add",),
    "residual": ("add",),
    "cat": ("concat",),
    "concatenate": ("concat",),
    "multiply": ("mul",),
    "product": ("mul",),
    "subtract": ("sub",),
    "minus": ("sub",),
    "average": ("mean",),
    "avg": ("mean",),
    "maximum": ("max",),
    "view": ("reshape",),
    "transpose": ("permute",),
    "shuffle": ("channel_shuffle",),
    "depth_to_space": ("pixel_shuffle",),
    "subpixel": ("pixel_shuffle",),
    "space_to_depth": ("pixel_unshuffle",),
    "zeropad": ("pad",),
    "zero_pad": ("pad",),
    "padding": ("pad",),
    "center_crop": ("crop",),
    "centercrop": ("crop",),
    "dropout2d": ("dropout",),
    "mul_const": ("scale",),
}

# A parameter as PyTorch (or Keras) spells it -> netspec's name, or how netspec says it.
PARAMS: dict[str, str] = {
    "padding": "pad",
    "kernel_size": "kernel",
    "pool_size": "kernel",
    "strides": "stride",
    "out_channels": "channels",
    "filters": "channels",
    "out_features": "units",
    "dilation_rate": "dilation",
    "output_padding": "output_pad",
    "use_bias": "bias",
    "scale_factor": "factor",
    "negative_slope": "slope",
    "alpha": "slope",
    "rate": "p",
    "num_groups": "groups",
    "epsilon": "eps",
}

# A value as another framework spells it -> netspec's word for it (`init=he`, `mode=zeros`).
VALUES: dict[str, str] = {
    "he": "kaiming",
    "he_normal": "kaiming",
    "he_uniform": "kaiming",
    "kaiming_normal": "kaiming",
    "kaiming_uniform": "kaiming",
    "glorot": "xavier",
    "glorot_normal": "xavier",
    "glorot_uniform": "xavier",
    "xavier_normal": "xavier",
    "xavier_uniform": "xavier",
    "zeros": "constant",
    "reflection": "reflect",
    "replication": "replicate",
    "edge": "replicate",
}

# A training setting as PyTorch or Keras code names it -> netspec's setting, or the
# `--set` key of a value that belongs to one (`learning_rate` is optimizer's `lr=`).
SETTINGS: dict[str, str] = {
    "learning_rate": "lr",
    "batch_size": "batch",
    "num_epochs": "epochs",
    "n_epochs": "epochs",
    "max_epochs": "epochs",
    "optim": "optimizer",
    "scheduler": "schedule",
    "lr_scheduler": "schedule",
    "criterion": "loss",
    "loss_fn": "loss",
    "random_seed": "seed",
    "grad_clip": "clip",
    "clip_grad_norm": "clip",
}

# Parameters netspec works out itself: saying so beats suggesting a near spelling.
INFERRED_PARAMS: frozenset[str] = frozenset(
    {"in_channels", "in_features", "num_features", "input_shape", "input_size"}
)


def _squashed(word: str) -> str:
    """A word as another framework may write it, reduced to compare by meaning: case, `-`
    and `_` ignored, and a trailing `1d`/`2d`/`3d` dropped (`MaxPool2d` is `maxpool`)."""
    key = re.sub(r"[-_]", "", word.lower())
    return re.sub(r"(?<=[a-z])[123]d$", "", key)


def _phrases(word: str) -> tuple[str, ...]:
    """How netspec writes what `word` means (`avgpool global`), from its entry in OPS."""
    key = _squashed(word)
    return next((v for k, v in OPS.items() if _squashed(k) == key), ())


def meant_ops(word: str, registered: Iterable[str]) -> list[str]:
    """The registered operations another framework's `word` means (case, `-`, `_` and a
    `2d` ignored)."""
    known = set(registered)
    return [p.split()[0] for p in _phrases(word) if p.split()[0] in known]


def _meanings() -> frozenset[str]:
    return frozenset(_squashed(p.split()[0]) for names in OPS.values() for p in names)


def _quoted(names: Iterable[str]) -> str:
    return " or ".join(f"'{n}'" for n in names)


def op_hint(word: str, candidates: Iterable[str]) -> str | None:
    """The hint for an unknown operation `word`: a candidate it differs from only in case,
    `_` or a `2d` (`Dense`, `MaxPool2d`); what it means in netspec when it is another
    framework's word; else the nearest spelling, unless `word` is one whose meaning netspec
    knows (a near spelling of such a word is a different operation, not a typo)."""
    pool = list(candidates)
    same = [c for c in pool if c != word and _squashed(c) == _squashed(word)]
    if same:
        return f"did you mean '{same[0]}'?"
    phrases = [p for p in _phrases(word) if p.split()[0] in pool]
    if phrases == [nearest(word, pool)]:
        return did_you_mean(word, pool)  # `hard_swish`: a spelling, and the same meaning
    if phrases:
        return f"netspec calls it {_quoted(phrases)}"
    key = _squashed(word)
    if any(_squashed(k) == key for k in OPS) or key in _meanings():
        return None
    return did_you_mean(word, pool)


def param_meant(key: str, fields: Iterable[str]) -> str | None:
    """The field of `fields` that another framework's parameter `key` means: its entry in
    PARAMS, or the field that is a part of it (`scale_factor` where the field is `scale`)."""
    names = list(fields)
    if key not in PARAMS:
        return None
    if PARAMS[key] in names:
        return PARAMS[key]
    return next((n for n in names if n in key.split("_")), None)


def param_hint(key: str, fields: Iterable[str]) -> str | None:
    """The hint for an unknown parameter `key` of an operation with `fields`: netspec's name
    for a PyTorch spelling, a word that netspec infers, or the nearest spelling."""
    names = list(fields)
    meant = param_meant(key, names)
    if meant is not None:
        return f"netspec calls it {meant}="
    if key in INFERRED_PARAMS:
        return "netspec infers it from the input's shape; leave it out"
    return did_you_mean(key, names)
