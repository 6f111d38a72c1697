"""Typed records that cross module boundaries: layers, their metrics, and per-model reports.

Renderers turn these into tables and JSON; nothing here knows about terminals or file layouts. Numbers
that cannot be computed are `None`, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from formats.types import Role

if TYPE_CHECKING:  # records are imported by the command line before anything needs numpy
    import numpy as np
    import numpy.typing as npt


class LayerKind(str, Enum):
    """The kind of layer a weight tensor was read as."""

    DENSE = "dense"
    CONV1D = "conv1d"
    CONV2D = "conv2d"
    EMBEDDING = "embedding"
    RECURRENT = "recurrent"
    OTHER = "other"


class Status(str, Enum):
    """Whether a layer was analysed; skipped and failed layers carry a reason in words."""

    ANALYZED = "analyzed"
    SKIPPED = "skipped"
    FAILED = "failed"


class Phase(str, Enum):
    """The "5+1 phases of training" of Heavy-Tailed Self-Regularization (Martin & Mahoney)."""

    RANDOM_LIKE = "random-like"
    BLEEDING_OUT = "bleeding-out"
    BULK_PLUS_SPIKES = "bulk+spikes"
    BULK_DECAY = "bulk-decay"
    HEAVY_TAILED = "heavy-tailed"
    RANK_COLLAPSE = "rank-collapse"


class AlphaLabel(str, Enum):
    """weightwatcher's reading of alpha alone: < 2 over-trained, 2..6 well-trained, > 6 under-trained."""

    OVER_TRAINED = "over-trained"
    WELL_TRAINED = "well-trained"
    UNDER_TRAINED = "under-trained"


