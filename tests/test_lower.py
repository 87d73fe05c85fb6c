"""Lowering to PyTorch: shapes and parameter counts against static inference, every op,
weight sharing, spec-located errors, initialization, parity with hand-written modules, and
training."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import netspec
from netspec.compiler import Compiled
from netspec.lower import BUILDERS, to_torch
from netspec.lower.layers import TableConv2d
from netspec.ops import REGISTRY
from tests.handwritten import HandDenseBlock, HandInception, HandLeNet, HandResNetTiny

SPECS = Path(__file__).resolve().parent.parent / "specs"
BIG = {"alexnet", "zfnet", "vgg16", "resnet50", "resnet152", "densenet121", "googlenet",
       "mobilenet_v2", "efficientnet_b0", "se_resnet", "unet", "convnext_t"}  # fmt: skip

# A basic-block ResNet on 3x32x32, in the spec language (the shape of torchvision's).
RESNET_TINY = """
block basic(c, stride=1) {
    body = conv c 3x3 stride=stride pad=1 bias=false as conv1 | batchnorm as bn1 | relu
         | conv c 3x3 pad=1 bias=false as conv2 | batchnorm as bn2
    downsample = project(c, stride)
    add(body, downsample) | relu
}

network resnet_tiny(image: 3x32x32) {
    conv 16 3x3 pad=1 bias=false as conv1 | batchnorm as bn1 | relu
    layer1 = basic(16)
    layer2 = basic(32, stride=2)
    avgpool global | dense 10 as fc
}
"""

# ResNet-18's layout on 32x32 images (CIFAR-sized): the spec used for training checks.
RESNET18_32 = (SPECS / "resnet18.net").read_text().replace("3x224x224", "3x32x32")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors, one thread


def spec(body: str, inputs: str = "x: 3x8x8", prelude: str = "") -> Compiled:
    return netspec.compile(f"{prelude}\nnetwork t({inputs}) {{\n{body}\n}}\n")


def sample(compiled: Compiled, batch: int = 2) -> list[Tensor]:
    return [torch.randn(batch, *(int(d) for d in i.shape)) for i in compiled.graph.inputs]


def check_against_inference(compiled: Compiled, batch: int = 2) -> nn.Module:
    """Every layer's PyTorch output shape and the parameter count equal the static ones."""
    module = to_torch(compiled)
    seen: dict[str, list[tuple[int, ...]]] = {}

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(mod: nn.Module, args: object, out: Tensor) -> None:
            seen.setdefault(name, []).append(tuple(out.shape))

        return hook

    for layer in compiled.layers:
        owner = layer.shared_with or layer.name
        if owner == layer.name:
            module.get_submodule(owner).register_forward_hook(record(owner))
    module.eval()
    with torch.no_grad():
        module(*sample(compiled, batch))
    for layer in compiled.layers:
        got = seen.get(layer.shared_with or layer.name, [])
        assert (batch, *layer.shape) in got, f"{layer.name}: inferred {layer.shape}, got {got}"
    assert sum(p.numel() for p in module.parameters()) == compiled.totals.trainable_params
    return module


# ---- every spec, every op, generated chains -------------------------------------------------


def _spec_params() -> list[object]:
    out = []
    for path in sorted(SPECS.glob("*.net")):
        marks = [pytest.mark.slow] if path.stem in BIG else []
        out.append(pytest.param(path, marks=marks, id=path.stem))
    return out


@pytest.mark.parametrize("path", _spec_params())
def test_every_spec_matches_inference(path: Path) -> None:
    text = path.read_text()
    symbols = {d for d in ("H", "W") if f"x{d}" in text}
    compiled = netspec.compile(path, **dict.fromkeys(symbols, 16))
    check_against_inference(compiled, batch=1)


# Three proposals on 3x8x8 maps, for the RoI poolings' snippets.
RPN_SNIPPET = (
    "s = conv 1 1x1\nd = x | conv 4 1x1\nr = proposals(s, d, sizes=[4], ratios=[1], keep=3)\n"
)

