"""The pictures of a run: learning curves, confusion matrix, misclassified test images.

Matplotlib runs headless (Agg) and every figure is written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.fileio import PathLike, make_dirs, write_atomic

ERROR_GRID = (10, 10)  # rows, columns of misclassified examples: the 1998 figure's 82 fit
MAP_ROWS = 6  # test samples in predictions.png


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: PathLike) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    _pyplot().close(fig)


def curves(path: PathLike, rows: Sequence[Mapping[str, float]], title: str) -> None:
    """Loss and accuracy (train and test; pixel accuracy for a segmentation map, none for
    a map trained with mse) per epoch, and the learning rate."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    accuracy = next((k for k in ("acc", "pixel_acc") if f"test_{k}" in rows[0]), None)
    panels = 3 if accuracy else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.3 * panels, 3.8))
    loss_ax, lr_ax = axes[0], axes[-1]
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        loss_ax.plot(epochs, [r[key] for r in rows], marker=".", label=label)
    loss_ax.set(title="loss" if accuracy else "loss (mse per value)", xlabel="epoch")
    legends = [loss_ax]
    if accuracy:
        acc_ax = axes[1]
        for split in ("train", "test"):
            values = [100 * (1 - r[f"{split}_{accuracy}"]) for r in rows]
            acc_ax.plot(epochs, values, marker=".", label=split)
        name = "error rate" if accuracy == "acc" else "pixel error rate"
        acc_ax.set(title=f"{name} (%)", xlabel="epoch", yscale="log")
        legends.append(acc_ax)
    lr_ax.plot(epochs, [r["lr"] for r in rows], marker=".")
    lr_ax.set(title="learning rate (end of epoch)", xlabel="epoch")
    for ax in legends:
        ax.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def maps(
    path: PathLike,
    inputs: npt.NDArray[np.float32],
    targets: npt.NDArray[Any],
    outputs: npt.NDArray[Any],
    title: str,
) -> None:
    """One row per test sample: the input, its target and the network's output (a map's
    first channel, or per-pixel classes), so that a reconstruction can be seen."""
    plt = _pyplot()
    n = len(inputs)
    fig, axes = plt.subplots(n, 3, figsize=(3 * 1.5, n * 1.5), squeeze=False)
    for r in range(n):
        for c, image in enumerate((inputs[r], targets[r], outputs[r])):
            shown = image if image.ndim == 2 else image[0] if image.shape[0] != 3 else image
            if shown.ndim == 3:
                shown = np.clip(shown.transpose(1, 2, 0), 0, 1)
            axes[r, c].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            axes[r, c].axis("off")
    for c, name in enumerate(("input", "target", "output")):
        axes[0, c].set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def confusion_matrix(
    true: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], classes: int
) -> npt.NDArray[np.int64]:
    """``m[t, p]``: how many samples of class t were predicted as p."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (true, pred), 1)
    return m


def confusion(
    path: PathLike,
    true: npt.NDArray[np.int64],
    pred: npt.NDArray[np.int64],
    classes: int,
    title: str,
) -> None:
    plt = _pyplot()
    m = confusion_matrix(true, pred, classes)
    size = max(4.0, 0.5 * classes + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    shown = np.where(np.eye(classes, dtype=bool), 0, m)  # colour the mistakes
    ax.imshow(shown, cmap="Reds")
    if classes <= 30:
        for t in range(classes):
            for p in range(classes):
                if m[t, p]:
                    ax.text(
                        p,
                        t,
                        str(m[t, p]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if t != p else "tab:blue",
                    )
    ax.set(xlabel="predicted", ylabel="true", xticks=range(classes), yticks=range(classes))
    ax.set_title(f"{title}: {int(m.trace())}/{int(m.sum())} correct")
    fig.tight_layout()
    _save(fig, path)


def errors(
    path: PathLike,
    images: npt.NDArray[np.float32],
    true: npt.NDArray[np.int64],
    pred: npt.NDArray[np.int64],
    title: str,
) -> None:
    """The misclassified images ``(N, C, H, W)`` in [0, 1], in test-set order, ten to a row,
    each with "true->predicted" below it: the figure of LeNet-5's 82 errors in LeCun et al.
    (1998), black ink on white. At most ERROR_GRID's rows x columns are drawn."""
    plt = _pyplot()
    rows_max, cols = ERROR_GRID
    wrong_all = np.flatnonzero(true != pred)
    wrong = wrong_all[: rows_max * cols]
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.2 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        image = images[i]
        shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        gray = {"cmap": "gray_r", "vmin": 0.0, "vmax": 1.0} if image.shape[0] == 1 else {}
        ax.imshow(np.clip(shown, 0, 1), **gray)  # ink as ink: no rescaling per image
        ax.text(0.5, -0.06, f"{true[i]}->{pred[i]}", transform=ax.transAxes, ha="center", va="top")
    fig.suptitle(
        f"{title}: {len(wrong_all)} misclassified (true->predicted)"
        + (f", first {len(wrong)} shown" if len(wrong) < len(wrong_all) else "")
    )
    fig.tight_layout()
    _save(fig, path)


def augmented_grid(
    path: PathLike,
    originals: npt.NDArray[np.float32],
    copies: Sequence[npt.NDArray[np.float32]],
    title: str,
) -> None:
    """One row per original: the image, then its augmented copies ``(N, C, H, W)`` each."""
    plt = _pyplot()
    n, cols = len(originals), 1 + len(copies)
    fig, axes = plt.subplots(n, cols, figsize=(cols * 1.1, n * 1.1), squeeze=False)
    for r in range(n):
        for c, batch in enumerate([originals, *copies]):
            image = batch[r]
            shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            axes[r, c].imshow(np.clip(shown, 0, 1), cmap="gray_r" if image.shape[0] == 1 else None)
            axes[r, c].axis("off")
    axes[0, 0].set_title("original", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def sample_images(
    directory: PathLike,
    images: npt.NDArray[Any],
    labels: npt.NDArray[Any] | None,
    count: int = 8,
) -> list[Path]:
    """The first test images as PNG files (`00_7.png`: index, then the true label; `00.png`
    without labels), so that `netspec run model.onnx samples/` has something to read."""
    from PIL import Image

    directory = make_dirs(directory)
    written = []
    for i in range(min(count, len(images))):
        pixels = (np.clip(images[i], 0.0, 1.0) * 255).round().astype(np.uint8)  # (C, H, W)
        picture = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
        path = directory / (f"{i:02d}.png" if labels is None else f"{i:02d}_{int(labels[i])}.png")
        write_atomic(path, partial(_save_png, picture))
        written.append(path)
    return written


def _save_png(picture: Any, tmp: Path) -> None:
    picture.save(tmp, format="PNG")
