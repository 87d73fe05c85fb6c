"""Issue 14's training settings: the `squeeze` distortion, channels-last on the CPU, and
fused optimizers. Small tensors, no dataset: each test runs in well under a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netspec.compiler import compile
from netspec.diagnostics import SpecError
from netspec.train.augment import augment
from netspec.train.data import Tensors
from netspec.train.loop import (
    Parts,
    Place,
    make_optimizer,
    make_parts,
    normalize_once,
    train_epoch,
)
from netspec.train.setup import Request, build_module, make_place
from netspec.train.state import decode, encode
from netspec.trainspec import Augment, Optimizer, TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """\
network small(image: 1x16x16) {
    LAYER
    dense 10
}

train small on mnist {
    augment {
        squeeze RANGE
    }
}
"""


def spec(tmp_path: Path, layer: str = "conv 4 3x3 | relu", squeeze: str = "0.9..1.1") -> Path:
    path = tmp_path / "small.net"
    path.write_text(SPEC.replace("LAYER", layer).replace("RANGE", squeeze))
    return path


def bar() -> torch.Tensor:
    """One 16x16 image: a filled 6x6 square in the middle (background 0)."""
    x = torch.zeros(1, 1, 16, 16)
    x[..., 5:11, 5:11] = 1.0
    return x


def spread(x: torch.Tensor) -> tuple[float, float]:
    """The ink's standard deviation along x (columns) and y (rows), in pixels."""
    img = x[0, 0]
    coords = torch.arange(img.shape[0], dtype=torch.float32)
    total = img.sum()
    mx, my = (img.sum(0) * coords).sum() / total, (img.sum(1) * coords).sum() / total
    vx = (img.sum(0) * (coords - mx) ** 2).sum() / total
    vy = (img.sum(1) * (coords - my) ** 2).sum() / total
    return float(vx.sqrt()), float(vy.sqrt())


def test_squeeze_is_read_from_the_augment_block(tmp_path: Path) -> None:
    compiled = compile(spec(tmp_path))
    assert compiled.train is not None
    assert compiled.train.augment.squeeze == (0.9, 1.1)
    assert compiled.train.augment.enabled


@pytest.mark.parametrize("bad", ["-0.9..1.1", "0..1.1"])
def test_a_bad_squeeze_is_an_error_at_its_value(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SpecError) as e:
        compile(spec(tmp_path, squeeze=bad))
    (diag,) = e.value.diagnostics
    assert diag.code == "E505" and "augment squeeze" in diag.message
    assert (diag.span.line, diag.span.col) == (8, 17)  # the value after `squeeze`


@pytest.mark.parametrize("k", [0.8, 1.25])
def test_squeeze_scales_width_by_k_and_height_by_1_over_k(k: float) -> None:
    x = bar()
    sx, sy = spread(x)
    out = augment(x, Augment(squeeze=(k, k)), torch.Generator().manual_seed(0))
    ox, oy = spread(out)
    assert ox / sx == pytest.approx(k, rel=0.06)
    assert oy / sy == pytest.approx(1 / k, rel=0.06)
    assert float(out.sum()) == pytest.approx(float(x.sum()), rel=0.05)  # area kept: k * 1/k


