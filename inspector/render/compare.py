"""`wwinspect compare A B` as a table, JSON, JSON Lines, CSV or Markdown.

Per layer: alpha in A and B and its change, the phases, the change of log-norm and stable rank, and the
update W_B - W_A: its alpha, its rank out of M, and its Frobenius norm relative to W_A. Then what could not
be paired. The JSON document: `{"schema_version": 1, "tool", "command": "compare", "a", "b", "settings",
"layers": [...], "only_in_a", "only_in_b", "shape_mismatches", "reports": [A's report, B's report]}`,
each report as in the analysis's JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from inspector import __version__
from inspector.compare import Comparison, LayerPair
from inspector.options import AnalysisOptions
from inspector.records import LayerRecord
from inspector.render import chars, finite_or_none, safe_text
from inspector.render.chars import Glyphs

SCHEMA_VERSION = 1


def _alpha(record: LayerRecord | None) -> float | None:
    return record.metrics.alpha if record is not None and record.metrics is not None else None


def _metric(record: LayerRecord | None, key: str) -> float | None:
    if record is None or record.metrics is None:
        return None
    value = getattr(record.metrics, key)
    return float(value) if value is not None else None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _phase(record: LayerRecord | None) -> str | None:
    if record is None:
        return None
    if record.status.value == "failed":
        return "failed"
    return record.phase.value if record.phase is not None else None


def pair_dict(pair: LayerPair) -> dict[str, Any]:
    """One paired layer: both sides' numbers, their changes, and the update's."""
    update = pair.update
    return {
        "name": pair.name,
        "shape": list(pair.a.shape),
        "alpha_a": finite_or_none(_alpha(pair.a)),
        "alpha_b": finite_or_none(_alpha(pair.b)),
        "delta_alpha": finite_or_none(_delta(_alpha(pair.a), _alpha(pair.b))),
        "phase_a": _phase(pair.a),
        "phase_b": _phase(pair.b),
        "delta_log_norm": finite_or_none(_delta(_metric(pair.a, "log_norm"), _metric(pair.b, "log_norm"))),
        "delta_log_spectral_norm": finite_or_none(
            _delta(_metric(pair.a, "log_spectral_norm"), _metric(pair.b, "log_spectral_norm"))
        ),
        "delta_stable_rank": finite_or_none(
            _delta(_metric(pair.a, "stable_rank"), _metric(pair.b, "stable_rank"))
        ),
        "relative_change": finite_or_none(pair.relative_change),
        "update_status": update.status.value if update is not None else None,
        "update_reason": update.reason if update is not None else "could not be read",
        "update_alpha": finite_or_none(_alpha(update)),
        "update_phase": _phase(update),
        "update_rank": update.metrics.matrix_rank
        if update is not None and update.metrics is not None
        else None,
        "update_lambda_max": finite_or_none(_metric(update, "lambda_max")),
        "update_stable_rank": finite_or_none(_metric(update, "stable_rank")),
        "M": pair.a.M,
        "update_esd_histogram": list(update.metrics.esd_histogram)
        if update is not None and update.metrics
        else [],
    }


def compare_document(comparison: Comparison, options: AnalysisOptions, backend: str) -> dict[str, Any]:
    from inspector.render.json import report_dict, settings_dict

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "wwinspect", "version": __version__},
        "command": "compare",
        "a": comparison.a.path,
        "b": comparison.b.path,
        "settings": settings_dict(options, backend),
        "layers": [pair_dict(pair) for pair in comparison.pairs],
        "only_in_a": list(comparison.only_a),
        "only_in_b": list(comparison.only_b),
        "shape_mismatches": [
            {"name": m.name, "shape_a": list(m.shape_a), "shape_b": list(m.shape_b)}
            for m in comparison.mismatched
        ],
        "reports": [report_dict(comparison.a), report_dict(comparison.b)],
    }


def to_json(comparison: Comparison, options: AnalysisOptions, backend: str) -> str:
    return json.dumps(compare_document(comparison, options, backend), indent=2, allow_nan=False) + "\n"


def to_jsonl(comparison: Comparison, options: AnalysisOptions, backend: str) -> str:
    document = compare_document(comparison, options, backend)
    lines = [{"type": "layer", **layer} for layer in document.pop("layers")]
    document.pop("reports")
    lines.append({"type": "comparison", **document})
    return "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines)


def to_csv(comparison: Comparison) -> str:
    rows = [pair_dict(pair) for pair in comparison.pairs]
    buffer = io.StringIO()
    columns = [key for key in rows[0] if key != "update_esd_histogram"] if rows else ["name"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        row["name"] = safe_text(row["name"], 10_000)
        row["shape"] = "x".join(str(dim) for dim in row["shape"])
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


# --- People ----------------------------------------------------------------------------------------------

_COLUMNS: tuple[str, ...] = ("#", "layer", "alpha A", "alpha B", "Δ alpha", "phase A → B", "Δ log_norm")
_COLUMNS += ("update alpha", "update rank", "|ΔW|/|W|")


def _cells(number: int, pair: LayerPair, glyphs: Glyphs) -> list[str]:
    row = pair_dict(pair)
    arrow = " -> " if glyphs.ascii else " → "
    phases = row["phase_a"] or glyphs.none
    if row["phase_b"] != row["phase_a"]:
        phases += arrow + (row["phase_b"] or glyphs.none)
    delta = row["delta_alpha"]
    rank = f"{row['update_rank']}/{row['M']}" if row["update_rank"] is not None else glyphs.none
    if pair.unchanged:
        update_alpha, rank = "unchanged", ""
    else:
        update_alpha = chars.number(row["update_alpha"], 2, glyphs)
    return [
        str(number),
        chars.display_text(pair.name, glyphs),
        chars.number(row["alpha_a"], 2, glyphs),
        chars.number(row["alpha_b"], 2, glyphs),
        glyphs.none if delta is None else f"{delta:+.2f}",
        phases,
        glyphs.none if row["delta_log_norm"] is None else f"{row['delta_log_norm']:+.3f}",
        update_alpha,
        rank,
        chars.number(row["relative_change"], 3, glyphs),
    ]


def _headers(glyphs: Glyphs) -> list[str]:
    if not glyphs.ascii:
        return list(_COLUMNS)
    return [h.replace("Δ", "d").replace("→", "->") for h in _COLUMNS]


def mismatch_lines(comparison: Comparison) -> list[str]:
    lines = []
    for label, names in (("only in A", comparison.only_a), ("only in B", comparison.only_b)):
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            lines.append(f"{label} ({len(names)}): {shown}")
    for mismatch in comparison.mismatched:
        a = "x".join(str(d) for d in mismatch.shape_a)
        b = "x".join(str(d) for d in mismatch.shape_b)
        lines.append(f"shape differs: {mismatch.name} ({a} in A, {b} in B)")
    return lines


def compare_view(comparison: Comparison) -> RenderableType:
    from inspector.render.table import NAME_MIN, Adaptive, elide_all, new_table

    def build(glyphs: Glyphs, width: int) -> Iterable[RenderableType]:
        title = Text("A ", style="dim")
        title.append(chars.display_text(comparison.a.path, glyphs, 300), style="bold")
        title.append("\nB ", style="dim")
        title.append(chars.display_text(comparison.b.path, glyphs, 300), style="bold")
        yield title
        for side, report in (("A", comparison.a), ("B", comparison.b)):
            if report.error is not None:
                yield Text(
                    f"{side} cannot be read: {chars.display_text(report.error.message, glyphs, 300)}",
                    style="red",
                )
        if not comparison.readable:
            return
        rows = [_cells(number, pair, glyphs) for number, pair in enumerate(comparison.pairs, start=1)]
        headers = _headers(glyphs)
        keep = list(range(len(headers)))
        # Narrow terminals lose the log-norm change, then the rank, then alpha A and B (their change stays).
        for drop in (6, 8, 2, 3):
            fixed = (
                sum(max(len(headers[i]), *(len(r[i]) for r in rows)) + 1 for i in keep if i != 1)
                if rows
                else 0
            )
            if width - fixed >= 28 or not rows:
                break
            keep.remove(drop)
        fixed = (
            sum(max(len(headers[i]), *(len(r[i]) for r in rows)) + 1 for i in keep if i != 1) if rows else 0
        )
        name_width = max(NAME_MIN, min(width - fixed - 1, max([len(r[1]) for r in rows] + [5])))
        names = elide_all([r[1] for r in rows], name_width, glyphs.ellipsis)
        table = new_table(glyphs, ruled=False)
        for i in keep:
            table.add_column(
                headers[i],
                justify="left" if i in (1, 5) else "right",
                no_wrap=True,
                width=name_width if i == 1 else None,
            )
        for row, name in zip(rows, names, strict=True):
            row[1] = name
            table.add_row(*(row[i] for i in keep))
        if rows:
            yield table
        changed = [pair for pair in comparison.pairs if not pair.unchanged]
        yield Text(
            f"{chars.plural(len(comparison.pairs), 'layer')} in both, {len(changed)} changed; "
            "update = W_B - W_A measured as a layer (its alpha and rank out of M)",
            style="dim",
        )
        for line in mismatch_lines(comparison):
            yield Text(chars.display_text(line, glyphs, 600), style="yellow")

    return Adaptive(build)


def to_markdown(comparison: Comparison, glyphs: Glyphs = chars.UNICODE) -> str:
    from inspector.render.markdown import _code, _md

    lines = [f"### {_code(comparison.a.path)} against {_code(comparison.b.path)}", ""]
    for side, report in (("A", comparison.a), ("B", comparison.b)):
        if report.error is not None:
            lines.append(f"{side} cannot be read: {_md(report.error.message)}")
    if comparison.readable:
        headers = _headers(glyphs)
        lines.append("| " + " | ".join(_md(h) for h in headers) + " |")
        lines.append("|" + "|".join("---" if i in (1, 5) else "---:" for i in range(len(headers))) + "|")
        for number, pair in enumerate(comparison.pairs, start=1):
            cells = _cells(number, pair, glyphs)
            cells[1] = _code(pair.name)
            lines.append("| " + " | ".join(cells[:1] + cells[1:2] + [_md(c) for c in cells[2:]]) + " |")
        lines.append("")
        lines.extend(f"- {_md(line)}" for line in mismatch_lines(comparison))
    text = "\n".join(lines).rstrip("\n") + "\n"
    return text.encode("ascii", "backslashreplace").decode("ascii") if glyphs.ascii else text