@dataclass(frozen=True, slots=True)
class LayerMetrics:
    """Every number measured on one analysed layer's ESD. Field names are the JSON report's keys.

    Scales: eigenvalues are those of W^T W with W oriented N x M (N >= M), conv slices multiplied by
    the conv scale, divided by N under the per-n normalisation. Every eigenvalue-valued field (lambda_*,
    xmin, xmax, mp_lambda_*, detX_lambda_min...) is in that one scale; alpha, D, counts, ranks, entropy, the
    soft ranks, mp_sigma (mean-1 units) and rand_distance do not depend on it. `None` marks what could not
    be computed (JSON null), never NaN.
    """

    num_evals: int
    lambda_max: float | None = None
    lambda_min: float | None = None
    # Power-law fit of the tail (Clauset MLE, xmin by minimum KS distance; inspector/science/powerlaw.py).
    alpha: float | None = None
    xmin: float | None = None
    xmax: float | None = None
    D: float | None = None
    sigma: float | None = None
    num_pl_spikes: int | None = None
    fit_low_confidence: bool = False
    num_fit_evals: int = 0  # eigenvalues above the fit threshold (and <= xmax): the data of the xmin search
    # fix_fingers=clip_xmax: top eigenvalues clipped, and alpha before clipping.
    num_fingers: int | None = None
    raw_alpha: float | None = None
    # fit=tpl: p(x) ~ x^-alpha exp(-Lambda x) on the same tail; log-likelihood ratio ln L_TPL - ln L_PL (>= 0,
    # nested models) and its chi-square(1) p-value (small p: the truncation is significant).
    Lambda: float | None = None
    tpl_log_likelihood_ratio: float | None = None
    tpl_p_value: float | None = None
    # Norms and ranks.
    stable_rank: float | None = None
    log_norm: float | None = None
    log_spectral_norm: float | None = None
    alpha_weighted: float | None = None
    log_alpha_norm: float | None = None
    entropy: float | None = None
    rank_loss: int | None = None
    matrix_rank: int | None = None
    weak_rank_loss: int | None = None  # eigenvalues < 1e-6 on weightwatcher's scale (its absolute rule)
    near_zero_fraction: float | None = None  # eigenvalues < 1e-6 x the mean eigenvalue (scale-free)
    # Marchenko-Pastur bulk fit (inspector/science/mp.py); the rule is in settings (spike rule, MP method).
    mp_sigma: float | None = None
    mp_lambda_plus: float | None = None
    mp_lambda_minus: float | None = None
    mp_tw_scale: float | None = None
    mp_spike_cutoff: float | None = None
    num_spikes: int | None = None
    mp_softrank: float | None = None
    # Phase evidence (inspector/science/phases.py, docs/phases.md), all relative to the quantile MP fit's
    # lambda_+ and scale-free: the bulk's KS distance to MP and its null 99th percentile at this M and Q;
    # (lambda_max - lambda_+) / s_TW;
    # outliers beyond lambda_+ + 2 s_TW, those at least 25% above lambda_+, and their share of the trace;
    # outliers below 2 lambda_+ as a share of all eigenvalues; log10(lambda_max / lambda_+); Vuong's
    # normalised log-likelihood ratio power law vs exponential above the bulk (> 0: power law) with its
    # p-value; xmin / lambda_+.
    mp_bulk_ks: float | None = None
    mp_bulk_ks_null: float | None = None
    lambda_max_tw: float | None = None
    num_outliers: int | None = None
    num_separated_spikes: int | None = None
    outlier_mass: float | None = None
    tail_decades: float | None = None
    near_edge_share: float | None = None
    tail_lr: float | None = None
    tail_lr_p: float | None = None
    xmin_over_edge: float | None = None
    # SETOL ERG condition (detX; inspector/science/detx.py) and Delta lambda_min = xmin - detX_lambda_min.
    detX_num: int | None = None  # noqa: N815 - weightwatcher's column name
    detX_lambda_min: float | None = None  # noqa: N815
    delta_lambda_min: float | None = None
    # --randomize (inspector/science/randomize.py): element-shuffled ESD.
    rand_distance: float | None = None
    rand_lambda_max: float | None = None
    rand_mp_sigma: float | None = None
    num_traps: int | None = None
    # Counts of the eigenvalues in equal log10 bins (inspector.science.esd), drawn as the table's sparkline.
    esd_histogram: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class EsdSample:
    """The eigenvalues of one layer's ESD on the report's scale, or a bounded sample of them, for plots
    (`inspector.science.esd.sample_spectrum`).

    Attributes:
        values: ascending eigenvalues kept.
        weights: how many eigenvalues each kept value stands for (1 for the exact tail).
        total: eigenvalues of the layer.
    """

    values: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]
    total: int


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """One layer of one model: what it is, whether it was analysed, and what was measured.

    Attributes:
        index: 0-based position among the model's weight tensors, in file order.
        name: the layer's name (the tensor name, or the consumer node's name for generated names).
        kind: how the tensor was read (dense, conv2d...).
        role: attention / mlp / embedding / output where known.
        shape: the tensor's shape as stored.
        dtype: the stored element type ("F32", "BF16", "Q4_K"...), or the encoding it was decoded from.
        encoding: what the values were decoded from when they are not read as stored: a quantisation
            (`gptq-int4-g128`, `nf4`, `Q4_K`, `qlinear-int8`), a scale grid, a LoRA update; None otherwise.
        status: analysed, skipped or failed.
        reason: why a layer was skipped or failed, in words; None when analysed.
        N, M: matrix dimensions after orientation (N >= M); per slice for conv kernels.
        num_slices: matrices pooled into the ESD (kh*kw for a conv kernel, else 1).
        slice_index: the slice's position when conv slices are reported one by one.
        aliases: other names sharing these weights (analysed once).
        stored_name: the name in the file when it differs from `name`.
        source_op: the format's operator or class that uses the tensor ("Gemm", "Dense").
        metrics: measured numbers; None unless analysed.
        phase: the HTSR phase, where classified (inspector.science.phases.label).
        phase_confidence: 0.5 (on a threshold) to 1 (every deciding test a band from its threshold).
        phase_neighbour: the phase across the weakest deciding test, when the evidence sits on that boundary.
        phase_rule: the rule that decided the phase, in words.
        alpha_label: the alpha band label, where alpha is known.
        spectrum: the ESD's eigenvalues (a bounded sample), kept only when plots are asked for; no
            report but the plots reads it, and records compare equal without it.
    """

    index: int
    name: str
    kind: LayerKind
    role: Role | None
    shape: tuple[int, ...]
    dtype: str
    status: Status
    reason: str | None = None
    encoding: str | None = None
    N: int | None = None
    M: int | None = None
    num_slices: int = 1
    slice_index: int | None = None
    aliases: tuple[str, ...] = ()
    stored_name: str | None = None
    source_op: str | None = None
    metrics: LayerMetrics | None = None
    phase: Phase | None = None
    phase_confidence: float | None = None
    phase_neighbour: Phase | None = None
    phase_rule: str | None = None
    alpha_label: AlphaLabel | None = None
    spectrum: EsdSample | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Summary:
    """Per-model aggregates. Means are over analysed layers whose value is defined (a failed fit is
    never averaged in), and `analyzed_with_alpha` says how many layers the alpha means cover."""

    analyzed: int
    skipped: int
    failed: int
    analyzed_with_alpha: int = 0
    mean_alpha: float | None = None
    alpha_weighted: float | None = None
    log_alpha_norm: float | None = None
    log_norm: float | None = None
    log_spectral_norm: float | None = None
    stable_rank: float | None = None
    mp_softrank: float | None = None
    phase_counts: dict[str, int] = field(default_factory=dict)
    alpha_label_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LayerGroup:
    """Records that are one layer's members, summarised together: the experts of one projection.

    Attributes:
        name: what the members share (the stacked tensor's name, or the per-expert names with the expert
            index as `*`: `model.layers.0.block_sparse_moe.experts.*.w1.weight`).
        kind: "experts".
        basis: how the members were recognised ("config.json: num_local_experts = 8", "names").
        members: the members' labels (`name[slice_index]` for a stack), in report order.
        analyzed: members analysed.
        mean_alpha, min_alpha, max_alpha, std_alpha: alpha across the analysed members (population std).
        mean_lambda_max, max_lambda_max: lambda_max across them.
        mean_stable_rank, mean_log_norm: their means.
    """

    name: str
    kind: str
    basis: str
    members: tuple[str, ...]
    analyzed: int
    mean_alpha: float | None = None
    min_alpha: float | None = None
    max_alpha: float | None = None
    std_alpha: float | None = None
    mean_lambda_max: float | None = None
    max_lambda_max: float | None = None
    mean_stable_rank: float | None = None
    mean_log_norm: float | None = None


