"""`AnalysisOptions`: every setting that changes a number, in one frozen object with its defaults.

The CLI builds one from flags and `[tool.wwinspect]`; the pipeline and the spectral functions receive
it. The JSON report's `settings` is derived from it, so a number can always be traced to its settings.
A field declared with `setting(...)` is also a flag and a config key (`inspector.settings`); the others
(`conv_scale`, `evals_threshold`) are fixed conventions, reported but not chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from inspector.settings import setting


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


class ReasonWords(str, Enum):
    """How the reasons of skipped layers name the setting that skipped them."""

    FLAGS = "flags"  # --min-evals 10: the command line's words (and the JSON report's)
    PYTHON = "python"  # min_evals=10: the Python API's words


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
        split_fused: analyse fused projections (QKV, gate/up) as their logical parts (inspector.fused).
        per_head: analyse attention projections one head at a time.
        base: the base model a LoRA/PEFT adapter applies to: analyse the merged weights against it.
        strict_pickles: refuse PyTorch pickles that name a global outside the allow-list (a user's class,
            say), not only the dangerous ones (`formats._pickle_policy`). Changes what is read, never a
            number of what is.
        reason_words: whether skip reasons name settings as flags (`--min-evals 10`) or as Python
            (`min_evals=10`); the API sets PYTHON. Changes words, never a number.
    """

    min_evals: int = setting(10, help="Skip layers with fewer eigenvalues.", min=1)
    max_evals: int | None = setting(None, help="Skip layers with more eigenvalues.", min=1, unset="no limit")
    layer_globs: tuple[str, ...] = setting(
        (), key="layer", metavar="GLOB", help="Analyse only layers matching GLOB (repeatable)."
    )
    exclude_globs: tuple[str, ...] = setting(
        (), key="exclude", metavar="GLOB", help="Skip layers matching GLOB (repeatable)."
    )
    device: Device = setting(
        Device.CPU, help="Eigenvalue backend; auto uses CUDA through torch when present."
    )
    normalization: Normalization = setting(
        Normalization.NONE,
        key="normalize",
        help="Eigenvalue scale of the norms: none (s², weightwatcher) or per-n (s²/N, the papers).",
    )
    pool_conv: bool = setting(
        True,
        key="per-slice",
        off_flag="--pooled",
        inverted=True,
        help="One record per conv kernel slice instead of one pooled ESD.",
    )
    conv_scale: float = 0.5
    fit: FitMethod = setting(
        FitMethod.POWER_LAW, help="Tail distribution: pl (power law) or tpl (truncated power law)."
    )
    xmax: float | None = setting(
        None, min=0, min_open=True, help="Largest eigenvalue included in the fit (above 0).", unset="all"
    )
    fix_fingers: FixFingers | None = setting(None, help="Remedy for a few isolated large eigenvalues.")
    fit_cut: FitCut = setting(
        FitCut.RELATIVE,
        help="Small eigenvalues the power-law fit leaves out: relative (below the rank tolerance, "
        "scale-free) or absolute (at or below 1e-5 on weightwatcher's scale, its EVALS_THRESH).",
    )
    evals_threshold: float = 1e-5
    spike_rule: SpikeRule = setting(
        SpikeRule.TRACY_WIDOM, help="MP spike margin: tw (λ₊ + 2 s_TW) or ww (λ₊ + √s_TW, weightwatcher)."
    )
    randomize: bool = setting(
        False,
        off_flag="--no-randomize",
        help="Also analyse an element-shuffled copy (correlation traps, rand_distance).",
    )
    seed: int = setting(0, help="Seed of the randomisation.")
    mp_method: MPMethod = setting(
        MPMethod.QUANTILE,
        key="mp-fit",
        help="MP sigma fit: quantile (robust) or kde (weightwatcher's mp_fit).",
    )
    xmin_max: float | None = setting(
        None,
        metavar="X",
        min=0,
        min_open=True,
        help="With --fix-fingers xmin_peak: the largest xmin considered (above 0).",
    )
    max_fingers: int = setting(10, min=1, help="With --fix-fingers clip_xmax: most eigenvalues clipped.")
    finger_thresh: float = setting(
        1.0, help="With clip_xmax: accept a clipped fit whose alpha drops by more than this."
    )
    split_fused: bool = setting(
        False,
        off_flag="--no-split-fused",
        help="Analyse fused projections (c_attn, query_key_value, qkv_proj, gate_up_proj) as their parts.",
    )
    per_head: bool = setting(
        False, off_flag="--no-per-head", help="Analyse attention projections one head at a time."
    )
    base: Path | None = setting(
        None,
        metavar="PATH",
        unset="none",
        help="With a LoRA/PEFT adapter: the base model; analyse the merged weights and compare with it.",
    )
    strict_pickles: bool = setting(
        False,
        off_flag="--no-strict-pickles",
        help="Refuse (exit 3) pickles naming any global outside the allow-list, not only dangerous ones.",
    )
    reason_words: ReasonWords = ReasonWords.FLAGS
