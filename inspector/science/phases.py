"""The "5+1 phases of training" (Martin & Mahoney, arXiv 1810.01075, Table 4) as a documented procedure.

A layer's phase is read from its ESD in the order of HTSR_THEORY.md §3.5, never from alpha alone (small
random matrices give heavy-tailed-looking alphas of 4-6):

1. **rank-collapse** when a large share of the eigenvalues sits at zero (`near_zero_fraction`).
2. Fit the Marchenko-Pastur bulk (quantile rule, `inspector.science.mp`) and measure how well it describes the
   eigenvalues below the Tracy-Widom cutoff: the KS distance `mp_bulk_ks` between their empirical CDF and
   the MP CDF restricted to the same range. The bulk is "MP-like" when that distance is below what random
   matrices of the same size produce (`mp_bulk_threshold`).
3. Outliers are eigenvalues above lambda_+ + 2 s_TW (the TW1 99th percentile); "separated" outliers lie at
   least 25% above lambda_+.
   - MP-like bulk, no outlier: **random-like**;
   - MP-like bulk, outliers at most 7% of the eigenvalues: **bulk+spikes** if one is separated, else
     **bleeding-out** (eigenmass just pulling out of the edge);
4. Otherwise the bulk is not MP-like (or too much mass left it): **heavy-tailed** when the power-law fit is
   good (alpha <= 6, D <= 0.1, at least 10 tail eigenvalues), else **bulk-decay**.

Every threshold is a named constant below with where it comes from. The procedure is a proposal of the
HTSR reference, calibrated on synthetic matrices (benchmarks/calibrate_phases.py); the paper gives the
phases' definitions, not numeric cut-offs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inspector.records import LayerMetrics, Phase
from inspector.science.mp import mp_cdf

FloatArray = npt.NDArray[np.float64]

#: Rank collapse: share of eigenvalues below 1e-6 x the mean eigenvalue (HTSR_THEORY §3.5 A, F0_MAX).
RANK_COLLAPSE_FRACTION = 0.10
#: Outliers: eigenvalues above lambda_+ + TW_MARGIN s_TW (about the TW1 99th percentile, 2.02).
TW_MARGIN = 2.0
#: A separated spike lies at least this far above lambda_+ (eta = 0.25; BBP spikes of strength ~1.6 Q^-1/4).
SEPARATION = 0.25
#: Bulk+spikes / bleeding-out allow at most this share of outliers (F_SPIKE, from the MiniAlexNet FC1
#: ensembles of the ISR notebooks: 2.0-2.4% for bleeding-out/bulk+spikes, 9.25% for bulk-decay).
MAX_SPIKE_FRACTION = 0.07
#: Heavy-tailed needs a good power-law fit: alpha at most 6 (above it alpha is uninformative, SETOL),
#: D at most 0.1 (Gaussian ESDs give 0.11-0.13, real heavy tails 0.02-0.05) and at least 10 tail points.
HEAVY_TAILED_MAX_ALPHA = 6.0
HEAVY_TAILED_MAX_D = 0.10
HEAVY_TAILED_MIN_TAIL = 10
#: MP-like bulk: KS distance at most max(BULK_FLOOR, BULK_NULL_FACTOR x the largest distance seen in 10
#: Gaussian matrices of that size), that largest distance enveloped by BULK_NULL_SCALE / M^BULK_NULL_POWER
#: (benchmarks/calibrate_phases.py prints the simulation behind these numbers).
BULK_FLOOR = 0.02
BULK_NULL_FACTOR = 1.5
BULK_NULL_SCALE = 2.4
BULK_NULL_POWER = 0.9


@dataclass(frozen=True, slots=True)
class PhaseEvidence:
    """What the phase is decided from, besides alpha and D."""

    mp_bulk_ks: float | None  # KS distance of the bulk to MP (None when MP could not be fitted)
    num_outliers: int  # eigenvalues above lambda_+ + 2 s_TW
    num_separated: int  # outliers at least 25% above lambda_+


def mp_bulk_threshold(M: int) -> float:
    """Largest bulk KS distance still called MP-like for matrices with M eigenvalues."""
    return max(BULK_FLOOR, BULK_NULL_FACTOR * BULK_NULL_SCALE / M**BULK_NULL_POWER)


def phase_evidence(evals: FloatArray, *, Q: float, M: int, lambda_plus: float | None) -> PhaseEvidence:
    """Bulk fit quality and outlier counts of one ESD (any eigenvalue scale; `lambda_plus` in the same scale).

    Args:
        evals: sorted eigenvalues.
        Q: aspect ratio N/M of each matrix.
        M: eigenvalues per matrix (sets the Tracy-Widom scale).
        lambda_plus: the fitted MP edge, or None when MP could not be fitted.
    """
    if lambda_plus is None or not lambda_plus > 0:
        return PhaseEvidence(mp_bulk_ks=None, num_outliers=0, num_separated=0)
    q = 1.0 / math.sqrt(Q)
    sigma2 = lambda_plus / (1.0 + q) ** 2
    tw_scale = sigma2 * q * (1.0 + q) ** (4.0 / 3.0) * M ** (-2.0 / 3.0)
    cutoff = lambda_plus + TW_MARGIN * tw_scale
    outliers = evals[evals > cutoff]
    bulk = evals[evals <= cutoff] / sigma2
    if bulk.size < 2:
        return PhaseEvidence(
            mp_bulk_ks=1.0, num_outliers=int(outliers.size), num_separated=int(outliers.size)
        )
    model = mp_cdf(bulk, Q) / float(mp_cdf(np.array([cutoff / sigma2]), Q)[0])
    n = bulk.size
    steps = np.arange(1, n + 1) / n
    ks = float(max(np.max(np.abs(steps - model)), np.max(np.abs(steps - 1.0 / n - model))))
    separated = int(np.count_nonzero(outliers >= (1.0 + SEPARATION) * lambda_plus))
    return PhaseEvidence(mp_bulk_ks=ks, num_outliers=int(outliers.size), num_separated=separated)


def classify(
    *,
    evidence: PhaseEvidence,
    num_evals: int,
    M: int,
    near_zero_fraction: float,
    alpha: float | None,
    D: float | None,
    num_pl_spikes: int | None,
) -> Phase:
    """The layer's phase from its evidence (see the module docstring for the order of the rules)."""
    if near_zero_fraction >= RANK_COLLAPSE_FRACTION:
        return Phase.RANK_COLLAPSE
    bulk_is_mp = evidence.mp_bulk_ks is not None and evidence.mp_bulk_ks <= mp_bulk_threshold(M)
    if bulk_is_mp and evidence.num_outliers == 0:
        return Phase.RANDOM_LIKE
    if bulk_is_mp and evidence.num_outliers <= MAX_SPIKE_FRACTION * num_evals:
        return Phase.BULK_PLUS_SPIKES if evidence.num_separated >= 1 else Phase.BLEEDING_OUT
    good_power_law = (
        alpha is not None
        and D is not None
        and num_pl_spikes is not None
        and alpha <= HEAVY_TAILED_MAX_ALPHA
        and D <= HEAVY_TAILED_MAX_D
        and num_pl_spikes >= HEAVY_TAILED_MIN_TAIL
    )
    return Phase.HEAVY_TAILED if good_power_law else Phase.BULK_DECAY


def classify_metrics(metrics: LayerMetrics, M: int) -> Phase | None:
    """The phase of a measured layer, or None when its evidence was not computed."""
    if metrics.num_outliers is None or metrics.near_zero_fraction is None:
        return None
    evidence = PhaseEvidence(
        mp_bulk_ks=metrics.mp_bulk_ks,
        num_outliers=metrics.num_outliers,
        num_separated=metrics.num_separated_spikes or 0,
    )
    return classify(
        evidence=evidence,
        num_evals=metrics.num_evals,
        M=M,
        near_zero_fraction=metrics.near_zero_fraction,
        alpha=metrics.alpha,
        D=metrics.D,
        num_pl_spikes=metrics.num_pl_spikes,
    )
