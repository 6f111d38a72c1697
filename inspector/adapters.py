"""LoRA/PEFT adapters in the analysis: low-rank updates, and merged weights compared with their base.

A LoRA update ΔW = scaling * B @ A has rank r: its r nonzero eigenvalues are the whole spectrum (the rest
are zeros). Its record keeps what the full matrix gives (lambda_max, the norms, the stable rank, the
numerical rank) and has an alpha only when r gives at least `--min-evals` eigenvalues to fit: a tail fitted
on fewer points is not an exponent (`without_fit`).

With `--base`, every merged weight (the fine-tuned model's W') is compared with the base's W: alpha,
lambda_max and stable rank of both, `||W' - W||_F / ||W||_F` and the numerical rank of W' - W
(`compare_with_base`), as `wwinspect compare BASE FINETUNED` compares two checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from formats.errors import TensorError
from formats.types import ModelStructure, TensorRef
from inspector.errors import LayerFailedError
from inspector.layers import layer_matrices, plan_layer
from inspector.options import AnalysisOptions
from inspector.records import BaseComparison, LayerMetrics, LayerRecord, Status
from inspector.science.eigen import EigenBackend
from inspector.science.metrics import measure_layer

#: The metrics that come from the power-law fit of the tail.
_FIT_FIELDS = (
    "alpha",
    "xmin",
    "xmax",
    "D",
    "sigma",
    "num_pl_spikes",
    "raw_alpha",
    "num_fingers",
    "Lambda",
    "tpl_log_likelihood_ratio",
    "tpl_p_value",
    "alpha_weighted",
    "log_alpha_norm",
    "delta_lambda_min",
)
#: The merged records' encoding says so (`lora-merged-r8`).
MERGED_MARK = "-merged-"


def without_fit(metrics: LayerMetrics) -> LayerMetrics:
    """The metrics of a matrix whose rank is too small to fit a tail: every fit-derived value None."""
    cleared: dict[str, object] = dict.fromkeys(_FIT_FIELDS)
    return dataclasses.replace(metrics, **cleared, num_fit_evals=0, fit_low_confidence=False)  # type: ignore[arg-type]


def _update_rank(delta: np.ndarray, base: np.ndarray) -> int:
    """Numerical rank of W' - W at the rounding of float32 weights of W's size (the merged weight carries
    it everywhere, which a float64 tolerance would count as rank)."""
    if not delta.any():
        return 0
    singular = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
    scale = float(np.linalg.norm(base.astype(np.float64), 2))
    tolerance = max(delta.shape) * float(np.finfo(np.float32).eps) * max(scale, float(singular[0]))
    return int(np.count_nonzero(singular > tolerance))


def compare_with_base(
    layers: Sequence[LayerRecord],
    refs: Mapping[str, TensorRef],
    base_ref: Callable[[str], TensorRef | None],
    structure: ModelStructure | None,
    options: AnalysisOptions,
    backend: EigenBackend,
) -> tuple[BaseComparison, ...]:
    """Each analysed merged weight against the base weight it was merged into."""
    found: list[BaseComparison] = []
    for record in layers:
        if record.status is not Status.ANALYZED or MERGED_MARK not in (record.encoding or ""):
            continue
        base, merged = base_ref(record.name), refs.get(record.name)
        if base is None or merged is None or record.metrics is None:
            continue
        try:
            base_values, merged_values = base.read(), merged.read()
        except TensorError:
            continue
        plan = plan_layer(base.info, options, structure)
        metrics: LayerMetrics | None = None
        if plan.skip_reason is None and plan.N is not None and plan.M is not None:
            try:
                metrics = measure_layer(
                    layer_matrices(plan, base_values),
                    N=plan.N,
                    M=plan.M,
                    scale=plan.scale,
                    options=options,
                    backend=backend,
                )
            except LayerFailedError:
                metrics = None
        base64 = np.asarray(base_values, dtype=np.float64)
        change = np.asarray(merged_values, dtype=np.float64) - base64
        base_norm = float(np.linalg.norm(base64))
        merged_alpha = record.metrics.alpha
        base_alpha = metrics.alpha if metrics is not None else None
        found.append(
            BaseComparison(
                name=record.name,
                base_alpha=base_alpha,
                merged_alpha=merged_alpha,
                alpha_change=merged_alpha - base_alpha
                if merged_alpha is not None and base_alpha is not None
                else None,
                base_lambda_max=metrics.lambda_max if metrics is not None else None,
                merged_lambda_max=record.metrics.lambda_max,
                base_stable_rank=metrics.stable_rank if metrics is not None else None,
                merged_stable_rank=record.metrics.stable_rank,
                relative_change=float(np.linalg.norm(change)) / base_norm if base_norm > 0 else None,
                update_rank=_update_rank(
                    change.reshape(change.shape[0], -1), base64.reshape(base64.shape[0], -1)
                ),
            )
        )
        del base_values, merged_values, base64, change
    return tuple(found)