OP_SNIPPETS = {
    "conv": "conv 4 3x3 stride=2 pad=1 dilation=1 groups=1",
    "local": "local 2 3x3 stride=2 pad=1",
    "dense": "dense 5",
    "rbf": "dense 84 | rbf 10",
    "flatten": "flatten",
    "maxpool": "maxpool 3x3 stride=2 pad=1 ceil=true dilation=2",
    "avgpool": "avgpool to 4x2",
    "lppool": "lppool 2x2 p=3",
    "subsample": "subsample 2x2",
    "batchnorm": "batchnorm eps=0.001 momentum=0.2",
    "lrn": "lrn size=3",
    "dropout": "dropout 0.3",
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "scaled_tanh": "scaled_tanh",
    "gelu": "gelu | gelu approximate=tanh",
    "identity": "identity",
    "leaky_relu": "leaky_relu 0.2",
    "elu": "elu 0.5",
    "softmax": "softmax",
    "add": "add {\n relu\n conv 3 1x1\n}",
    "concat": "concat {\n relu\n conv 2 1x1\n}",
    "distance": "distance {\n relu\n conv 3 1x1\n}",
    "project": "project(6, 2)",
    # ---- shape, pools
    "reshape": "conv 4 3x3 pad=1 | reshape 16x-1x4",
    "permute": "permute 1 2 0",
    "channel_shuffle": "conv 4 1x1 | channel_shuffle 2",
    "slice": "slice 1..3",  # maps 1 and 2 of 3
    "pad": "pad 1 2 3 4 mode=reflect",
    "crop": "crop 5x4",
    # ---- issue 10 (ops1): merges, activations, normalizations, upsampling
    "mul": "mul {\n relu\n avgpool global | conv 3 1x1 | sigmoid\n}",  # an SE gate
    "sub": "sub {\n relu\n conv 3 1x1\n}",
    "mean": "mean {\n relu\n conv 3 1x1\n tanh\n}",
    "max": "max {\n identity\n conv 3 1x1\n}",
    "scale": "scale 0.5",
    "relu6": "scale 8 | relu6",
    "hardtanh": "hardtanh min=-0.5 max=2",
    "silu": "silu",
    "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid",
    "mish": "mish",
    "prelu": "prelu",
    "softplus": "softplus beta=2",
    "log_softmax": "log_softmax",
    "layernorm": "layernorm channels eps=0.01 | layernorm eps=0.001",
    "groupnorm": "conv 4 1x1 | groupnorm 2 eps=0.001",
    "instancenorm": "instancenorm eps=0.001",
    "upsample": "upsample 2 | upsample 2x3 mode=bilinear align_corners=true | upsample to 12x40",
    "deconv": "deconv 4 3x3 stride=2 pad=1 output_pad=1 bias=false",
    # ---- issue 13 (yolo): a single-shot detection head
    "detect": "conv 7 1x1 | detect boxes=1 classes=2 score=0.3 iou=0.4",
    # ---- issue 24: an SSD head over two maps (2 default boxes a position, 5 + 2 numbers each)
    "ssd": "a = conv 14 3x3 pad=same\nb = avgpool 2x2 | conv 14 3x3 pad=same\n"
    "ssd(a, b, classes=2, scales=[0.3, 0.6], ratios=[1], keep=5)",
    # ---- issue 22 (W-RESAMPLE): resizing to another tensor's size, depth to space and back
    "resize": "top = avgpool 3x3 stride=2\nresize(top, in, mode=bilinear)",  # 3x3 to 8x8
    "pixel_shuffle": "conv 8 1x1 | pixel_shuffle 2",
    "pixel_unshuffle": "pixel_unshuffle 2",
    # ---- issue 22 (W-NORM): ConvNeXt's and SSD's words
    "l2norm": "l2norm scale=20",
    "layer_scale": "layer_scale 0.5",
    "drop_path": "drop_path 0.2",
    # ---- issue 24 (W-HOG): HOG's orientation binning of two gradient maps, its blocks
    "orientation_bins": "conv 2 1x1 | orientation_bins 4",
    "block_norm": "relu | avgpool 2x2 | block_norm 2x2",  # 3x4x4 cells to 12x3x3 blocks
    # ---- issue 23 (ROI): an RPN's proposals, pooled per region (netspec.ops.roi)
    "proposals": "s = conv 2 1x1\nd = x | conv 8 1x1\n"
    "proposals(s, d, sizes=[3, 5], ratios=[1], keep=4, pre=20, iou=0.5)",
    "roi_pool": f"{RPN_SNIPPET}roi_pool(x, r, 2x2) | dense 4",
    "roi_align": f"{RPN_SNIPPET}roi_align(x, r, 3x3, sampling=2, aligned=false) | conv 2 3x3",
    "ps_roi_pool": f"{RPN_SNIPPET}f = x | conv 8 1x1\nps_roi_pool(f, r, 2x2, classes=2)",
    # ---- issue 23 (FRCNN): the R-CNN family's head, a region's classes and box, and the RPN
    "two_stage": f"{RPN_SNIPPET}h = roi_pool(x, r, 2x2) | dense 4\nc = h | dense 3\n"
    "b = h | dense 4\ntwo_stage(r, c, b, s, d, classes=2, keep=3)",
    # ---- issue 23 (WIN): R-CNN's proposals from edge contrast, without weights
    "edge_windows": "edge_windows sizes=[3, 5] ratios=[0.5, 1] stride=2 keep=4 iou=0.7",
    # ---- issue 24 (VJ): summed-area tables; a cascade of Haar-like features (untrained: every
    # window of 4x4 passes, 2 rows kept)
    "integral": "conv 1 1x1 | integral",
    "cascade": "conv 1 1x1 | integral | cascade window=4 haar=[[-1 1]] sizes=[2, 4] keep=2",
}


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_every_registered_op_lowers(op: str) -> None:
    assert op in BUILDERS, f"operation '{op}' has no PyTorch builder in netspec.lower.builders"
    assert op in OP_SNIPPETS, f"add a snippet for '{op}' to OP_SNIPPETS"
    compiled = spec(OP_SNIPPETS[op])
    assert op in {layer.op for layer in compiled.layers}
    check_against_inference(compiled)


