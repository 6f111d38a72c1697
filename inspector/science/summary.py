"""Per-model aggregates of the layer records (the alpha label itself is
`inspector.science.phases.alpha_label`).

weightwatcher's `get_summary` takes plain means over every row, failed fits (alpha = -1) included, so one
failed layer drags mean alpha down and labels itself "over-trained" (reference §4 and §8, items 6). Here a
mean covers the analysed layers whose value is defined, a failed fit is never averaged in, and
`analyzed_with_alpha` says how many layers the alpha means are over.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from inspector.records import LayerRecord, Status, Summary


def _mean(values: Iterable[float | int | None]) -> float | None:
    defined = [float(value) for value in values if value is not None and math.isfinite(value)]
    return math.fsum(defined) / len(defined) if defined else None


def summarize(records: Sequence[LayerRecord]) -> Summary:
    """Counts by status, phase and alpha label, and the means of the model-level metrics.

    Every mean is over analysed layers (status analyzed, with metrics) whose value is defined; in per-slice
    conv mode each slice is one layer here, as it is one record in the report.
    """
    analyzed = [
        record for record in records if record.status == Status.ANALYZED and record.metrics is not None
    ]
    metrics = [record.metrics for record in analyzed if record.metrics is not None]
    with_alpha = [m for m in metrics if m.alpha is not None]
    phases = Counter(record.phase.value for record in analyzed if record.phase is not None)
    labels = Counter(record.alpha_label.value for record in analyzed if record.alpha_label is not None)
    return Summary(
        analyzed=len(analyzed),
        skipped=sum(1 for record in records if record.status == Status.SKIPPED),
        failed=sum(1 for record in records if record.status == Status.FAILED),
        analyzed_with_alpha=len(with_alpha),
        mean_alpha=_mean(m.alpha for m in with_alpha),
        alpha_weighted=_mean(m.alpha_weighted for m in with_alpha),
        log_alpha_norm=_mean(m.log_alpha_norm for m in with_alpha),
        log_norm=_mean(m.log_norm for m in metrics),
        log_spectral_norm=_mean(m.log_spectral_norm for m in metrics),
        stable_rank=_mean(m.stable_rank for m in metrics),
        mp_softrank=_mean(m.mp_softrank for m in metrics),
        phase_counts=dict(sorted(phases.items())),
        alpha_label_counts=dict(sorted(labels.items())),
    )
