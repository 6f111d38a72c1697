"""The power-law fit: known exponents recovered, the pruned scan equal to the full one, invariances, the
bounded (xmax) and truncated (TPL) fits against the `powerlaw` package."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import powerlaw as powerlaw_package
import pytest

from inspector.science import powerlaw
from inspector.science.powerlaw import fit_power_law, fit_truncated_power_law


def pareto_sample(
    rng: np.random.Generator, alpha: float, n: int, xmin: float = 1.0
) -> npt.NDArray[np.float64]:
    """Continuous Pareto p(x) ~ x^-alpha on [xmin, inf), by inversion."""
    return xmin * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def with_bulk(
    rng: np.random.Generator, tail: npt.NDArray[np.float64], n_bulk: int
) -> npt.NDArray[np.float64]:
    """The tail above 1 plus a uniform bulk on [0.05, 1): the xmin search must find where the tail starts."""
    return np.concatenate([tail, rng.uniform(0.05, 1.0, n_bulk)])


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5, 3.5, 5.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_a_known_exponent_within_three_standard_errors(alpha: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = with_bulk(rng, pareto_sample(rng, alpha, 3000), 1500)
    fit = fit_power_law(data)
    assert fit is not None
    # CSN eq. 3.6: the MLE's standard error is (alpha - 1) / sqrt(n_tail).
    assert abs(fit.alpha - alpha) <= 3.0 * (alpha - 1.0) / math.sqrt(fit.n_tail)
    assert fit.sigma == pytest.approx((fit.alpha - 1.0) / math.sqrt(fit.n_tail), rel=1e-12)
    assert fit.n_tail == int(np.count_nonzero(data >= fit.xmin))
    assert not fit.low_confidence


def test_pruned_scan_gives_the_full_scans_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    for alpha in (1.8, 3.0, 6.0):
        data = with_bulk(rng, pareto_sample(rng, alpha, 2500), 2500)
        pruned = fit_power_law(data)
        monkeypatch.setattr(powerlaw, "_PRUNE_MIN_N", 10**9)
        full = fit_power_law(data)
        monkeypatch.undo()
        assert pruned is not None and full is not None
        assert pruned.xmin == full.xmin
        assert pruned.alpha == full.alpha
        assert pruned.D == pytest.approx(full.D, rel=1e-14)  # noqa: SIM300 - D is a field, not a constant


def test_blocks_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    data = with_bulk(rng, pareto_sample(rng, 2.5, 400), 200)
    reference = fit_power_law(data)
    monkeypatch.setattr(powerlaw, "_BLOCK_ELEMENTS", 97)  # many small, ragged blocks
    blocked = fit_power_law(data)
    assert reference is not None and blocked is not None
    assert (blocked.alpha, blocked.xmin) == (reference.alpha, reference.xmin)
    assert blocked.D == pytest.approx(reference.D, rel=1e-14)  # noqa: SIM300 - D is a field, not a constant


def test_scale_invariance() -> None:
    rng = np.random.default_rng(3)
    data = with_bulk(rng, pareto_sample(rng, 2.2, 800), 400)
    base = fit_power_law(data)
    scaled = fit_power_law(data * 1234.5)
    assert base is not None and scaled is not None
    assert scaled.alpha == pytest.approx(base.alpha, rel=1e-11)
    assert scaled.D == pytest.approx(base.D, rel=1e-9, abs=1e-14)  # noqa: SIM300 - D is a field, not a constant
    assert scaled.xmin == pytest.approx(base.xmin * 1234.5, rel=1e-14)
    assert scaled.n_tail == base.n_tail


def test_order_of_the_data_does_not_matter() -> None:
    rng = np.random.default_rng(4)
    data = with_bulk(rng, pareto_sample(rng, 2.8, 300), 100)
    shuffled = rng.permutation(data)
    assert fit_power_law(data) == fit_power_law(shuffled)


def test_no_fit_without_two_distinct_values() -> None:
    assert fit_power_law(np.array([3.0])) is None
    assert fit_power_law(np.array([])) is None
    assert fit_power_law(np.full(50, 2.0)) is None


def test_small_samples_are_fitted_and_flagged() -> None:
    rng = np.random.default_rng(5)
    fit = fit_power_law(pareto_sample(rng, 2.5, 19))
    assert fit is not None and fit.low_confidence
    big = fit_power_law(pareto_sample(rng, 2.5, 20))
    assert big is not None and not big.low_confidence


def test_xmin_range_restricts_the_candidates() -> None:
    rng = np.random.default_rng(6)
    data = with_bulk(rng, pareto_sample(rng, 2.5, 1000), 1000)
    free = fit_power_law(data)
    assert free is not None
    lo, hi = 2.0 * free.xmin, 3.0 * free.xmin
    fit = fit_power_law(data, xmin_range=(lo, hi))
    assert fit is not None and lo <= fit.xmin <= hi
    assert fit.D >= free.D  # a restricted minimum cannot beat the free one
    assert fit_power_law(data, xmin_range=(1e9, 2e9)) is None


def test_bounded_fit_solves_the_bounded_likelihood_equation() -> None:
    rng = np.random.default_rng(9)
    data = pareto_sample(rng, 1.7, 3000)
    xmax = float(np.quantile(data, 0.95))
    fit = fit_power_law(data, xmax=xmax)
    assert fit is not None and fit.bounded and fit.xmax == xmax
    tail = data[(data >= fit.xmin) & (data <= xmax)]
    beta, L = fit.alpha - 1.0, math.log(xmax / fit.xmin)
    # d/d beta of the log-likelihood of the law normalised on [xmin, xmax] vanishes at the MLE.
    mean_t = float(np.mean(np.log(tail / fit.xmin)))
    assert 1.0 / beta - L / math.expm1(beta * L) == pytest.approx(mean_t, rel=1e-10)
    # Fitting the clipped data with an unbounded law overestimates alpha; the bounded law recovers 1.7.
    assert abs(fit.alpha - 1.7) <= 3.0 * 0.7 / math.sqrt(fit.n_tail)


def test_bounded_fit_agrees_with_the_powerlaw_package() -> None:
    rng = np.random.default_rng(5)
    data = np.sort(pareto_sample(rng, 2.5, 2000))
    xmax = float(np.quantile(data, 0.9))
    fit = fit_power_law(data, xmax=xmax)
    assert fit is not None
    # The package fits the bounded law numerically (scipy minimize), to about 1e-5.
    reference = powerlaw_package.Fit(data[data <= xmax], xmin=fit.xmin, xmax=xmax)
    assert fit.alpha == pytest.approx(reference.power_law.alpha, rel=1e-4)
    assert fit.D == pytest.approx(reference.power_law.D, rel=1e-3)  # noqa: SIM300 - D is a field, not a constant


def truncated_sample(rng: np.random.Generator, alpha: float, rate: float, n: int) -> npt.NDArray[np.float64]:
    """x^-alpha exp(-rate x) on [1, inf), by rejection from the Pareto law."""
    out: list[npt.NDArray[np.float64]] = []
    while sum(part.size for part in out) < n:
        x = pareto_sample(rng, alpha, 4 * n)
        out.append(x[rng.random(x.size) < np.exp(-rate * (x - 1.0))])
    return np.concatenate(out)[:n]


def test_truncated_power_law_agrees_with_the_powerlaw_package() -> None:
    rng = np.random.default_rng(3)
    data = truncated_sample(rng, 2.5, 0.05, 3000)
    fit = fit_truncated_power_law(data, 1.0)
    reference = powerlaw_package.Fit(data, xmin=1.0)
    ratio, p_value = reference.distribution_compare("power_law", "truncated_power_law", nested=True)
    # powerlaw 2.0.0's Truncated_Power_Law is fitted numerically to about 1e-5; ours to ~1e-9.
    assert fit.alpha == pytest.approx(reference.truncated_power_law.alpha, rel=1e-3)
    assert fit.Lambda == pytest.approx(reference.truncated_power_law.Lambda, rel=1e-3)
    assert fit.log_likelihood_ratio == pytest.approx(-ratio, rel=1e-4)
    assert fit.p_value == pytest.approx(p_value, rel=1e-3)
    assert fit.p_value < 0.01  # a real cutoff is detected


def test_truncated_power_law_finds_no_cutoff_in_a_power_law() -> None:
    rng = np.random.default_rng(11)
    data = pareto_sample(rng, 2.5, 3000)
    fit = fit_truncated_power_law(data, 1.0)
    pl_alpha = 1.0 + data.size / float(np.log(data).sum())
    assert fit.log_likelihood_ratio >= 0.0
    assert fit.p_value > 0.05
    assert fit.alpha == pytest.approx(pl_alpha, abs=0.1)
    assert fit.Lambda < 0.01
