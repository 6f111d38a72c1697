"""Marchenko-Pastur (MP) fit of an ESD's bulk, the Tracy-Widom (TW) edge margin, and spike counts.

All fitting happens on the ESD rescaled to mean eigenvalue 1 (x = lambda * n / sum(lambda)), as
weightwatcher's `mp_fit` does (reference §5.1): for an i.i.d. matrix this makes sigma^2 = 1, so `sigma`
is scale-free and comparable across layers. The edge is reported back in the caller's units.

Two ways to fit sigma (`MPMethod`):
* QUANTILE (default): sigma^2 is the least-squares match of the bulk's 5%, 10%, ..., 75% quantiles to those
  of MP(Q, sigma^2 = 1) (the law scales with sigma^2). Like the median fit of the papers' hand fits it ignores
  spikes and a tail above the 75% quantile; using 15 quantiles instead of one cuts the scatter of sigma^2 on
  Gaussian matrices about threefold (0.33% instead of 0.86% at 384 x 192), which matters because the TW margin
  is only ~1.5% of lambda_+ there. The "bulk" is the ESD without its outliers: the fit is repeated on the
  eigenvalues below the TW cutoff of the previous round until the outlier count stops changing (at most
  TRIM_ROUNDS rounds, at most TRIM_MAX_FRACTION of the eigenvalues set aside). This is the papers' hand fit
  (drop the k spikes, fit the rest) made automatic: 15 strong spikes among 64 eigenvalues would otherwise put
  the 75% quantile of the ESD at the bulk's 98% and inflate sigma^2 by a quarter.
* KDE: weightwatcher 0.7.7's `fit_density_with_range` + `resid_mp`: a linear-kernel KDE (bandwidth 0.1) on
  1000 grid points over [0, max + 0.5], grid points with density <= 0.01 dropped, `scipy.optimize.brute` over
  sigma in [0.05, 2) * sigma_0 in steps of 0.01 * sigma_0 with a Nelder-Mead polish, and the 1000-per-point
  penalty for implausible edges. We build the KDE once (weightwatcher rebuilds it ~200 times) with our own
  exact linear-kernel sum, so sklearn is not needed. For Q = 1 the quarter-circle law of the singular values
  is fitted, with its support [0, 2 sigma]; weightwatcher's `quarter_circle_fun` uses sqrt(4 - nu^2) for every
  sigma (its density then integrates to 1/sigma^2), a bug we fix.

The Tracy-Widom scale and cutoff are defined here once (`tracy_widom_scale`, `MPFit.tw_cutoff`): with the
exact TW scale of the largest eigenvalue of a real Wishart matrix (Johnstone 2001, Ann. Statist. 29),
rescaled to X = W^T W / N with variance sigma^2,
    s_TW = sigma^2 Q^(-1/2) (1 + Q^(-1/2))^(4/3) M^(-2/3),
an eigenvalue above lambda_+ + TW_MARGIN s_TW (TW_MARGIN = 2, about the TW1 99th percentile 2.02) is an
outlier. The phase classifier always uses that cutoff. The spike count `num_spikes` follows `SpikeRule`:
* TRACY_WIDOM (default): the same cutoff;
* WEIGHTWATCHER: above lambda_+ + sqrt(Q^(-1/2) lambda_+^(2/3) M^(-2/3)), weightwatcher's margin, which treats
  the TW scale as a variance and is of order M^(-1/3), far wider.

`bulk_ks` measures how well the fitted law describes the bulk, and `bulk_ks_null` says how large that distance
is on pure-noise matrices of the same shape (a table computed by benchmarks/tabulate_bulk_ks_null.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inspector.options import MPMethod, SpikeRule

FloatArray = npt.NDArray[np.float64]

# weightwatcher's KDE settings (RMT_Util.resid_mp, mp_fit): bandwidth, grid size, density floor, penalty.
KDE_BANDWIDTH = 0.1
KDE_GRID_POINTS = 1000
KDE_DENSITY_FLOOR = 0.01
KDE_PENALTY = 1000.0
# Quantiles matched by the QUANTILE fit: the bulk below any plausible tail or spikes.
FIT_QUANTILES = np.linspace(0.05, 0.75, 15)
# Margin of the TW cutoff, in units of s_TW: about the TW1 99th percentile (2.02; Tracy & Widom 1996).
TW_MARGIN = 2.0
# Trimmed quantile fit: rounds of "fit, set the outliers aside, refit", and the largest share set aside (a
# spectrum with more than half of its eigenvalues above the fitted edge has no MP bulk to speak of).
TRIM_ROUNDS = 20
TRIM_MAX_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class MPFit:
    """The MP bulk of an ESD.

    Attributes:
        sigma: the bulk's sigma in mean-1 units (about 1 for an i.i.d. random matrix).
        lambda_plus: upper bulk edge sigma^2 (1 + Q^-1/2)^2, in the caller's eigenvalue units.
        lambda_minus: lower bulk edge sigma^2 (1 - Q^-1/2)^2, in the caller's units.
        tw_scale: the Tracy-Widom scale s_TW at the edge, in the caller's units.
        tw_cutoff: lambda_plus + TW_MARGIN * tw_scale, in the caller's units: the outlier cutoff.
        spike_cutoff: the edge plus the margin of the spike rule, in the caller's units.
        num_spikes: eigenvalues above `spike_cutoff`.
        softrank: lambda_plus / lambda_max (the MP soft rank).
    """

    sigma: float
    lambda_plus: float
    lambda_minus: float
    tw_scale: float
    tw_cutoff: float
    spike_cutoff: float
    num_spikes: int
    softrank: float


def fit_mp(
    evals: npt.ArrayLike,
    *,
    Q: float,
    M: int,
    method: MPMethod = MPMethod.QUANTILE,
    spike_rule: SpikeRule = SpikeRule.TRACY_WIDOM,
) -> MPFit | None:
    """Fit the MP law to an ESD and count the spikes above its edge.

    Args:
        evals: the eigenvalues (any scale; the result's edges come back in it).
        Q: aspect ratio N/M >= 1 of the matrices (per slice for pooled conv slices: each slice is MP(Q)).
        M: the smaller dimension (per slice), which sets the TW scale.
        method: how sigma is fitted.
        spike_rule: the margin above the edge beyond which an eigenvalue is a spike.

    Returns:
        The fit, or None when the ESD has no positive mass or the fit does not converge to a finite sigma.
    """
    lam = np.sort(np.asarray(evals, dtype=np.float64))
    total = float(lam.sum())
    if lam.size == 0 or not total > 0.0:
        return None
    unit = total / lam.size  # x = lam / unit has mean 1 (weightwatcher's Wscale^2 = 1 / unit)
    x = lam / unit
    sigma = _trimmed_quantile_sigma(x, Q, M) if method == MPMethod.QUANTILE else _kde_sigma(x, Q)
    if not (math.isfinite(sigma) and sigma > 0.0):
        return None
    q = 1.0 / math.sqrt(Q)
    lambda_plus = (sigma * (1.0 + q)) ** 2
    lambda_minus = (sigma * (1.0 - q)) ** 2
    tw_scale = tracy_widom_scale(sigma**2, Q, M)
    tw_cutoff = lambda_plus + TW_MARGIN * tw_scale
    if spike_rule == SpikeRule.WEIGHTWATCHER:
        cutoff = lambda_plus + math.sqrt(q * lambda_plus ** (2.0 / 3.0) * M ** (-2.0 / 3.0))
    else:
        cutoff = tw_cutoff
    return MPFit(
        sigma=sigma,
        lambda_plus=lambda_plus * unit,
        lambda_minus=lambda_minus * unit,
        tw_scale=tw_scale * unit,
        tw_cutoff=tw_cutoff * unit,
        spike_cutoff=cutoff * unit,
        num_spikes=int(np.count_nonzero(x > cutoff)),
        softrank=lambda_plus / float(x[-1]),
    )


def tracy_widom_scale(sigma2: float, Q: float, M: int) -> float:
    """s_TW = sigma^2 Q^(-1/2) (1 + Q^(-1/2))^(4/3) M^(-2/3): the TW fluctuation scale of lambda_max at the
    MP edge of M eigenvalues with aspect ratio Q and variance sigma^2 (module docstring)."""
    q = 1.0 / math.sqrt(Q)
    return sigma2 * q * math.pow(1.0 + q, 4.0 / 3.0) * math.pow(M, -2.0 / 3.0)


def _quantile_sigma(x: FloatArray, Q: float) -> float:
    """sigma by least squares on quantiles: x_p ~ sigma^2 m_p(Q), so sigma^2 = sum x_p m_p / sum m_p^2."""
    reference = mp_quantiles(Q)
    observed = _sorted_quantiles(x, FIT_QUANTILES)
    return math.sqrt(float(observed @ reference) / float(reference @ reference))


def _trimmed_quantile_sigma(x: FloatArray, Q: float, M: int) -> float:
    """The quantile fit on the bulk: refit without the eigenvalues above the last round's TW cutoff.

    `x` is sorted. The outlier count starts at 0 and is capped at TRIM_MAX_FRACTION of the eigenvalues; the
    rounds stop when it repeats (a fixed point, or a cycle, whose smallest-count member is kept).
    """
    n = x.size
    cap = int(TRIM_MAX_FRACTION * n)
    q = 1.0 / math.sqrt(Q)
    set_aside = 0
    seen: dict[int, float] = {}
    sigma = math.nan
    for _ in range(TRIM_ROUNDS):
        sigma = _quantile_sigma(x[: n - set_aside], Q)
        seen[set_aside] = sigma
        cutoff = (sigma * (1.0 + q)) ** 2 + TW_MARGIN * tracy_widom_scale(sigma**2, Q, M)
        count = min(cap, int(n - np.searchsorted(x, cutoff, side="right")))
        if count in seen:
            return seen[min(count, set_aside)]
        set_aside = count
    return sigma


def _sorted_quantiles(x: FloatArray, p: FloatArray) -> FloatArray:
    """np.quantile's default (linear) quantiles of sorted data, without np.quantile, whose np.unique call
    imports numpy.ma (50 ms of start-up)."""
    position = (x.size - 1) * p
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, x.size - 1)
    return x[below] + (position - below) * (x[above] - x[below])


@functools.lru_cache(maxsize=256)
def mp_quantiles(Q: float) -> FloatArray:
    """The FIT_QUANTILES of MP(Q, sigma^2 = 1)."""
    return _mp_quantile(FIT_QUANTILES, Q)


def mp_median(Q: float) -> float:
    """Median of the MP law with sigma^2 = 1 and aspect ratio Q >= 1."""
    return float(_mp_quantile(np.array([0.5]), Q)[0])


def _mp_quantile(p: FloatArray, Q: float) -> FloatArray:
    """Quantiles of MP(Q, 1): bisection on theta, where the closed-form CDF is monotone (see `mp_cdf`)."""
    lo = np.zeros_like(p)
    hi = np.full_like(p, math.pi)
    for _ in range(60):  # pi / 2^60 ~ 3e-18: theta to full precision
        mid = 0.5 * (lo + hi)
        below = _mp_cdf_theta(mid, Q) < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    a, b = mp_edges(Q)
    theta = 0.5 * (lo + hi)
    return (a + b) / 2.0 - (b - a) / 2.0 * np.cos(theta)


def mp_edges(Q: float, sigma2: float = 1.0) -> tuple[float, float]:
    """(lambda_-, lambda_+) of MP(Q, sigma^2)."""
    q = 1.0 / math.sqrt(Q)
    return sigma2 * (1.0 - q) ** 2, sigma2 * (1.0 + q) ** 2


def mp_pdf(lam: npt.ArrayLike, Q: float, sigma2: float = 1.0) -> FloatArray:
    """MP density Q / (2 pi sigma^2 lambda) sqrt((lambda_+ - lambda)(lambda - lambda_-)); 0 outside."""
    x = np.asarray(lam, dtype=np.float64)
    a, b = mp_edges(Q, sigma2)
    inside = (x > a) & (x < b)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = Q / (2.0 * math.pi * sigma2 * xi) * np.sqrt((b - xi) * (xi - a))
    return out


def mp_cdf(lam: npt.ArrayLike, Q: float) -> FloatArray:
    """MP(Q, sigma^2 = 1) CDF in closed form.

    With y = 1/Q, lambda_+- = (1 +- sqrt(y))^2 and lambda = (1 + y) - 2 sqrt(y) cos(theta), theta in [0, pi],
    integrating the density gives
        F = [2 sqrt(y) sin(theta) + (1 + y) theta - 2 (1 - y) atan2(sqrt(lambda_+) sin(theta/2),
                                                                   sqrt(lambda_-) cos(theta/2))] / (2 pi y),
    which is 0 at theta = 0, 1 at theta = pi, and (theta + sin(theta)) / pi for Q = 1 (the quarter circle).
    """
    x = np.asarray(lam, dtype=np.float64)
    a, b = mp_edges(Q)
    c = np.clip((a + b - 2.0 * x) / (b - a), -1.0, 1.0)  # cos(theta)
    return _mp_cdf_theta(np.arccos(c), Q)


def _mp_cdf_theta(theta: FloatArray, Q: float) -> FloatArray:
    y = 1.0 / Q
    a, b = mp_edges(Q)
    angle = np.arctan2(math.sqrt(b) * np.sin(theta / 2.0), math.sqrt(a) * np.cos(theta / 2.0))
    value = 2.0 * math.sqrt(y) * np.sin(theta) + (1.0 + y) * theta - 2.0 * (1.0 - y) * angle
    return np.asarray(np.clip(value / (2.0 * math.pi * y), 0.0, 1.0), dtype=np.float64)


def linear_kde(samples: FloatArray, grid: FloatArray, bandwidth: float) -> FloatArray:
    """Linear-kernel density (1/(n h)) sum_i max(0, 1 - |g - x_i| / h) at each grid point, exactly.

    The same density as sklearn's `KernelDensity(kernel='linear')` (which weightwatcher calls), in
    O((n + grid) log n) from prefix sums over the sorted samples.
    """
    xs = np.sort(samples)
    prefix = np.concatenate(([0.0], np.cumsum(xs)))
    lo = np.searchsorted(xs, grid - bandwidth, side="right")  # first x_i > g - h
    mid = np.searchsorted(xs, grid, side="right")  # first x_i > g
    hi = np.searchsorted(xs, grid + bandwidth, side="left")  # first x_i >= g + h
    n_left = mid - lo
    n_right = hi - mid
    sum_left = prefix[mid] - prefix[lo]
    sum_right = prefix[hi] - prefix[mid]
    # sum over x_i in (g - h, g]: 1 - (g - x_i)/h ; over (g, g + h): 1 - (x_i - g)/h
    total: FloatArray = (n_left + n_right) - (
        grid * n_left - sum_left + sum_right - grid * n_right
    ) / bandwidth
    return np.maximum(total, 0.0) / (xs.size * bandwidth)


def _kde_sigma(x: FloatArray, Q: float) -> float:
    """weightwatcher's brute-force KDE fit of sigma (module docstring), on eigenvalues or, for Q = 1, on
    singular values against the quarter circle."""
    to_fit = np.sqrt(x) if Q == 1.0 else x
    grid = np.linspace(0.0, float(to_fit.max()) + 0.5, KDE_GRID_POINTS)
    density = linear_kde(to_fit, grid, KDE_BANDWIDTH)
    keep = density > KDE_DENSITY_FLOOR
    xde, yde = grid[keep], density[keep]
    if xde.size == 0:
        return math.nan
    peak = float(xde[int(np.argmax(yde))])
    top = float(xde.max())

    def residual(params: FloatArray) -> float:
        sigma = float(np.asarray(params).reshape(-1)[0])
        if Q == 1.0:
            with np.errstate(invalid="ignore"):
                model = np.nan_to_num(np.sqrt(4.0 * sigma * sigma - xde**2) / (math.pi * sigma * sigma))
            return float(np.sum((model - yde) ** 2))
        a, b = mp_edges(Q, sigma * sigma)
        if b < peak or b > top or a > peak:
            return float(KDE_PENALTY**2 * yde.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            model = np.nan_to_num(Q / (2.0 * math.pi * sigma * sigma * xde) * np.sqrt((b - xde) * (xde - a)))
        return float(np.sum((model - yde) ** 2))

    import scipy.optimize  # lazily: the default path needs no scipy (start-up time)

    # weightwatcher's calc_sigma: the sigma that puts lambda_+ on the largest eigenvalue.
    sigma0 = math.sqrt(float(x.max())) / (1.0 + 1.0 / math.sqrt(Q))
    result = scipy.optimize.brute(
        residual,
        (slice(0.05 * sigma0, 2.0 * sigma0, 0.01 * sigma0),),
        full_output=True,
        finish=scipy.optimize.fmin,
    )
    return float(np.asarray(result[0]).reshape(-1)[0])


def bulk_ks(evals: npt.ArrayLike, fit: MPFit, Q: float) -> float | None:
    """KS distance between the bulk (the eigenvalues up to `fit.tw_cutoff`) and the fitted MP law restricted
    to the same range, renormalised there. None when fewer than 2 eigenvalues are in the bulk.

    `evals` are in the units `fit` was computed in. The distance is the two-sided sup over the steps of the
    empirical CDF, as in `scipy.stats.kstest`.
    """
    lam = np.sort(np.asarray(evals, dtype=np.float64))
    sigma2 = fit.lambda_plus / (1.0 + 1.0 / math.sqrt(Q)) ** 2  # in the caller's units
    bulk = lam[lam <= fit.tw_cutoff] / sigma2
    if bulk.size < 2:
        return None
    model = mp_cdf(bulk, Q) / float(mp_cdf(np.array([fit.tw_cutoff / sigma2]), Q)[0])
    steps = np.arange(1, bulk.size + 1) / bulk.size
    return float(max(np.max(np.abs(steps - model)), np.max(np.abs(steps - 1.0 / bulk.size - model))))


def bulk_ks_null(M: int, Q: float) -> float:
    """The 99th percentile of `bulk_ks` on Gaussian matrices with M eigenvalues and aspect ratio Q.

    Read from the table of `inspector.science._bulk_ks_null` (log-normal fit of the simulated distances per
    grid cell), interpolated bilinearly in (log M, log Q); Q outside the grid is clamped to it, and M beyond
    it follows the power law of the two outermost grid sizes (the distance falls like ~1/M: eigenvalues of
    random matrices are rigid, each within ~log(M)/M of its classical position).
    """
    from inspector.science._bulk_ks_null import KS_LOG_MEAN, KS_LOG_SD, M_GRID, Q_GRID, Z99

    log_m = np.log(np.asarray(M_GRID, dtype=np.float64))
    log_q = np.log(np.asarray(Q_GRID, dtype=np.float64))
    table = np.asarray(KS_LOG_MEAN) + Z99 * np.asarray(KS_LOG_SD)  # log of the 99th percentile
    lq = min(max(math.log(Q), float(log_q[0])), float(log_q[-1]))
    j = min(max(int(np.searchsorted(log_q, lq)) - 1, 0), log_q.size - 2)
    wq = (lq - log_q[j]) / (log_q[j + 1] - log_q[j])
    column = (1.0 - wq) * table[:, j] + wq * table[:, j + 1]
    lm = math.log(M)
    i = min(max(int(np.searchsorted(log_m, lm)) - 1, 0), log_m.size - 2)
    wm = (lm - log_m[i]) / (log_m[i + 1] - log_m[i])  # < 0 or > 1 outside the grid: linear in log-log
    return float(math.exp((1.0 - wm) * column[i] + wm * column[i + 1]))
