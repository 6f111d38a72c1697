"""`AnalysisOptions`: every setting that changes a number, in one frozen object with its defaults.

The CLI builds one from flags and `[tool.wwinspect]`; the pipeline and the spectral functions receive
it. The JSON report's `settings` is derived from it, so a number can always be traced to its settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Device(str, Enum):
    """Where eigenvalues are computed."""

    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"  # CUDA through torch when both are present, else the CPU


class Normalization(str, Enum):
    """Scale of the eigenvalues reported for norms; alpha never depends on it."""

    NONE = "none"  # lambda = s^2, weightwatcher's convention (default)
    PER_N = "per-n"  # lambda = s^2 / N, the papers' X = W^T W / N


class FitMethod(str, Enum):
    """Distribution fitted to the tail of the ESD."""

    POWER_LAW = "pl"
    TRUNCATED_POWER_LAW = "tpl"


class FixFingers(str, Enum):
    """weightwatcher's remedies for a few isolated large eigenvalues ("fingers") that inflate alpha."""

    XMIN_PEAK = "xmin_peak"
    CLIP_XMAX = "clip_xmax"


class SpikeRule(str, Enum):
    """Margin above the MP edge lambda_+ beyond which an eigenvalue counts as a spike."""

    TRACY_WIDOM = "tw"  # lambda_+ + 2 * s_TW, the Tracy-Widom scale (about the TW1 99th percentile)
    WEIGHTWATCHER = "ww"  # lambda_+ + sqrt(s_TW), weightwatcher 0.7.7's margin


class FitCut(str, Enum):
    """Which small eigenvalues the power-law fit leaves out (inspector/science/metrics.py)."""

    RELATIVE = (
        "relative"  # those below the rank tolerance, lambda_max (N eps)^2 per matrix: scale-free (default)
    )
    ABSOLUTE = (
        "absolute"  # those at or below `evals_threshold` on weightwatcher's scale (its EVALS_THRESH 1e-5)
    )


class MPMethod(str, Enum):
    """How the Marchenko-Pastur sigma of the bulk is fitted (inspector/science/mp.py)."""

    QUANTILE = "quantile"  # sigma^2 matching the ESD's 5%..75% quantiles to MP(Q, 1)'s: robust (default)
    KDE = "kde"  # weightwatcher 0.7.7's brute-force fit of a linear-kernel KDE (its mp_fit=True)


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Settings of one analysis. Defaults reproduce weightwatcher 0.7.7's default analyze() except where a
    field says otherwise (`fit_cut`: a scale-free cut instead of its absolute one).

    Attributes:
        min_evals: layers with fewer eigenvalues are skipped with a reason.
        max_evals: layers with more eigenvalues are skipped with a reason (None: no limit).
        layer_globs: analyse only layers whose name matches one of these globs (empty: all).
        exclude_globs: skip layers whose name matches one of these globs.
        device: eigenvalue backend.
        normalization: eigenvalue scale for the norm metrics.
        pool_conv: pool the kh*kw slices of a conv kernel into one ESD (False: one record per slice).
        conv_scale: factor applied to conv eigenvalues (weightwatcher's conv2d_norm: 0.5 pooled).
        fit: tail distribution to fit.
        xmax: largest eigenvalue included in the fit (None: all).
        fix_fingers: finger remedy, or None.
        fit_cut: which small eigenvalues the power-law fit leaves out. RELATIVE (default): those that do not
            count towards the matrix rank (below lambda_max (N eps)^2 of their matrix, eps of the dtype the
            weights arrived in), so alpha, xmin / lambda_max, D and the phase do not depend on the scale of
            the weights; ABSOLUTE: those at or below `evals_threshold`, weightwatcher 0.7.7's rule.
        evals_threshold: with fit_cut ABSOLUTE, eigenvalues at or below this (on weightwatcher's scale) are
            left out of the fit.
        spike_rule: the MP spike margin.
        randomize: also analyse an element-shuffled copy of each matrix (correlation traps).
        seed: seed of every random draw (randomisation), so reports are reproducible.
        mp_method: how the MP sigma is fitted.
        xmin_max: with fix_fingers xmin_peak, the largest xmin considered (None: 1.5 x the ESD's log peak).
        max_fingers: with fix_fingers clip_xmax, the most top eigenvalues that may be clipped.
        finger_thresh: with clip_xmax, accept a clipped fit whose alpha is this much below the raw one.
    """

    min_evals: int = 10
    max_evals: int | None = None
    layer_globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()
    device: Device = Device.CPU
    normalization: Normalization = Normalization.NONE
    pool_conv: bool = True
    conv_scale: float = 0.5
    fit: FitMethod = FitMethod.POWER_LAW
    xmax: float | None = None
    fix_fingers: FixFingers | None = None
    fit_cut: FitCut = FitCut.RELATIVE
    evals_threshold: float = 1e-5
    spike_rule: SpikeRule = SpikeRule.TRACY_WIDOM
    randomize: bool = False
    seed: int = 0
    mp_method: MPMethod = MPMethod.QUANTILE
    xmin_max: float | None = None
    max_fingers: int = 10
    finger_thresh: float = 1.0