@dataclass(frozen=True, slots=True)
class BaseComparison:
    """A merged adapter weight against the base weight it was merged into (`--base`).

    Attributes:
        name: the weight's name (the base's and the merged record's).
        base_alpha, merged_alpha, alpha_change: alpha of W, of the merged weight, and merged - base.
        base_lambda_max, merged_lambda_max: the top eigenvalue of each.
        base_stable_rank, merged_stable_rank: the stable rank of each.
        relative_change: ||W' - W||_F / ||W||_F, the size of the update as merged.
        update_rank: the numerical rank of W' - W (r for LoRA; DoRA's row rescaling can raise it).
    """

    name: str
    base_alpha: float | None
    merged_alpha: float | None
    alpha_change: float | None
    base_lambda_max: float | None
    merged_lambda_max: float | None
    base_stable_rank: float | None
    merged_stable_rank: float | None
    relative_change: float | None
    update_rank: int | None


@dataclass(frozen=True, slots=True)
class FileError:
    """Why a file could not be read: the error's type name and its one-line message."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class ModelReport:
    """The analysis of one PATH: its layers and summary, or the error that stopped reading it."""

    path: str
    format: str | None
    layers: tuple[LayerRecord, ...] = ()
    summary: Summary | None = None
    error: FileError | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    groups: tuple[LayerGroup, ...] = ()
    base_comparisons: tuple[BaseComparison, ...] = ()
