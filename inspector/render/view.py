"""What every report for people shows, decided once: row order and numbers, cell texts, skip categories,
how the phase and the alpha band relate, the legend and the footer. The characters and number formats are
`render.chars`; the layers worth a look, `render.attention`.

The terminal table (`render.table`), Markdown (`render.markdown`), HTML (`render.html`) and the plots draw
from this module only, so they cannot disagree about what a row says or which row is number 3.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from inspector.gate import GateResult, Rule
from inspector.records import LayerMetrics, LayerRecord, ModelReport, Phase, Status, Summary
from inspector.render.chars import UNICODE, Glyphs, display_text, number, plural, sparkline
from inspector.science.phases import OVER_TRAINED_BELOW, UNDER_TRAINED_ABOVE
from inspector.science.powerlaw import SMALL_N_CUTOFF, TPL_ALPHA_BOUNDS

# --- Order and numbers ----------------------------------------------------------------------------------


class RowOrder(str, Enum):
    """How rows are ordered: the file's own order, unless that order is plain text order."""

    FILE = "file order"
    NATURAL = "name order, numbers by value"


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that reads digit runs as numbers: layers.2 before layers.10."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(name) if part
    )


def row_order(layers: Sequence[LayerRecord]) -> RowOrder:
    """NATURAL when the file lists its tensors in plain text order (safetensors and HDF5 writers sort names,
    which puts layers.10 before layers.2); FILE otherwise, because then the order is the model's own."""
    names = [layer.name for layer in layers]
    if len(names) > 1 and names == sorted(names) and sorted(names, key=natural_key) != names:
        return RowOrder.NATURAL
    return RowOrder.FILE


def ordered_layers(layers: Sequence[LayerRecord]) -> tuple[list[LayerRecord], RowOrder]:
    """The records in display order, and which order that is."""
    order = row_order(layers)
    if order is RowOrder.FILE:
        return list(layers), order
    return sorted(layers, key=lambda layer: (natural_key(layer.name), layer.slice_index or 0)), order


# --- Why a tensor was skipped ---------------------------------------------------------------------------


class SkipCategory(str, Enum):
    """The kind of reason a tensor was not analysed, read from the reason's words."""

    NOT_A_MATRIX = "not a matrix"
    NOT_A_WEIGHT = "not a weight"
    NOT_SELECTED = "not selected"
    EXCLUDED = "excluded"
    TOO_SMALL = "too small"
    TOO_LARGE = "too large"
    EMPTY = "empty"
    UNSUPPORTED = "unsupported values"
    OTHER = "other"


#: How a count of skipped tensors of each category reads in the footer: (one, several).
SKIP_PHRASES: dict[SkipCategory, tuple[str, str]] = {
    SkipCategory.NOT_A_MATRIX: ("bias, norm or other non-matrix", "biases, norms and other non-matrices"),
    SkipCategory.NOT_A_WEIGHT: (
        "non-weight (optimizer state, buffer)",
        "non-weights (optimizer state, buffers)",
    ),
    SkipCategory.NOT_SELECTED: ("not selected by --layer", "not selected by --layer"),
    SkipCategory.EXCLUDED: ("excluded by --exclude", "excluded by --exclude"),
    SkipCategory.TOO_SMALL: (
        "with fewer eigenvalues than --min-evals",
        "with fewer eigenvalues than --min-evals",
    ),
    SkipCategory.TOO_LARGE: (
        "with more eigenvalues than --max-evals",
        "with more eigenvalues than --max-evals",
    ),
    SkipCategory.EMPTY: ("empty tensor", "empty tensors"),
    SkipCategory.UNSUPPORTED: ("with unsupported values", "with unsupported values"),
    SkipCategory.OTHER: ("for another reason", "for other reasons"),
}

