"""Power-law fit of an ESD tail: Clauset MLE for alpha, xmin by minimum KS distance over every candidate.

This is weightwatcher 0.7.7's default fit (`WW_powerlaw.WWFit.fit_power_law_standard`, reference §3.2),
computed exactly but without its Python loop per candidate:

* every candidate xmin_i = x_i (each sorted value except the largest, duplicates kept) gets the continuous
  MLE alpha_i = 1 + n_i / sum_{j>=i} ln(x_j / x_i) [CSN eq. 3.5, no bias correction], read off reverse
  cumulative sums of ln x in O(n);
* its KS distance D_i = max_{j>=i} |1 - (x_j/x_i)^(1-alpha_i) - (j-i)/n_i| (the one-sided empirical CDF steps
  weightwatcher and `powerlaw` use) is evaluated for blocks of candidates at once, as a (block x n) array
  whose size is capped, so the work is O(n^2) and the memory O(n);
* the chosen candidate is the first argmin of D, as `np.argmin` picks it in weightwatcher.

Before the exact pass, a lower bound of every D_i is taken on a strided subset of the j's (a max over fewer
terms can only be smaller, and the terms are computed by the same code, so the bound holds in floating
point, up to the last-bit differences that vectorised libm routines may show, which a relative slack of
1e-12 covers); candidates whose bound already exceeds the best exact D cannot win and are not evaluated in
full. The answer is the full scan's, at a fraction of the cost for large n.

Deliberate differences from weightwatcher, all documented in docs/ and in the tests:
* n < 20: weightwatcher 0.7.7 switches to `fit_powerlaw_smallN`, whose J criterion is then overwritten by
  argmin D while alpha stays bias-corrected (reference §3.3, a bug). We keep the standard estimator and flag
  the fit as low-confidence instead (`PowerLawFit.low_confidence`).
* A candidate whose tail has no spread (all values equal, or equal to within 1e-12 relative: rounding) has no
  MLE; weightwatcher gives alpha = inf (or ~1e15 from rounding) and a finite D there, we exclude it.
* `xmax` bounds the model, not just the data: the fitted density is the power law normalised on
  [xmin, xmax] (CSN §2, the `powerlaw` package's xmax), whose MLE solves a one-dimensional equation that we
  solve for all candidates at once by bisection. weightwatcher's `WWFit(xmax=...)` only drops the data above
  xmax and fits an unbounded law, which biases alpha upward.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Tails with fewer points than this get weightwatcher 0.7.7's small-n treatment there (SMALL_N_CUTOFF);
# here they get the standard fit with a low-confidence flag.
SMALL_N_CUTOFF = 20
# Relative differences below this are rounding, not spread: eigenvalues carry absolute errors of about
# M eps64 lambda_max (inspector/science/eigen.py), 1e-12 relative for M up to ~10^3.
RESOLUTION = 1e-12
# Elements of one (candidates x points) block: 2^20 float64s = 8 MiB per temporary array.
_BLOCK_ELEMENTS = 1 << 20
#: The truncated power law's exponent is searched in these bounds (powerlaw's Truncated_Power_Law: alpha > 1);
#: a fit that ends on one is not a measured exponent, and reports mark it.
TPL_ALPHA_BOUNDS = (1.0 + 1e-9, 50.0)
# Stride of the subset of points used for the lower bounds of D (see the module docstring).
_BOUND_STRIDE = 16
# Slack on the bounds, against last-bit differences between SIMD and scalar exp in numpy.
_BOUND_SLACK = 1e-12
# Candidates evaluated exactly first, to get a good upper bound on min D.
_FIRST_EXACT = 8
# Below this many candidates the bound pass costs more than it saves.
_PRUNE_MIN_N = 128


@dataclass(frozen=True, slots=True)
class PowerLawFit:
    """A fitted power-law tail.

    Attributes:
        alpha: the exponent of p(x) ~ x^-alpha on [xmin, xmax].
        xmin: start of the tail (one of the data values).
        xmax: the largest value fitted (the bound of the model when `bounded`).
        D: Kolmogorov-Smirnov distance between the tail's empirical CDF and the fitted CDF.
        sigma: standard error of alpha, (alpha - 1) / sqrt(n_tail) [CSN eq. 3.6].
        n_tail: data values >= xmin that were fitted.
        n_data: values the xmin search ran over.
        bounded: whether the model was normalised on [xmin, xmax] (an `xmax` was given).
        low_confidence: fewer than SMALL_N_CUTOFF values were fitted.
    """

    alpha: float
    xmin: float
    xmax: float
    D: float
    sigma: float
    n_tail: int
    n_data: int
    bounded: bool = False
    low_confidence: bool = False


def fit_power_law(
    data: npt.ArrayLike,
    *,
    xmax: float | None = None,
    xmin_range: tuple[float, float] | None = None,
    resolution: float = RESOLUTION,
) -> PowerLawFit | None:
    """Fit a continuous power law to positive data: MLE alpha, xmin by minimum KS distance.

    Args:
        data: positive values (the ESD above the fit threshold); sorted here.
        xmax: if given, only values <= xmax are fitted, with the law normalised on [xmin, xmax].
        xmin_range: if given, only candidates xmin with lo <= xmin <= hi are considered (`xmin_peak`).
        resolution: relative differences below this are rounding: a candidate whose whole tail lies within it
            of xmin has no spread and is not fitted (see `RESOLUTION`).

    Returns:
        The fit, or None when no candidate admits one (fewer than 2 values, or no spread).
    """
    x = np.sort(np.asarray(data, dtype=np.float64))
    if xmax is not None:
        x = x[x <= xmax]
    n_data = x.size
    if n_data < 2 or not x[0] > 0.0:
        return None
    # ln x relative to the largest value: the sums below then stay small for short tails, where the
    # cancellation in sum ln x_j - n ln x_i would otherwise cost the most digits.
    logx = np.log(x) - np.log(x[-1])
    candidates = np.arange(n_data - 1)
    n_tail = (n_data - candidates).astype(np.float64)
    suffix = np.cumsum(logx[::-1])[::-1]  # suffix[i] = sum_{j>=i} ln(x_j / x_max)
    spread = suffix[:-1] - n_tail * logx[:-1]  # sum_{j>=i} ln(x_j / x_i) >= 0
    if xmax is None:
        with np.errstate(divide="ignore"):
            beta = n_tail / spread  # alpha - 1
        upper = None
    else:
        upper = np.log(xmax) - np.log(x[-1]) - logx[:-1]  # ln(xmax / x_i)
        beta = _bounded_mle_beta(spread / n_tail, upper)
    # A tail whose values all lie within the eigensolvers' resolution of its xmin has no spread to fit: its
    # "alpha" would be rounding noise (an orthogonal matrix's flat spectrum gives alpha ~ 1e15).
    valid = np.isfinite(beta) & (beta > 0.0) & (logx[:-1] < -resolution)
    if xmin_range is not None:
        lo, hi = xmin_range
        valid &= (x[:-1] >= lo) & (x[:-1] <= hi)
    if not valid.any():
        return None
    D = _ks_distances(logx, beta, upper, valid)
    best = int(np.argmin(D))
    alpha = 1.0 + float(beta[best])
    n_best = n_data - best
    return PowerLawFit(
        alpha=alpha,
        xmin=float(x[best]),
        xmax=float(x[-1]) if xmax is None else float(xmax),
        D=float(D[best]),
        sigma=(alpha - 1.0) / math.sqrt(n_best),
        n_tail=n_best,
        n_data=n_data,
        bounded=xmax is not None,
        low_confidence=n_data < SMALL_N_CUTOFF,
    )


def _bounded_mle_beta(mean_log: FloatArray, upper: FloatArray) -> FloatArray:
    """beta = alpha - 1 maximising the likelihood of a power law bounded on [x_i, xmax], per candidate.

    With t = ln(x / x_i) and L = ln(xmax / x_i), t follows an exponential law of rate beta truncated to
    [0, L]; its mean g(beta) = 1/beta - L / (e^(beta L) - 1) falls monotonically from L/2 (beta -> 0) to 0,
    and the MLE is the root of g(beta) = mean(t). A root with beta <= 0 (alpha <= 1) is reported as NaN
    (no fit).
    """
    beta = np.full(mean_log.shape, np.nan)
    ok = (mean_log > 0.0) & (mean_log < upper / 2.0)
    m, L = mean_log[ok], upper[ok]
    lo = np.zeros_like(m)
    hi = 1.0 / m  # g(1/m) < m since g(beta) < 1/beta
    for _ in range(200):  # bisection to machine precision: at most ~1100 halvings are ever useful
        mid = 0.5 * (lo + hi)
        above = _truncated_exp_mean(mid, L) > m
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
        if np.all(hi - lo <= 4 * np.finfo(np.float64).eps * hi):
            break
    beta[ok] = 0.5 * (lo + hi)
    return beta


def _truncated_exp_mean(beta: FloatArray, L: FloatArray) -> FloatArray:
    """Mean of an exponential law of rate beta truncated to [0, L]: 1/beta - L / expm1(beta L)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        value = 1.0 / beta - L / np.expm1(beta * L)
    return np.where(beta * L < 1e-8, L / 2.0 - beta * L * L / 12.0, value)


