"""The layers most worth a look in a report, and why: each concern a layer can raise, ranked, grouped
into the summary's "look at" lines. Every human report takes these lines from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from inspector.records import Phase, Status
from inspector.render import safe_text
from inspector.render.chars import plural
from inspector.render.view import Row, alpha_at_bound, phase_boundary
from inspector.science.phases import OVER_TRAINED_BELOW, UNDER_TRAINED_ABOVE
from inspector.science.powerlaw import SMALL_N_CUTOFF


class Concern(IntEnum):
    """What makes a layer worth a look; a lower value is more urgent."""

    FAILED = 0
    RANK_COLLAPSE = 1
    VERY_HEAVY_TAIL = 2
    RANDOM_LIKE = 3
    CORRELATION_TRAPS = 4
    BLEEDING_OUT = 5
    THIN_TAIL = 6
    NO_POWER_LAW = 7
    AT_BOUND = 8
    PHASE_BOUNDARY = 9
    LOW_CONFIDENCE = 10


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason to look at one layer."""

    row: Row
    concern: Concern
    reason: str


def _concerns(row: Row) -> list[Finding]:
    layer, metrics = row.layer, row.layer.metrics
    if layer.status is Status.FAILED:
        return [Finding(row, Concern.FAILED, f"failed: {safe_text(layer.reason or 'no reason given', 200)}")]
    if metrics is None:
        return []
    found: list[Finding] = []

    def add(concern: Concern, reason: str) -> None:
        found.append(Finding(row, concern, reason))

    alpha = metrics.alpha
    phase = layer.phase
    if phase is Phase.RANK_COLLAPSE:
        share = metrics.near_zero_fraction or 0.0
        add(Concern.RANK_COLLAPSE, f"rank collapse: {share:.0%} of the eigenvalues are near zero")
    if phase is Phase.HEAVY_TAILED and alpha is not None and alpha < OVER_TRAINED_BELOW:
        add(
            Concern.VERY_HEAVY_TAIL,
            f"alpha {alpha:.2f} < {OVER_TRAINED_BELOW:g}: a very heavy tail, possibly over-fitted",
        )
    if phase is Phase.RANDOM_LIKE:
        add(Concern.RANDOM_LIKE, CONCERN_TEXT[Concern.RANDOM_LIKE])
    if metrics.num_traps:
        add(
            Concern.CORRELATION_TRAPS,
            f"{plural(metrics.num_traps, 'correlation trap')}: spikes that survive shuffling the weights",
        )
    if phase is Phase.BLEEDING_OUT:
        add(Concern.BLEEDING_OUT, CONCERN_TEXT[Concern.BLEEDING_OUT])
    if (
        phase not in (Phase.RANDOM_LIKE, Phase.BLEEDING_OUT)
        and alpha is not None
        and alpha > UNDER_TRAINED_ABOVE
    ):
        add(Concern.THIN_TAIL, f"alpha {alpha:.2f} > {UNDER_TRAINED_ABOVE:g}: no heavy tail, under-trained")
    if phase is Phase.BULK_DECAY:
        # The classifier's deciding rule says why the tail is not (yet) a power law.
        add(Concern.NO_POWER_LAW, f"bulk-decay: {layer.phase_rule or CONCERN_TEXT[Concern.NO_POWER_LAW]}")
    if alpha_at_bound(metrics):
        add(Concern.AT_BOUND, CONCERN_TEXT[Concern.AT_BOUND])
    boundary = phase_boundary(layer)
    if boundary is not None:
        neighbour, confidence = boundary
        sure = f", confidence {confidence:.2f}" if confidence is not None else ""
        add(Concern.PHASE_BOUNDARY, f"on the boundary with {neighbour.value}{sure}")
    if alpha is not None and metrics.fit_low_confidence:
        add(
            Concern.LOW_CONFIDENCE,
            f"alpha fitted on {plural(metrics.num_fit_evals, 'eigenvalue')}"
            f" (fewer than {SMALL_N_CUTOFF}): uncertain",
        )
    return found


#: What a concern means, for a line that names several layers at once.
CONCERN_TEXT: dict[Concern, str] = {
    Concern.FAILED: "could not be measured",
    Concern.RANK_COLLAPSE: "rank collapse: many eigenvalues near zero",
    Concern.VERY_HEAVY_TAIL: f"alpha < {OVER_TRAINED_BELOW:g}: a very heavy tail, possibly over-fitted",
    Concern.RANDOM_LIKE: "random-like ESD: nothing learned beyond noise",
    Concern.CORRELATION_TRAPS: "correlation traps: spikes that survive shuffling the weights",
    Concern.BLEEDING_OUT: "bleeding-out: barely moved from random",
    Concern.THIN_TAIL: f"alpha > {UNDER_TRAINED_ABOVE:g}: no heavy tail, under-trained",
    Concern.NO_POWER_LAW: "bulk-decay: an eroded bulk edge without a power-law tail",
    Concern.AT_BOUND: "alpha stopped on the truncated power law's bound: the tail is no power law",
    Concern.PHASE_BOUNDARY: "the evidence sits on the boundary between two phases",
    Concern.LOW_CONFIDENCE: f"alpha fitted on fewer than {SMALL_N_CUTOFF} eigenvalues: uncertain",
}
#: Lines the summary spends on layers worth a look; further layers are counted.
WORTH_A_LOOK = 5
#: A concern shared by this many layers or more is one line naming them, not a line each.
GROUP_AT = 3


@dataclass(frozen=True, slots=True)
class AttentionLine:
    """One line of "look at": a layer with its most urgent reasons, or several layers sharing one concern."""

    concern: Concern
    rows: tuple[Row, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Attention:
    """The layers most worth a look, most urgent first, and how many layers with a concern were left out."""

    lines: tuple[AttentionLine, ...]
    more: int


def attention(report_rows: Iterable[Row], limit: int = WORTH_A_LOOK) -> Attention:
    """Rank layers by their most urgent concern (then by how far alpha is from the band), in `limit` lines."""
    by_concern: dict[Concern, list[tuple[float, Row, list[Finding]]]] = {}
    for row in report_rows:
        found = sorted(_concerns(row), key=lambda finding: finding.concern)
        if not found:
            continue
        alpha = row.layer.metrics.alpha if row.layer.metrics is not None else None
        distance = 0.0 if alpha is None else max(OVER_TRAINED_BELOW - alpha, alpha - UNDER_TRAINED_ABOVE, 0.0)
        by_concern.setdefault(found[0].concern, []).append((-distance, row, found))
    lines: list[AttentionLine] = []
    left_out = 0
    for concern in sorted(by_concern):
        group = sorted(by_concern[concern], key=lambda item: (item[0], item[1].number or 0))
        if len(lines) >= limit:
            left_out += len(group)
        elif len(group) >= GROUP_AT:
            members = sorted((row for _, row, _ in group), key=lambda row: row.number or 0)
            lines.append(AttentionLine(concern, tuple(members), (CONCERN_TEXT[concern],)))
        else:
            for _, row, found in group:
                if len(lines) >= limit:
                    left_out += 1
                    continue
                lines.append(AttentionLine(concern, (row,), tuple(finding.reason for finding in found[:2])))
    return Attention(lines=tuple(lines), more=left_out)
