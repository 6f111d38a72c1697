"""Eigenvalue routes and the power-law fit, per matrix shape: time, accuracy, and the fit's share.

    python benchmarks/bench_eigen.py                 # CPU: default shapes
    python benchmarks/bench_eigen.py --large         # + 4096x4096, 11008x4096, a 16k-eigenvalue conv layer
    python benchmarks/bench_eigen.py --device cuda   # + torch on the GPU (float32 and float64), when present

Columns, per shape (k same-shape matrices pooled, as conv slices are):
- ours: `CpuBackend()` (Gram in float64 + LAPACK syevd), the default route;
- svd f64: scipy's float64 SVD, values only (gesdd), weightwatcher 0.7.7's CPU route;
- eigh floor: `np.linalg.eigvalsh` alone on the already formed Gram matrix, the bare eigensolver: no
  eigenvalue route that solves the M x M symmetric problem can beat it;
- top-half err: max relative difference of the larger half of the eigenvalues against the float64 SVD
  (PRODUCT.md asks 1e-9);
- fit: `fit_power_law` on the eigenvalues above 1e-5; share: fit / `measure_layer` total (eigenvalues, fit,
  MP fit, norms, detX).

A second table times the fit alone for n = 1k..16k eigenvalues against weightwatcher's `WWFit` (its Python
loop over candidates) on the same values, and checks alpha agrees to 1e-9.

On CUDA (`--device cuda`, needs torch with a GPU): `TorchBackend("cuda")` in float32 (TF32 off) and float64,
including host-device transfers, with the float32 error against the float64 SVD in units of
M * eps32 * lambda_max, and, for conv-like stacks, the batched `eigvalsh` against a Python loop over slices
(torch's batched eigh on CUDA falls back to a sequential loop for matrices above 32 x 32, so batching is
measured, not assumed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inspector.options import AnalysisOptions
from inspector.science.eigen import CpuBackend, _blas_threads
from inspector.science.metrics import measure_layer
from inspector.science.powerlaw import fit_power_law

SEED = 1234
#: (N, M, k): k matrices of N x M pooled into one ESD.
SHAPES = [
    (384, 384, 1),
    (1536, 384, 1),
    (30522, 384, 1),
    (768, 768, 1),
    (3072, 768, 1),
    (30522, 768, 1),
    (512, 512, 9),
]
LARGE_SHAPES = [(4096, 4096, 1), (11008, 4096, 1), (1792, 1792, 9)]
FIT_SIZES = [1000, 4000, 16000]


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of `repeats` calls, in seconds: on a shared machine the minimum is the measurement
    least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def trained_like(rng: np.random.Generator, N: int, M: int) -> npt.NDArray[np.float32]:
    """Gaussian columns with Pareto-distributed scales: a heavy-tailed ESD without an expensive QR."""
    scales = (1.0 - rng.random(M)) ** (-1.0 / 3.0)
    return (rng.standard_normal((N, M), dtype=np.float32) * scales.astype(np.float32)) / np.float32(
        np.sqrt(N)
    )


def svd_eigenvalues(stack: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
    values = [scipy.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2 for W in stack]
    return np.sort(np.concatenate(values))


def cpu_table(shapes: list[tuple[int, int, int]], repeats: int) -> None:
    rng = np.random.default_rng(SEED)
    backend = CpuBackend()
    options = AnalysisOptions()
    header = (
        f"{'shape':>16} {'k':>2} {'ours ms':>9} {'svd f64 ms':>11} {'eigh floor ms':>13} {'vs svd':>7} "
        f"{'vs floor':>8} {'top-half err':>12} {'fit ms':>8} {'fit share':>9}"
    )
    print(header)
    print("-" * len(header))
    for N, M, k in shapes:
        _cpu_row(N, M, [trained_like(rng, N, M) for _ in range(k)], backend, options, repeats)


def _cpu_row(
    N: int,
    M: int,
    stack: list[npt.NDArray[np.float32]],
    backend: CpuBackend,
    options: AnalysisOptions,
    repeats: int,
) -> None:
    k = len(stack)
    runs = repeats if N * M * k < 5e7 else 1
    array = np.stack(stack)
    if k == 1:
        ours_time = best_of(lambda: backend.eigenvalues(stack[0]), runs)
    else:
        ours_time = best_of(lambda: backend.eigenvalues_batch(array), runs)
    svd_time = best_of(lambda: svd_eigenvalues(stack), max(1, runs // 2))
    grams = [W.astype(np.float64).T @ W.astype(np.float64) for W in stack]
    with _blas_threads(N, M):  # the same BLAS thread policy as our route
        floor_time = best_of(lambda: [np.linalg.eigvalsh(G) for G in grams], runs)
    ours_evals = np.sort(np.concatenate(list(backend.eigenvalues_batch(array))))
    reference = svd_eigenvalues(stack)
    half = reference.size // 2
    error = float(np.max(np.abs(ours_evals[half:] - reference[half:]) / reference[half:]))
    data = ours_evals[ours_evals > 1e-5]
    fit_time = best_of(lambda: fit_power_law(data), runs)
    total = best_of(lambda: measure_layer(stack, N=N, M=M, scale=1.0, options=options, backend=backend), runs)
    print(
        f"{f'{N}x{M}':>16} {k:>2} {ours_time * 1e3:9.1f} {svd_time * 1e3:11.1f} {floor_time * 1e3:13.1f} "
        f"{svd_time / ours_time:6.1f}x {ours_time / floor_time:7.2f}x {error:12.1e} {fit_time * 1e3:8.1f} "
        f"{fit_time / total:8.1%}"
    )


def fit_table(sizes: list[int]) -> None:
    from weightwatcher.WW_powerlaw import WWFit  # the reference; imported here only (its import is slow)

    rng = np.random.default_rng(SEED)
    header = f"{'n':>7} {'ours ms':>9} {'WWFit ms':>10} {'speedup':>8} {'alpha rel diff':>15}"
    print(header)
    print("-" * len(header))
    for n in sizes:
        if n <= 4000:
            W = trained_like(rng, 2 * n, n).astype(np.float64)
            evals = np.sort(np.linalg.eigvalsh(W.T @ W))
        else:  # a 16k x 16k eigenproblem would dominate the run: an MP bulk plus a Pareto tail of this size
            bulk = np.sort(np.linalg.eigvalsh(np.cov(rng.standard_normal((2000, 4000)))))
            tail = (1 - rng.random(2000)) ** -0.5 * 3
            evals = np.sort(np.concatenate([np.tile(bulk, n // 2000 - 1), tail]))
        _fit_row(evals[evals > 1e-5], WWFit)


def _fit_row(data: npt.NDArray[np.float64], reference: Callable[[npt.NDArray[np.float64]], Any]) -> None:
    ours_time = best_of(lambda: fit_power_law(data), 3)
    start = time.perf_counter()
    theirs = reference(data)
    ww_time = time.perf_counter() - start
    ours = fit_power_law(data)
    assert ours is not None
    print(
        f"{data.size:>7} {ours_time * 1e3:9.1f} {ww_time * 1e3:10.1f} {ww_time / ours_time:7.1f}x "
        f"{abs(ours.alpha / theirs.alpha - 1):15.1e}"
    )


def cuda_table(shapes: list[tuple[int, int, int]], repeats: int) -> None:
    import torch

    from inspector.science.eigen import TorchBackend

    if not torch.cuda.is_available():
        print("no CUDA device: GPU table skipped")
        return
    print(f"device: {torch.cuda.get_device_name(0)}")
    rng = np.random.default_rng(SEED)
    f32, f64 = TorchBackend("cuda", "float32"), TorchBackend("cuda", "float64")

    def synced(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            out = fn()
            torch.cuda.synchronize()
            return out

        return run

    header = (
        f"{'shape':>16} {'k':>2} {'f32 ms':>8} {'f64 ms':>8} {'cpu ours ms':>11} {'f32 err/(M eps32)':>17} "
        f"{'f64 top rel err':>15} {'looped ms':>9}"
    )
    print(header)
    print("-" * len(header))
    for N, M, k in shapes:
        stack = np.stack([trained_like(rng, N, M) for _ in range(k)])
        _cuda_row(N, M, stack, f32, f64, synced, repeats)


def _cuda_row(
    N: int,
    M: int,
    stack: npt.NDArray[np.float32],
    f32: Any,
    f64: Any,
    synced: Callable[[Callable[[], object]], Callable[[], object]],
    repeats: int,
) -> None:
    k = stack.shape[0]
    eps32 = float(np.finfo(np.float32).eps)
    f32.eigenvalues(stack[0]), f64.eigenvalues(stack[0])  # warm-up: CUDA context, cuSOLVER handles
    t32 = best_of(synced(lambda: f32.eigenvalues_batch(stack)), repeats)
    t64 = best_of(synced(lambda: f64.eigenvalues_batch(stack)), repeats)
    tcpu = best_of(lambda: CpuBackend().eigenvalues_batch(stack), max(1, repeats // 2))
    reference = svd_eigenvalues(list(stack))
    e32 = np.sort(f32.eigenvalues_batch(stack).reshape(-1))
    e64 = np.sort(f64.eigenvalues_batch(stack).reshape(-1))
    err32 = float(np.max(np.abs(e32 - reference))) / (M * eps32 * float(reference[-1]))
    half = reference.size // 2
    err64 = float(np.max(np.abs(e64[half:] - reference[half:]) / reference[half:]))
    looped = best_of(synced(lambda: [f32.eigenvalues(W) for W in stack]), repeats) if k > 1 else t32
    print(
        f"{f'{N}x{M}':>16} {k:>2} {t32 * 1e3:8.1f} {t64 * 1e3:8.1f} {tcpu * 1e3:11.1f} {err32:17.2f} "
        f"{err64:15.1e} {looped * 1e3:9.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--large", action="store_true", help="add 4096-wide and 16k-eigenvalue shapes")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-fit-table", action="store_true", help="skip the fit-vs-WWFit table")
    args = parser.parse_args()
    shapes = SHAPES + (LARGE_SHAPES if args.large else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU cores: {os.cpu_count()}, load average: {load:.2f}, numpy {np.__version__}\n")
    cpu_table(shapes, args.repeats)
    if not args.no_fit_table:
        print()
        fit_table(FIT_SIZES)
    if args.device == "cuda":
        print()
        cuda_table(shapes, args.repeats)


if __name__ == "__main__":
    main()
