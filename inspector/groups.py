"""Members of one layer summarised together: the experts of a mixture-of-experts projection.

A mixture-of-experts layer holds E expert matrices per projection, stored as one stacked tensor
(gpt-oss `experts.gate_up_proj` (E, H, 2I), GGUF `ffn_up_exps`) or one tensor per expert (Mixtral
`block_sparse_moe.experts.3.w1.weight`). Each expert is its own record (a stack's by `slice_index`);
`summarize_groups` adds, per projection, the spread of alpha and the norms across its experts, and says how
the experts were recognised: the checkpoint's configuration when it gives the expert count, else the names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from formats.types import ModelStructure
from inspector.records import LayerGroup, LayerKind, LayerRecord, Status

#: A per-expert tensor name: the expert index between `experts.` and the rest.
_PER_EXPERT = re.compile(r"^(?P<head>.*\bexperts?\.)(?P<index>\d+)(?P<tail>\..+)$")
#: Fewest members for a group (one expert alone is not a mixture).
MIN_MEMBERS = 2


def _label(record: LayerRecord) -> str:
    return record.name if record.slice_index is None else f"{record.name}[{record.slice_index}]"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group(name: str, basis: str, members: list[LayerRecord]) -> LayerGroup:
    analysed = [record for record in members if record.status is Status.ANALYZED and record.metrics]
    alphas = [r.metrics.alpha for r in analysed if r.metrics and r.metrics.alpha is not None]
    lambdas = [r.metrics.lambda_max for r in analysed if r.metrics and r.metrics.lambda_max is not None]
    ranks = [r.metrics.stable_rank for r in analysed if r.metrics and r.metrics.stable_rank is not None]
    norms = [r.metrics.log_norm for r in analysed if r.metrics and r.metrics.log_norm is not None]
    mean_alpha = _mean(alphas)
    spread = (
        math.sqrt(sum((alpha - mean_alpha) ** 2 for alpha in alphas) / len(alphas))
        if mean_alpha is not None
        else None
    )
    return LayerGroup(
        name=name,
        kind="experts",
        basis=basis,
        members=tuple(_label(record) for record in members),
        analyzed=len(analysed),
        mean_alpha=mean_alpha,
        min_alpha=min(alphas) if alphas else None,
        max_alpha=max(alphas) if alphas else None,
        std_alpha=spread,
        mean_lambda_max=_mean(lambdas),
        max_lambda_max=max(lambdas) if lambdas else None,
        mean_stable_rank=_mean(ranks),
        mean_log_norm=_mean(norms),
    )


def summarize_groups(
    layers: Sequence[LayerRecord], structure: ModelStructure | None
) -> tuple[LayerGroup, ...]:
    """One group per expert projection: the experts of a stack, or per-expert tensors of one name."""
    if structure is not None and structure.num_experts is not None:
        basis = f"{structure.source}: {structure.experts_key} = {structure.num_experts}"
    else:
        basis = "names"
    found: dict[str, list[LayerRecord]] = {}
    for record in layers:
        if record.kind is LayerKind.DENSE and record.slice_index is not None:
            found.setdefault(record.name, []).append(record)
            continue
        match = _PER_EXPERT.match(record.name)
        if match is not None:
            found.setdefault(f"{match['head']}*{match['tail']}", []).append(record)
    return tuple(
        _group(name, basis, members) for name, members in found.items() if len(members) >= MIN_MEMBERS
    )
