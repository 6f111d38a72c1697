"""Calibrate and check the phase classifier on synthetic matrices (prints tables; not a test).

1. The null: the MP-bulk KS distance of Gaussian matrices, per size and aspect ratio (max over trials),
   next to the threshold `inspector.science.phases.mp_bulk_threshold(M)` (3x a fitted envelope of the null).
2. The smoke table of HTSR_THEORY §3.5: known synthetic constructions and the phase each gets.

Usage: python benchmarks/calibrate_phases.py [--trials 20]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from inspector.options import AnalysisOptions, Device
from inspector.science.eigen import make_backend
from inspector.science.metrics import measure_layer
from inspector.science.mp import fit_mp
from inspector.science.phases import (
    BULK_NULL_POWER,
    BULK_NULL_SCALE,
    classify_metrics,
    mp_bulk_threshold,
    phase_evidence,
)


def null_table(trials: int) -> None:
    rng = np.random.default_rng(0)
    print(f"{'M':>6} {'Q':>4} {'max D_bulk':>11} {'envelope':>9} {'threshold':>10}")
    for M in (16, 32, 64, 128, 256, 512, 1024):
        for Q in (1, 2, 4, 8):
            N = M * Q
            worst = 0.0
            for _ in range(trials if M <= 256 else max(3, trials // 4)):
                W = rng.standard_normal((N, M))
                evals = np.sort(np.linalg.eigvalsh(W.T @ W))
                mp = fit_mp(evals, Q=Q, M=M)
                assert mp is not None
                evidence = phase_evidence(evals, Q=Q, M=M, lambda_plus=mp.lambda_plus)
                worst = max(worst, evidence.mp_bulk_ks or 1.0)
            envelope = BULK_NULL_SCALE / M**BULK_NULL_POWER
            print(f"{M:>6} {Q:>4} {worst:>11.4f} {envelope:>9.4f} {mp_bulk_threshold(M):>10.4f}")


def smoke_table() -> None:
    rng = np.random.default_rng(1)
    N, M = 1000, 500
    Q = N / M
    backend = make_backend(Device.CPU)
    options = AnalysisOptions()

    def spiked(count: int, strength: float) -> np.ndarray:
        W = rng.standard_normal((N, M)) / math.sqrt(N)
        for _ in range(count):
            u, v = rng.standard_normal(N), rng.standard_normal(M)
            W += strength * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
        return W

    def pareto(mu: float) -> np.ndarray:
        return rng.pareto(mu, (N, M)) * rng.choice([-1.0, 1.0], (N, M))

    cases = {
        "Gaussian": rng.standard_normal((N, M)),
        "uniform (Kaiming-like)": rng.uniform(-1, 1, (N, M)),
        "5 spikes at 1.1 Q^-1/4": spiked(5, 1.1 * Q**-0.25),
        "5 spikes at 2 Q^-1/4": spiked(5, 2.0 * Q**-0.25),
        "60 graded spikes": spiked(60, 3.0),
        "Pareto mu=1": pareto(1.0),
        "Pareto mu=2": pareto(2.0),
        "Pareto mu=3": pareto(3.0),
        "rank-300 product": rng.standard_normal((N, 300)) @ rng.standard_normal((300, M)),
    }
    print(
        f"\n{'synthetic matrix (1000 x 500)':<28} {'phase':<14} {'alpha':>6} {'D':>6} "
        f"{'bulk KS':>8} {'outliers':>8}"
    )
    nan = float("nan")
    for name, W in cases.items():
        metrics = measure_layer([W], N=N, M=M, scale=1.0, options=options, backend=backend)
        phase = classify_metrics(metrics, M)
        print(
            f"{name:<28} {phase.value if phase else '-':<14} "
            f"{metrics.alpha or nan:>6.2f} {metrics.D or nan:>6.3f} "
            f"{metrics.mp_bulk_ks if metrics.mp_bulk_ks is not None else nan:>8.4f} {metrics.num_outliers:>8}"
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
