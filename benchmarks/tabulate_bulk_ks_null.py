"""Tabulate the null distribution of the MP bulk KS distance and write inspector/science/_bulk_ks_null.py.

    python benchmarks/tabulate_bulk_ks_null.py [--trials 200] [--check]

For each grid cell (M, Q) it draws `trials` spectra of W^T W with W an N x M Gaussian matrix (N = round(Q M)),
fits the MP law as the analysis does (`inspector.science.mp.fit_mp`, trimmed quantile fit) and records
`bulk_ks`. The spectra come from the Dumitriu-Edelman bidiagonal model (Dumitriu & Edelman 2002, "Matrix
models for beta ensembles", J. Math. Phys. 43): for beta = 1 the eigenvalues of W^T W have the same joint law
as those of B B^T with B lower bidiagonal, B_ii ~ chi_(N - i + 1), B_(i+1, i) ~ chi_(M - i), so a spectrum
costs a tridiagonal eigensolve instead of an N x M matrix. `--check` compares it with dense Gaussian
matrices first.

The distances of one cell are close to log-normal; the table keeps the mean and standard deviation of
log(KS) per cell, and `bulk_ks_null` reads the 99th percentile exp(mean + 2.326 sd) off it. The script prints,
per cell, the empirical 95th/99th percentiles next to the log-normal ones.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.science.mp import bulk_ks, fit_mp  # noqa: E402

M_GRID = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
Q_GRID = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0)
Z99 = 2.3263478740408408  # the standard normal's 99th percentile
OUTPUT = ROOT / "inspector" / "science" / "_bulk_ks_null.py"


def laguerre_spectrum(rng: np.random.Generator, N: int, M: int) -> np.ndarray:
    """Eigenvalues of W^T W, W an N x M standard Gaussian matrix, through the bidiagonal model."""
    d = np.sqrt(rng.chisquare(N - np.arange(M)))  # chi_(N - i + 1), i = 1..M
    e = np.sqrt(rng.chisquare(M - 1 - np.arange(M - 1)))  # chi_(M - i), i = 1..M-1
    diagonal = d * d
    diagonal[1:] += e * e
    off = d[:-1] * e
    return np.sort(np.maximum(scipy.linalg.eigvalsh_tridiagonal(diagonal, off), 0.0))


def null_distances(rng: np.random.Generator, M: int, Q: float, trials: int) -> np.ndarray:
    N = max(M, round(Q * M))
    out = []
    for _ in range(trials):
        evals = laguerre_spectrum(rng, N, M)
        fit = fit_mp(evals, Q=N / M, M=M)
        assert fit is not None
        ks = bulk_ks(evals, fit, N / M)
        assert ks is not None
        out.append(ks)
    return np.asarray(out)


def check(rng: np.random.Generator) -> None:
    """The bidiagonal model against dense Gaussian matrices: the same KS distribution (medians, 90%)."""
    print("check: bulk KS of dense Gaussian matrices vs the bidiagonal model (median, 90th percentile)")
    for N, M in ((128, 64), (512, 256), (256, 256)):
        dense = []
        for _ in range(60):
            W = rng.standard_normal((N, M))
            evals = np.sort(np.maximum(np.linalg.eigvalsh(W.T @ W), 0.0))
            fit = fit_mp(evals, Q=N / M, M=M)
            assert fit is not None
            dense.append(bulk_ks(evals, fit, N / M))
        model = null_distances(rng, M, N / M, 60)
        print(
            f"  {N}x{M}: dense {np.median(dense):.4f} {np.quantile(dense, 0.9):.4f}   "
            f"bidiagonal {np.median(model):.4f} {np.quantile(model, 0.9):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--seed", type=int, default=20240)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.check:
        check(rng)
    means = np.zeros((len(M_GRID), len(Q_GRID)))
    sds = np.zeros_like(means)
    start = time.time()
    print(f"{'M':>5} {'Q':>5} {'n':>4} {'median':>8} {'emp95':>8} {'ln95':>8} {'emp99':>8} {'ln99':>8}")
    for i, M in enumerate(M_GRID):
        trials = args.trials if M <= 512 else max(40, args.trials // (M // 256))
        for j, Q in enumerate(Q_GRID):
            ks = null_distances(rng, M, Q, trials)
            logs = np.log(ks)
            means[i, j], sds[i, j] = float(logs.mean()), float(logs.std(ddof=1))
            print(
                f"{M:>5} {Q:>5g} {trials:>4} {np.median(ks):8.4f} {np.quantile(ks, 0.95):8.4f} "
                f"{math.exp(means[i, j] + 1.6449 * sds[i, j]):8.4f} {np.quantile(ks, 0.99):8.4f} "
                f"{math.exp(means[i, j] + Z99 * sds[i, j]):8.4f}",
                flush=True,
            )
    rows_mean = ",\n".join("    (" + ", ".join(f"{v:.4f}" for v in row) + ")" for row in means)
    rows_sd = ",\n".join("    (" + ", ".join(f"{v:.4f}" for v in row) + ")" for row in sds)
    OUTPUT.write_text(
        '"""Null distribution of the MP bulk KS distance (`inspector.science.mp.bulk_ks`) on Gaussian '
        "matrices."
        "\n\nGenerated by benchmarks/tabulate_bulk_ks_null.py (seed "
        f"{args.seed}, {args.trials} spectra per cell up to M = 512, fewer\nabove); do not edit by hand.\n"
        "KS_LOG_MEAN[i][j] and KS_LOG_SD[i][j] are the mean and standard deviation of log(KS) at M_GRID[i],\n"
        'Q_GRID[j].\n"""\n\n'
        f"M_GRID = {M_GRID}\nQ_GRID = {Q_GRID}\nZ99 = {Z99}\n"
        f"KS_LOG_MEAN = (\n{rows_mean},\n)\nKS_LOG_SD = (\n{rows_sd},\n)\n"
    )
    print(f"wrote {OUTPUT.relative_to(ROOT)} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