# The reasons are written by inspector.layers (options, shapes, dtypes) and the readers (format-specific
# skips); the first pattern that matches decides. tests/render/test_view.py checks that every reason the
# fixtures produce falls in a named category, so a reworded reason cannot silently become OTHER.
_SKIP_PATTERNS: tuple[tuple[SkipCategory, re.Pattern[str]], ...] = (
    # The option-caused reasons name the setting as a flag (command line) or a field (Python API).
    (SkipCategory.NOT_SELECTED, re.compile(r"--layer\b|\blayer_globs=")),
    (SkipCategory.EXCLUDED, re.compile(r"--exclude\b|\bexclude_globs=")),
    (SkipCategory.TOO_SMALL, re.compile(r"--min-evals\b|\bmin_evals=")),
    (SkipCategory.TOO_LARGE, re.compile(r"--max-evals\b|\bmax_evals=")),
    (SkipCategory.EMPTY, re.compile(r"\bempty tensor\b")),
    (SkipCategory.NOT_A_WEIGHT, re.compile(r"optimizer state|not a weight\)|\bbuffer\b", re.IGNORECASE)),
    (
        SkipCategory.UNSUPPORTED,
        re.compile(
            r"not floating point|not supported|not dequanti[sz]ed|cannot be recovered|unsupported"
            r"|quanti[sz]|not read\b",
            re.IGNORECASE,
        ),
    ),
    (
        SkipCategory.NOT_A_MATRIX,
        re.compile(r"not a (weight |layer )?matrix|not a kernel|vectors", re.IGNORECASE),
    ),
)


def skip_category(reason: str | None) -> SkipCategory:
    """The category of a skip reason (OTHER when no pattern knows it)."""
    for category, pattern in _SKIP_PATTERNS:
        if reason and pattern.search(reason):
            return category
    return SkipCategory.OTHER


# --- Phase and alpha band -------------------------------------------------------------------------------

#: What each phase says about the layer, in a few words (legend) and in a sentence (HTML, docs).
PHASE_SHORT: dict[Phase, str] = {
    Phase.RANDOM_LIKE: "noise, nothing learned",
    Phase.BLEEDING_OUT: "learning has just begun",
    Phase.BULK_PLUS_SPIKES: "a little structure learned",
    Phase.BULK_DECAY: "training under way",
    Phase.HEAVY_TAILED: "power-law tail, trained",
    Phase.RANK_COLLAPSE: "collapsed",
}
PHASE_MEANING: dict[Phase, str] = {
    Phase.RANDOM_LIKE: "the ESD is Marchenko-Pastur noise with no outlier: nothing learned beyond a random "
    "matrix (or the layer is still at its initialisation)",
    Phase.BLEEDING_OUT: "an MP bulk with a little eigenmass just above its edge: learning has just begun",
    Phase.BULK_PLUS_SPIKES: "an MP bulk plus a few spikes well separated from it: some structure learned",
    Phase.BULK_DECAY: "the bulk is no longer MP but the tail is not a clean power law: training under way",
    Phase.HEAVY_TAILED: "the tail follows a power law: the signature of a well-trained layer",
    Phase.RANK_COLLAPSE: "many eigenvalues sit at zero: the layer has lost rank (collapsed)",
}

#: One colour per phase for plots and HTML (Okabe-Ito, told apart with the common colour-vision deficiencies).
PHASE_COLOURS: dict[Phase, str] = {
    Phase.RANDOM_LIKE: "#E69F00",
    Phase.BLEEDING_OUT: "#CC79A7",
    Phase.BULK_PLUS_SPIKES: "#56B4E9",
    Phase.BULK_DECAY: "#0072B2",
    Phase.HEAVY_TAILED: "#009E73",
    Phase.RANK_COLLAPSE: "#D55E00",
}

#: The phases whose tail is a power law that alpha describes. weightwatcher's alpha band (< 2 over-trained,
#: 2..6 well-trained, > 6 under-trained) was read on such layers; on an MP-like or degenerate ESD alpha is
#: fitted to noise or a few spikes (small random matrices give alphas of 4-7), so there the phase decides.
BAND_APPLIES: frozenset[Phase] = frozenset({Phase.HEAVY_TAILED})

#: Short band words for narrow tables.
BAND_SHORT = {"over-trained": "over", "well-trained": "well", "under-trained": "under"}


def band_applies(layer: LayerRecord) -> bool:
    """Whether the alpha band reads the same as the phase (True too when there is no phase to overrule it)."""
    return layer.phase is None or layer.phase in BAND_APPLIES


