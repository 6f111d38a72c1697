"""Eigenvalue backends: agreement with a float64 SVD, batches, rank-deficient matrices, device selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import scipy.linalg
import torch

from inspector.errors import UsageError
from inspector.options import Device
from inspector.science import eigen
from inspector.science.eigen import (
    _GRAM_BLOCK_ELEMENTS,
    CpuBackend,
    TorchBackend,
    gram64,
    layer_eigenvalues,
    make_backend,
    rank_is_settled,
    rank_tolerance,
)


def svd_reference(W: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    return np.sort(scipy.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2)


def heavy_tailed(
    rng: np.random.Generator, N: int, M: int, dtype: type = np.float32
) -> npt.NDArray[np.floating]:
    return rng.standard_t(3.0, size=(N, M)).astype(dtype)


@pytest.mark.parametrize(("N", "M"), [(300, 300), (700, 128), (64, 63), (2000, 40)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_route_agrees_with_a_float64_svd(N: int, M: int, dtype: type) -> None:
    rng = np.random.default_rng(N * M)
    W = heavy_tailed(rng, N, M, dtype)
    ours = CpuBackend().eigenvalues(W)
    reference = svd_reference(W)
    assert ours.dtype == np.float64 and ours.shape == (M,)
    assert np.all(np.diff(ours) >= 0.0)
    top = M // 2  # the largest half: 1e-9 relative (PRODUCT.md; in practice ~1e-13)
    np.testing.assert_allclose(ours[-top:], reference[-top:], rtol=1e-9)
    # every eigenvalue: absolute error within the Gram noise floor M * eps * lambda_max
    assert np.max(np.abs(ours - reference)) <= 64 * M * np.finfo(np.float64).eps * reference[-1]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_blocked_gram_equals_the_whole_float64_product(dtype: type) -> None:
    # 3 blocks and a ragged last one: N * M well above the block size, N * M^2 above the small-product path
    M = 512
    N = 2 * (_GRAM_BLOCK_ELEMENTS // M) + 17
    W = heavy_tailed(np.random.default_rng(7), N, M, dtype)
    whole = W.astype(np.float64).T @ W.astype(np.float64)
    blocked = gram64(W)
    assert blocked.dtype == np.float64
    np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=1e-12 * np.abs(whole).max())
    # a transposed (Fortran-ordered) view, as layers.py hands over for N >= M orientation
    np.testing.assert_allclose(
        gram64(np.ascontiguousarray(W.T).T), whole, rtol=1e-12, atol=1e-12 * np.abs(whole).max()
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_square_float32_matrices_get_their_rank_without_the_svd(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Smallest eigenvalues below float32's rank tolerance, as a large square projection has them (lambda_min /
    # lambda_max ~ 1/(4 N^2) reaches (N eps32)^2 at N = 2048): the old rule sent such a matrix to the SVD.
    # The float64 Gram noise band around the tolerance is far narrower, so the rank is decided without it.
    rng = np.random.default_rng(seed)
    N = 300
    U, _ = np.linalg.qr(rng.standard_normal((N, N)))
    V, _ = np.linalg.qr(rng.standard_normal((N, N)))
    W = ((U * np.geomspace(1.0, 1e-6, N)) @ V.T).astype(np.float32)
    reference = svd_reference(W)
    assert reference[0] < rank_tolerance(float(reference[-1]), N, W.dtype)  # what made the old rule redo it

    def no_svd(matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        raise AssertionError("the SVD fallback ran")

    monkeypatch.setattr(eigen, "_svd_eigenvalues", no_svd)
    ours = CpuBackend().eigenvalues(W)
    rank = int(np.count_nonzero(ours > rank_tolerance(float(ours[-1]), N, W.dtype)))
    assert rank == np.linalg.matrix_rank(W) < N
    np.testing.assert_allclose(ours[-N // 2 :], reference[-N // 2 :], rtol=1e-9)


def test_an_eigenvalue_within_the_noise_of_the_tolerance_is_not_settled() -> None:
    N = M = 100
    evals = np.geomspace(1e-3, 1.0, M)
    assert rank_is_settled(evals, N, M, np.dtype(np.float32))
    tolerance = rank_tolerance(1.0, N, np.dtype(np.float32))
    at_tolerance = evals.copy()
    at_tolerance[0] = tolerance * (1 + 1e-9)  # on the tolerance, within the float64 Gram noise of it
    assert not rank_is_settled(at_tolerance, N, M, np.dtype(np.float32))
    far_below = evals.copy()
    far_below[0] = tolerance / 10  # clearly lost rank: settled, no SVD needed to count it
    assert rank_is_settled(far_below, N, M, np.dtype(np.float32))
    # float64 weights: the tolerance lies inside the noise, so a near-zero eigenvalue is never settled
    near_zero = evals.copy()
    near_zero[0] = 1e-15
    assert not rank_is_settled(near_zero, N, M, np.dtype(np.float64))
    assert not rank_is_settled(np.zeros(M), N, M, np.dtype(np.float32))


def test_float32_precision_is_float32_accurate_and_named() -> None:
    W = heavy_tailed(np.random.default_rng(11), 500, 200)
    single = CpuBackend(precision="float32")
    assert single.name == "cpu-gram-float32" and CpuBackend().name == "cpu-gram"
    reference = svd_reference(W)
    ours = single.eigenvalues(W)
    assert np.max(np.abs(ours - reference)) <= 64 * 200 * np.finfo(np.float32).eps * reference[-1]
    assert np.max(np.abs(ours - reference)) > 1e3 * np.finfo(np.float64).eps * reference[-1]  # float32's own
    batch = single.eigenvalues_batch(W.reshape(5, 100, 200)[:, :, :100].copy())
    assert batch.shape == (5, 100)


def test_svd_route_is_weightwatchers_computation() -> None:
    rng = np.random.default_rng(1)
    W = heavy_tailed(rng, 200, 50)
    np.testing.assert_array_equal(CpuBackend(route="svd").eigenvalues(W), svd_reference(W))


def test_batch_equals_one_matrix_at_a_time() -> None:
    rng = np.random.default_rng(2)
    stack = heavy_tailed(rng, 9 * 96, 64).reshape(9, 96, 64)
    for backend in (CpuBackend(), CpuBackend(route="svd")):
        batch = backend.eigenvalues_batch(stack)
        assert batch.shape == (9, 64)
        for i in range(9):
            np.testing.assert_allclose(
                batch[i], backend.eigenvalues(stack[i]), rtol=1e-12, atol=1e-12 * batch[i, -1]
            )
    pooled = layer_eigenvalues(list(stack), CpuBackend())
    assert len(pooled) == 9


def test_rank_deficient_float64_matrix_is_redone_with_the_svd() -> None:
    rng = np.random.default_rng(3)
    W = rng.standard_normal((120, 10)) @ rng.standard_normal((10, 60))  # rank 10, float64
    ours = CpuBackend().eigenvalues(W)
    reference = svd_reference(W)
    # The 50 null directions are at the SVD's ~1e-30 relative level, not at the Gram's ~1e-14.
    np.testing.assert_array_equal(ours, reference)
    tolerance = rank_tolerance(float(ours[-1]), 120, W.dtype)
    assert int(np.count_nonzero(ours > tolerance)) == 10 == np.linalg.matrix_rank(W)


def test_rank_of_float32_matrices_uses_float32_resolution() -> None:
    rng = np.random.default_rng(4)
    W = (rng.standard_normal((200, 8)) @ rng.standard_normal((8, 50))).astype(np.float32)
    evals = CpuBackend().eigenvalues(W)
    tolerance = rank_tolerance(float(evals[-1]), 200, W.dtype)
    # numpy's matrix_rank on the float32 array applies the same rule: sigma > sigma_max * max(N, M) * eps32.
    assert int(np.count_nonzero(evals > tolerance)) == np.linalg.matrix_rank(W) == 8


def test_zero_matrix_has_zero_eigenvalues() -> None:
    assert np.all(CpuBackend().eigenvalues(np.zeros((20, 10), dtype=np.float32)) == 0.0)


def test_eigenvalues_are_never_negative() -> None:
    rng = np.random.default_rng(5)
    W = np.concatenate([rng.standard_normal((100, 30)), np.zeros((100, 1))], axis=1) * 1e-3
    assert np.all(CpuBackend().eigenvalues(W) >= 0.0)


def test_torch_backend_on_the_cpu_agrees() -> None:
    rng = np.random.default_rng(6)
    W = heavy_tailed(rng, 400, 100)
    reference = svd_reference(W)
    np.testing.assert_allclose(TorchBackend("cpu").eigenvalues(W)[-50:], reference[-50:], rtol=1e-9)
    single = TorchBackend("cpu", dtype="float32")
    assert single.name == "torch-cpu-float32"
    # float32 Gram + eigh: errors of order M * eps32 * lambda_max.
    tolerance = 100 * 4 * np.finfo(np.float32).eps * reference[-1]
    assert np.max(np.abs(single.eigenvalues(W) - reference)) <= tolerance
    stack = W.reshape(4, 100, 100)
    batch = TorchBackend("cpu").eigenvalues_batch(stack)
    for i in range(4):
        np.testing.assert_allclose(batch[i][-10:], svd_reference(stack[i])[-10:], rtol=1e-9)


def test_torch_float32_redoes_matrices_whose_small_eigenvalues_are_noise() -> None:
    rng = np.random.default_rng(7)
    # Condition number 1e8: the smallest eigenvalues sit far below float32's Gram noise (M eps32 lambda_max).
    W = (rng.standard_normal((300, 60)) * np.geomspace(1.0, 1e-4, 60)).astype(np.float32)
    reference = svd_reference(W)
    ours = TorchBackend("cpu", dtype="float32").eigenvalues(W)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)  # float64 accuracy, not float32's
    low_rank = (rng.standard_normal((120, 10)) @ rng.standard_normal((10, 60))).astype(np.float32)
    evals = TorchBackend("cpu", dtype="float32").eigenvalues(low_rank)
    tolerance = rank_tolerance(float(evals[-1]), 120, low_rank.dtype)
    assert int(np.count_nonzero(evals > tolerance)) == np.linalg.matrix_rank(low_rank) == 10


@pytest.mark.parametrize(("k", "N", "M"), [(6, 40, 24), (3, 300, 100)])
def test_torch_backend_equals_the_cpu_route_and_moves_each_stack_once(
    k: int, N: int, M: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (6, 40, 24): one batched eigh (M <= 32); (3, 300, 100): one matrix at a time. CUDA runs the same code.
    rng = np.random.default_rng(k * N)
    stack = heavy_tailed(rng, k * N, M).reshape(k, N, M)
    backend = TorchBackend("cpu")
    assert backend.name == "torch-cpu-float64"
    moves = []
    real = backend._to_device
    monkeypatch.setattr(backend, "_to_device", lambda matrices: moves.append(1) or real(matrices))
    ours = backend.eigenvalues_batch(stack)
    expected = CpuBackend().eigenvalues_batch(stack)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12 * float(expected.max()))
    # a transposed view (how layers.py hands a wide matrix over) crosses as its contiguous original
    wide = np.ascontiguousarray(np.swapaxes(stack, 1, 2))
    np.testing.assert_allclose(
        backend.eigenvalues_batch(np.swapaxes(wide, 1, 2)),
        expected,
        rtol=1e-10,
        atol=1e-12 * float(expected.max()),
    )
    assert len(moves) == 2


def test_torch_backend_settles_rank_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    W = rng.standard_normal((120, 10)) @ rng.standard_normal((10, 60))  # rank 10, float64: the SVD decides
    monkeypatch.setattr(eigen, "_svd_eigenvalues", lambda matrix: pytest.fail("the CPU SVD ran"))
    evals = TorchBackend("cpu").eigenvalues(W)
    assert int(np.count_nonzero(evals > rank_tolerance(float(evals[-1]), 120, W.dtype))) == 10
    np.testing.assert_allclose(evals[-10:], svd_reference(W)[-10:], rtol=1e-10)
    assert np.all(evals[:50] <= 1e-20 * evals[-1])  # SVD-exact null directions, not the Gram's 1e-14


def test_device_selection() -> None:
    assert make_backend(Device.CPU).name == "cpu-gram"
    assert make_backend(Device.CPU, cpu_route="svd").name == "cpu-svd"
    if torch.cuda.is_available():
        assert make_backend(Device.CUDA).name.startswith("torch-cuda")
        assert make_backend(Device.AUTO).name.startswith("torch-cuda")
    else:
        with pytest.raises(UsageError, match="CUDA"):
            make_backend(Device.CUDA)
        assert make_backend(Device.AUTO).name == "cpu-gram"


def test_device_selection_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(UsageError, match="needs torch"):
        make_backend(Device.CUDA)
    assert make_backend(Device.AUTO).name == "cpu-gram"


def test_cpu_path_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from inspector.science.eigen import make_backend\n"
        "from inspector.science.metrics import measure_layer\n"
        "from inspector.options import AnalysisOptions, Device\n"
        "backend = make_backend(Device.CPU)\n"
        "W = np.random.default_rng(0).standard_normal((50, 20))\n"
        "options = AnalysisOptions(randomize=True)\n"
        "measure_layer([W], N=50, M=20, scale=1.0, options=options, backend=backend)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=root
    )
    assert result.returncode == 0, result.stderr
