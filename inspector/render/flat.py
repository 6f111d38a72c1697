"""Line-oriented formats: CSV (one row per layer), Markdown tables, and GitHub Actions annotations."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from inspector.gate import GateResult
from inspector.records import ModelReport, Status
from inspector.render import safe_text
from inspector.render.json import layer_dict

_CSV_SKIP = ("aliases", "esd_histogram")


def to_csv(reports: Sequence[ModelReport]) -> str:
    """Every layer of every readable file, one row each; unreadable files get a row with their error."""
    rows: list[dict[str, Any]] = []
    for report in reports:
        if report.error is not None:
            rows.append({"path": report.path, "status": "error", "reason": report.error.message})
            continue
        for layer in report.layers:
            row = {"path": report.path, "format": report.format}
            for key, value in layer_dict(layer).items():
                if key in _CSV_SKIP:
                    row[key] = ";".join(safe_text(str(item)) for item in value)
                elif isinstance(value, str):
                    row[key] = safe_text(value, 10_000)  # names from files must not drive a terminal
                elif key == "shape":
                    row[key] = "x".join(str(dim) for dim in value)
                else:
                    row[key] = value
            rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def _md(text: str) -> str:
    return safe_text(text).replace("|", "\\|").replace("`", "'")


def _fmt(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.3g}" if abs(value) >= 1e4 else f"{value:.3f}"


def to_markdown(reports: Sequence[ModelReport], gate: GateResult, *, gate_active: bool) -> str:
    """A Markdown section per file (analysed layers only; skipped ones counted), then the gate verdict."""
    lines: list[str] = []
    for report in reports:
        lines.append(f"### `{_md(report.path)}` ({report.format or 'unreadable'})")
        lines.append("")
        if report.error is not None:
            lines.append(f"Cannot be read: {_md(report.error.message)}")
            lines.append("")
            continue
        lines.append("| # | layer | kind | shape | alpha | D | λ max | phase | alpha label |")
        lines.append("|---:|---|---|---|---:|---:|---:|---|---|")
        for layer in report.layers:
            if layer.status is not Status.ANALYZED or layer.metrics is None:
                continue
            metrics = layer.metrics
            name = layer.name if layer.slice_index is None else f"{layer.name}[{layer.slice_index}]"
            lines.append(
                f"| {layer.index} | `{_md(name)}` | {layer.kind.value} | {'×'.join(map(str, layer.shape))} | "
                f"{_fmt(metrics.alpha)} | {_fmt(metrics.D)} | {_fmt(metrics.lambda_max)} | "
                f"{layer.phase.value if layer.phase else ''}"
                f"{'/' + layer.phase_neighbour.value if layer.phase_neighbour else ''} | "
                f"{layer.alpha_label.value if layer.alpha_label else ''} |"
            )
        if report.summary is not None:
            summary = report.summary
            lines.append("")
            lines.append(
                f"Analysed {summary.analyzed}, skipped {summary.skipped}, failed {summary.failed}; "
                f"mean alpha {_fmt(summary.mean_alpha) or 'n/a'}."
            )
        lines.append("")
    if gate_active:
        lines.append("**Gate: passed**" if gate.passed else f"**Gate: {len(gate.violations)} violation(s)**")
        for violation in gate.violations:
            value = violation.value if isinstance(violation.value, str) else f"{violation.value:.3f}"
            lines.append(f"- `{_md(violation.layer)}` in `{_md(violation.path)}`: {violation.rule} ({value})")
    return "\n".join(lines) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(reports: Sequence[ModelReport], gate: GateResult) -> str:
    """GitHub Actions workflow commands: an error per gate violation or unreadable file, a warning per
    failed layer, and a notice with each file's summary."""
    lines: list[str] = []
    for report in reports:
        file_property = _escape_property(report.path)
        if report.error is not None:
            lines.append(
                f"::error file={file_property},title=wwinspect::{_escape_data(report.error.message)}"
            )
            continue
        for layer in report.layers:
            if layer.status is Status.FAILED:
                lines.append(
                    f"::warning file={file_property},title=wwinspect failed layer::"
                    f"{_escape_data(layer.name)}: {_escape_data(layer.reason or '')}"
                )
        if report.summary is not None:
            summary = report.summary
            mean = f"{summary.mean_alpha:.3f}" if summary.mean_alpha is not None else "n/a"
            lines.append(
                f"::notice file={file_property},title=wwinspect::analysed {summary.analyzed}, "
                f"skipped {summary.skipped}, failed {summary.failed}, mean alpha {mean}"
            )
    for violation in gate.violations:
        value = violation.value if isinstance(violation.value, str) else f"{violation.value:.3f}"
        lines.append(
            f"::error file={_escape_property(violation.path)},title=wwinspect gate::"
            f"{_escape_data(violation.layer)}: {violation.rule} (value {value})"
        )
    return "\n".join(lines) + ("\n" if lines else "")
