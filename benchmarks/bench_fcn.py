"""OverFeat's point measured: a window classifier made fully convolutional, against the
same classifier slid naively over the same windows, on 128x128 and 512x512 scenes.

    .venv/bin/python benchmarks/bench_fcn.py [--run runs/digit_window] [--rounds 20]

Both run on ONNX Runtime (CPU, one intra-op thread each, no spinning), timed interleaved
(A, B, B, A, ...) in one process with `netspec.runtime.bench.interleaved`: the FCN is one
call on the whole scene; the sliding window cuts every 28x28 window at the FCN's stride
(4 px) and runs the exported classifier on them in batches of 1024 (the cutting included
in its time). Multiply-adds come from netspec's own cost rules: the FCN compiled for the
scene's size, against the classifier's per window times the windows. Both answers are
compared too (the largest difference of any score).

Without --run the classifier is specs/digit_window.net with untrained weights: speed does
not depend on what the weights are.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import netspec
from netspec.export import ExportOptions, export_compiled
from netspec.export.fcn import export_fcn, fully_convolutional, windows
from netspec.lower import to_torch
from netspec.lower.weights import load_weights
from netspec.runtime.bench import interleaved, summarize
from netspec.runtime.session import session_options

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "digit_window.net"
SIZES = (128, 512)
BATCH = 1024


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(path), session_options(threads=1, spin=False), providers=["CPUExecutionProvider"]
    )


def _models(run: Path | None, tmp: Path) -> tuple[netspec.Compiled, Path, Path]:
    """The classifier (compiled), its ONNX file and its FCN's."""
    compiled = netspec.compile(SPEC)
    module = to_torch(compiled)
    if run is not None:
        load_weights(run / "weights" / "best.safetensors", module)
    quiet = lambda _: None  # noqa: E731
    classifier = tmp / "classifier.onnx"
    export_compiled(compiled, classifier, ExportOptions(), weights=module, log=quiet)
    fcn = tmp / "fcn.onnx"
    export_fcn(compiled, fcn, module, log=quiet)
    return compiled, classifier, fcn


def measure(
    size: int, compiled: netspec.Compiled, files: tuple[Path, Path], rounds: int
) -> dict[str, Any]:
    """One scene size: both timings, both MAC counts, and how far the answers differ."""
    classifier, fcn_file = (_session(f) for f in files)
    fcn = fully_convolutional(compiled)
    image = np.random.default_rng(size).standard_normal((1, 1, size, size)).astype(np.float32)
    in_name = classifier.get_inputs()[0].name

    def sliding() -> np.ndarray:
        crops = windows(image, fcn.window, fcn.jump)
        rows, cols = crops.shape[:2]
        flat = crops.reshape(rows * cols, *crops.shape[2:])
        parts = [
            classifier.run(None, {in_name: flat[i : i + BATCH]})[0]
            for i in range(0, len(flat), BATCH)
        ]
        return np.concatenate(parts).T.reshape(-1, rows, cols)

    def whole() -> np.ndarray:
        out: np.ndarray = fcn_file.run(None, {in_name: image})[0][0]
        return out

    seconds = interleaved({"fcn": whole, "sliding": sliding}, rounds, warmup=2)
    a, b = whole(), sliding()
    rows, cols = b.shape[1:]
    positions = rows * cols
    sized = fully_convolutional(compiled, (size, size)).compiled.totals.macs or 0
    per_window = compiled.totals.macs or 0
    fcn_t, sw_t = summarize("fcn", 1, seconds["fcn"]), summarize("sliding", 1, seconds["sliding"])
    return {
        "size": size,
        "windows": positions,
        "fcn_ms": fcn_t.p50_ms,
        "sliding_ms": sw_t.p50_ms,
        "time_ratio": sw_t.p50_ms / fcn_t.p50_ms,
        "fcn_macs": sized,
        "sliding_macs": per_window * positions,
        "macs_ratio": per_window * positions / sized,
        "max_abs_diff": float(np.abs(a[:, :rows, :cols] - b).max()),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained digit_window run (default: untrained)")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        compiled, classifier, fcn = _models(args.run, Path(tmp))
        rows = [measure(s, compiled, (classifier, fcn), args.rounds) for s in SIZES]
    load = os.getloadavg()
    print(json.dumps({"load_average": load, "results": rows}, indent=2))
    print()
    print(
        "| scene | windows | sliding ms | FCN ms | time ratio | sliding MMACs | FCN MMACs "
        "| MACs ratio | max abs diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']}x{r['size']} | {r['windows']:,} | {r['sliding_ms']:.1f} | "
            f"{r['fcn_ms']:.1f} | {r['time_ratio']:.1f}x | {r['sliding_macs'] / 1e6:,.0f} | "
            f"{r['fcn_macs'] / 1e6:,.0f} | {r['macs_ratio']:.1f}x | {r['max_abs_diff']:.2g} |"
        )
    print(f"\nload average (1, 5, 15 min): {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")


if __name__ == "__main__":
    main()
