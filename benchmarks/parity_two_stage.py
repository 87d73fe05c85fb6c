"""ONNX Runtime against PyTorch on a detector run's whole exported pipeline (issue 23):
every output row of `model.onnx` (anchors, proposals, their suppression, RoI pooling, the
heads and the decoding in one file) against the run's PyTorch module on the same scenes.

    .venv/bin/python benchmarks/parity_two_stage.py RUN [RUN ...] [--count 1000]
        [--empty 100] [--full 100] [--seed 1] [--mnist DIR] [--no-doc]

Three sets of test scenes, drawn from MNIST's test digits with the run's own `scenes`
settings (size, digits, scales, randomization) and a seed the run never drew: `randomized`
(`--count`, the run's settings), `empty` (the same backgrounds and distractors, no digit)
and `over-full` (24 to 40 digits of 14 to 24 pixels: more digits than faster_rcnn_digits
keeps rows, 20, and more proposals than its proposal layer keeps, 32), and three constant
images (black, grey, white: every inner position's scores tie). Each scene runs alone through
both (one thread each): the run's best weights in PyTorch, through the module the export
traced (netspec.export.detection.decoded), and its model.onnx in ONNX Runtime (CPU).

Rows are compared where they stand. A row of the same class whose box is within a pixel
(`SAME_BOX`) of the other engine's holds the same candidate: the largest absolute
differences of those boxes (pixels) and scores are reported against the stated tolerance
(`TOLERANCE`). A row holding another candidate (another class, another box, or none) is
counted and its scene explained (`explain`): where the RoIs of a proposal layer already
differ (each layer's tensor is read from ONNX Runtime as an extra output of the file's
graph, and from PyTorch by a forward hook), at their first differing row, else at the
head's first differing row; a near-tie (scores within `NEAR` in both engines: equal
objectness or class scores, as a constant image gives at every inner position) broken the
other way explains the rows after it, which follow from it. Anything else fails. The hook
also counts the scenes whose proposals filled every row. Results are printed, and written
to docs/benchmarks.md ("Two-stage parity") unless `--no-doc`. A module any test can
import: the siblings it writes with are imported in `main`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from netspec.compiler import Compiled
from netspec.data import load_mnist
from netspec.data.scenes import DigitPool, SceneConfig, make_scenes
from netspec.export.detection import decoded
from netspec.lower import to_torch
from netspec.lower.proposals import Proposals
from netspec.lower.weights import load_weights
from netspec.runtime.session import Model, open_model, session_options
from netspec.train.opening import open_run

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist"
DOC = ROOT / "docs" / "benchmarks.md"
TITLE = "## Two-stage parity"
# Pixels and scores: float32 arithmetic in two engines (other kernels, other orders of
# summation) through every convolution and dense layer, RoIAlign's bilinear sampling, the
# box refinement and a softmax. The largest differences measured on 1,200 scenes of each of
# faster_rcnn_digits and ssd_digits were under 5e-5 (docs/benchmarks.md, "Two-stage
# parity"): the tolerance leaves 20 times that for other CPUs' kernels, and is
# tests/test_faster_rcnn.py's.
TOLERANCE = 1e-3
NEAR = 1e-4  # two scores this close are a near-tie: either engine may rank either first
FULL_DIGITS, FULL_SCALE = (24, 40), (14, 24)  # an over-full scene's digits and their sides

SAME_BOX = 1.0  # pixels: rows of one class whose corners are this close hold one candidate

Rows = npt.NDArray[np.float32]  # (keep, 6): x1, y1, x2, y2, score, class (-1: no box)


@dataclass(frozen=True)
class Stage:
    """One greedy choice of boxes seen in both engines, PyTorch's rows then ONNX Runtime's,
    and the thresholds it chose them by: a box is kept from `floor` on, and dropped where
    it overlaps a kept one (of its class) by more than `iou`."""

    name: str
    want: Rows
    got: Rows
    iou: float
    floor: float


@dataclass(frozen=True)
class Seen:
    """One scene through both engines: each proposal layer's choice, then the head's (the
    file's output)."""

    stages: tuple[Stage, ...]

    @property
    def output(self) -> Stage:
        return self.stages[-1]


@dataclass
class Parity:
    """One set of scenes compared: the largest differences over rows holding the same
    candidate, the rows holding another (each scene's explained), how full the outputs were."""

    name: str
    score: float  # the file's `score`: the least that `netspec detect` shows
    scenes: int = 0
    rows: int = 0  # rows compared
    held: int = 0  # rows holding a box in PyTorch's output
    shown: int = 0  # of those, rows of the file's `score` or more (what `netspec detect` shows)
    box: float = 0.0  # the largest |difference| of a box's corner, pixels
    score_diff: float = 0.0  # the largest |difference| of a score
    other: int = 0  # rows holding another candidate in each engine
    ties: int = 0  # scenes whose other candidates a near-tie explains
    notes: list[str] = field(default_factory=list)  # each such scene, explained
    failed: list[str] = field(default_factory=list)  # each scene no near-tie explains
    no_box: int = 0  # scenes whose output held no box at all
    full_output: int = 0  # scenes whose every output row held a box
    full_proposals: int = 0  # scenes whose proposal layer filled every row
    digits: list[int] = field(default_factory=list)  # digits in each scene

    def add(self, seen: Seen, where: str) -> None:
        """One scene: PyTorch's rows against ONNX Runtime's."""
        want, got = seen.output.want, seen.output.got
        self.scenes += 1
        self.rows += len(want)
        held = want[:, 5] >= 0
        self.held += int(held.sum())
        self.shown += int((held & (want[:, 4] >= self.score)).sum())
        self.no_box += not held.any()
        self.full_output += bool(held.all())
        same = same_candidate(want, got)
        if same.any():
            self.box = max(self.box, float(np.abs(want[same, :4] - got[same, :4]).max()))
            diff = float(np.abs(want[same, 4] - got[same, 4]).max())
            self.score_diff = max(self.score_diff, diff)
        if same.all():
            return
        self.other += int((~same).sum())
        tie, why = explain(seen)
        self.ties += tie
        (self.notes if tie else self.failed).append(f"{where}: {why}")

    def within(self, tolerance: float) -> bool:
        """Every candidate the same in both engines, or another only after a near-tie; the
        same candidates' boxes and scores within `tolerance`."""
        return not self.failed and max(self.box, self.score_diff) <= tolerance


def same_candidate(want: Rows, got: Rows) -> npt.NDArray[np.bool_]:
    """Per row: the same class in both (or no box in both), the boxes within SAME_BOX."""
    same: npt.NDArray[np.bool_] = (want[:, 5] == got[:, 5]) & (
        np.abs(want[:, :4] - got[:, :4]).max(1) <= SAME_BOX
    )
    return same


def explain(seen: Seen) -> tuple[bool, str]:
    """Why a scene's rows hold other candidates, and whether a near-tie explains it: at the
    first stage whose rows differ, at its first differing row (the rows before it are the
    same in both; those after follow from it)."""
    for stage in seen.stages:
        other = np.flatnonzero(~same_candidate(stage.want, stage.got))
        if len(other):
            return near_tie(stage, int(other[0]))
    raise ValueError("the rows of every stage are the same")


def near_tie(stage: Stage, k: int) -> tuple[bool, str]:
    """Whether row `k`, the first where the engines chose other candidates, is a near-tie of
    a greedy choice: equal scores (their order either engine's), an overlap with a row kept
    before it at the IoU threshold (dropped in one engine, kept in the other), or a score at
    the floor."""
    a, b = stage.want[k], stage.got[k]
    said = f"{stage.name}, row {k}: PyTorch {_row(a)}, ONNX Runtime {_row(b)}"
    if min(a[5], b[5]) >= 0 and abs(a[4] - b[4]) <= NEAR:
        return True, f"{said}: equal scores (within {NEAR:g}), a near-tie"
    for rows in (stage.want, stage.got):
        row, before = rows[k], rows[:k]
        if row[5] < 0:
            continue
        same = np.flatnonzero(before[:, 5] == row[5])
        close = np.abs(overlaps(row[:4], before[same, :4]) - stage.iou) <= NEAR
        if close.any():
            j = int(same[np.flatnonzero(close)[0]])
            return True, f"{said}: its overlap with row {j} is at the IoU {stage.iou:g}, a near-tie"
    held = [r[4] for r in (a, b) if r[5] >= 0]
    if held and min(abs(s - stage.floor) for s in held) <= NEAR:
        return True, f"{said}: a score at the floor {stage.floor:g}, a near-tie"
    return False, f"{said}: not a near-tie"


def _row(row: npt.NDArray[np.float32]) -> str:
    if row[5] < 0:
        return "no box"
    box = ", ".join(f"{v:.1f}" for v in row[:4])
    return f"class {row[5]:.0f} score {row[4]:.7f} box ({box})"


def overlaps(box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
    """IoU of one corner box with each of `boxes` (M, 4); 0 where either has no area."""
    low, high = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(high - low, 0, None).prod(1)
    union = np.prod(box[2:] - box[:2]) + (boxes[:, 2:] - boxes[:, :2]).prod(1) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def run_scenes(compiled: Compiled, size: int, seed: int) -> SceneConfig:
    """Test scenes of `size` as the run's train section draws them (its `scenes` settings;
    else 1..4 digits and every randomization), from MNIST's test digits, with `seed`."""
    train = compiled.train
    settings = None if train is None else train.scenes
    if settings is None:
        return SceneConfig.randomized(size=size, digits=(1, 4), split="test", seed=seed)
    return SceneConfig(
        size=size,
        digits=settings.digits,
        scale=settings.scale,
        max_iou=settings.overlap,
        split="test",
        seed=seed,
        switches=settings.switches(),
        **({"families": (settings.background,)} if settings.background else {}),
    )


Scenes = dict[str, list[tuple[npt.NDArray[np.uint8], int]]]  # each set's (image, digits)


def scene_sets(
    base: SceneConfig, pool: DigitPool, counts: tuple[int, int, int], crowded: dict[str, Any]
) -> Scenes:
    """Each set's scenes, (image, digits): `base`'s (randomized); empty, the same
    backgrounds and distractors without a digit (a pool of blank digits places none);
    over-full, `base` changed by `crowded` (more digits, smaller)."""
    count, empty, full = counts
    blank = DigitPool(np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.int64))
    sets = {
        "randomized": (base, pool, count),
        "empty": (replace(base, seed=base.seed + 1), blank, empty),
        "over-full": (replace(base, seed=base.seed + 2, **crowded), pool, full),
    }
    return {
        name: [(s.image, len(s.boxes)) for s in make_scenes(config, source, n)]
        for name, (config, source, n) in sets.items()
    }


class Tapped:
    """Forward hooks on a network's proposal layers: each one's last RoI rows (x1, y1, x2,
    y2, score; score -1 for none), by its name (its tensor's name in the exported graph),
    and the scenes whose RoIs filled every row (as many candidates as the layer keeps, or
    more)."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.full = 0
        self.regions: dict[str, npt.NDArray[np.float32]] = {}
        self.hooks = [
            layer.register_forward_hook(self._seen(name))
            for name, layer in network.named_modules()
            if isinstance(layer, Proposals)
        ]

    def _seen(self, name: str) -> Callable[[torch.nn.Module, Any, torch.Tensor], None]:
        def seen(layer: torch.nn.Module, inputs: Any, rows: torch.Tensor) -> None:
            self.regions[name] = rows[0].numpy()
            self.full += bool((rows[0, :, 4] >= 0).all())

        return seen

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def as_rows(regions: npt.NDArray[np.float32]) -> Rows:
    """A proposal layer's RoI rows as rows of one class (0; -1 where the row is empty)."""
    held = np.where(regions[:, 4:5] >= 0, 0.0, -1.0).astype(np.float32)
    return np.concatenate([regions, held], 1)


def with_outputs(path: Path, names: Sequence[str]) -> ort.InferenceSession:
    """An ONNX Runtime session on the file at `path` whose graph also gives the tensors
    `names` (netspec names each layer's tensor after the layer: netspec.export.layers)."""
    model = onnx.load(str(path))
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    options = session_options(threads=1)
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


@dataclass(frozen=True)
class Pair:
    """One detector in both engines: its compiled spec, its network and that network with
    the head's decoding (PyTorch), its file (ONNX Runtime), and a session on the file that
    also gives each proposal layer's RoIs."""

    compiled: Compiled
    network: torch.nn.Module
    model: Model
    module: torch.nn.Module = field(init=False)
    layers: dict[str, Proposals] = field(init=False)  # the proposal layers, by name
    tapped: ort.InferenceSession | None = field(init=False)  # None: no proposal layer

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "module", decoded(self.compiled, self.network.eval()))
        found = {n: m for n, m in self.network.named_modules() if isinstance(m, Proposals)}
        set_field(self, "layers", found)
        set_field(self, "tapped", with_outputs(self.model.path, list(found)) if found else None)

    @classmethod
    def of_run(cls, run: Path) -> Pair:
        """A run's best weights and its model.onnx, on the CPU, one thread each."""
        compiled, weights = open_run(run)
        if weights is None:
            raise SystemExit(f"{run}: no weights")
        network = to_torch(compiled)
        load_weights(weights, network)
        return cls(compiled, network, open_model(run / "model.onnx", "cpu", threads=1))

    def threshold(self, name: str, default: float) -> float:
        """One of the file's thresholds (`score`, `floor`, `iou`), as its decoding gives it."""
        decoding = self.model.info.decoding
        value = None if decoding is None else decoding.params.get(name)
        return float(value) if isinstance(value, int | float) else default

    def seen(self, image: npt.NDArray[np.uint8], taps: Tapped) -> Seen:
        """One scene through both engines (`taps` on this pair's network)."""
        x = self.model.info.inputs[0].normalize((image[None, None] / 255.0).astype(np.float32))
        with torch.no_grad():
            want = self.module(torch.from_numpy(x)).numpy()[0]
        (got,) = self.model.run(x)
        stages: list[Stage] = []
        if self.tapped is not None:
            feed = {self.tapped.get_inputs()[0].name: x}
            tapped = self.tapped.run(list(self.layers), feed)
            for (name, layer), rois in zip(self.layers.items(), tapped, strict=True):
                mine, theirs = as_rows(taps.regions[name]), as_rows(rois[0])
                stages.append(Stage(f"proposals `{name}`", mine, theirs, layer.iou, layer.score))
        iou, floor = self.threshold("iou", 0.5), self.threshold("floor", 0.0)
        return Seen((*stages, Stage("the head", want, got[0], iou, floor)))


