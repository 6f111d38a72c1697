"""What the phase rules see: the null of the bulk KS and of the TW cutoff, and the evidence of known matrices.

1. Dense Gaussian matrices per shape: the share whose top eigenvalue passes the TW cutoff (a false outlier),
   and the largest bulk KS over the trials against `mp.bulk_ks_null` (the tabulated 99th percentile).
2. A smoke table of synthetic matrices (1000 x 500) with every piece of evidence and the label.

Usage: python benchmarks/calibrate_phases.py [--trials 20] [--skip-null]
(The confusion matrices of the full suite: benchmarks/phase_confusion.py.)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspector.options import AnalysisOptions
from inspector.science.eigen import CpuBackend
from inspector.science.metrics import measure_layer
from inspector.science.mp import bulk_ks, bulk_ks_null, fit_mp
from inspector.science.phases import label

BACKEND = CpuBackend()


def null_table(trials: int) -> None:
    rng = np.random.default_rng(0)
    print(f"{'M':>6} {'Q':>4} {'false outliers':>15} {'max bulk KS':>12} {'null 99%':>9}")
    for M in (32, 64, 128, 256, 512):
        for Q in (1, 2, 4, 8):
            N = M * Q
            worst, false = 0.0, 0
            for _ in range(trials):
                W = rng.standard_normal((N, M))
                evals = np.sort(np.linalg.eigvalsh(W.T @ W))
                fit = fit_mp(evals, Q=Q, M=M)
                assert fit is not None
                worst = max(worst, bulk_ks(evals, fit, Q) or 1.0)
                false += int(evals[-1] > fit.tw_cutoff)
            print(f"{M:>6} {Q:>4} {false:>8} of {trials:<3} {worst:>12.4f} {bulk_ks_null(M, Q):>9.4f}")


def smoke_table() -> None:
    rng = np.random.default_rng(1)
    N, M = 1000, 500
    Q = N / M

    def spiked(count: int, strength: float) -> np.ndarray:
        W = rng.standard_normal((N, M)) / math.sqrt(N)
        for _ in range(count):
            u, v = rng.standard_normal(N), rng.standard_normal(M)
            W += strength * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
        return W

    def graded(rank: int, top: float) -> np.ndarray:
        U, _ = np.linalg.qr(rng.standard_normal((N, rank)))
        V, _ = np.linalg.qr(rng.standard_normal((M, rank)))
        s = top * Q**-0.25 * (1.0 - np.arange(rank) / rank)
        return rng.standard_normal((N, M)) / math.sqrt(N) + (U * s) @ V.T

    def pareto(mu: float) -> np.ndarray:
        return rng.pareto(mu, (N, M)) * rng.choice([-1.0, 1.0], (N, M))

    cases = {
        "Gaussian": rng.standard_normal((N, M)),
        "uniform (Kaiming-like)": rng.uniform(-1, 1, (N, M)),
        "5 spikes at 1.1 Q^-1/4": spiked(5, 1.1 * Q**-0.25),
        "5 spikes at 2 Q^-1/4": spiked(5, 2.0 * Q**-0.25),
        "graded rank 100, 2.1 Q^-1/4": graded(100, 2.1),
        "Pareto mu=1": pareto(1.0),
        "Pareto mu=2": pareto(2.0),
        "Pareto mu=3": pareto(3.0),
        "rank-300 product": rng.standard_normal((N, 300)) @ rng.standard_normal((300, M)),
    }
    print(
        f"\n{'synthetic matrix (1000 x 500)':<28} {'phase':<26} {'conf':>5} {'alpha':>6} {'ks/null':>8} "
        f"{'outliers':>8} {'near-edge':>9} {'decades':>8} {'LR':>6}"
    )
    nan = float("nan")
    for name, W in cases.items():
        m = measure_layer([W], N=N, M=M, scale=1.0, options=AnalysisOptions(), backend=BACKEND)
        result = label(m)
        phase = (result.phase.value if result.phase else "-") + (
            f"/{result.neighbour.value}" if result.neighbour else ""
        )
        ratio = m.mp_bulk_ks / m.mp_bulk_ks_null if m.mp_bulk_ks and m.mp_bulk_ks_null else nan
        print(
            f"{name:<28} {phase:<26} {result.confidence or nan:>5.2f} {m.alpha or nan:>6.2f} {ratio:>8.2f} "
            f"{m.num_outliers:>8} {m.near_edge_share or 0.0:>9.3f} {m.tail_decades or nan:>8.2f} "
            f"{m.tail_lr if m.tail_lr is not None else nan:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--skip-null", action="store_true")
    args = parser.parse_args()
    if not args.skip_null:
        null_table(args.trials)
    smoke_table()


if __name__ == "__main__":
    main()
