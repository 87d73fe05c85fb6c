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
    "interpolate": ("upsample",),
    "resize": ("upsample",),
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
    "global_avgpool": ("avgpool",),
    "adaptive_avgpool": ("avgpool",),
    "adaptive_maxpool": ("maxpool",),
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
    "pixel_shuffle": ("upsample",),
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
}

# Parameters netspec works out itself: saying so beats suggesting a near spelling.
INFERRED_PARAMS: frozenset[str] = frozenset(
    {"in_channels", "in_features", "num_features", "input_shape", "input_size"}
)


def meant_ops(word: str, registered: Iterable[str]) -> list[str]:
    """The registered operations another framework's `word` means (case and `-` ignored)."""
    known = set(registered)
    key = word.lower().replace("-", "_")
    return [name for name in OPS.get(key, ()) if name in known]


def _meanings() -> frozenset[str]:
    return frozenset(name for names in OPS.values() for name in names)


def _quoted(names: list[str]) -> str:
    return " or ".join(f"'{n}'" for n in names)


def op_hint(word: str, candidates: Iterable[str]) -> str | None:
    """The hint for an unknown operation `word`: what it means in netspec when it is another
    framework's word; else the nearest spelling, unless `word` is one whose meaning netspec
    knows (a near spelling of such a word is a different operation, not a typo)."""
    pool = list(candidates)
    meant = meant_ops(word, pool)
    if meant and meant == [nearest(word, pool)]:
        return did_you_mean(word, pool)  # `hard_swish`: a spelling, and the same meaning
    if meant:
        return f"netspec calls it {_quoted(meant)}"
    key = word.lower().replace("-", "_")
    if key in OPS or key in _meanings():
        return None
    return did_you_mean(word, pool)


def param_hint(key: str, fields: Iterable[str]) -> str | None:
    """The hint for an unknown parameter `key` of an operation with `fields`: netspec's name
    for a PyTorch spelling, a word that netspec infers, or the nearest spelling."""
    names = list(fields)
    if PARAMS.get(key) in names:
        return f"netspec calls it {PARAMS[key]}="
    if key in INFERRED_PARAMS:
        return "netspec infers it from the input's shape; leave it out"
    return did_you_mean(key, names)
