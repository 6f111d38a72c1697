"""The HTML report: one self-contained page (no network, no external file) with each model's summary, a
sortable table, the legend, the skipped tensors, and every plot inline as a data: URI.

What a row and the summary say comes from `inspector.render.view`, as in the terminal and Markdown. Names
from model files are escaped; a Content-Security-Policy forbids every fetch, so even a mistake in escaping
could not load anything. The page's small script only sorts tables; the page reads fine without it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from inspector import __version__
from inspector.gate import GateResult
from inspector.records import ModelReport, Status
from inspector.render import attention, chars, view
from inspector.render.plots import ReportImages, layer_key
from inspector.render.view import Row

#: The page may load nothing: images are data: URIs, style and script are inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; }
.muted { color: #666; } code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0; }
dl.summary dt { font-weight: 600; } dl.summary dd { margin: 0; }
table { border-collapse: collapse; margin: .5rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .2rem .55rem; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
th.num, td.num { text-align: right; }
thead th { position: sticky; top: 0; background: #f4f4f4; cursor: pointer; user-select: none; }
thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
thead th[aria-sort="descending"]::after { content: " \\25BC"; }
td.esd { font-family: ui-monospace, "DejaVu Sans Mono", monospace; color: #2c5d9e; letter-spacing: -1px; }
.phase { font-weight: 600; } .overruled { color: #888; } .failed { color: #b00020; font-weight: 600; }
figure { margin: .5rem 0 1rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: .5rem 1rem; }
.legend { color: #555; margin: .2rem 0; } .gate-failed { color: #b00020; } .gate-passed { color: #1a7f37; }
"""

# Sorting: click a header to sort by its column (numbers as numbers, blanks last), again to reverse.
_SCRIPT = """
(function () {
  function key(cell, numeric) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent; }
    if (!numeric) { return raw.toLowerCase(); }
    var value = parseFloat(raw);
    return isNaN(value) ? null : value;
  }
  function sortBy(table, index, numeric, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (x === y) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      return (x < y ? -1 : 1) * (descending ? -1 : 1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (header, index) {
      header.addEventListener("click", function () {
        var descending = header.getAttribute("aria-sort") === "ascending";
        table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
        header.setAttribute("aria-sort", descending ? "descending" : "ascending");
        sortBy(table, index, header.classList.contains("num"), descending);
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _text(text: str) -> str:
    return escape(chars.display_text(text, chars.UNICODE, 10_000))


def _anchor(section: int, number: int) -> str:
    return f"m{section}-layer-{number}"


def _cell(row: Row, key: str, section: int, images: ReportImages | None) -> str:
    classes = ["num"] if key in view.NUMERIC_KEYS else []
    text = view.cell(row, key)
    sort = view.sort_value(row, key)
    content = escape(text)
    if key == "layer":
        content = f"<code>{_text(view.layer_label(row.layer))}</code>"
        if row.layer.aliases:
            content += (
                " <span class='muted'>(= " + ", ".join(_text(a) for a in row.layer.aliases) + ")</span>"
            )
        if images is not None and row.number is not None and layer_key(row.layer) in images.layers:
            content = f"<a href='#{_anchor(section, row.number)}'>{content}</a>"
    elif key == "esd":
        classes.append("esd")
    elif key == "phase":
        classes.append("failed" if text == "failed" else "phase")
        phase = row.layer.phase
        if phase is not None:
            colour, meaning = view.PHASE_COLOURS[phase], escape(view.PHASE_MEANING[phase])
            content = f"<span style='color:{colour}' title='{meaning}'>{content}</span>"
    elif key == "band" and not view.band_applies(row.layer):
        classes.append("overruled")
    attributes = f" class='{' '.join(classes)}'" if classes else ""
    if sort is not None:
        attributes += f" data-sort='{escape(str(sort))}'"
    return f"<td{attributes}>{content}</td>"


def _layer_table(rows: Sequence[Row], section: int, images: ReportImages | None) -> str:
    keys = view.column_keys(rows)
    head = "".join(
        f"<th scope='col'{' class=num' if key in view.NUMERIC_KEYS else ''}>{escape(view.header(key))}</th>"
        for key in keys
    )
    body = "\n".join(
        "<tr>" + "".join(_cell(row, key, section, images) for key in keys) + "</tr>" for row in rows
    )
    return f"<table class='layers sortable'><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _summary(report: ModelReport, rows: Sequence[Row], section: int, images: ReportImages | None) -> str:
    summary = report.summary
    if summary is None:
        return ""
    items = [("summary", escape(view.counts_line(summary, len(report.layers))))]
    alpha = view.alpha_line(summary)
    if alpha is not None:
        items.append(("alpha", escape(alpha)))
    phases = view.phase_counts(summary)
    if phases:
        items.append(
            (
                "phases",
                " · ".join(
                    f"<span style='color:{view.PHASE_COLOURS[phase]}'>{escape(phase.value)}</span> {count}"
                    for phase, count in phases
                ),
            )
        )
    worth = attention.attention(rows)
    for position, line in enumerate(worth.lines):
        names = ", ".join(_layer_link(row, section, images) for row in line.rows)
        if len(line.rows) == 1:
            text = f"{names}: {escape('; '.join(line.reasons))}"
        else:
            text = f"{chars.plural(len(line.rows), 'layer')}, {escape(line.reasons[0])}: {names}"
        items.append(("look at" if position == 0 else "", text))
    if worth.more:
        items.append(("", f"and {chars.plural(worth.more, 'more layer')} with a concern"))
    return (
        "<dl class='summary'>"
        + "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in items)
        + "</dl>"
    )


def _layer_link(row: Row, section: int, images: ReportImages | None) -> str:
    label = f"#{row.number} <code>{_text(view.layer_label(row.layer))}</code>"
    if images is not None and row.number is not None and layer_key(row.layer) in images.layers:
        return f"<a href='#{_anchor(section, row.number)}'>{label}</a>"
    return label


def _skipped(rows: Sequence[Row]) -> str:
    if not rows:
        return ""
    body = "\n".join(
        f"<tr><td><code>{_text(view.layer_label(row.layer))}</code></td>"
        f"<td>{escape(view.cell(row, 'shape'))}</td>"
        f"<td>{escape(row.category.value if row.category else '')}</td>"
        f"<td>{_text(row.layer.reason or '')}</td></tr>"
        for row in rows
    )
    summary = escape(view.hidden_line(rows) or "").replace("; --show-skipped lists them", "")
    return (
        f"<details><summary>{summary}</summary><table class='skipped sortable'><thead><tr>"
        "<th>skipped tensor</th><th>shape</th><th>why</th><th>reason</th></tr></thead>"
        f"<tbody>\n{body}\n</tbody></table></details>"
    )


def _plots(rows: Sequence[Row], section: int, images: ReportImages) -> str:
    figures = []
    for row in rows:
        data = images.layers.get(layer_key(row.layer))
        if data is None or row.number is None:
            continue
        label = f"#{row.number} {_text(view.layer_label(row.layer))}"
        figures.append(
            f"<figure id='{_anchor(section, row.number)}'><img src='{_data_uri(data)}' alt='ESD of {label}'>"
            f"<figcaption>{label}</figcaption></figure>"
        )
    return "<div class='plots'>" + "\n".join(figures) + "</div>" if figures else ""


def model_section(report: ModelReport, section: int, images: ReportImages | None) -> str:
    """One model's part of the page."""
    kind = escape(report.format or "unreadable")
    title = f"<h2 id='m{section}'><code>{_text(report.path)}</code> <span class='muted'>({kind})</span></h2>"
    if report.error is not None:
        return (
            f"<section>{title}<p class='failed'>cannot be read: {_text(report.error.message)}</p></section>"
        )
    all_rows, order = view.rows(report)
    measured = [row for row in all_rows if row.layer.status is not Status.SKIPPED]
    skipped = [row for row in all_rows if row.layer.status is Status.SKIPPED]
    parts = [title, _summary(report, measured, section, images)]
    if images is not None and images.model is not None:
        parts.append(f"<figure><img src='{_data_uri(images.model)}' alt='alpha by layer'></figure>")
    if measured:
        parts.append(_layer_table(measured, section, images))
    notes = [*view.legend(measured)]
    if measured:
        notes.append(view.order_line(order, len(measured)) + "; click a header to sort")
    parts.extend(f"<p class='legend'>{escape(note)}</p>" for note in notes)
    parts.extend(f"<p class='failed'>warning: {_text(warning)}</p>" for warning in report.warnings)
    parts.append(_skipped(skipped))
    if images is not None:
        parts.append(_plots(measured, section, images))
    return "<section class='model'>" + "\n".join(part for part in parts if part) + "</section>"


