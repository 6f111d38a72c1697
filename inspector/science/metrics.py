"""Every per-layer HTSR number from one layer's matrices: the ESD, its power-law tail, MP bulk, norms, detX.

`measure_layer` is the one entry point the pipeline calls; `inspector.science.phases.label` then reads the
phase from the metrics it returns. Two eigenvalue scales are in play (PRODUCT.md, "Conventions"):
* weightwatcher's scale, lambda = scale * s^2 (scale = 0.5 for pooled conv slices);
* the report's scale: the same, divided by N under `Normalization.PER_N`. Every eigenvalue-valued number in
  the record (lambda_max, xmin, norms, MP edges...) is on this scale; user thresholds given in eigenvalue
  units (`xmax`, `xmin_max`) are read on it too.

Which eigenvalues the power-law fit sees (`options.fit_cut`):
* RELATIVE (default): those that count towards the matrix rank, above `rank_tolerance(lambda_max, N, dtype)`
  of their own matrix (numpy's matrix_rank rule with the eps of the dtype the weights arrived in). The cut
  moves with the spectrum, so alpha, D, xmin / lambda_max and the phase are the same for c W at any c > 0.
* ABSOLUTE: those above `options.evals_threshold` (1e-5) on weightwatcher's scale, weightwatcher 0.7.7's
  EVALS_THRESH. It drops most of the spectrum of a layer whose weights are small (a 1e-3 x W): alpha then
  depends on the units the weights are stored in. Kept for number-for-number agreement.
Neither depends on `--normalize`.

The formulas of the norm metrics are weightwatcher's `apply_norm_metrics` (reference §4, HTSR_THEORY §6);
what differs, and why, is said where it is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inspector.errors import LayerFailedError
from inspector.options import (
    AnalysisOptions,
    FitCut,
    FitMethod,
    FixFingers,
    MPMethod,
    Normalization,
    SpikeRule,
)
from inspector.records import LayerMetrics
from inspector.science.detx import detx
from inspector.science.eigen import EigenBackend, layer_eigenvalues, rank_tolerance
from inspector.science.esd import log_histogram
from inspector.science.mp import MPFit, fit_mp
from inspector.science.phases import PhaseEvidence, phase_evidence
from inspector.science.powerlaw import (
    RESOLUTION,
    PowerLawFit,
    count_at_least,
    fit_power_law,
    fit_truncated_power_law,
)
from inspector.science.randomize import jensen_shannon_distance, shuffled

FloatArray = npt.NDArray[np.float64]

# weightwatcher's WEAK_RANK_LOSS_TOLERANCE: eigenvalues below this (absolute, its scale) are "weak rank loss".
WEAK_RANK_TOLERANCE = 1e-6
# Scale-free near-zero rule (HTSR_THEORY §3.5 A): lambda < 1e-6 * mean(lambda).
NEAR_ZERO_RELATIVE = 1e-6
# fix_fingers=xmin_peak (weightwatcher fit_powerlaw): bins of the log10 histogram, and the xmin window around
# the peak, [0.95, 1.5] x the left edge of the fullest bin, in linear units.
PEAK_BINS = 100
PEAK_LOW, PEAK_HIGH = 0.95, 1.5
# clip_xmax stops clipping once a clipped fit reaches this alpha (weightwatcher's min_alpha).
FINGERS_MIN_ALPHA = 2.0
# Rounding every weight to its dtype moves each eigenvalue by up to ~2 eps relative (times sigma_max/sigma_i);
# spectra flat to within STORAGE_ROUNDING eps (an orthogonal init stored as float32) have no tail to fit.
STORAGE_ROUNDING = 4.0


def _refuse_degenerate(matrices: Sequence[npt.NDArray[np.floating[Any]]], N: int, M: int) -> None:
    """Fail, in one pass over the weights, the layers whose spectrum is empty or a single value.

    The checks cost O(N*M) and come before the eigensolver for a reason: an all-zero or constant matrix has
    at most one nonzero eigenvalue, so the Gram route finds its small eigenvalues unreliable and falls back
    to a full float64 SVD, which takes a minute on a 4096 x 4096 matrix (a cheap denial of service by a
    file of zeros), only to find nothing to fit. NaN and Inf would poison the solver as well.
    """
    constant: list[float] = []
    for W in matrices:
        if W.shape != (N, M):
            raise ValueError(f"matrix of shape {W.shape} given for an {N} x {M} layer")
        if W.size == 0:
            continue
        low, high = float(np.min(W)), float(np.max(W))
        if not (math.isfinite(low) and math.isfinite(high)):
            # min/max propagate NaN and reach Inf, so the full count is taken only for the message.
            bad = int(W.size - np.count_nonzero(np.isfinite(W)))
            raise LayerFailedError(f"{bad} of {W.size} weights are NaN or infinite")
        if low == high:
            constant.append(low)
    if len(constant) == len(matrices) and constant:
        if not any(constant):
            raise LayerFailedError("every weight is zero: the spectrum is empty")
        if len(set(constant)) == 1:
            raise LayerFailedError(
                f"every weight equals {constant[0]:.6g}: a rank-1 matrix has a single eigenvalue, no spectrum"
            )
        raise LayerFailedError("every matrix of the layer holds one repeated value: rank-1 slices")


def measure_layer(
    matrices: Sequence[npt.NDArray[np.floating[Any]]],
    *,
    N: int,
    M: int,
    scale: float,
    options: AnalysisOptions,
    backend: EigenBackend,
) -> LayerMetrics:
    """Measure one layer's ESD (its matrices' eigenvalues pooled).

    Args:
        matrices: one or more N x M float arrays (N >= M), e.g. the kh*kw slices of a conv kernel.
        N, M: the matrices' dimensions.
        scale: multiplier of every eigenvalue, s^2 -> scale * s^2 (weightwatcher's conv2d_norm).
        options: the analysis settings.
        backend: the eigenvalue backend.

    Raises:
        LayerFailedError: a matrix holds NaN or Inf, or every weight is zero.
    """
    _refuse_degenerate(matrices, N, M)
    per_matrix = layer_eigenvalues(matrices, backend)
    if max(float(e[-1]) for e in per_matrix) <= 0.0:
        raise LayerFailedError("every weight is zero: the spectrum is empty")
    in_rank = [
        e > rank_tolerance(float(e[-1]), N, W.dtype) for e, W in zip(per_matrix, matrices, strict=True)
    ]
    matrix_rank = sum(int(np.count_nonzero(mask)) for mask in in_rank)
    ww_evals = np.sort(np.concatenate(per_matrix)) * scale  # weightwatcher's scale
    unit = 1.0 / N if options.normalization == Normalization.PER_N else 1.0
    evals = ww_evals * unit  # the report's scale
    num_evals = int(evals.size)

    # the eigenvalues that count towards the rank (weightwatcher's scale): the non-null part of the spectrum
    ranked = np.sort(np.concatenate([e[mask] for e, mask in zip(per_matrix, in_rank, strict=True)])) * scale
    fit_data = ww_evals[ww_evals > options.evals_threshold] if options.fit_cut == FitCut.ABSOLUTE else ranked
    resolution = max(RESOLUTION, STORAGE_ROUNDING * max(_eps(W.dtype) for W in matrices))
    tail = _fit_tail(fit_data, unit, options, resolution)
    alpha = tail.fit.alpha if tail.fit is not None else None
    if tail.tpl_alpha is not None:
        alpha = tail.tpl_alpha  # weightwatcher reports the TPL exponent as alpha under fit='TPL'

    lambda_max = float(evals[-1])
    norm = float(evals.sum())
    # The MP law describes the non-null part of the spectrum (all of it unless rank is lost): fitting it to
    # rounding-level zeros would make sigma and the outlier counts depend on rounding noise.
    mp = fit_mp(ranked * unit, Q=N / M, M=M, method=options.mp_method, spike_rule=options.spike_rule)
    ecs = detx(evals, resolution)
    xmin = tail.fit.xmin * unit if tail.fit is not None else None
    evidence = _phase_evidence(ranked * unit, mp, N, M, xmin, options)
    randomized = (
        _randomized(matrices, evals, N, M, scale * unit, options, backend) if options.randomize else None
    )

    return LayerMetrics(
        num_evals=num_evals,
        esd_histogram=log_histogram(evals),
        lambda_max=lambda_max,
        lambda_min=float(evals[0]),
        alpha=alpha,
        xmin=xmin,
        xmax=tail.fit.xmax * unit if tail.fit is not None else None,
        D=tail.fit.D if tail.fit is not None else None,
        sigma=tail.fit.sigma if tail.fit is not None else None,
        num_pl_spikes=count_at_least(ww_evals, tail.fit.xmin) if tail.fit is not None else None,
        fit_low_confidence=tail.fit is None or tail.fit.low_confidence,
        num_fit_evals=tail.num_fit_evals,
        num_fingers=tail.num_fingers,
        raw_alpha=tail.raw_alpha,
        Lambda=tail.Lambda,
        tpl_log_likelihood_ratio=tail.tpl_log_likelihood_ratio,
        tpl_p_value=tail.tpl_p_value,
        stable_rank=norm / lambda_max,
        log_norm=math.log10(norm),
        log_spectral_norm=math.log10(lambda_max),
        alpha_weighted=alpha * math.log10(lambda_max) if alpha is not None else None,
        log_alpha_norm=_log_alpha_norm(evals, alpha),
        entropy=matrix_entropy(evals, matrix_rank),
        rank_loss=num_evals - matrix_rank,
        matrix_rank=matrix_rank,
        weak_rank_loss=int(np.count_nonzero(ww_evals < WEAK_RANK_TOLERANCE)),
        near_zero_fraction=float(np.count_nonzero(evals < NEAR_ZERO_RELATIVE * norm / num_evals)) / num_evals,
        mp_sigma=mp.sigma if mp is not None else None,
        mp_lambda_plus=mp.lambda_plus if mp is not None else None,
        mp_lambda_minus=mp.lambda_minus if mp is not None else None,
        mp_tw_scale=mp.tw_scale if mp is not None else None,
        mp_spike_cutoff=mp.spike_cutoff if mp is not None else None,
        num_spikes=mp.num_spikes if mp is not None else None,
        mp_softrank=mp.softrank if mp is not None else None,
        mp_bulk_ks=evidence.mp_bulk_ks,
        mp_bulk_ks_null=evidence.mp_bulk_ks_null,
        lambda_max_tw=evidence.lambda_max_tw,
        num_outliers=evidence.num_outliers,
        num_separated_spikes=evidence.num_separated_spikes,
        outlier_mass=evidence.outlier_mass,
        tail_decades=evidence.tail_decades,
        near_edge_share=evidence.near_edge_share,
        tail_lr=evidence.tail_lr,
        tail_lr_p=evidence.tail_lr_p,
        xmin_over_edge=evidence.xmin_over_edge,
        detX_num=ecs.num,
        detX_lambda_min=ecs.lambda_min,
        delta_lambda_min=xmin - ecs.lambda_min if xmin is not None and ecs.lambda_min is not None else None,
        rand_distance=randomized.distance if randomized is not None else None,
        rand_lambda_max=randomized.lambda_max if randomized is not None else None,
        rand_mp_sigma=randomized.mp.sigma if randomized is not None and randomized.mp is not None else None,
        num_traps=randomized.mp.num_spikes if randomized is not None and randomized.mp is not None else None,
    )


def _phase_evidence(
    evals: FloatArray, mp: MPFit | None, N: int, M: int, xmin: float | None, options: AnalysisOptions
) -> PhaseEvidence:
    """The phase evidence, always from the trimmed quantile fit the rules were calibrated on (a second fit
    when the report's MP fit is weightwatcher's KDE)."""
    if options.mp_method != MPMethod.QUANTILE:
        mp = fit_mp(evals, Q=N / M, M=M, method=MPMethod.QUANTILE, spike_rule=SpikeRule.TRACY_WIDOM)
    return phase_evidence(evals, fit=mp, Q=N / M, M=M, xmin=xmin)


@dataclass(frozen=True, slots=True)
class _Tail:
    """The tail fit with its options applied (weightwatcher scale)."""

    fit: PowerLawFit | None
    num_fit_evals: int
    num_fingers: int | None = None
    raw_alpha: float | None = None
    tpl_alpha: float | None = None
    Lambda: float | None = None
    tpl_log_likelihood_ratio: float | None = None
    tpl_p_value: float | None = None


def _eps(dtype: np.dtype[Any]) -> float:
    return (
        float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else float(np.finfo(np.float64).eps)
    )


def _fit_tail(data: FloatArray, unit: float, options: AnalysisOptions, resolution: float) -> _Tail:
    """The power-law fit of the eigenvalues past the fit cut (sorted, weightwatcher's scale), with
    fix_fingers and TPL as configured.

    `unit` converts the report's scale to weightwatcher's, for the user's `xmax` and `xmin_max`.
    """
    xmax = options.xmax / unit if options.xmax is not None else None
    num_fingers: int | None = None
    raw_alpha: float | None = None
    if options.fix_fingers == FixFingers.XMIN_PEAK:
        fit = fit_power_law(
            data, xmax=xmax, xmin_range=_peak_window(data, options, unit), resolution=resolution
        )
    elif options.fix_fingers == FixFingers.CLIP_XMAX:
        fit, num_fingers, raw = _clip_fingers(data, xmax, options, resolution)
        raw_alpha = raw.alpha if raw is not None else None
    else:
        fit = fit_power_law(data, xmax=xmax, resolution=resolution)
    fitted = int(data.size) if xmax is None else int(np.count_nonzero(data <= xmax))
    tail = _Tail(fit=fit, num_fit_evals=fitted, num_fingers=num_fingers, raw_alpha=raw_alpha)
    if options.fit != FitMethod.TRUNCATED_POWER_LAW or fit is None:
        return tail
    fit_data = data[: data.size - num_fingers] if num_fingers else data
    tpl = fit_truncated_power_law(fit_data, fit.xmin, xmax)
    return _Tail(
        fit=fit,
        num_fit_evals=tail.num_fit_evals,
        num_fingers=num_fingers,
        raw_alpha=raw_alpha,
        tpl_alpha=tpl.alpha,
        Lambda=tpl.Lambda / unit,  # a rate per eigenvalue unit: reported per report-scale unit
        tpl_log_likelihood_ratio=tpl.log_likelihood_ratio,
        tpl_p_value=tpl.p_value,
    )


def _peak_window(data: FloatArray, options: AnalysisOptions, unit: float) -> tuple[float, float] | None:
    """xmin window for fix_fingers=xmin_peak: [0.95, 1.5] x the ESD's peak on a log scale.

    weightwatcher takes 10^(left edge of the fullest of 100 bins of log10 lambda) as the peak, then passes
    (log10(0.95 peak), xmin_max) as the xmin range, mixing log and linear units (reference §3.5). We use
    [0.95 peak, xmin_max] in linear units, with xmin_max = 1.5 peak unless given.
    """
    if data.size < 2:
        return None
    counts, edges = np.histogram(np.log10(data), bins=PEAK_BINS)
    peak = float(10.0 ** edges[int(np.argmax(counts))])
    upper = options.xmin_max / unit if options.xmin_max is not None else PEAK_HIGH * peak
    return PEAK_LOW * peak, upper


def _clip_fingers(
    data: FloatArray, xmax: float | None, options: AnalysisOptions, resolution: float
) -> tuple[PowerLawFit | None, int, PowerLawFit | None]:
    """fix_fingers=clip_xmax: drop the top k = 1, 2, ... eigenvalues until alpha falls by `finger_thresh`.

    weightwatcher (RMT_Util.fit_clipped_powerlaw) starts at k = 2, reports k - 1 fingers, and ignores the
    user's max_fingers; here k starts at 1, `num_fingers` is the number clipped, and at most `max_fingers`
    are. A clipped fit is accepted when alpha + finger_thresh < the unclipped alpha; clipping stops without
    one once alpha drops to 2.
    """
    raw = fit_power_law(data, xmax=xmax, resolution=resolution)
    if raw is None:
        return None, 0, None
    for k in range(1, min(options.max_fingers, data.size - 2) + 1):
        clipped = fit_power_law(data[:-k], xmax=xmax, resolution=resolution)
        if clipped is None:
            break
        if clipped.alpha + options.finger_thresh < raw.alpha:
            return clipped, k, raw
        if clipped.alpha <= FINGERS_MIN_ALPHA:
            break
    return raw, 0, raw


def _log_alpha_norm(evals: FloatArray, alpha: float | None) -> float | None:
    """log10 sum_i lambda_i^alpha over all eigenvalues (Schatten alpha-norm to the power alpha).

    Summed as log10(lambda_max^alpha * sum (lambda_i / lambda_max)^alpha) so that large alphas cannot
    overflow. weightwatcher computes it with alpha = -1 after a failed fit (garbage); here it is None.
    """
    if alpha is None:
        return None
    lambda_max = float(evals[-1])
    return alpha * math.log10(lambda_max) + math.log10(float(np.sum((evals / lambda_max) ** alpha)))


def matrix_entropy(evals: FloatArray, rank: int) -> float | None:
    """Normalised matrix entropy -sum p ln p / ln(rank), p = lambda / sum(lambda) (HTSR_THEORY §6).

    weightwatcher (RMT_Util.matrix_entropy) adds 1e-10 to every p and to the rank, which shifts the value by
    up to ~M * 2e-9 and turns the rank-1 case into garbage (ln(1 + 1e-10) in the denominator); we sum
    0 ln 0 = 0 exactly. A rank-1 spectrum has entropy 0.
    """
    if rank <= 1:
        return 0.0
    p = evals / evals.sum()
    p = p[p > 0.0]
    return float(-np.sum(p * np.log(p)) / math.log(rank))


@dataclass(frozen=True, slots=True)
class _Randomized:
    distance: float
    lambda_max: float
    mp: MPFit | None


def _randomized(
    matrices: Sequence[npt.NDArray[np.floating[Any]]],
    evals: FloatArray,
    N: int,
    M: int,
    factor: float,
    options: AnalysisOptions,
    backend: EigenBackend,
) -> _Randomized:
    """The shuffled ESD (on the report's scale: factor = scale * unit) and what it says."""
    rand = np.sort(np.concatenate(layer_eigenvalues(shuffled(matrices, options.seed), backend))) * factor
    return _Randomized(
        distance=jensen_shannon_distance(evals, rand),
        lambda_max=float(rand[-1]),
        mp=fit_mp(rand, Q=N / M, M=M, method=options.mp_method, spike_rule=options.spike_rule),
    )
