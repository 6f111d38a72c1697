"""The MP fit against random-matrix theory: the law, Gaussian matrices, the Tracy-Widom scale, spikes."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
import scipy.integrate
from sklearn.neighbors import KernelDensity

from inspector.options import MPMethod, SpikeRule
from inspector.science.mp import fit_mp, linear_kde, mp_cdf, mp_edges, mp_median, mp_pdf


def gaussian_evals(rng: np.random.Generator, N: int, M: int) -> npt.NDArray[np.float64]:
    """Eigenvalues of X = W^T W / N for W with i.i.d. N(0, 1) entries: MP(Q = N/M, sigma^2 = 1)."""
    W = rng.standard_normal((N, M))
    return np.maximum(np.linalg.eigvalsh(W.T @ W), 0.0) / N


@pytest.mark.parametrize("Q", [1.0, 2.0, 4.0, 10.0])
def test_mp_density_integrates_to_one_and_cdf_matches_it(Q: float) -> None:
    a, b = mp_edges(Q)
    total, _ = scipy.integrate.quad(lambda x: float(mp_pdf(np.array([x]), Q)[0]), a, b, limit=400)
    assert total == pytest.approx(1.0, abs=1e-6)
    assert mp_cdf(b, Q) == pytest.approx(1.0, abs=1e-12)
    assert mp_cdf(a, Q) == 0.0
    mid = (a + b) / 2.0
    direct, _ = scipy.integrate.quad(lambda x: float(mp_pdf(np.array([x]), Q)[0]), a, mid, limit=400)
    assert mp_cdf(mid, Q) == pytest.approx(direct, abs=1e-6)


def test_mp_median_against_a_large_gaussian_sample() -> None:
    rng = np.random.default_rng(0)
    for Q in (1.0, 2.0, 4.0):
        evals = np.concatenate([gaussian_evals(rng, int(300 * Q), 300) for _ in range(3)])
        assert mp_cdf(mp_median(Q), Q) == pytest.approx(0.5, abs=1e-12)
        assert mp_median(Q) == pytest.approx(float(np.median(evals)), rel=0.02)


@pytest.mark.parametrize(("N", "M"), [(600, 300), (400, 100), (300, 300)])
@pytest.mark.parametrize("method", [MPMethod.QUANTILE, MPMethod.KDE])
def test_gaussian_matrices_fit_sigma_one_and_have_no_spikes(N: int, M: int, method: MPMethod) -> None:
    rng = np.random.default_rng(N + M)
    evals = gaussian_evals(rng, N, M)
    fit = fit_mp(evals * 7.5, Q=N / M, M=M, method=method)  # any scale: the fit is on the mean-1 scale
    assert fit is not None
    assert fit.sigma == pytest.approx(1.0, abs=0.05 if method == MPMethod.KDE else 0.01)
    assert fit.num_spikes == 0
    # lambda_+ in the caller's units, near the largest eigenvalue (within a few TW scales).
    assert abs(fit.lambda_plus - 7.5 * evals[-1]) < 6 * fit.tw_scale + 0.05 * fit.lambda_plus
    assert fit.softrank == pytest.approx(fit.lambda_plus / (7.5 * evals[-1]), rel=1e-12)


def test_false_spikes_in_gaussian_matrices_are_as_rare_as_the_margin_says() -> None:
    # lambda_+ + 2 s_TW is about the TW1 99th percentile: ~1% of pure-noise matrices show one "spike" there
    # (a little more with a fitted edge). weightwatcher's sqrt(s_TW) margin is ~4x wider at this size.
    rng = np.random.default_rng(42)
    counts = {SpikeRule.TRACY_WIDOM: 0, SpikeRule.WEIGHTWATCHER: 0}
    for _ in range(40):
        evals = gaussian_evals(rng, 384, 192)
        for rule in counts:
            fit = fit_mp(evals, Q=2.0, M=192, spike_rule=rule)
            assert fit is not None
            counts[rule] += fit.num_spikes
    assert counts[SpikeRule.TRACY_WIDOM] <= 3
    assert counts[SpikeRule.WEIGHTWATCHER] == 0


def test_tracy_widom_scale_matches_the_fluctuations_of_lambda_max() -> None:
    # (lambda_max - lambda_+) / s_TW follows TW1 (mean -1.21, sd 1.27) up to finite-size shifts; with the
    # true sigma = 1 the statistic's spread measures s_TW itself.
    rng = np.random.default_rng(1)
    N, M = 400, 200
    q = 1.0 / math.sqrt(N / M)
    lambda_plus = (1.0 + q) ** 2
    s_tw = q * (1.0 + q) ** (4.0 / 3.0) * M ** (-2.0 / 3.0)
    stats = np.array([(gaussian_evals(rng, N, M)[-1] - lambda_plus) / s_tw for _ in range(60)])
    assert -3.0 < stats.mean() < 0.5
    assert 0.7 < stats.std() < 2.0
    fit = fit_mp(gaussian_evals(rng, N, M), Q=N / M, M=M)
    assert fit is not None
    # The fitted scale is the same formula at the fitted sigma (close to 1), in the caller's units.
    assert fit.tw_scale == pytest.approx(
        s_tw * fit.sigma**2 * (fit.lambda_plus / (fit.sigma * (1 + q)) ** 2), rel=1e-9
    )


def test_a_planted_spike_above_the_bbp_threshold_is_counted() -> None:
    rng = np.random.default_rng(2)
    N, M = 800, 400
    Q = N / M
    u = rng.standard_normal(N)
    v = rng.standard_normal(M)
    strength = 2.0 * Q ** (-0.25)  # twice the BBP threshold: the outlier sits ~55% above lambda_+
    W = rng.standard_normal((N, M)) + strength * math.sqrt(N) * np.outer(
        u / np.linalg.norm(u), v / np.linalg.norm(v)
    )
    evals = np.linalg.eigvalsh(W.T @ W) / N
    for method in (MPMethod.QUANTILE, MPMethod.KDE):
        fit = fit_mp(evals, Q=Q, M=M, method=method)
        assert fit is not None and fit.num_spikes == 1
        assert fit.spike_cutoff < evals[-1]


def test_linear_kde_equals_sklearns() -> None:
    rng = np.random.default_rng(3)
    samples = rng.gamma(2.0, 0.5, size=500)
    grid = np.linspace(0.0, samples.max() + 0.5, 1000)
    ours = linear_kde(samples, grid, 0.1)
    theirs = np.exp(
        KernelDensity(kernel="linear", bandwidth=0.1).fit(samples[:, None]).score_samples(grid[:, None])
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_quarter_circle_fit_for_square_matrices() -> None:
    rng = np.random.default_rng(4)
    evals = gaussian_evals(rng, 500, 500)
    fit = fit_mp(evals, Q=1.0, M=500, method=MPMethod.KDE)
    assert fit is not None
    assert fit.sigma == pytest.approx(1.0, abs=0.05)
    assert fit.lambda_minus == 0.0
    assert fit.lambda_plus == pytest.approx(4.0 * fit.sigma**2 * float(evals.mean()), rel=1e-12)


def test_empty_or_zero_spectrum_has_no_fit() -> None:
    assert fit_mp(np.zeros(10), Q=2.0, M=10) is None
    assert fit_mp(np.array([]), Q=2.0, M=10) is None