def compare(pair: Pair, sets: Scenes) -> list[Parity]:
    """Every set's scenes, one at a time through both engines, compared row by row."""
    taps, found = Tapped(pair.network), []
    try:
        for name, scenes in sets.items():
            parity, taps.full = Parity(name, pair.threshold("score", 0.5)), 0
            for index, (image, digits) in enumerate(scenes):
                parity.add(pair.seen(image, taps), f"{name} scene {index}")
                parity.digits.append(digits)
            parity.full_proposals = taps.full
            found.append(parity)
    finally:
        taps.remove()
    return found


def _table(name: str, found: Sequence[Parity], has_proposals: bool) -> Iterator[str]:
    yield f"**{name}**\n"
    yield (
        "| scenes | count | digits | rows held (shown) | outputs empty / full | "
        "proposals full | max box diff (px) | max score diff | other candidates (scenes, "
        "near-ties) |"
    )
    yield "|---|---|---|---|---|---|---|---|---|"
    for p in found:
        digits = f"{min(p.digits)}-{max(p.digits)}" if p.digits else "-"
        proposals = f"{p.full_proposals}" if has_proposals else "-"
        yield (
            f"| {p.name} | {p.scenes} | {digits} | {p.held} of {p.rows} ({p.shown}) | "
            f"{p.no_box} / {p.full_output} | {proposals} | {p.box:.2e} | {p.score_diff:.2e} | "
            f"{p.other} ({p.ties + len(p.failed)}, {p.ties}) |"
        )
    yield ""
    for p in found:
        yield from (f"- {line}" for line in [*p.failed, *p.notes][:10])


