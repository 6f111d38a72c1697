"""measure_layer: analytic cases, invariances, the normalisation switch, failures, and every option."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import numpy.typing as npt
import pytest

from inspector.errors import LayerFailedError
from inspector.options import AnalysisOptions, FitCut, FitMethod, FixFingers, Normalization
from inspector.records import LayerMetrics
from inspector.science.eigen import CpuBackend
from inspector.science.metrics import measure_layer

BACKEND = CpuBackend()
DEFAULTS = AnalysisOptions()


def measure(
    W: npt.NDArray[np.floating], options: AnalysisOptions = DEFAULTS, scale: float = 1.0
) -> LayerMetrics:
    return measure_layer([W], N=W.shape[0], M=W.shape[1], scale=scale, options=options, backend=BACKEND)


def with_spectrum(
    rng: np.random.Generator, N: int, singular_values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """W = U diag(s) V^T with random orthonormal U (N x M) and V (M x M): eigenvalues exactly s^2."""
    M = singular_values.size
    U, _ = np.linalg.qr(rng.standard_normal((N, M)))
    V, _ = np.linalg.qr(rng.standard_normal((M, M)))
    return (U * singular_values) @ V.T


def pareto_spectrum(rng: np.random.Generator, N: int, M: int, alpha: float) -> npt.NDArray[np.float64]:
    """A matrix whose eigenvalues are an i.i.d. Pareto(alpha) sample on [1, inf)."""
    evals = (1.0 - rng.random(M)) ** (-1.0 / (alpha - 1.0))
    return with_spectrum(rng, N, np.sqrt(evals))


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.5])
def test_recovers_the_exponent_of_a_pareto_spectrum(alpha: float) -> None:
    rng = np.random.default_rng(int(alpha * 10))
    metrics = measure(pareto_spectrum(rng, 700, 600, alpha))
    assert metrics.alpha is not None and metrics.num_pl_spikes is not None
    assert abs(metrics.alpha - alpha) <= 3.0 * (alpha - 1.0) / math.sqrt(metrics.num_pl_spikes)
    assert not metrics.fit_low_confidence


def test_gaussian_matrix_is_mp_with_no_spikes() -> None:
    rng = np.random.default_rng(1)
    metrics = measure(rng.standard_normal((800, 400)).astype(np.float32))
    assert metrics.mp_sigma == pytest.approx(1.0, abs=0.01)
    assert metrics.num_spikes == 0
    assert metrics.rank_loss == 0 and metrics.matrix_rank == 400
    assert metrics.near_zero_fraction == 0.0
    # lambda_+ = N sigma^2 (1 + 1/sqrt(Q))^2 on the s^2 scale.
    assert metrics.mp_lambda_plus == pytest.approx(800 * (1 + math.sqrt(0.5)) ** 2, rel=0.02)


def test_norm_metrics_follow_their_definitions() -> None:
    rng = np.random.default_rng(2)
    W = pareto_spectrum(rng, 300, 200, 2.5)
    evals = np.sort(np.linalg.svd(W, compute_uv=False) ** 2)
    m = measure(W)
    assert m.num_evals == 200
    assert m.lambda_max == pytest.approx(evals[-1], rel=1e-12)
    assert m.lambda_min == pytest.approx(evals[0], rel=1e-9)
    assert m.log_norm == pytest.approx(math.log10(evals.sum()), rel=1e-12)
    assert m.log_spectral_norm == pytest.approx(math.log10(evals[-1]), rel=1e-12)
    assert m.stable_rank == pytest.approx(evals.sum() / evals[-1], rel=1e-12)
    assert m.alpha is not None
    assert m.alpha_weighted == pytest.approx(m.alpha * math.log10(evals[-1]), rel=1e-12)
    assert m.log_alpha_norm == pytest.approx(math.log10(np.sum(evals**m.alpha)), rel=1e-12)
    p = evals / evals.sum()
    assert m.entropy == pytest.approx(-np.sum(p * np.log(p)) / math.log(200), rel=1e-12)
    # xmin is one of our eigenvalues; the SVD's copy of it may differ in the last bits
    assert m.num_pl_spikes == int(np.count_nonzero(evals >= (m.xmin or 0.0) * (1.0 - 1e-12)))
    assert m.mp_softrank == pytest.approx((m.mp_lambda_plus or 0.0) / evals[-1], rel=1e-12)


def test_scaling_changes_only_the_scale_metrics() -> None:
    rng = np.random.default_rng(3)
    W = pareto_spectrum(rng, 400, 300, 3.0)
    base, scaled = measure(W), measure(W * 10.0)
    for key in ("alpha", "D", "sigma", "stable_rank", "entropy", "mp_sigma", "mp_softrank", "detX_num"):
        assert getattr(scaled, key) == pytest.approx(getattr(base, key), rel=1e-9), key
    assert (scaled.num_pl_spikes, scaled.num_spikes) == (base.num_pl_spikes, base.num_spikes)
    assert scaled.lambda_max == pytest.approx(100.0 * (base.lambda_max or 0.0), rel=1e-12)
    assert scaled.xmin == pytest.approx(100.0 * (base.xmin or 0.0), rel=1e-12)
    assert scaled.log_norm == pytest.approx((base.log_norm or 0.0) + 2.0, rel=1e-12)


def test_transpose_and_rotations_change_nothing() -> None:
    rng = np.random.default_rng(4)
    W = rng.standard_t(3.0, size=(256, 256))
    base, transposed = measure(W), measure(np.ascontiguousarray(W.T))
    P, _ = np.linalg.qr(rng.standard_normal((256, 256)))
    rotated = measure(P @ W)
    for other in (transposed, rotated):
        assert other.alpha == pytest.approx(base.alpha, rel=1e-9)
        assert other.xmin == pytest.approx(base.xmin, rel=1e-9)
        assert other.D == pytest.approx(base.D, rel=1e-9)  # noqa: SIM300 - D is a field, not a constant
        assert other.log_norm == pytest.approx(base.log_norm, rel=1e-12)
        assert other.entropy == pytest.approx(base.entropy, rel=1e-9)


def test_per_n_normalisation_moves_the_scale_but_never_alpha() -> None:
    rng = np.random.default_rng(5)
    W = pareto_spectrum(rng, 500, 250, 2.5) * 1e-3  # small weights: some s^2 / N fall below 1e-5
    plain = measure(W)
    per_n = measure(W, AnalysisOptions(normalization=Normalization.PER_N))
    assert per_n.alpha == plain.alpha and per_n.D == plain.D and per_n.num_fit_evals == plain.num_fit_evals
    assert per_n.num_pl_spikes == plain.num_pl_spikes
    for key in ("lambda_max", "xmin", "xmax", "mp_lambda_plus", "detX_lambda_min"):
        assert getattr(per_n, key) == pytest.approx(getattr(plain, key) / 500, rel=1e-12), key
    assert per_n.log_norm == pytest.approx((plain.log_norm or 0.0) - math.log10(500), rel=1e-12)
    assert per_n.stable_rank == pytest.approx(plain.stable_rank, rel=1e-12)


def test_fit_threshold_is_on_weightwatchers_scale() -> None:
    rng = np.random.default_rng(6)
    W = with_spectrum(rng, 100, np.sqrt(np.geomspace(1e-8, 10.0, 60)))
    absolute = AnalysisOptions(fit_cut=FitCut.ABSOLUTE)  # weightwatcher's cut (the default is relative)
    m = measure(W, absolute)
    assert m.num_fit_evals == int(np.count_nonzero(np.geomspace(1e-8, 10.0, 60) > 1e-5))
    conv = measure_layer([W], N=100, M=60, scale=0.5, options=absolute, backend=BACKEND)
    assert conv.num_fit_evals == int(np.count_nonzero(0.5 * np.geomspace(1e-8, 10.0, 60) > 1e-5))


def test_relative_cut_keeps_what_counts_towards_the_rank() -> None:
    rng = np.random.default_rng(6)
    evals = np.geomspace(1e-8, 10.0, 60)
    W = with_spectrum(rng, 100, np.sqrt(evals))
    m = measure(W)  # float64: every one of the 60 directions is resolved, so all of them are fitted
    assert m.num_fit_evals == m.matrix_rank == 60
    assert measure(W * 1e-4).alpha == pytest.approx(m.alpha, rel=1e-9)
    # A rank-40 matrix: the 20 numerically zero eigenvalues stay out of the fit under either cut.
    thin = rng.standard_normal((100, 40)) @ rng.standard_normal((40, 60))
    assert measure(thin).num_fit_evals == measure(thin).matrix_rank == 40


def test_pooled_conv_slices_are_scaled_and_concatenated() -> None:
    rng = np.random.default_rng(7)
    slices = [rng.standard_normal((64, 32)).astype(np.float32) for _ in range(9)]
    m = measure_layer(slices, N=64, M=32, scale=0.5, options=DEFAULTS, backend=BACKEND)
    evals = np.concatenate([np.linalg.svd(s.astype(np.float64), compute_uv=False) ** 2 for s in slices]) * 0.5
    assert m.num_evals == 288
    assert m.lambda_max == pytest.approx(evals.max(), rel=1e-12)
    assert m.log_norm == pytest.approx(math.log10(evals.sum()), rel=1e-12)
    assert m.matrix_rank == 288


def test_non_finite_or_zero_weights_fail_the_layer() -> None:
    W = np.ones((20, 10), dtype=np.float32)
    W[3, 4] = np.nan
    with pytest.raises(LayerFailedError, match="NaN or infinite"):
        measure(W)
    with pytest.raises(LayerFailedError, match="zero"):
        measure(np.zeros((20, 10), dtype=np.float32))


def test_too_few_eigenvalues_give_no_alpha_but_still_norms() -> None:
    rng = np.random.default_rng(8)
    m = measure(rng.standard_normal((30, 1)))
    assert m.alpha is None and m.xmin is None and m.D is None and m.num_pl_spikes is None
    assert m.fit_low_confidence
    assert m.alpha_weighted is None and m.log_alpha_norm is None
    assert m.log_norm is not None and m.stable_rank == 1.0 and m.entropy == 0.0
    small = measure(rng.standard_normal((40, 15)))
    assert small.alpha is not None and small.fit_low_confidence  # 15 < 20 eigenvalues above the cut


def test_record_is_json_ready() -> None:
    rng = np.random.default_rng(9)
    options = AnalysisOptions(
        randomize=True, fit=FitMethod.TRUNCATED_POWER_LAW, fix_fingers=FixFingers.CLIP_XMAX
    )
    for W in (rng.standard_t(3.0, size=(200, 100)), rng.standard_normal((30, 1))):
        record = dataclasses.asdict(measure(W, options))
        json.dumps(record, allow_nan=False)  # no NaN; numpy scalars would not serialise either
        for key, value in record.items():
            assert value is None or type(value) in (int, float, bool, str, tuple, dict), key
        for key in (
            "alpha",
            "xmin",
            "D",
            "lambda_max",
            "num_pl_spikes",
            "stable_rank",
            "log_norm",
            "log_spectral_norm",
            "alpha_weighted",
            "log_alpha_norm",
            "mp_sigma",
            "mp_lambda_plus",
            "num_spikes",
            "mp_softrank",
            "entropy",
            "num_evals",
        ):
            assert key in record


def test_randomize_is_seeded_and_finds_correlation_traps() -> None:
    rng = np.random.default_rng(10)
    gaussian = rng.standard_normal((400, 200))
    options = AnalysisOptions(randomize=True, seed=3)
    first, again = measure(gaussian, options), measure(gaussian, options)
    other = measure(gaussian, dataclasses.replace(options, seed=4))
    assert first.rand_distance == again.rand_distance and first.rand_lambda_max == again.rand_lambda_max
    assert first.rand_distance != other.rand_distance
    assert first.num_traps == 0
    assert first.rand_mp_sigma == pytest.approx(1.0, abs=0.02)
    # A few huge entries survive the shuffle as outliers of the shuffled ESD: correlation traps.
    trapped = gaussian.copy()
    trapped[rng.integers(0, 400, 3), rng.integers(0, 200, 3)] = 60.0
    assert (measure(trapped, options).num_traps or 0) >= 1
    assert measure(gaussian).rand_distance is None


def test_clip_xmax_removes_fingers() -> None:
    # An MP bulk plus three isolated large eigenvalues: the fingers pull xmin up to a short steep tail
    # (alpha 6.3); clipping exactly those three restores the bulk-edge tail (alpha 4.0).
    rng = np.random.default_rng(2)
    G = rng.standard_normal((600, 300)) / np.sqrt(600)
    evals = np.concatenate([np.linalg.eigvalsh(G.T @ G), [4.0, 4.5, 5.0]])
    W = with_spectrum(rng, 700, np.sqrt(np.maximum(evals, 0.0)))
    m = measure(W, AnalysisOptions(fix_fingers=FixFingers.CLIP_XMAX))
    assert m.num_fingers == 3
    assert m.raw_alpha == pytest.approx(6.287, abs=1e-3)
    assert m.alpha == pytest.approx(4.022, abs=1e-3)
    assert m.raw_alpha == measure(W).alpha
    assert measure(W, AnalysisOptions(fix_fingers=FixFingers.CLIP_XMAX, max_fingers=2)).num_fingers == 0


def test_xmin_peak_keeps_xmin_near_the_log_peak() -> None:
    rng = np.random.default_rng(12)
    W = pareto_spectrum(rng, 800, 500, 2.5)
    m = measure(W, AnalysisOptions(fix_fingers=FixFingers.XMIN_PEAK))
    evals = np.linalg.svd(W, compute_uv=False) ** 2
    counts, edges = np.histogram(np.log10(evals), bins=100)
    peak = 10 ** edges[np.argmax(counts)]
    assert m.xmin is not None and 0.95 * peak <= m.xmin <= 1.5 * peak


def test_truncated_power_law_reports_alpha_and_lambda() -> None:
    rng = np.random.default_rng(13)
    W = pareto_spectrum(rng, 500, 400, 2.5)
    pl = measure(W)
    tpl = measure(W, AnalysisOptions(fit=FitMethod.TRUNCATED_POWER_LAW))
    assert tpl.Lambda is not None and tpl.Lambda >= 0.0
    assert tpl.tpl_log_likelihood_ratio is not None and tpl.tpl_log_likelihood_ratio >= 0.0
    assert tpl.tpl_p_value is not None and 0.0 <= tpl.tpl_p_value <= 1.0
    assert tpl.xmin == pl.xmin and tpl.D == pl.D  # same tail, xmin from the power-law scan
    assert pl.Lambda is None and pl.tpl_p_value is None


def test_detx_and_delta_lambda_min() -> None:
    rng = np.random.default_rng(14)
    m = measure(pareto_spectrum(rng, 600, 400, 2.2))
    assert m.detX_num is not None and 0 < m.detX_num <= 400
    assert m.delta_lambda_min == pytest.approx((m.xmin or 0.0) - (m.detX_lambda_min or 0.0), rel=1e-12)
    evals = np.sort(
        np.linalg.svd(pareto_spectrum(np.random.default_rng(14), 600, 400, 2.2), compute_uv=False) ** 2
    )
    rescaled = evals * evals.size / evals.sum()
    top = rescaled[-m.detX_num :]
    assert np.prod(top) < 1.0 <= np.prod(top[1:])  # the smallest top set whose product drops below 1


def test_xmax_is_read_on_the_reports_scale_and_bounds_the_fit() -> None:
    rng = np.random.default_rng(15)
    W = pareto_spectrum(rng, 600, 400, 2.5)
    evals = np.sort(np.linalg.svd(W, compute_uv=False) ** 2)
    xmax = float(evals[-20])  # leave out the 19 largest eigenvalues
    plain = measure(W, AnalysisOptions(xmax=xmax * 1.000001))
    per_n = measure(W, AnalysisOptions(xmax=xmax * 1.000001 / 600, normalization=Normalization.PER_N))
    assert plain.xmax == pytest.approx(xmax * 1.000001, rel=1e-12)
    assert per_n.alpha == pytest.approx(plain.alpha, rel=1e-12)
    assert per_n.xmax == pytest.approx((plain.xmax or 0.0) / 600, rel=1e-12)
    assert plain.num_fit_evals == 381 and plain.xmin is not None and plain.xmin < xmax
    unbounded = measure(W)
    assert unbounded.xmax == pytest.approx(evals[-1], rel=1e-9)
    assert plain.alpha != unbounded.alpha
