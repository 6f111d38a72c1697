"""How wwinspect's cost grows: with matrix size, with the number of layers, with model size; fitted exponents.

    python benchmarks/bench_scaling.py                # all three tables (a few minutes)
    python benchmarks/bench_scaling.py --table size --repeats 3

- size: one trained-looking (Student-t, benchmarks/llm_shapes.py) matrix of 4M x M, `measure_layer` in this
  process (the eigenvalues, the fits, the phase), median of `--repeats`; exponent b of time ~ M^b. Theory: the
  Gram product is 4M * M^2 and the eigensolver ~M^3, so b -> 3 once M is large enough for the flops to
  dominate the fits' O(M log M).
- layers: L matrices of 1024 x 1024 in one safetensors file, `analyze_file` in this process, `--jobs 1`;
  exponent of time ~ L^b (expected 1: layers are independent).
- model size: the benchmark checkpoints end to end in this process (`analyze_file`, default jobs) against
  their parameter count; exponent of time ~ params^b (mixed shapes: larger models have wider matrices, so
  b > 1 is expected).

Exponents are least-squares slopes in log-log space over the measured points. The load average is printed: on
a shared machine absolute times drift, the exponents less so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_shapes import DATA, generate, trained_like, write_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inspector.options import AnalysisOptions  # noqa: E402
from inspector.pipeline import analyze_file  # noqa: E402
from inspector.science.eigen import CpuBackend  # noqa: E402
from inspector.science.metrics import measure_layer  # noqa: E402
from inspector.workers import resolve_jobs  # noqa: E402


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def exponent(xs: list[float], ys: list[float]) -> float:
    slope, _ = np.polyfit(np.log(xs), np.log(ys), 1)
    return float(slope)


def size_table(repeats: int) -> None:
    print("| M (matrix 4M x M) | seconds | per M^3 (ns) |")
    print("|---|---|---|")
    sizes = [256, 512, 1024, 2048]
    times = []
    for M in sizes:
        W = trained_like(f"scaling.{M}", (4 * M, M))
        seconds = median_time(
            lambda W=W, M=M: measure_layer(
                [W], N=4 * M, M=M, scale=1.0, options=AnalysisOptions(), backend=CpuBackend()
            ),
            repeats,
        )
        times.append(seconds)
        print(f"| {M} | {seconds:.3f} | {1e9 * seconds / M**3:.2f} |", flush=True)
    print(f"\nfitted: time ~ M^{exponent(sizes[1:], times[1:]):.2f} (M >= 512)\n")


def layers_table(repeats: int) -> None:
    print("| layers (1024 x 1024) | seconds | per layer |")
    print("|---|---|---|")
    counts = [2, 4, 8, 16]
    times = []
    for count in counts:
        specs = [(f"layers.{i}.weight", (1024, 1024), "F32", True) for i in range(count)]
        path = write_model(DATA / f"scaling-{count}-layers", specs, {"model_type": "custom"})
        seconds = median_time(lambda path=path: analyze_file(path, AnalysisOptions(), CpuBackend()), repeats)
        times.append(seconds)
        print(f"| {count} | {seconds:.2f} | {seconds / count:.3f} |", flush=True)
    print(f"\nfitted: time ~ L^{exponent(counts, times):.2f}\n")


def model_table(models: list[str]) -> None:
    print("| model | parameters (M) | seconds | s per 100M parameters |")
    print("|---|---|---|---|")
    params, times = [], []
    for model in models:
        blocks = 4 if model == "llama-1b" else None
        path = generate(model, blocks)
        from formats import open_model

        with open_model(path) as reader:
            count = sum(int(np.prod(ref.info.shape)) for ref in reader.tensors())
        start = time.perf_counter()
        analyze_file(path, AnalysisOptions(), CpuBackend(), jobs=resolve_jobs(0))
        seconds = time.perf_counter() - start
        params.append(count)
        times.append(seconds)
        name = "llama-1b (4 of 16 blocks)" if blocks else model
        print(f"| {name} | {count / 1e6:.0f} | {seconds:.1f} | {1e8 * seconds / count:.2f} |", flush=True)
    print(f"\nfitted: time ~ params^{exponent(params, times):.2f}\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", action="append", choices=["size", "layers", "model"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--model",
        action="append",
        choices=["resnet50", "llama-1b-block0", "gpt2", "llama-1b"],
        help="model table",
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start\n")
    tables = args.table or ["size", "layers", "model"]
    if "size" in tables:
        size_table(args.repeats)
    if "layers" in tables:
        layers_table(args.repeats)
    if "model" in tables:
        model_table(args.model or ["resnet50", "llama-1b-block0", "gpt2", "llama-1b"])
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