def _ks_terms(
    logx: FloatArray,
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    beta: FloatArray,
    upper: FloatArray | None,
) -> FloatArray:
    """|F_fit(x_j) - (j - i)/n_i| for candidates `rows` (i) and points `cols` (j); 0 where j < i."""
    n_data = logx.size
    t = logx[cols][None, :] - logx[rows][:, None]  # ln(x_j / x_i)
    steps = cols[None, :] - rows[:, None]
    n_tail = (n_data - rows).astype(np.float64)[:, None]
    b = beta[rows][:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        # (x_j/x_i)^(1 - alpha) = exp(-beta ln(x_j/x_i))
        fitted = (
            -np.expm1(-b * t) if upper is None else np.expm1(-b * t) / np.expm1(-b * upper[rows][:, None])
        )
    terms = np.abs(fitted - steps / n_tail)
    terms[steps < 0] = 0.0
    return terms


def _ks_distances(
    logx: FloatArray, beta: FloatArray, upper: FloatArray | None, valid: npt.NDArray[np.bool_]
) -> FloatArray:
    """D_i for every valid candidate (exactly), +inf for invalid ones and for those proven unable to win."""
    n_cand = beta.size
    D = np.full(n_cand, np.inf)
    todo = np.flatnonzero(valid)
    if n_cand >= _PRUNE_MIN_N:
        # Lower bounds on a strided subset of points; the few candidates with the smallest bounds are
        # evaluated exactly, and then only the candidates whose bound does not exceed the best D so far.
        subset = np.arange(0, logx.size, _BOUND_STRIDE)
        if subset[-1] != logx.size - 1:  # (not np.unique: it imports numpy.ma, 50 ms of start-up)
            subset = np.append(subset, logx.size - 1)
        bounds = _block_max(logx, todo, subset, beta, upper)
        first = np.sort(todo[np.argsort(bounds, kind="stable")[:_FIRST_EXACT]])
        D[first] = _block_max(logx, first, np.arange(first[0], logx.size), beta, upper)
        best = float(D[first].min())
        rest = todo[(bounds <= best * (1.0 + _BOUND_SLACK)) & ~np.isin(todo, first)]
        if rest.size:
            D[rest] = _block_max(logx, rest, np.arange(rest[0], logx.size), beta, upper)
        return D
    D[todo] = _block_max(logx, todo, np.arange(todo[0], logx.size), beta, upper)
    return D


def _block_max(
    logx: FloatArray,
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    beta: FloatArray,
    upper: FloatArray | None,
) -> FloatArray:
    """max_j of the KS terms over `cols` for each candidate in `rows`, in blocks of bounded size."""
    out = np.empty(rows.size)
    per_block = max(1, _BLOCK_ELEMENTS // max(1, cols.size))
    for start in range(0, rows.size, per_block):
        block = rows[start : start + per_block]
        # Points left of the block's first candidate contribute nothing; dropping them keeps blocks of
        # late candidates (short tails) cheap.
        block_cols = cols[cols >= block[0]]
        out[start : start + block.size] = _ks_terms(logx, block, block_cols, beta, upper).max(axis=1)
    return out


def count_at_least(evals: npt.NDArray[Any], threshold: float) -> int:
    """Number of eigenvalues >= threshold (weightwatcher's num_pl_spikes: evals >= xmin)."""
    return int(np.count_nonzero(np.asarray(evals) >= threshold))


@dataclass(frozen=True, slots=True)
class TruncatedPowerLawFit:
    """p(x) ~ x^-alpha exp(-Lambda x) on [xmin, xmax] (xmax = inf: unbounded), fitted by maximum likelihood.

    Attributes:
        alpha, Lambda: the exponent and the exponential cutoff rate (Lambda >= 0; 0 is a plain power law).
        log_likelihood_ratio: ln L_TPL - ln L_PL on the same tail (>= 0: the models are nested).
        p_value: chi-square(1) p-value of 2 * log_likelihood_ratio (CSN §5; `powerlaw`'s nested test).
    """

    alpha: float
    Lambda: float
    log_likelihood_ratio: float
    p_value: float


def fit_truncated_power_law(
    tail: npt.ArrayLike, xmin: float, xmax: float | None = None
) -> TruncatedPowerLawFit:
    """Maximum-likelihood truncated power law on the values in [xmin, xmax], compared with the power law.

    The xmin comes from the power-law scan (`fit_power_law`), as CSN §5 requires for a likelihood-ratio test:
    both models are fitted to the same tail. (weightwatcher's `fit='TPL'` searches xmin with the TPL itself
    through the `powerlaw` package, a path that fails with powerlaw >= 2.0, reference §3.4.) Parameters are
    alpha >= 1 and Lambda >= 0, as in `powerlaw`'s Truncated_Power_Law.
    """
    import scipy.optimize  # lazily: only --fit tpl needs it (start-up time)

    x = np.sort(np.asarray(tail, dtype=np.float64))
    x = x[x >= xmin]
    if xmax is not None:
        x = x[x <= xmax]
    n = x.size
    u = x / xmin
    log_u_sum = float(np.log(u).sum())
    u_sum = float(u.sum())
    s_max = math.inf if xmax is None else math.log(xmax / xmin)

    def negative_log_likelihood(params: FloatArray) -> tuple[float, FloatArray]:
        # With u = x / xmin and c = Lambda * xmin:
        #   ln L = -alpha sum ln u - c sum u - n ln I(alpha, c) + const,
        #   I = integral_1^umax u^-alpha e^(-c u) du = e^-c J,
        #   J = integral_0^smax exp((1-alpha) s - c (e^s - 1)) ds.
        alpha, c = float(params[0]), float(params[1])
        J, mean_s, mean_u = _tpl_moments(alpha, c, s_max)
        value = alpha * log_u_sum + c * u_sum + n * (math.log(J) - c)
        # d ln I / d alpha = -<ln u>, d ln I / d c = -<u> under the fitted law.
        # An infinite <u> (alpha <= 2 with no cutoff) means the likelihood falls steeply as Lambda leaves 0:
        # a huge finite slope keeps L-BFGS-B's arithmetic finite and moves it the right way.
        gradient = np.array([log_u_sum - n * mean_s, u_sum - n * min(mean_u, 1e300)])
        return value, gradient

    pl_beta = (
        n / log_u_sum
        if xmax is None
        else float(_bounded_mle_beta(np.array([log_u_sum / n]), np.array([s_max]))[0])
    )
    pl_alpha = 1.0 + pl_beta
    pl_nll, _ = negative_log_likelihood(np.array([pl_alpha, 0.0]))
    best = (pl_nll, pl_alpha, 0.0)
    # Start from the power law and from a cutoff at the tail's mean (powerlaw's initial Lambda = 1/mean(x)).
    for start in ((pl_alpha, 0.0), (max(1.0 + 1e-6, pl_alpha - 0.5), xmin / float(x.mean()))):
        result = scipy.optimize.minimize(
            negative_log_likelihood,
            np.array(start),
            jac=True,
            method="L-BFGS-B",
            bounds=[TPL_ALPHA_BOUNDS, (0.0, None)],
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 500},
        )
        if result.fun < best[0]:
            best = (float(result.fun), float(result.x[0]), float(result.x[1]))
    nll, alpha, c = best
    ratio = max(0.0, pl_nll - nll)
    return TruncatedPowerLawFit(
        alpha=alpha, Lambda=c / xmin, log_likelihood_ratio=ratio, p_value=math.erfc(math.sqrt(ratio))
    )


def _tpl_moments(alpha: float, c: float, s_max: float) -> tuple[float, float, float]:
    """J = integral_0^smax w(s) ds with w(s) = exp((1-alpha) s - c (e^s - 1)), and <s>, <e^s> under w / J."""

    def log_weight(s: float) -> float:
        # c * expm1(s) overflows past s ~ 709; the weight is 0 there anyway when c > 0.
        if c == 0.0:
            return (1.0 - alpha) * s
        return (1.0 - alpha) * s - (c * math.expm1(s) if s < 700.0 else math.inf)

    def weight(s: float) -> float:
        return math.exp(log_weight(s))

    if c == 0.0 and math.isinf(s_max):
        # The plain power law on [1, inf): closed forms, and <u> = <x / xmin> is infinite for alpha <= 2
        # (quadrature would overflow there).
        beta = alpha - 1.0
        return 1.0 / beta, 1.0 / beta, (beta / (beta - 1.0) if beta > 1.0 else math.inf)

    import scipy.integrate

    def integral(function: Callable[[float], float]) -> float:
        return float(scipy.integrate.quad(function, 0.0, s_max, epsabs=0.0, epsrel=1e-12, limit=200)[0])

    with warnings.catch_warnings():
        # Near-flat or steep weights make quad doubt its own accuracy; the optimiser only needs a
        # consistent objective, and a warning on stderr would break the one-line-errors contract.
        warnings.simplefilter("ignore", scipy.integrate.IntegrationWarning)
        J = integral(weight)
        mean_s = integral(lambda s: s * weight(s)) / J
        try:
            mean_u = integral(lambda s: math.exp(s + log_weight(s))) / J
        except OverflowError:
            mean_u = math.inf
    return J, mean_s, mean_u