def _random_chain(rng: random.Random) -> str:
    stages = [f"conv {rng.randint(2, 6)} {rng.choice([1, 3])}x{rng.choice([1, 3])} pad=valid"]
    spatial = [
        "relu",
        "tanh",
        "batchnorm",
        "lrn",
        "dropout 0.1",
        "gelu",
        "scaled_tanh",
        f"conv {rng.randint(2, 6)} 3x3 pad=same",
        "maxpool 2x2 stride=1",
        "avgpool 3x3 stride=1 pad=1",
        "lppool 2x2 stride=1",
        "subsample 1x1",
        f"project({rng.randint(2, 6)}, {rng.randint(1, 2)})",
        f"local {rng.randint(1, 3)} 2x2",
        "leaky_relu",
        "elu",
    ]
    stages += rng.sample(spatial, 4)
    stages.append(rng.choice(["flatten | dense 7", "dense 7", "avgpool global | dense 3", "rbf 4"]))
    if rng.random() < 0.5:
        stages.append("softmax")
    return " | ".join(stages)


@pytest.mark.parametrize("seed", range(8))
def test_generated_chains_match_inference(seed: int) -> None:
    check_against_inference(spec(_random_chain(random.Random(seed)), "x: 3x12x12"))


# ---- the seed's worked examples ------------------------------------------------------------


