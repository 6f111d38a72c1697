"""The "5+1 phases of training" (Martin & Mahoney, arXiv 1810.01075, Table 4) read off bulk-relative evidence.

`phase_evidence` measures, once per layer, everything the phase is decided from, all of it scale-free and
relative to the fitted Marchenko-Pastur bulk (`inspector.science.mp`); `label` turns a measured layer into its
phase and its alpha label. The evidence is stored in the layer's metrics (and so in the JSON report) and
`label` reads it from there: nothing is recomputed or rebuilt.

The evidence (fields of `LayerMetrics`):
* `near_zero_fraction`: share of eigenvalues below 1e-6 x the mean eigenvalue;
* `mp_bulk_ks` against `mp_bulk_ks_null`: the KS distance of the bulk (eigenvalues up to the TW cutoff
  lambda_+ + 2 s_TW) to the fitted MP law, and the 99th percentile of that distance on Gaussian matrices
  of the layer's own M and Q (`mp.bulk_ks_null`, a simulated table); the bulk is MP-like within
  BULK_KS_TOLERANCE times its null;
* `lambda_max_tw`: (lambda_max - lambda_+) / s_TW, where the top eigenvalue sits in TW units (an outlier
  when above 2);
* `num_outliers`: eigenvalues above the TW cutoff; `num_separated_spikes`: those at or above 1.25 lambda_+;
  `outlier_mass`: their share of the trace;
* `near_edge_share`: outliers between the cutoff and 2 lambda_+, as a share of all eigenvalues. Discrete
  spikes put a handful there whatever the size; a continuous run out of the edge (a graded signal, a heavy
  tail) puts a fixed share of the spectrum there;
* `tail_decades`: log10(lambda_max / lambda_+), how far the spectrum reaches above the bulk edge (= -log10
  of the MP soft rank), and `xmin_over_edge`: where the power-law fit's xmin falls relative to lambda_+;
* `tail_lr`, `tail_lr_p`: Vuong's normalised log-likelihood ratio of a power law against an exponential,
  both fitted by maximum likelihood to the part of the spectrum above the bulk (from the TW cutoff, or from
  xmin when the power-law fit starts below it), and its two-sided p-value (Clauset, Shalizi & Newman 2009,
  section 5; arXiv 0706.1062): > 0 favours the power law.

The rules, in order (each threshold is a named constant below, with its source); a layer with fewer than
16 eigenvalues gets no phase:
1. rank-collapse: near_zero_fraction >= 10%.
2. random-like: no outlier above the TW cutoff.
3. MP-like bulk:
   a. bleeding-out when no outlier is separated (lambda_max < 1.25 lambda_+: eigenmass just above the edge);
   b. bulk+spikes when the outliers are discrete (near_edge_share < 4%), however many there are;
   c. else a continuous run out of the edge: heavy-tailed when it reaches a decade above lambda_+ and the
      power law is preferred to the exponential, bulk-decay otherwise (an eroded edge with a short tail).
4. No MP bulk ("no good lambda_+"): heavy-tailed when the spectrum reaches a decade above where its tail
   starts (lambda_+, or xmin when the power law starts inside what the MP fit calls the bulk) and the power
   law is preferred; bulk-decay otherwise.

Every decision carries a confidence: each test on the path has a margin, the distance of its statistic from
the threshold in units of the test's band (1 = a full band away); the confidence is 0.5 + 0.5 x the smallest
margin. When that margin is below 1 the evidence sits on a boundary, and `neighbour` names the phase on the
other side of the weakest test (the table shows both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inspector.records import AlphaLabel, LayerMetrics, Phase
from inspector.science.mp import TW_MARGIN, MPFit, bulk_ks, bulk_ks_null

FloatArray = npt.NDArray[np.float64]

#: Rank collapse: share of eigenvalues below 1e-6 x the mean eigenvalue (the paper's "large-mass spike at
#: lambda = 0"; MP predicts no zero eigenvalue for Q > 1, and a square Gaussian matrix has ~1/M of them).
RANK_COLLAPSE_FRACTION = 0.10
#: A separated spike lies at least this far above lambda_+ (eta = 0.25: BBP spikes of strength above ~1.6
#: Q^-1/4 at Q = 2; below it the outliers are "eigenmass just around and above lambda_+", bleeding-out).
SEPARATION = 0.25
#: MP-like bulk: KS distance at most this multiple of its null 99th percentile at the layer's M and Q. A
#: rank-k signal moves the bulk's empirical CDF by up to k/M (Cauchy interlacing) even when it only makes
#: spikes; spiked matrices of tests/science/phase_suite.py reach 1.15, graded signals and heavy tails 0.8-50.
BULK_KS_TOLERANCE = 1.5
#: The near-edge window: outliers below this multiple of lambda_+ are "just above the edge" (the continuous
#: run of a bulk-decay layer ends at 2-3 lambda_+; a separated BBP spike at Q = 2 needs S >= 1.8 Q^-1/4 to
#: pass it).
NEAR_EDGE = 2.0
#: A continuous run out of the edge: outliers in the near-edge window holding at least this share of all
#: eigenvalues. Discrete spikes put a handful there whatever M (<= 1.6% in the suite, 0.8-1.6% in the trained
#: MLPs of examples/batch_size_phases.py); the ISR notebooks' MiniAlexNet FC1 had 2.4% outliers at bulk+spikes
#: and 9.25% at bulk-decay (arXiv 1810.01075, section 7); 4% lies between.
CONTINUOUS_SHARE = 0.04
#: Heavy-tailed reaches at least a decade above the bulk edge: lambda_max >= 10 lambda_+, an MP soft rank of
#: 0.1 or less (the paper's heavy-tailed layers: soft rank 0.0-0.1; its bulk-decay: 0.3-0.5). Without an MP
#: bulk the decade is counted from the power-law fit's xmin when that lies below the (meaningless) lambda_+.
HEAVY_TAIL_DECADES = 1.0
#: The likelihood-ratio test needs this many eigenvalues above the cutoff (below, it is not computed).
TAIL_LR_MIN_POINTS = 5
#: Bands of the tests' margins (see the module docstring): ratios for scale-free statistics, absolute for
#: the likelihood ratio and for lambda_max in TW units.
RATIO_BAND = 1.5
SHARE_BAND = 1.5
DECADES_BAND = 0.3
TAIL_LR_BAND = 1.0
TW_BAND = 2.0
#: Fewer eigenvalues than this get no phase: the bulk's KS null is tabulated from M = 16 (mp.bulk_ks_null),
#: and a handful of eigenvalues has no bulk to compare outliers with (a 10-class output layer has 10).
MIN_EIGENVALUES = 16
#: weightwatcher constants.py: OVER_TRAINED_THRESH, UNDER_TRAINED_THRESH (PRODUCT.md "alpha labels").
OVER_TRAINED_BELOW = 2.0
UNDER_TRAINED_ABOVE = 6.0


@dataclass(frozen=True, slots=True)
class PhaseEvidence:
    """The bulk-relative numbers of one ESD that the phase is decided from (stored in `LayerMetrics`)."""

    mp_bulk_ks: float | None
    mp_bulk_ks_null: float | None
    lambda_max_tw: float | None
    num_outliers: int
    num_separated_spikes: int
    outlier_mass: float | None
    tail_decades: float | None
    near_edge_share: float | None
    tail_lr: float | None
    tail_lr_p: float | None
    xmin_over_edge: float | None


def phase_evidence(
    evals: FloatArray, *, fit: MPFit | None, Q: float, M: int, xmin: float | None
) -> PhaseEvidence:
    """The evidence of one ESD (sorted eigenvalues, any scale) given its MP fit (same scale).

    Args:
        evals: sorted eigenvalues.
        fit: the (quantile) MP fit of `evals`, or None when there is none.
        Q: aspect ratio N/M of each matrix; M: its eigenvalues (set the TW scale and the null).
        xmin: the power-law fit's xmin (same scale), or None.
    """
    if fit is None or not fit.lambda_plus > 0.0:
        return PhaseEvidence(None, None, None, 0, 0, None, None, None, None, None, None)
    lambda_plus = fit.lambda_plus
    outliers = evals[evals > fit.tw_cutoff]
    start = min(fit.tw_cutoff, xmin) if xmin is not None else fit.tw_cutoff
    lr, p = _power_law_vs_exponential(evals[evals >= start], start)
    return PhaseEvidence(
        mp_bulk_ks=bulk_ks(evals, fit, Q),
        mp_bulk_ks_null=bulk_ks_null(M, Q),
        lambda_max_tw=(float(evals[-1]) - lambda_plus) / fit.tw_scale if fit.tw_scale > 0.0 else None,
        num_outliers=int(outliers.size),
        num_separated_spikes=int(np.count_nonzero(outliers >= (1.0 + SEPARATION) * lambda_plus)),
        outlier_mass=float(outliers.sum() / evals.sum()) if evals.sum() > 0.0 else None,
        tail_decades=math.log10(float(evals[-1]) / lambda_plus),
        near_edge_share=float(np.count_nonzero(outliers < NEAR_EDGE * lambda_plus)) / evals.size,
        tail_lr=lr,
        tail_lr_p=p,
        xmin_over_edge=xmin / lambda_plus if xmin is not None else None,
    )


def _power_law_vs_exponential(tail: FloatArray, start: float) -> tuple[float | None, float | None]:
    """Vuong's test of a power law against an exponential on the values above `start` (CSN section 5.1).

    Both are fitted by maximum likelihood on [start, inf): alpha = 1 + n / sum ln(x / start) and
    rate = 1 / mean(x - start). The pointwise log-likelihood differences d_i give R = sum d_i, the normalised
    ratio R / (sd(d) sqrt(n)) and the two-sided p = erfc(|R| / (sd(d) sqrt(2 n))).
    """
    n = tail.size
    if n < TAIL_LR_MIN_POINTS or not start > 0.0:
        return None, None
    logs = np.log(tail / start)
    excess = tail - start
    if not (logs.sum() > 0.0 and excess.mean() > 0.0):
        return None, None
    alpha = 1.0 + n / float(logs.sum())
    rate = 1.0 / float(excess.mean())
    d = (math.log((alpha - 1.0) / start) - alpha * logs) - (math.log(rate) - rate * excess)
    spread = float(d.std())
    if not spread > 0.0:
        return None, None
    ratio = float(d.sum()) / (spread * math.sqrt(n))
    return ratio, math.erfc(abs(ratio) / math.sqrt(2.0))


def alpha_label(alpha: float | None) -> AlphaLabel | None:
    """alpha < 2 over-trained, 2 <= alpha <= 6 well-trained, alpha > 6 under-trained; None without a fit."""
    if alpha is None or not math.isfinite(alpha):
        return None
    if alpha < OVER_TRAINED_BELOW:
        return AlphaLabel.OVER_TRAINED
    if alpha > UNDER_TRAINED_ABOVE:
        return AlphaLabel.UNDER_TRAINED
    return AlphaLabel.WELL_TRAINED


@dataclass(frozen=True, slots=True)
class PhaseLabel:
    """A layer's labels: its phase with how sure the rules are, and its alpha label.

    Attributes:
        phase: the phase, or None when the evidence was not computed (no MP fit).
        alpha_label: weightwatcher's band reading of alpha alone.
        confidence: 0.5 + 0.5 x the smallest margin of the tests that decided the phase (1: every test at
            least a band from its threshold; 0.5: on a threshold).
        neighbour: the phase on the other side of the weakest test when its margin is below 1, else None.
        rule: the test that decided, in words.
    """

    phase: Phase | None
    alpha_label: AlphaLabel | None
    confidence: float | None = None
    neighbour: Phase | None = None
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class _Test:
    name: str
    passed: bool
    margin: float  # distance from the threshold in band units, clipped to [0, 1]


def _ratio_test(name: str, value: float, threshold: float, band: float, above: bool) -> _Test:
    """value >= threshold (above) or value <= threshold, margin in log units of `band`."""
    passed = value >= threshold if above else value <= threshold
    if value <= 0.0 or threshold <= 0.0:
        return _Test(name, passed, 1.0)
    return _Test(name, passed, min(1.0, abs(math.log(value / threshold)) / math.log(band)))


def _linear_test(name: str, value: float, threshold: float, band: float, above: bool) -> _Test:
    passed = value >= threshold if above else value <= threshold
    return _Test(name, passed, min(1.0, abs(value - threshold) / band))


_Decision = tuple[Phase, str, list[_Test]]


def _decide(metrics: LayerMetrics, flip: str | None) -> _Decision:
    """The rule tree of the module docstring; `flip` inverts the outcome of the test of that name."""
    tests: list[_Test] = []

    def outcome(test: _Test) -> bool:
        tests.append(test)
        return (not test.passed) if test.name == flip else test.passed

    assert metrics.near_zero_fraction is not None and metrics.num_outliers is not None
    if outcome(
        _ratio_test(
            "rank-collapse", max(metrics.near_zero_fraction, 1e-12), RANK_COLLAPSE_FRACTION, RATIO_BAND, True
        )
    ):
        return Phase.RANK_COLLAPSE, "near-zero eigenvalues >= 10%", tests
    top = metrics.lambda_max_tw if metrics.lambda_max_tw is not None else math.inf
    if not outcome(_linear_test("outliers", top, TW_MARGIN, TW_BAND, True)):
        return Phase.RANDOM_LIKE, "no eigenvalue above lambda_+ + 2 s_TW", tests
    decades = metrics.tail_decades if metrics.tail_decades is not None else math.inf
    ks, null = metrics.mp_bulk_ks, metrics.mp_bulk_ks_null
    bulk = (
        _ratio_test("MP bulk", ks, BULK_KS_TOLERANCE * null, RATIO_BAND, False)
        if ks is not None and null is not None
        else _Test("MP bulk", False, 1.0)
    )
    lr = metrics.tail_lr
    power_law = _linear_test("power law", lr, 0.0, TAIL_LR_BAND, True) if lr is not None else None
    if outcome(bulk):
        separated = _ratio_test("separated", 10.0**decades, 1.0 + SEPARATION, 1.0 + SEPARATION / 2.0, True)
        if not outcome(separated):
            return Phase.BLEEDING_OUT, "MP bulk, outliers only just above the edge", tests
        share = max(metrics.near_edge_share or 0.0, 1e-12)
        if not outcome(_ratio_test("continuous", share, CONTINUOUS_SHARE, SHARE_BAND, True)):
            return Phase.BULK_PLUS_SPIKES, "MP bulk and discrete outliers well above the edge", tests
        reach = _linear_test("reach", decades, HEAVY_TAIL_DECADES, DECADES_BAND, True)
        if outcome(reach) and power_law is not None and outcome(power_law):
            return Phase.HEAVY_TAILED, "a power-law run out of the bulk reaching a decade or more", tests
        return (
            Phase.BULK_DECAY,
            "MP bulk with an eroded edge: a short or exponential-like run of outliers",
            tests,
        )
    start = min(1.0, metrics.xmin_over_edge) if metrics.xmin_over_edge is not None else 1.0
    reach = _linear_test("reach", decades - math.log10(start), HEAVY_TAIL_DECADES, DECADES_BAND, True)
    if outcome(reach) and power_law is not None and outcome(power_law):
        return Phase.HEAVY_TAILED, "no MP bulk; a power-law tail over a decade or more", tests
    return Phase.BULK_DECAY, "no MP bulk, and no power-law tail over a decade", tests


def label(metrics: LayerMetrics) -> PhaseLabel:
    """The phase and the alpha label of a measured layer (module docstring: the rules and the confidence)."""
    labels = alpha_label(metrics.alpha)
    if metrics.near_zero_fraction is None or metrics.num_outliers is None:
        return PhaseLabel(phase=None, alpha_label=labels)
    if metrics.tail_decades is None and metrics.near_zero_fraction < RANK_COLLAPSE_FRACTION:
        return PhaseLabel(phase=None, alpha_label=labels)
    if metrics.num_evals < MIN_EIGENVALUES:
        return PhaseLabel(phase=None, alpha_label=labels, rule=f"fewer than {MIN_EIGENVALUES} eigenvalues")
    phase, rule, tests = _decide(metrics, None)
    weakest = min(tests, key=lambda test: test.margin)
    neighbour = None
    if weakest.margin < 1.0:
        other, _, _ = _decide(metrics, weakest.name)
        neighbour = other if other != phase else None
    return PhaseLabel(
        phase=phase, alpha_label=labels, confidence=0.5 + 0.5 * weakest.margin, neighbour=neighbour, rule=rule
    )


#: For scripts and benchmarks: the ordinal position of each phase along training (rank-collapse last).
PHASE_ORDER: dict[Phase, int] = {
    Phase.RANDOM_LIKE: 0,
    Phase.BLEEDING_OUT: 1,
    Phase.BULK_PLUS_SPIKES: 2,
    Phase.BULK_DECAY: 3,
    Phase.HEAVY_TAILED: 4,
    Phase.RANK_COLLAPSE: 5,
}