def test_squeeze_is_drawn_after_the_other_distortions() -> None:
    """An identity squeeze leaves the other draws, so every existing recipe's deformations,
    exactly as they were."""
    x = torch.rand(8, 1, 16, 16)
    plain = Augment(rotate=10, shift=2, shear=5, scale=(0.9, 1.1))
    with_squeeze = plain.model_copy(update={"squeeze": (1.0, 1.0)})
    a = augment(x, plain, torch.Generator().manual_seed(3))
    b = augment(x, with_squeeze, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = augment(
        x, plain.model_copy(update={"squeeze": (0.8, 1.2)}), torch.Generator().manual_seed(3)
    )
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(
    ("layer", "nhwc"),
    [
        ("conv 4 3x3 | relu", True),  # oneDNN's NHWC convolutions are faster on the CPU
        ("deconv 4 2x2 stride=2 | relu", True),
        ("local 4 3x3 | relu", False),  # unfolded windows: slower NHWC on the CPU
        ("conv 4 3x3 | local 4 3x3 | relu", False),
        ("relu", False),  # nothing convolution-like
    ],
)
def test_the_cpu_trains_channels_last_where_it_is_faster(
    tmp_path: Path, layer: str, nhwc: bool
) -> None:
    compiled = compile(spec(tmp_path, layer))
    place = make_place(Request(device="cpu"), compiled, lambda _: None)
    assert place.channels_last is nhwc
    wide = torch.rand(2, 3, 16, 16)
    assert place.batch(wide).is_contiguous(memory_format=torch.channels_last) is nhwc


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_cpu_optimizers_are_fused_and_step_as_the_loop_does(name: str) -> None:
    """One fused kernel per step; the update is torch's own, so it matches the unfused one."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opt = Optimizer(name=name, lr=0.1, momentum=0.9, weight_decay=0.01)
    fused = make_optimizer(a.parameters(), opt)
    assert fused.defaults["fused"] is True
    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    extra = {"momentum": 0.9} if name == "sgd" else {}
    plain = kind(b.parameters(), lr=0.1, weight_decay=0.01, foreach=False, **extra)
    x = torch.rand(5, 4)
    for model, optimizer in ((a, fused), (b, plain)):
        for _ in range(3):
            optimizer.zero_grad()
            model(x).square().sum().backward()
            optimizer.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("wrong", [3, 82, 130])
def test_errors_png_draws_every_misclassified_digit_up_to_a_hundred(
    tmp_path: Path, wrong: int
) -> None:
    """Fully inked test images come out as black squares, one per misclassified digit (the
    right ones are not drawn); each label is text, much smaller than a square."""
    from PIL import Image
    from skimage.measure import label, regionprops

    from netspec.train import plots

    n = 150
    images = np.ones((n, 1, 8, 8), np.float32)
    true = np.zeros(n, np.int64)
    pred = np.zeros(n, np.int64)
    pred[np.arange(wrong) * (n // wrong)] = 7
    plots.errors(tmp_path / "errors.png", images, true, pred, "test")
    pixels = np.asarray(Image.open(tmp_path / "errors.png").convert("L"))
    regions = regionprops(label(pixels < 40))
    squares = [r for r in regions if r.area > 400 and r.extent > 0.95]  # a digit's panel
    assert len(squares) == min(wrong, 100)
    assert max(r.area for r in regions if r not in squares) < 400  # labels, title


def test_a_resumed_fused_optimizer_steps_a_channels_last_weight_as_an_unbroken_run() -> None:
    """A checkpoint stores momentum contiguous; loaded into a channels-last run, it is laid
    out as the weight again, so the fused step after a resume is the step it would have been."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 6, 5).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.rand(4, 3, 9, 9).contiguous(memory_format=torch.channels_last)
    cfg = TrainConfig(network="n", dataset="mnist", optimizer=Optimizer(lr=0.1, momentum=0.9))
    place = Place(torch.device("cpu"), channels_last=True)

    def step(parts: Parts) -> None:
        parts.optimizer.zero_grad()
        conv(x).square().sum().backward()
        parts.optimizer.step()

    parts = make_parts(conv, conv, cfg, 8, place)
    step(parts)
    state = decode(*encode(parts.state_dict()))  # as a checkpoint stores and reads it
    saved = {k: v.clone() for k, v in conv.state_dict().items()}
    step(parts)
    unbroken = conv.weight.detach().clone()
    conv.load_state_dict(saved)
    resumed = make_parts(conv, conv, cfg, 8, place)
    resumed.load_state_dict(state)
    step(resumed)
    torch.testing.assert_close(conv.weight.detach(), unbroken)


PLAIN = """\
network small(image: 1x8x8) {
    conv 4 3x3 | relu
    dense 3
}

train small on mnist {
    normalize mean=0.13 std=0.31
    optimizer adam lr=0.01
    batch 16
}
"""


@pytest.mark.parametrize("augmented", [False, True])
def test_normalizing_the_training_set_once_trains_the_same_weights(
    tmp_path: Path, augmented: bool
) -> None:
    """`netspec train` normalizes an undeformed training set once per run instead of every
    batch: the same floats, so the same losses and weights bit for bit; a deformed one
    (augmentation pads raw images) is left raw and normalized batch by batch as before."""
    path = tmp_path / "small.net"
    text = PLAIN.replace("batch 16", "batch 16\n    augment {\n        shift 1px\n    }")
    path.write_text(text if augmented else PLAIN)
    compiled = compile(path)
    assert compiled.train is not None
    config = compiled.train
    place = make_place(Request(device="cpu"), compiled, lambda _: None)
    gen = torch.Generator().manual_seed(0)
    raw = Tensors(
        torch.rand(64, 1, 8, 8, generator=gen),
        torch.randint(0, 3, (64,), generator=gen),
        torch.rand(16, 1, 8, 8, generator=gen),
        torch.randint(0, 3, (16,), generator=gen),
        "random",
        ("a", "b", "c"),
    )
    once = normalize_once(raw, config)
    assert once.normalized is not augmented
    if not augmented:
        torch.testing.assert_close(once.train_x, (raw.train_x - 0.13) / 0.31, rtol=0, atol=0)
    results = []
    for data in (raw, once):
        torch.manual_seed(1)
        module = build_module(compiled)
        parts = make_parts(module, module, config, len(data.train_x), place)
        losses = [
            train_epoch(parts, data, config, place, epoch, lambda *_: None).loss for epoch in (1, 2)
        ]
        results.append((losses, [p.detach().clone() for p in module.parameters()]))
    assert results[0][0] == results[1][0]
    for p, q in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(p, q)