def test_fixed_kernel_worked_example() -> None:
    compiled = spec("conv fixed=[k]", "image: 1x5x5", prelude="kernel k = [1 0 1; 0 1 0; 1 0 1]")
    image = torch.tensor(
        [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
    )
    got = to_torch(compiled)(image.float()[None, None])
    assert torch.equal(got, torch.tensor([[[[4.0, 3, 4], [2, 4, 3], [2, 3, 4]]]]))


@pytest.mark.skipif(not (SPECS / "filters.net").exists(), reason="specs/filters.net not present")
def test_filters_spec_on_images() -> None:
    compiled = netspec.compile(SPECS / "filters.net", H=12, W=12)
    module = to_torch(compiled).eval()
    torch.manual_seed(0)
    image = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        maps = module(image)[
            0
        ]  # (10, 12, 12): identity, edges x3, sharpen, box, gauss, emboss, ...
        flat = module(torch.full((1, 1, 12, 12), 3.0))[0]
    torch.testing.assert_close(maps[0], image[0, 0])
    box = F.avg_pool2d(image, 3, stride=1)[0, 0]  # the 3x3 mean where the window fits
    torch.testing.assert_close(maps[5, 1:-1, 1:-1], box, atol=1e-6, rtol=1e-5)
    for edge in (1, 2, 3):
        assert flat[edge, 2:-2, 2:-2].abs().max() < 1e-5  # away from the zero padding


# ---- names, spans, errors, outputs ----------------------------------------------------------


def test_modules_are_named_and_nested_as_in_the_spec() -> None:
    compiled = netspec.compile(RESNET_TINY)
    module = to_torch(compiled)
    assert isinstance(module.get_submodule("layer2.downsample.0"), nn.Conv2d)
    assert isinstance(module.get_submodule("layer1.downsample"), nn.Identity)
    assert module.get_submodule("fc").in_features == 32
    assert "(layer1): ModuleDict(" in repr(module) and repr(module).startswith("resnet_tiny(")
    assert module.input_names == ("image",) and module.output_names == ("fc",)
    assert module.spans["layer2.conv1"].line == 3  # the block's line, where the layer is written
    keys = set(module.state_dict())
    assert {"layer2.downsample.0.weight", "layer2.downsample.1.running_mean"} <= keys


def test_wrong_input_size_is_reported_against_the_spec() -> None:
    compiled = netspec.compile("network n(image: 1x28x28) {\n    conv 4 5x5 | dense 10\n}\n")
    module = to_torch(compiled)
    with pytest.raises(netspec.SpecError) as info:
        module(torch.randn(2, 3, 32, 32))
    diag = info.value.diagnostics[0]
    assert diag.message == "input 'image' must be 1x28x28, got 3x32x32"
    assert (diag.span.line, diag.span.col) == (1, 11)
    with pytest.raises(netspec.SpecError, match="batch"):
        module(torch.randn(1, 28, 28))


def test_failure_inside_a_layer_names_the_layer_and_its_line() -> None:
    compiled = netspec.compile("network n(x: 1xHxW) {\n    relu\n    conv 4 5x5 as c\n}\n")
    with pytest.raises(netspec.SpecError) as info:
        to_torch(compiled)(torch.randn(1, 1, 3, 3))  # smaller than the kernel
    diag = info.value.diagnostics[0]
    assert diag.code == "E602" and "'c'" in diag.message and diag.span.line == 3


def test_several_inputs_and_outputs() -> None:
    compiled = spec(
        "a = left | conv 2 3x3\nb = right | conv 2 3x3\ns = add(a, b)\noutput a, s",
        "left: 1x6x6, right: 1x6x6",
    )
    module = to_torch(compiled)
    a, s = module(*sample(compiled))
    assert a.shape == s.shape == (2, 2, 4, 4)


def test_a_name_pytorch_reserves_is_a_spec_error() -> None:
    with pytest.raises(netspec.SpecError, match="cannot name a layer"):
        to_torch(spec("conv 2 3x3 as forward"))


# ---- weight sharing --------------------------------------------------------------------------

SIAMESE_BODY = """
shared tower = { conv 3 3x3 | relu | dense 4 }
a = tower(left)
b = tower(right)
distance(a, b) | dense 1
"""

UNTIED_BODY = """
a = left | conv 3 3x3 | relu | dense 4
b = right | conv 3 3x3 | relu | dense 4
distance(a, b) | dense 1
"""


def test_shared_gradient_is_the_sum_of_untied_gradients() -> None:
    inputs = "left: 1x6x6, right: 1x6x6"
    tied_spec, untied_spec = spec(SIAMESE_BODY, inputs), spec(UNTIED_BODY, inputs)
    tied, untied = to_torch(tied_spec), to_torch(untied_spec)
    assert sum(p.numel() for p in tied.parameters()) == tied_spec.totals.trainable_params
    tower, head = list(tied.parameters())[:4], list(tied.parameters())[4:]
    with torch.no_grad():  # untied: a.1, a.3 and b.1, b.3 are copies of the tower, then the head
        for p, value in zip(untied.parameters(), [*tower, *tower, *head], strict=True):
            p.copy_(value)
    x = sample(tied_spec)
    tied(*x).sum().backward()
    untied(*x).sum().backward()
    copies = list(untied.parameters())
    for k, shared in enumerate(tower):
        assert shared.grad is not None and copies[k].grad is not None
        torch.testing.assert_close(shared.grad, copies[k].grad + copies[k + 4].grad)
        assert not torch.equal(copies[k].grad, copies[k + 4].grad)  # both uses contribute


# ---- initialization -----------------------------------------------------------------------------


def test_init_schemes() -> None:
    torch.manual_seed(0)
    c = spec(
        "conv 64 5x5 init=lecun as l | conv 64 3x3 init=kaiming as k"
        " | conv 32 3x3 init=xavier as xa | conv 16 3x3 as d"
        " | conv 6 3x3 connect=tab init=lecun as c | dense 200 init=kaiming as f",
        "x: 3x16x16",
        prelude="table tab = [0; 0 1; 0 1 2; 1; 2 3 4 5 6; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]",
    )
    m = to_torch(c)
    lecun = m.get_submodule("l")
    assert lecun.weight.abs().max() <= 2.4 / 75 and lecun.weight.abs().max() > 2.0 / 75
    assert lecun.bias.abs().max() <= 2.4 / 75
    kaiming = m.get_submodule("k")
    assert abs(kaiming.weight.std().item() - (2 / (64 * 9)) ** 0.5) < 0.005
    assert torch.all(kaiming.bias == 0)
    xavier = m.get_submodule("xa")
    bound = (6 / (64 * 9 + 32 * 9)) ** 0.5
    assert bound * 0.9 < xavier.weight.abs().max() <= bound
    default = m.get_submodule("d")  # PyTorch's own: U(±1/sqrt(fan_in))
    assert default.weight.abs().max() <= 1 / (32 * 9) ** 0.5
    table = m.get_submodule("c")
    assert isinstance(table, TableConv2d)
    assert table.weight[0].abs().max() <= 2.4 / 9  # one input map: fan-in 9
    assert table.weight[-16:].abs().max() <= 2.4 / (16 * 9)  # all sixteen: fan-in 144
    dense = m.get_submodule("f")
    assert abs(dense.weight.std().item() - (2 / dense.in_features) ** 0.5) < 0.01


# ---- parity with hand-written modules --------------------------------------------------------


INCEPTION = """
network inception(x: 192x8x8) {
    concat {
        conv 64 1x1 | relu
        conv 96 1x1 | relu | conv 128 3x3 pad=same | relu
        conv 16 1x1 | relu | conv 32 5x5 pad=same | relu
        maxpool 3x3 stride=1 pad=same | conv 32 1x1 | relu
    }
}
"""


DENSE_BLOCK = """
block dense_layer(growth=4, width=16) {
    concat {
        identity
        batchnorm | relu | conv width 1x1 bias=false | batchnorm | relu
        | conv growth 3x3 pad=1 bias=false
    }
}

network dense_block(x: 8x6x6) {
    repeat 3 dense_layer()
}
"""


@pytest.mark.parametrize(
    ("source", "hand"),
    [
        (SPECS / "lenet.net", HandLeNet),
        (RESNET_TINY, HandResNetTiny),
        (INCEPTION, HandInception),
        (DENSE_BLOCK, HandDenseBlock),
    ],
    ids=["lenet", "resnet", "inception", "densenet"],
)
def test_parity_with_hand_written_modules(source: Path | str, hand: type[nn.Module]) -> None:
    torch.manual_seed(0)
    compiled = netspec.compile(source)
    generated, reference = to_torch(compiled), hand()
    ours, theirs = generated.state_dict(), reference.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    reference.load_state_dict(dict(zip(theirs, ours.values(), strict=True)))
    x = sample(compiled, batch=4)
    for train in (True, False):
        generated.train(train)
        reference.train(train)
        torch.testing.assert_close(generated(*x), reference(*x), rtol=1e-5, atol=1e-6)


# ---- training and export ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        SPECS / "lenet.net",
        SPECS / "lenet5.net",
        SPECS / "local.net",
        SPECS / "siamese.net",
        RESNET_TINY,
        RESNET18_32,
        DENSE_BLOCK,
    ],
    ids=["lenet", "lenet5", "local", "siamese", "resnet_tiny", "resnet18_32", "dense_block"],
)
def test_training_lowers_the_loss(source: Path | str) -> None:
    torch.manual_seed(0)
    compiled = netspec.compile(source)
    module = to_torch(compiled)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    x = sample(compiled, batch=8)
    target = torch.randn_like(module(*x))
    labels = torch.arange(8)[:, None] % target.shape[1]

    def objective(out: Tensor) -> Tensor:
        if compiled.layers[-1].op == "rbf":  # LeNet-5: the distance to the right prototype
            return out.gather(1, labels).mean()
        return F.mse_loss(out, target)

    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = objective(module(*x))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
def test_onnx_export_skips_the_input_check_and_matches(tmp_path: Path) -> None:
    compiled = netspec.compile(RESNET_TINY)
    module = to_torch(compiled).eval()
    path = tmp_path / "net.onnx"
    x = sample(compiled, batch=2)
    torch.onnx.export(module, tuple(x), str(path), dynamo=False, input_names=["image"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x[0].numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, module(*x).numpy(), rtol=1e-4, atol=1e-5)