# --- Rows -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One record as every report shows it.

    Attributes:
        layer: the record.
        number: position among the measured layers (analysed or failed) in display order, from 1; None for
            a skipped tensor. Plots and HTML use the same numbers.
        category: why a skipped tensor was skipped.
    """

    layer: LayerRecord
    number: int | None
    category: SkipCategory | None = None

    @property
    def measured(self) -> bool:
        return self.layer.status is not Status.SKIPPED


def layer_label(layer: LayerRecord) -> str:
    """The name a row shows: the tensor name, with the slice position in per-slice mode."""
    return layer.name if layer.slice_index is None else f"{layer.name}[{layer.slice_index}]"


def rows(report: ModelReport) -> tuple[list[Row], RowOrder]:
    """Every record of a readable report as a row, in display order, numbered."""
    ordered, order = ordered_layers(report.layers)
    result: list[Row] = []
    counter = 0
    for layer in ordered:
        if layer.status is Status.SKIPPED:
            result.append(Row(layer, None, skip_category(layer.reason)))
        else:
            counter += 1
            result.append(Row(layer, counter))
    return result, order


#: Column keys, in the order a full table shows them.
COLUMN_KEYS = (
    "number",
    "layer",
    "kind",
    "shape",
    "esd",
    "alpha",
    "D",
    "lambda_max",
    "phase",
    "band",
    "num_pl_spikes",
    "alpha_weighted",
    "log_norm",
    "stable_rank",
    "num_spikes",
    "rand_distance",
    "num_traps",
)
#: Columns shown only when a record has a value for them: the --randomize measurements.
OPTIONAL_KEYS = frozenset({"rand_distance", "num_traps"})
#: Columns whose cells are numbers (right-aligned, sorted as numbers in HTML).
NUMERIC_KEYS = frozenset(
    {
        "number",
        "alpha",
        "D",
        "lambda_max",
        "num_pl_spikes",
        "alpha_weighted",
        "log_norm",
        "stable_rank",
        "num_spikes",
        "rand_distance",
        "num_traps",
    }
)


def column_keys(report_rows: Sequence[Row]) -> tuple[str, ...]:
    """The columns a full table of these rows shows: every column, but the --randomize ones only when a
    row was randomised."""

    def present(key: str) -> bool:
        return any(
            row.layer.metrics is not None and getattr(row.layer.metrics, key) is not None
            for row in report_rows
        )

    return tuple(key for key in COLUMN_KEYS if key not in OPTIONAL_KEYS or present(key))


def header(key: str, glyphs: Glyphs = UNICODE, *, short: bool = False) -> str:
    """A column's header."""
    lam = glyphs.lam
    headers = {
        "number": "#",
        "layer": "layer",
        "kind": "kind",
        "shape": "shape",
        "esd": f"ESD (log {lam})",
        "alpha": "alpha",
        "D": "D",
        "lambda_max": f"{lam} max" if not glyphs.ascii else "lambda_max",
        "phase": "phase",
        "band": "band" if short else "alpha band",
        "num_pl_spikes": "tail",
        "alpha_weighted": "alpha_w",
        "log_norm": "log_norm",
        "stable_rank": "st_rank",
        "num_spikes": "spikes",
        "rand_distance": "rand_dist",
        "num_traps": "traps",
    }
    return headers[key]


#: Markers in cells, explained by the legend.
LOW_CONFIDENCE_MARK = "?"
OVERRULED_MARK = "*"
AT_BOUND_MARK = "!"
BOUNDARY_MARK = "~"


def phase_boundary(layer: LayerRecord) -> tuple[Phase, float | None] | None:
    """The neighbouring phase and the confidence when the phase classifier says the evidence sits on the
    boundary between two phases (its `phase_neighbour`, with `phase_confidence`)."""
    neighbour = layer.phase_neighbour
    if neighbour is None or neighbour is layer.phase:
        return None
    return neighbour, layer.phase_confidence


#: How close (relative) to a bound of the truncated power law's search an alpha counts as on it.
AT_BOUND_TOLERANCE = 1e-6


def alpha_at_bound(metrics: LayerMetrics | None) -> bool:
    """Whether a --fit tpl alpha stopped on its search's bound (1 or 50): no measured exponent, the tail
    is not a truncated power law at all (alpha = 1 with a cutoff is an exponential)."""
    if metrics is None or metrics.alpha is None or metrics.Lambda is None:
        return False
    return any(math.isclose(metrics.alpha, bound, rel_tol=AT_BOUND_TOLERANCE) for bound in TPL_ALPHA_BOUNDS)


