"""The Markdown report: the same content as the terminal table (every column, the sparkline, the summary
panel, the legend, the skipped tensors or their count), for pull-request comments and job summaries.

Cells come from `inspector.render.view`, so the numbers, marks and row numbers are the table's. Markdown has
no width, so every column is shown and no name is cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspector.gate import GateResult
from inspector.records import ModelReport, Status
from inspector.render import attention, chars, safe_text, view
from inspector.render.chars import Glyphs
from inspector.render.view import Row


def _in_code(text: str) -> str:
    """Text for inline code in a table cell: no pipe, backtick or newline may end the span or the cell."""
    return safe_text(text, 10_000).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _md(text: str) -> str:
    """Plain text: additionally, `*` and `_` (the band mark, metric names) must not start emphasis."""
    return _in_code(text).replace("*", "\\*").replace("_", "\\_")


def _code(text: str) -> str:
    return f"`{_in_code(text)}`" if text else ""


def _cell(row: Row, key: str, glyphs: Glyphs) -> str:
    if key == "layer":
        name = _code(view.layer_label(row.layer))
        if row.layer.aliases:
            name += " (= " + ", ".join(_code(alias) for alias in row.layer.aliases) + ")"
        return name
    text = view.cell(row, key, glyphs)
    if key == "esd" and text:
        return f"`{text}`"  # inline code keeps the empty bins' spaces
    return _md(text)


def _layer_table(rows: Sequence[Row], glyphs: Glyphs) -> list[str]:
    keys = view.column_keys(rows)
    lines = [
        "| " + " | ".join(_md(view.header(key, glyphs)) for key in keys) + " |",
        "|" + "|".join("---:" if key in view.NUMERIC_KEYS else "---" for key in keys) + "|",
    ]
    lines.extend("| " + " | ".join(_cell(row, key, glyphs) for key in keys) + " |" for row in rows)
    return lines


def _summary(report: ModelReport, rows: Sequence[Row], glyphs: Glyphs) -> list[str]:
    summary = report.summary
    if summary is None:
        return []
    lines = [f"- **summary** {view.counts_line(summary, len(report.layers))}"]
    alpha = view.alpha_line(summary, glyphs)
    if alpha is not None:
        lines.append(f"- **alpha** {alpha}")
    phases = view.phase_counts(summary)
    if phases:
        lines.append("- **phases** " + glyphs.dot.join(f"{phase.value} {count}" for phase, count in phases))
    worth = attention.attention(rows)
    for line in worth.lines:
        names = ", ".join(f"#{row.number} {_code(view.layer_label(row.layer))}" for row in line.rows)
        if len(line.rows) == 1:
            lines.append(f"- **look at** {names}: {_md('; '.join(line.reasons))}")
        else:
            lines.append(
                f"- **look at** {chars.plural(len(line.rows), 'layer')}, {_md(line.reasons[0])}: {names}"
            )
    if worth.more:
        lines.append(f"- and {chars.plural(worth.more, 'more layer')} with a concern")
    return lines


def model_section(report: ModelReport, *, show_skipped: bool, glyphs: Glyphs = chars.UNICODE) -> list[str]:
    """One model's section: heading, table, summary, legend, skipped tensors."""
    lines = [f"### {_code(report.path)} ({report.format or 'unreadable'})", ""]
    if report.error is not None:
        return [*lines, f"Cannot be read: {_md(report.error.message)}", ""]
    all_rows, order = view.rows(report)
    measured = [row for row in all_rows if row.layer.status is not Status.SKIPPED]
    skipped = [row for row in all_rows if row.layer.status is Status.SKIPPED]
    if measured:
        lines.extend([*_layer_table(measured, glyphs), ""])
    lines.extend(_summary(report, measured, glyphs))
    lines.append("")
    notes = [*view.legend(measured, glyphs)]
    if measured:
        notes.append(view.order_line(order, len(measured)))
    lines.extend(f"_{_md(note)}_  " for note in notes)
    for warning in report.warnings:
        lines.append(f"**warning:** {_md(warning)}  ")
    if skipped and show_skipped:
        lines.extend(["", "| skipped tensor | shape | why | reason |", "|---|---|---|---|"])
        lines.extend(
            f"| {_code(view.layer_label(row.layer))} | {_md(view.cell(row, 'shape', glyphs))} | "
            f"{row.category.value if row.category else ''} | {_md(row.layer.reason or '')} |"
            for row in skipped
        )
    elif skipped:
        hidden = view.hidden_line(skipped)
        if hidden:
            lines.append(f"_{_md(hidden)}_")
    lines.append("")
    return lines


def gate_section(gate: GateResult, *, gate_active: bool) -> list[str]:
    """The gate's verdict and every violation, known violation and unchecked layer."""
    if not gate_active:
        return []
    lines: list[str] = []
    for line in view.gate_lines(gate, limit=len(gate.violations) + len(gate.known) + len(gate.unchecked)):
        if line.layer is not None:
            lines.append(f"- {_code(line.layer)}: {_md(line.text)}")
        elif line.style in ("passed", "failed"):
            lines.extend([f"**{_md(line.text[0].upper() + line.text[1:])}**", ""])
        else:
            lines.extend(["", _md(line.text), ""])
    return [*lines, ""]


def to_markdown(
    reports: Sequence[ModelReport],
    gate: GateResult,
    *,
    gate_active: bool,
    show_skipped: bool = False,
    glyphs: Glyphs = chars.UNICODE,
    notes: Sequence[str] = (),
) -> str:
    """The whole Markdown report; `chars.ASCII` glyphs make it plain ASCII (names escaped), for a stream
    whose encoding cannot show the sparkline's blocks. `notes`: run-level lines (the config used)."""
    lines: list[str] = []
    for report in reports:
        lines.extend(model_section(report, show_skipped=show_skipped, glyphs=glyphs))
    lines.extend(gate_section(gate, gate_active=gate_active))
    lines.extend(f"_{_md(note)}_  " for note in notes)
    text = "\n".join(lines).rstrip("\n") + "\n"
    return text.encode("ascii", "backslashreplace").decode("ascii") if glyphs.ascii else text
