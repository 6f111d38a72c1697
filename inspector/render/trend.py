"""`wwinspect trend CKPT...` as a table, JSON, CSV, or a figure (`-o trend.png`, the plot extra).

The table fits 80 columns whatever the number of checkpoints: per layer one row, with alpha's course as a
sparkline over the checkpoints (scaled to that layer's own range; its first and last value and the change
beside it), the phase of every checkpoint as one letter (legend below the table), the last phase in words,
and the MP soft rank's first and last value. Beyond `MAX_POINTS` checkpoints the sparklines and letters
show evenly spaced ones, first and last included, and say so; JSON and CSV always have every point.

JSON: `{"schema_version": 1, "tool", "command": "trend", "checkpoints": [paths], "settings", "layers":
[{"name", "points": [{"checkpoint", "status", "alpha", "phase", "mp_softrank"} or null]}], "reports"}`,
each report as in the analysis's JSON. CSV: one row per layer and checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.text import Text

from inspector import __version__
from inspector.options import AnalysisOptions
from inspector.records import Phase, Status
from inspector.render import chars, finite_or_none, safe_text
from inspector.render.chars import Glyphs
from inspector.trend import LayerTrend, Trend, TrendPoint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCHEMA_VERSION = 1
#: The most checkpoints a row's sparkline and phase letters show (the rest are evenly sampled).
MAX_POINTS = 16

#: One letter per phase for the table's phase column; F: failed, and a dot where the layer is absent.
PHASE_LETTERS: dict[Phase, str] = {
    Phase.RANDOM_LIKE: "R",
    Phase.BLEEDING_OUT: "O",
    Phase.BULK_PLUS_SPIKES: "S",
    Phase.BULK_DECAY: "D",
    Phase.HEAVY_TAILED: "H",
    Phase.RANK_COLLAPSE: "C",
}
FAILED_LETTER = "F"
NO_PHASE_LETTER = "?"


def _phase(point: TrendPoint | None) -> str | None:
    if point is None:
        return None
    if point.status is Status.FAILED:
        return "failed"
    return point.phase.value if point.phase is not None else None


def point_dict(position: int, point: TrendPoint | None) -> dict[str, Any] | None:
    if point is None:
        return None
    return {
        "checkpoint": position,
        "status": point.status.value,
        "alpha": finite_or_none(point.alpha),
        "phase": _phase(point),
        "mp_softrank": finite_or_none(point.mp_softrank),
    }


def trend_document(trend: Trend, options: AnalysisOptions, backend: str) -> dict[str, Any]:
    from inspector.render.json import report_dict, settings_dict

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "wwinspect", "version": __version__},
        "command": "trend",
        "checkpoints": list(trend.checkpoints),
        "settings": settings_dict(options, backend),
        "layers": [
            {
                "name": layer.label,
                "points": [point_dict(position, point) for position, point in enumerate(layer.points)],
            }
            for layer in trend.layers
        ],
        "reports": [report_dict(report) for report in trend.reports],
    }


def to_json(trend: Trend, options: AnalysisOptions, backend: str) -> str:
    return json.dumps(trend_document(trend, options, backend), indent=2, allow_nan=False) + "\n"


def to_csv(trend: Trend) -> str:
    buffer = io.StringIO()
    columns = ["layer", "checkpoint", "path", "status", "alpha", "phase", "mp_softrank"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for layer in trend.layers:
        for position, point in enumerate(layer.points):
            row = point_dict(position, point)
            if row is None:
                continue
            row.update(
                layer=safe_text(layer.label, 10_000), path=safe_text(trend.checkpoints[position], 10_000)
            )
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


# --- People ----------------------------------------------------------------------------------------------


def shown_positions(count: int, limit: int = MAX_POINTS) -> list[int]:
    """The checkpoints a row shows: all, or `limit` evenly spaced ones with the first and the last."""
    if count <= limit:
        return list(range(count))
    return sorted({round(step * (count - 1) / (limit - 1)) for step in range(limit)})


def alpha_sparkline(values: Sequence[float | None], glyphs: Glyphs) -> str:
    """alpha's course, one character per checkpoint, scaled to the layer's own range (a constant alpha is a
    flat middle line); a space where it is undefined."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    levels = len(glyphs.blocks) - 1  # blocks[0] is a space
    cells = []
    for value in values:
        if value is None or not math.isfinite(value):
            cells.append(" ")
        elif high - low <= 1e-12 * max(1.0, abs(high)):
            cells.append(glyphs.blocks[(levels + 1) // 2])
        else:
            cells.append(glyphs.blocks[1 + round((levels - 1) * (value - low) / (high - low))])
    return "".join(cells)


def phase_letters(points: Sequence[TrendPoint | None]) -> str:
    letters = []
    for point in points:
        if point is None:
            letters.append(".")
        elif point.status is Status.FAILED:
            letters.append(FAILED_LETTER)
        else:
            letters.append(PHASE_LETTERS[point.phase] if point.phase is not None else NO_PHASE_LETTER)
    return "".join(letters)


def _ends(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    defined = [value for value in values if value is not None and math.isfinite(value)]
    return (defined[0], defined[-1]) if defined else (None, None)


_HEADERS = ("#", "layer", "alpha", "first", "last", "Δ", "phases", "now", "softrank")


def _cells(number: int, layer: LayerTrend, positions: Sequence[int], glyphs: Glyphs) -> list[str]:
    alphas = layer.alphas()
    first, last = _ends(alphas)
    soft_first, soft_last = _ends([point.mp_softrank if point else None for point in layer.points])
    latest = next((point for point in reversed(layer.points) if point is not None), None)
    arrow = "->" if glyphs.ascii else "→"
    soft = glyphs.none
    if soft_first is not None and soft_last is not None:
        soft = f"{soft_first:.2f}{arrow}{soft_last:.2f}"
    return [
        str(number),
        chars.display_text(layer.label, glyphs),
        alpha_sparkline([alphas[i] for i in positions], glyphs),
        chars.number(first, 2, glyphs),
        chars.number(last, 2, glyphs),
        glyphs.none if first is None or last is None else f"{last - first:+.2f}",
        phase_letters([layer.points[i] for i in positions]),
        _phase(latest) or glyphs.none,
        soft,
    ]


def legend_line(glyphs: Glyphs) -> str:
    parts = [f"{letter} {phase.value}" for phase, letter in PHASE_LETTERS.items()]
    parts += [f"{FAILED_LETTER} failed", f"{NO_PHASE_LETTER} no phase", ". absent"]
    return "phases: " + ", ".join(parts)


def trend_view(trend: Trend) -> RenderableType:
    from inspector.render.table import NAME_MIN, Adaptive, elide_all, new_table

    def build(glyphs: Glyphs, width: int) -> Iterable[RenderableType]:
        count = len(trend.reports)
        yield Text(f"trend of {chars.plural(count, 'checkpoint')}, in this order:", style="bold")
        for position, report in enumerate(trend.reports, start=1):
            line = Text(f"{position:>3} ", style="dim")
            line.append(chars.display_text(report.path, glyphs, 300))
            if report.error is not None:
                line.append(
                    f"  cannot be read: {chars.display_text(report.error.message, glyphs, 300)}", style="red"
                )
            yield line
        if not trend.layers:
            yield Text("no layer was measured in any checkpoint", style="yellow")
            return
        positions = shown_positions(count)
        rows = [
            _cells(number, layer, positions, glyphs) for number, layer in enumerate(trend.layers, start=1)
        ]
        headers = [h.replace("Δ", "d") if glyphs.ascii else h for h in _HEADERS]
        keep = list(range(len(headers)))

        def fixed() -> int:
            # each column's widest cell and the two spaces of padding between columns
            return sum(max(len(headers[i]), *(len(row[i]) for row in rows)) + 2 for i in keep if i != 1)

        # Narrow terminals lose the last phase's name, then the first alpha, then the soft rank.
        for drop in (7, 3, 8):
            if width - fixed() >= 24:
                break
            keep.remove(drop)
        name_width = max(NAME_MIN, min(width - fixed() - 1, max(len(row[1]) for row in rows)))
        names = elide_all([row[1] for row in rows], name_width, glyphs.ellipsis)
        table = new_table(glyphs, ruled=False)
        for i in keep:
            table.add_column(
                headers[i],
                justify="left" if i in (1, 2, 6, 7) else "right",
                no_wrap=True,
                width=name_width if i == 1 else None,
            )
        for row, name in zip(rows, names, strict=True):
            row[1] = name
            table.add_row(*(row[i] for i in keep))
        yield table
        notes = [
            "alpha: its course (each layer's own scale), its first and last value, the change",
            legend_line(glyphs),
            f"softrank: MP soft rank {glyphs.lam}+ / {glyphs.lam}_max, first and last",
        ]
        if len(positions) < count:
            notes.append(
                f"{len(positions)} of {count} checkpoints shown, evenly spaced; JSON and CSV have all"
            )
        for note in notes:
            yield Text(note, style="dim")

    return Adaptive(build)


# --- The figure ------------------------------------------------------------------------------------------

#: Layers drawn with their own colour and legend entry; beyond this they are drawn thin and grey-blue.
LEGEND_LAYERS = 10
#: Up to this many checkpoints, the x axis names each by its file name.
TICK_NAMES = 12


def trend_figure(trend: Trend) -> Figure:
    """alpha, phase and MP soft rank of every layer against the checkpoint number, one panel each."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from inspector.render.plots import plain_label
    from inspector.science.phases import OVER_TRAINED_BELOW, UNDER_TRAINED_ABOVE

    figure = Figure(figsize=(10.0, 8.0), dpi=100, layout="constrained")
    alpha_axes, phase_axes, soft_axes = figure.subplots(3, 1, sharex=True)
    steps = list(range(1, len(trend.reports) + 1))
    phases = list(Phase)
    labelled = len(trend.layers) <= LEGEND_LAYERS
    for layer in trend.layers:
        style: dict[str, Any] = {"marker": "o", "markersize": 3, "linewidth": 1.2}
        if not labelled:
            style = {"linewidth": 0.6, "color": "#4878a8", "alpha": 0.5}
        alphas = [math.nan if v is None else v for v in layer.alphas()]
        line = alpha_axes.plot(steps, alphas, label=plain_label(layer.label) if labelled else None, **style)
        colour = line[0].get_color()
        style["color"] = colour
        positions = [
            math.nan if point is None or point.phase is None else float(phases.index(point.phase))
            for point in layer.points
        ]
        phase_axes.plot(steps, positions, **style)
        soft = [math.nan if p is None or p.mp_softrank is None else p.mp_softrank for p in layer.points]
        soft_axes.plot(steps, soft, **style)
    alpha_axes.axhspan(OVER_TRAINED_BELOW, UNDER_TRAINED_ABOVE, color="#009E73", alpha=0.08)
    alpha_axes.set_ylabel("alpha")
    alpha_axes.set_title(
        f"trend of {len(steps)} checkpoints: "
        f"{plain_label(trend.checkpoints[0])} … {plain_label(trend.checkpoints[-1])}"
        if steps
        else "trend",
        fontsize=10,
    )
    phase_axes.set_yticks(range(len(phases)), [phase.value for phase in phases], fontsize=8)
    phase_axes.set_ylim(-0.5, len(phases) - 0.5)
    phase_axes.set_ylabel("phase")
    soft_axes.set_ylabel("MP soft rank")
    soft_axes.set_xlabel("checkpoint # (in the order given)")
    if len(steps) <= TICK_NAMES:  # few enough to name each checkpoint by its file
        soft_axes.set_xticks(steps, [plain_label(Path(path).stem) for path in trend.checkpoints], fontsize=8)
    else:
        soft_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    finite = [a for layer in trend.layers for a in layer.alphas() if a is not None and math.isfinite(a)]
    if finite and max(finite) > 20:  # a failed-looking alpha would flatten the rest
        alpha_axes.set_yscale("log")
    if labelled and trend.layers:
        alpha_axes.legend(fontsize=7, loc="best")
    return figure


def to_png(trend: Trend) -> bytes:
    from inspector.render.plots import png

    return png(trend_figure(trend))