def cell(row: Row, key: str, glyphs: Glyphs = UNICODE, *, short: bool = False) -> str:
    """The text of one cell ("" where a column says nothing about this row)."""
    layer = row.layer
    metrics = layer.metrics
    if key == "number":
        return "" if row.number is None else str(row.number)
    if key == "layer":
        return display_text(layer_label(layer), glyphs)
    if key == "kind":
        return layer.kind.value
    if key == "shape":
        return glyphs.times.join(str(dim) for dim in layer.shape)
    if layer.status is Status.FAILED:
        return "failed" if key == "phase" else ""
    if metrics is None:
        return ""
    if key == "esd":
        return sparkline(metrics.esd_histogram, glyphs)
    if key == "alpha":
        text = number(metrics.alpha, 2, glyphs)
        if alpha_at_bound(metrics):
            text += AT_BOUND_MARK
        return (
            text + LOW_CONFIDENCE_MARK if metrics.alpha is not None and metrics.fit_low_confidence else text
        )
    if key == "D":
        return number(metrics.D, 3, glyphs)
    if key == "phase":
        if layer.phase is None:
            return glyphs.none
        return layer.phase.value + (BOUNDARY_MARK if phase_boundary(layer) is not None else "")
    if key == "band":
        if layer.alpha_label is None:
            return glyphs.none
        text = BAND_SHORT[layer.alpha_label.value] if short else layer.alpha_label.value
        return text if band_applies(layer) else text + OVERRULED_MARK
    value = getattr(metrics, key)
    return number(value, 2 if key != "stable_rank" else 1, glyphs)


