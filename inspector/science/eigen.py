"""Eigenvalue backends: the squared singular values of N x M layer matrices (the eigenvalues of W^T W).

One small interface, `EigenBackend`, with two implementations:

* `CpuBackend` (numpy/scipy, the default). Route "gram" forms X = W^T W in float64 and calls the
  symmetric eigensolver (LAPACK syevd); route "svd" runs scipy's float64 SVD (gesdd), which is what
  weightwatcher 0.7.7 does on a CPU (`RMT_Util.svd_vals`, reference §2.2). Gram + eigh costs N*M^2 + 4/3 M^3
  flops against gesdd's roughly 4*N*M^2 + 8*M^3, and is 2-13x faster in benchmarks/bench_eigen.py. Its
  eigenvalues carry an absolute error of order M * eps64 * lambda_max, so the largest ones agree with the SVD
  to ~1e-13 relative; a matrix with an eigenvalue within that noise of the rank tolerance (a rank-deficient
  float64 matrix, where the rank decision needs them) is redone with the SVD, so `rank_loss` never depends
  on the route (`rank_is_settled`).
* `TorchBackend` (CPU or CUDA, imported lazily): Gram + `torch.linalg.eigvalsh`, float64 like the CPU route
  (float32 moves reported numbers, benchmarks/bench_precision.py), each stack moved to the device once, the
  same rank rule, and the SVD on the device where the rank is not settled.

torch is never imported on the CPU path, nor scipy for small models (it comes in for the blocked Gram
product of large matrices and for the SVD): `wwinspect` must start fast (PRODUCT.md, `--device`). Small
problems run on one BLAS thread (see _SINGLE_THREAD_MAX_M).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from inspector.errors import UsageError
from inspector.options import Device
from inspector.science import blas

FloatArray = npt.NDArray[np.float64]
CpuRoute = Literal["gram", "svd"]
Precision = Literal["float64", "float32"]

_EPS64 = float(np.finfo(np.float64).eps)
# Gram eigenvalues have absolute errors up to about c * M * eps64 * lambda_max (Demmel, "Applied Numerical
# Linear Algebra" §5.2, for the syrk rounding plus the backward-stable eigensolver); c = 64 is a generous
# bound for c. Below that level an eigenvalue is noise, and a rank decision there needs the SVD.
_GRAM_NOISE_FACTOR = 64.0
# Small problems run on one BLAS thread. The eigensolver's tridiagonal reduction is memory-bound: measured on
# 2 cores (benchmarks/bench_eigen.py), one thread is as fast or faster up to M = 1024 (M = 384: 7 ms against
# 8 ms; 768: 39 against 55), and so is the Gram product below ~1e9 flops (384 x 384: 2 ms against 12), while
# thread hand-offs make both far slower whenever other processes compete for the cores. Larger problems keep
# every thread (M = 2048: 0.5 s against 0.85 s on an idle machine).
_SINGLE_THREAD_MAX_M = 1024
_SINGLE_THREAD_MAX_FLOPS = 1e9
# Row blocks of the float64 Gram product: 2**20 elements (8 MB) keeps a block in the last-level cache while
# each syrk call still has enough rows to run at full speed (1024 to 8192 rows of 384 measured alike).
_GRAM_BLOCK_ELEMENTS = 1 << 20


class EigenBackend(Protocol):
    """Computes the eigenvalues of W^T W (= squared singular values of W) for N x M matrices, N >= M."""

    @property
    def name(self) -> str:
        """Short name for the report's settings, e.g. "cpu-gram"."""
        ...

    def eigenvalues(self, matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """The M eigenvalues of W^T W of one N x M matrix, ascending, float64, none negative."""
        ...

    def eigenvalues_batch(self, matrices: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """Eigenvalues of a (k, N, M) stack of same-shape matrices: a (k, M) array, each row ascending."""
        ...


def rank_tolerance(lambda_max: float, N: int, dtype: np.dtype[Any]) -> float:
    """Eigenvalue level below which a direction counts as lost rank.

    numpy's `matrix_rank` rule on singular values, sigma > sigma_max * N * eps, squared. eps is that of the
    dtype the weights arrived in (float32 weights cannot resolve singular values below ~eps32 * sigma_max);
    weightwatcher uses float64's eps after casting, which counts float32 rounding noise as rank.
    """
    eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else _EPS64
    return lambda_max * (N * eps) ** 2


def _blas_threads(N: int, M: int) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread for small problems (see _SINGLE_THREAD_MAX_M); others, one per idle CPU (within any
    limit already set, e.g. by the worker processes)."""
    if M > _SINGLE_THREAD_MAX_M or N * M * M > _SINGLE_THREAD_MAX_FLOPS:
        return blas.for_large_problem()
    return blas.limited(1)


def rank_is_settled(
    evals: FloatArray, N: int, M: int, dtype: np.dtype[Any], working_eps: float = _EPS64
) -> bool:
    """True when the Gram eigenvalues answer the rank question exactly: no eigenvalue lies within the Gram
    noise of the rank tolerance, so counting those above it gives the rank the SVD would give.

    `working_eps` is the precision the Gram matrix and its eigenvalues were computed in. The eigenvalues'
    absolute error is at most the noise level c * M * working_eps * lambda_max, so one that sits further
    than that from the tolerance is on the same side of it as the exact value. A square matrix's smallest
    eigenvalues sit near the tolerance of float32 weights (lambda_min / lambda_max ~ 1/(4 N^2) against
    (N eps32)^2 = 6e-8 at N = 2048), but the float64 noise band around it is 2000 times narrower (3e-11):
    the old rule, which wanted every eigenvalue above tolerance + noise, sent every square projection to the
    SVD; this one does only when an eigenvalue falls inside the band. A rank-deficient float64 matrix stays
    unsettled: its null eigenvalues (exactly 0) are known only to within the noise, which is far above
    float64's tolerance, so it takes the SVD.
    """
    lambda_max = float(evals[-1])
    if lambda_max <= 0.0:
        return False  # an all-zero matrix: let the SVD say so exactly
    noise = _GRAM_NOISE_FACTOR * M * working_eps * lambda_max
    tolerance = rank_tolerance(lambda_max, N, dtype)
    return not bool(np.any(np.abs(evals - tolerance) <= noise))


@dataclass(frozen=True, slots=True)
class CpuBackend:
    """numpy/scipy eigenvalues on the CPU, by Gram + symmetric eigensolver (default) or float64 SVD.

    `precision` is the Gram route's working precision. float64 is the default for every shape. float32 is
    kept only for benchmarks/bench_precision.py, which measures what it would move: it returns the float32
    eigenvalues as they are, with no rank fallback, because its noise band (64 M eps32 lambda_max, 1.6% of
    lambda_max at M = 2048) covers most of a spectrum, so `rank_is_settled` would send nearly every matrix
    back to float64 and float32 could never save anything.
    """

    route: CpuRoute = "gram"
    precision: Precision = "float64"

    @property
    def name(self) -> str:
        return f"cpu-{self.route}" if self.precision == "float64" else f"cpu-{self.route}-{self.precision}"

    def _gram_eigenvalues(self, matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
        if self.precision == "float32":
            W = np.asarray(matrix, dtype=np.float32)
            return np.asarray(np.linalg.eigvalsh(W.T @ W), dtype=np.float64)
        return np.asarray(np.linalg.eigvalsh(gram64(matrix)), dtype=np.float64)

    def eigenvalues(self, matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
        N, M = matrix.shape
        if self.route == "gram":
            with _blas_threads(N, M):
                evals = self._gram_eigenvalues(matrix)
            if self.precision == "float32" or rank_is_settled(evals, N, M, matrix.dtype):
                return np.maximum(evals, 0.0)
        return _svd_eigenvalues(matrix)

    def eigenvalues_batch(self, matrices: npt.NDArray[np.floating[Any]]) -> FloatArray:
        k, N, M = matrices.shape
        if self.route == "svd":
            return np.stack([_svd_eigenvalues(W) for W in matrices])
        if self.precision != "float64":
            return np.stack([self.eigenvalues(W) for W in matrices])
        with _blas_threads(N, M):
            evals = np.linalg.eigvalsh(np.stack([gram64(W) for W in matrices]))
        for i in range(k):
            if rank_is_settled(evals[i], N, M, matrices.dtype):
                evals[i] = np.maximum(evals[i], 0.0)
            else:
                evals[i] = _svd_eigenvalues(matrices[i])
        return evals


def gram64(matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """W^T W in float64 for an N x M matrix of any float dtype, never holding a float64 copy of all of W.

    Small matrices: one widening and numpy's `W.T @ W` (syrk). Large ones: rows are widened in blocks of
    about _GRAM_BLOCK_ELEMENTS into one reused buffer, laid out like the input (a transposed view widens
    column by column, not element by element), and each block is added into one result buffer by BLAS
    dsyrk itself (beta = 1), so no block leaves an M x M temporary behind. Measured on 8192 x 2048 float32
    (benchmarks/bench_llm.py --floor): 1.1-1.2 s against 1.8 s for `gram += part.T @ part`, as fast as
    widening all of W (1.0-1.5 s) without its 8 * N * M bytes.
    """
    N, M = matrix.shape
    rows = max(1, _GRAM_BLOCK_ELEMENTS // max(M, 1))
    if N * M * M <= _SINGLE_THREAD_MAX_FLOPS or (matrix.dtype == np.float64 and rows >= N):
        W = np.asarray(matrix, dtype=np.float64)
        # W.T @ W on one buffer: numpy dispatches this to BLAS syrk (half the flops of gemm).
        return np.asarray(W.T @ W, dtype=np.float64)
    from scipy.linalg.blas import dsyrk  # lazily: scipy costs 0.25 s to import; small models never need it

    fortran = not matrix.flags.c_contiguous and matrix.strides[0] < matrix.strides[1]
    gram = np.zeros((M, M), dtype=np.float64, order="F")
    block = np.empty((min(rows, N), M), dtype=np.float64, order="F" if fortran else "C")
    for start in range(0, N, rows):
        stop = min(start + rows, N)
        part = block[: stop - start]
        part[...] = matrix[start:stop]
        # dsyrk's operand must be Fortran-ordered to be used in place: a C block is passed as its transpose.
        if fortran:
            dsyrk(1.0, part, beta=1.0, c=gram, trans=1, lower=0, overwrite_c=1)
        else:
            dsyrk(1.0, part.T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)
    # dsyrk fills the upper triangle only; mirror it
    lower = np.tril_indices(M, -1)
    gram[lower] = gram.T[lower]
    return gram.T  # symmetric, and C-ordered as numpy's own product would be


def _svd_eigenvalues(matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Squared singular values by LAPACK gesdd in float64: weightwatcher's CPU route, ascending."""
    import scipy.linalg  # lazily: the Gram route needs only numpy (start-up time)

    sv: FloatArray = scipy.linalg.svd(
        np.asarray(matrix, dtype=np.float64), compute_uv=False, check_finite=False
    )
    return np.sort(sv * sv)


#: Equal-shaped matrices go through torch's batched eigh together only up to this size: above 32 x 32 it
#: solves them one after the other on CUDA (cuSOLVER's batched Jacobi solver stops there), so a larger stack
#: gains nothing from batching and would hold k Gram matrices on the device at once.
_TORCH_BATCH_MAX_M = 32


class TorchBackend:
    """Gram + `torch.linalg.eigvalsh` on a torch device ("cpu" or "cuda").

    Precision as on the CPU: `make_backend` uses float64 on CUDA too, because float32 eigenvalues (errors
    of about M * eps32 * lambda_max) move alpha, xmin or D by more than 1e-6 relative on the benchmark layers
    (benchmarks/bench_precision.py); float64 runs at full rate on the data-centre GPUs (H100, H200) this is
    meant for. `dtype="float32"` stays available for measurement; a matrix whose rank it cannot settle is
    redone in float64. TF32 matmuls are switched off: TF32 keeps 10 mantissa bits.

    Each stack of matrices crosses to the device once, in the dtype it arrived in (a transposed view crosses
    as its contiguous original and is transposed there); widening, the Gram product, the eigensolve and any
    fallback (float64, then the SVD, `torch.linalg.svdvals`) run on the device. Reading the next tensor on the
    CPU overlaps with this (inspector/readahead.py).
    """

    def __init__(self, device: str = "cpu", dtype: Literal["float64", "float32"] = "float64") -> None:
        import torch  # lazily: only --device cuda/auto pays for importing torch

        self._torch = torch
        self._device = torch.device(device)
        self._dtype = torch.float64 if dtype == "float64" else torch.float32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self._name = f"torch-{self._device.type}-{dtype}"

    @property
    def name(self) -> str:
        return self._name

    def _to_device(self, matrices: npt.NDArray[np.floating[Any]]) -> Any:
        """The (k, N, M) stack as one device tensor, copied across once."""
        torch = self._torch
        swapped = np.swapaxes(matrices, -1, -2)
        if not matrices.flags.c_contiguous and swapped.flags.c_contiguous:
            return torch.from_numpy(swapped).to(self._device).mT  # transposed on the device, not the host
        return torch.from_numpy(np.ascontiguousarray(matrices)).to(self._device)

    def _gram_eigenvalues(self, stack: Any, dtype: Any) -> FloatArray:
        """Eigenvalues of W^T W for a (k, N, M) device tensor, as a (k, M) float64 host array."""
        torch = self._torch
        if stack.shape[-1] <= _TORCH_BATCH_MAX_M:
            parts = [stack]
        else:
            parts = [stack[i : i + 1] for i in range(stack.shape[0])]
        rows = []
        for part in parts:
            W = part.to(dtype)
            rows.append(torch.linalg.eigvalsh(W.mT @ W))
        evals = torch.cat(rows).to("cpu", torch.float64).numpy()
        return np.asarray(evals, dtype=np.float64)

    def eigenvalues(self, matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
        return np.asarray(self.eigenvalues_batch(matrix[None])[0], dtype=np.float64)

    def eigenvalues_batch(self, matrices: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """Like CpuBackend: a matrix whose rank the working precision cannot settle is redone in float64 on
        the device, then, if still unsettled (rank-deficient), by the device's float64 SVD."""
        torch = self._torch
        _, N, M = matrices.shape
        on_device = self._to_device(matrices)
        evals = self._gram_eigenvalues(on_device, self._dtype)
        eps = float(torch.finfo(self._dtype).eps)
        for i in range(evals.shape[0]):
            if rank_is_settled(evals[i], N, M, matrices.dtype, eps):
                continue
            if self._dtype != torch.float64:
                evals[i] = self._gram_eigenvalues(on_device[i : i + 1], torch.float64)[0]
                if rank_is_settled(evals[i], N, M, matrices.dtype):
                    continue
            sv = torch.linalg.svdvals(on_device[i].to(torch.float64)).to("cpu").numpy()
            evals[i] = np.sort(np.asarray(sv, dtype=np.float64) ** 2)
        return np.maximum(evals, 0.0)


def make_backend(device: Device, *, cpu_route: CpuRoute = "gram") -> EigenBackend:
    """The backend for `--device`: cpu = numpy/scipy; cuda = torch on the GPU; auto = cuda when available.

    Raises:
        UsageError: `cuda` was requested but torch is not installed or sees no CUDA device.
    """
    if device == Device.CPU:
        return CpuBackend(route=cpu_route)
    try:
        import torch
    except ImportError:
        if device == Device.AUTO:
            return CpuBackend(route=cpu_route)
        raise UsageError(
            "--device cuda needs torch, which is not installed",
            hint="pip install 'wwinspect[gpu]' (or a CUDA build of torch), or use --device cpu",
        ) from None
    if torch.cuda.is_available():
        return TorchBackend("cuda", "float64")
    if device == Device.AUTO:
        return CpuBackend(route=cpu_route)
    raise UsageError(
        f"--device cuda: torch {torch.__version__} sees no CUDA device",
        hint="install a CUDA build of torch on a machine with an NVIDIA GPU, or use --device cpu",
    )


def layer_eigenvalues(
    matrices: Sequence[npt.NDArray[np.floating[Any]]], backend: EigenBackend
) -> tuple[FloatArray, ...]:
    """Per-matrix eigenvalue arrays; same-shape matrices (conv slices) go through the batch method."""
    if len(matrices) == 1:
        return (backend.eigenvalues(matrices[0]),)
    stack = np.stack(matrices)
    return tuple(backend.eigenvalues_batch(stack))