READING = (
    "Rows held: rows holding a box (class 0 or more) in PyTorch's output, of all rows "
    "compared; shown: of those, rows of the file's `score` or more, what `netspec detect` "
    "draws (a row is kept from the file's `floor`, 0.01). Outputs empty / full: scenes whose "
    "output held no box / a box in every row (as many candidates as it keeps rows, or more). "
    "Proposals full: scenes whose proposal layer filled every row it keeps after "
    "suppression (as many candidates as it keeps, or more). Other candidates: rows where "
    "the two engines hold different candidates (another class, a box more than "
    f"{SAME_BOX:g} px away, or a box in one only), then the scenes they are in and how many "
    "of those a near-tie explains; each such scene is listed with the first stage and row "
    "where the engines differ. Empty scenes hold the backgrounds and distractors (strokes, "
    "shapes) of the randomized ones and no digit; over-full ones "
    f"{FULL_DIGITS[0]} to {FULL_DIGITS[1]} digits drawn at {FULL_SCALE[0]} to {FULL_SCALE[1]} "
    "pixels (those that fit are placed); constant ones are black, grey and white."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--empty", type=int, default=100)
    parser.add_argument("--full", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    from docsection import replace_section  # benchmarks/, beside this script
    from machine import load_average  # benchmarks/, beside this script

    torch.set_num_threads(1)
    pool = DigitPool.of(load_mnist(args.mnist), "test")
    before, started = load_average(), time.perf_counter()
    tables, found = [], []
    for run in args.runs:
        pair = Pair.of_run(run)
        base = run_scenes(pair.compiled, int(pair.model.info.inputs[0].shape[-1]), args.seed)
        counts = (args.count, args.empty, args.full)
        sets = scene_sets(base, pool, counts, {"digits": FULL_DIGITS, "scale": FULL_SCALE})
        sets["constant"] = [(np.full((base.size,) * 2, v, np.uint8), 0) for v in (0, 128, 255)]
        found += compare(pair, sets)
        tables += [*_table(run.name, found[-len(sets) :], bool(pair.layers)), ""]
    minutes = (time.perf_counter() - started) / 60
    section = _section(args, tables, found, f"{minutes:.1f} min; load average before {before}")
    print(section)
    if not args.no_doc:
        replace_section(DOC, TITLE, section)


def _section(args: argparse.Namespace, tables: list[str], found: list[Parity], took: str) -> str:
    """The section of docs/benchmarks.md: the command, the tables, what they say, where."""
    from machine import cpu_model, load_average  # benchmarks/, beside this script

    ok = all(p.within(TOLERANCE) for p in found)
    other, ties = sum(p.other for p in found), sum(p.ties for p in found)
    runs = " ".join(str(r) for r in args.runs)
    return "\n".join(
        [
            TITLE,
            "",
            f"`nice benchmarks/parity_two_stage.py {runs} --count {args.count} --empty "
            f"{args.empty} --full {args.full} --seed {args.seed}`: every output row of each "
            "run's model.onnx (ONNX Runtime, CPU) against its best weights in PyTorch (the "
            "module the export traced), scene by scene, one thread each, on test scenes drawn "
            "as the run's train section draws them with a seed it never used. Tolerance: "
            f"{TOLERANCE:g} (pixels and scores) on every row holding the same candidate (class, "
            f"and box within {SAME_BOX:g} px) in both.",
            "",
            *tables,
            READING,
            "",
            f"Within tolerance everywhere: {'yes' if ok else 'no'}. Rows holding another "
            f"candidate: {other}"
            + (
                " (no near-tie met)."
                if not other
                else f", in {ties} scenes explained by a near-tie (listed above)."
            ),
            "",
            f"CPU: {cpu_model()}, 2 cores shared with a training run; torch {torch.__version__}, "
            f"onnxruntime {ort.__version__}; {took}, after {load_average()}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