def sort_value(row: Row, key: str) -> float | str | None:
    """The value an HTML table sorts a column by (numbers as numbers, None last)."""
    layer = row.layer
    if key == "number":
        return row.number
    if key in ("layer", "kind", "phase"):
        return (layer.phase.value if layer.phase else "") if key == "phase" else cell(row, key)
    if key == "shape":
        return float(math.prod(layer.shape))
    if key == "band":
        return layer.alpha_label.value if layer.alpha_label else None
    if layer.metrics is None or key == "esd":
        return None
    value = getattr(layer.metrics, key, None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- Summary, legend, footer ----------------------------------------------------------------------------


def counts_line(summary: Summary, total: int) -> str:
    """'analysed 3 of 6 tensors; 3 skipped, 0 failed'."""
    return (
        f"analysed {summary.analyzed} of {plural(total, 'tensor')}; "
        f"{summary.skipped} skipped, {summary.failed} failed"
    )


def alpha_line(summary: Summary, glyphs: Glyphs = UNICODE) -> str | None:
    """Mean and weighted alpha with what they cover, or None when no alpha was fitted."""
    if summary.mean_alpha is None:
        return None
    parts = [f"mean alpha {summary.mean_alpha:.2f} over {plural(summary.analyzed_with_alpha, 'layer')}"]
    if summary.alpha_weighted is not None:
        parts.append(f"alpha-weighted {summary.alpha_weighted:.2f}")
    if summary.log_norm is not None:
        parts.append(f"log-norm {summary.log_norm:.2f}")
    return glyphs.dot.join(parts)


def phase_counts(summary: Summary) -> list[tuple[Phase, int]]:
    """Phases present, in the order of the 5+1 phases."""
    return [
        (phase, summary.phase_counts[phase.value]) for phase in Phase if summary.phase_counts.get(phase.value)
    ]


def legend(report_rows: Sequence[Row], glyphs: Glyphs = UNICODE) -> list[str]:
    """The lines that explain what this table shows (only the phases and marks that occur in it)."""
    measured = [row for row in report_rows if row.layer.metrics is not None]
    if not measured:
        return []
    phases = [phase for phase in Phase if any(row.layer.phase is phase for row in measured)]
    lines = [
        "phase (the verdict, read from the whole ESD): "
        + glyphs.dot.join(f"{phase.value} = {PHASE_SHORT[phase]}" for phase in phases)
    ]
    low, high = f"{OVER_TRAINED_BELOW:g}", f"{UNDER_TRAINED_ABOVE:g}"
    band = (
        f"alpha band = alpha alone (< {low} over-trained, {low}-{high} well, > {high} under);"
        " it reads true for heavy-tailed layers only"
    )
    if any(not band_applies(row.layer) and row.layer.alpha_label is not None for row in measured):
        band += f", {OVERRULED_MARK} marks a band the phase overrules"
    lines.append(band)
    if any(row.layer.metrics is not None and row.layer.metrics.fit_low_confidence for row in measured):
        lines.append(f"{LOW_CONFIDENCE_MARK} = alpha fitted on fewer than {SMALL_N_CUTOFF} eigenvalues")
    if any(phase_boundary(row.layer) is not None for row in measured):
        lines.append(f"{BOUNDARY_MARK} = a phase on the boundary with another (look at names it)")
    if any(alpha_at_bound(row.layer.metrics) for row in measured):
        low = f"{TPL_ALPHA_BOUNDS[0]:.0f}"
        lines.append(
            f"{AT_BOUND_MARK} = the truncated power law's alpha stopped on its bound ({low}): not a measured"
            " exponent; the tail is closer to an exponential, read the phase"
        )
    if any(row.layer.metrics is not None and row.layer.metrics.rand_distance is not None for row in measured):
        lines.append(
            "rand_dist = distance of the ESD from that of the element-shuffled matrix (0: nothing learned);"
            " traps = spikes that survive shuffling (correlation traps)"
        )
    return lines


def hidden_line(report_rows: Sequence[Row]) -> str | None:
    """The footer counting skipped tensors by category, when they are not listed."""
    counts = Counter(row.category for row in report_rows if row.category is not None)
    if not counts:
        return None
    parts = [
        f"{count} {SKIP_PHRASES[category][0 if count == 1 else 1]}"
        for category, count in sorted(
            counts.items(), key=lambda item: (-item[1], list(SkipCategory).index(item[0]))
        )
    ]
    total = sum(counts.values())
    return f"{plural(total, 'tensor')} not shown: {', '.join(parts)}; --show-skipped lists them"


@dataclass(frozen=True, slots=True)
class GateLine:
    """One line of the gate's verdict: a heading, or an item (a layer and why) under it.

    Attributes:
        text: the heading, or the item's reason.
        style: "passed", "failed" (the verdict), "violation", "known", "unchecked".
        layer: the layer of an item line; None for a heading.
    """

    text: str
    style: str
    layer: str | None = None


def gate_lines(gate: GateResult, limit: int) -> list[GateLine]:
    """The gate's verdict, then each failing violation, the known ones and the unchecked layers (at most
    `limit` items of each, the rest counted)."""
    compared = f" against the baseline {gate.baseline}" if gate.baseline else ""
    if gate.passed:
        lines = [GateLine(f"gate: passed{compared}", "passed")]
    else:
        lines = [GateLine(f"gate: {plural(len(gate.violations), 'violation')}{compared}", "failed")]

    def items(found: Sequence[tuple[str, str]], style: str) -> None:
        lines.extend(GateLine(reason, style, layer) for layer, reason in found[:limit])
        if len(found) > limit:
            lines.append(GateLine(f"and {len(found) - limit} more", style))

    items([(v.layer, v.describe()) for v in gate.violations], "violation")
    if gate.known:
        lines.append(
            GateLine(f"known from the baseline, not failing: {plural(len(gate.known), 'violation')}", "known")
        )
        items([(v.layer, v.describe()) for v in gate.known], "known")
    strict = any(violation.rule_id is Rule.UNCHECKED for violation in gate.violations)
    if gate.unchecked and not strict:
        lines.append(
            GateLine(
                f"not checked: {plural(len(gate.unchecked), 'layer')} (--strict fails on them)", "unchecked"
            )
        )
        items([(item.layer, item.reason) for item in gate.unchecked], "unchecked")
    return lines


def order_line(order: RowOrder, count: int) -> str:
    """What the row numbers mean."""
    source = "the file's order" if order is RowOrder.FILE else "name order with numbers read as numbers"
    return f"# numbers the {plural(count, 'measured layer')} in {source}"