def _gate(gate: GateResult, gate_active: bool) -> str:
    if not gate_active:
        return ""
    parts: list[str] = []
    items: list[str] = []
    for line in view.gate_lines(gate, limit=len(gate.violations) + len(gate.known) + len(gate.unchecked)):
        if line.layer is not None:
            items.append(f"<li><code>{_text(line.layer)}</code>: {_text(line.text)}</li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line.style in ("passed", "failed"):
            css = "gate-passed" if gate.passed else "gate-failed"
            parts.append(f"<h2 class='{css}'>{_text(line.text[0].upper() + line.text[1:])}</h2>")
        else:
            parts.append(f"<p>{_text(line.text)}</p>")
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "".join(parts)


def to_html(
    reports: Sequence[ModelReport],
    gate: GateResult,
    *,
    gate_active: bool,
    images: Sequence[ReportImages | None] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The whole page; `images[i]` holds the plots of `reports[i]` (None: a page without plots);
    `notes`: run-level lines (the config file used)."""
    sections = [
        model_section(report, position, images[position] if images is not None else None)
        for position, report in enumerate(reports, start=0)
    ]
    paths = ", ".join(_text(report.path) for report in reports)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>wwinspect: {paths}</title><style>{_STYLE}</style></head>\n<body>"
        f"<h1>wwinspect report</h1><p class='muted'>wwinspect {escape(__version__)} · "
        f"{chars.plural(len(reports), 'model')}</p>\n"
        + "\n".join(sections)
        + _gate(gate, gate_active)
        + "".join(f"<p class='legend'>{_text(note)}</p>" for note in notes)
        + f"\n<script>{_SCRIPT}</script></body></html>\n"
    )
