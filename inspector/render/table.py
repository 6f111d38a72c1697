"""The terminal report: one rich table per model and a summary line, built but not printed."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from inspector.gate import GateResult
from inspector.records import LayerRecord, ModelReport, Status
from inspector.render import safe_text
from inspector.science.esd import sparkline

_PHASE_STYLE = {
    "random-like": "yellow",
    "bleeding-out": "yellow",
    "bulk+spikes": "cyan",
    "bulk-decay": "cyan",
    "heavy-tailed": "green",
    "rank-collapse": "red",
}
_LABEL_STYLE = {"over-trained": "magenta", "well-trained": "green", "under-trained": "yellow"}


def _number(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
        return f"{value:.{digits}e}"
    return f"{value:.{digits}f}"


def _layer_name(layer: LayerRecord) -> Text:
    name = safe_text(layer.name, 80)
    if layer.slice_index is not None:
        name += f"[{layer.slice_index}]"
    text = Text(name)
    if layer.aliases:
        text.append(f" (= {', '.join(safe_text(alias, 40) for alias in layer.aliases)})", style="dim")
    return text


def _layer_row(layer: LayerRecord) -> list[RenderableType]:
    metrics = layer.metrics
    shape = "×".join(str(dim) for dim in layer.shape)
    if layer.status is not Status.ANALYZED or metrics is None:
        style = "red" if layer.status is Status.FAILED else "dim"
        return [
            Text(str(layer.index), style="dim"),
            _layer_name(layer),
            Text(layer.kind.value, style="dim"),
            Text(shape, style="dim"),
            Text(f"{layer.status.value}: {safe_text(layer.reason or '', 120)}", style=style),
            "",
            "",
            "",
            "",
            "",
        ]
    phase = layer.phase.value if layer.phase is not None else "–"
    phase_style = _PHASE_STYLE.get(phase, "")
    if layer.phase_neighbour is not None:  # the evidence sits on the boundary between two phases
        phase += f"/{layer.phase_neighbour.value}"
    label = layer.alpha_label.value if layer.alpha_label is not None else "–"
    alpha = _number(metrics.alpha)
    if metrics.fit_low_confidence and metrics.alpha is not None:
        alpha += "?"
    return [
        str(layer.index),
        _layer_name(layer),
        layer.kind.value,
        shape,
        Text(sparkline(metrics.esd_histogram), style="blue"),
        Text(alpha, style=_LABEL_STYLE.get(label, "")),
        _number(metrics.D, 3),
        _number(metrics.lambda_max),
        Text(phase, style=phase_style),
        Text(label, style=_LABEL_STYLE.get(label, "")),
    ]


def model_table(report: ModelReport, *, show_skipped: bool) -> RenderableType:
    """The table for one readable model, with a summary line under it."""
    table = Table(
        title=Text(f"{safe_text(report.path)} ({report.format})", style="bold"),
        title_justify="left",
        expand=False,
    )
    for header, justify in (
        ("#", "right"),
        ("layer", "left"),
        ("kind", "left"),
        ("shape", "left"),
        ("ESD (log λ)", "left"),
        ("alpha", "right"),
        ("D", "right"),
        ("λ max", "right"),
        ("phase", "left"),
        ("alpha label", "left"),
    ):
        table.add_column(header, justify=justify, no_wrap=header in ("ESD (log λ)", "shape"))
    hidden: dict[str, int] = {}
    for layer in report.layers:
        if layer.status is Status.SKIPPED and not show_skipped:
            key = (
                layer.reason.split(",")[0]
                if layer.reason and "--min-evals" in layer.reason
                else (layer.reason or "")
            )
            hidden[key] = hidden.get(key, 0) + 1
            continue
        table.add_row(*_layer_row(layer))
    parts: list[RenderableType] = [table]
    summary = report.summary
    if summary is not None:
        line = Text(f"analysed {summary.analyzed}, skipped {summary.skipped}, failed {summary.failed}")
        if summary.mean_alpha is not None:
            line.append(f"; mean alpha {summary.mean_alpha:.2f} over {summary.analyzed_with_alpha} layers")
        if summary.alpha_weighted is not None:
            line.append(f", alpha-weighted {summary.alpha_weighted:.2f}")
        if summary.log_norm is not None:
            line.append(f", log-norm {summary.log_norm:.2f}")
        parts.append(line)
    for warning in report.warnings:
        parts.append(Text(f"warning: {safe_text(warning, 300)}", style="yellow"))
    if hidden:
        count = sum(hidden.values())
        parts.append(
            Text(
                f"{count} skipped tensors not shown (biases, norms, small layers); "
                "--show-skipped lists them with their reasons",
                style="dim",
            )
        )
    return Group(*parts)


def error_line(report: ModelReport) -> Text:
    """A readable model's place in the table output taken by its error."""
    message = report.error.message if report.error is not None else "unknown error"
    return Text(f"{safe_text(report.path)}: cannot be read: {safe_text(message, 300)}", style="red")


def gate_lines(gate: GateResult, active: bool) -> RenderableType | None:
    """The gate's verdict under the tables, when a gate was asked for."""
    if not active:
        return None
    if gate.passed:
        return Text("gate: passed", style="green")
    lines = [Text(f"gate: {len(gate.violations)} violation(s)", style="bold red")]
    for violation in gate.violations[:50]:
        value = violation.value if isinstance(violation.value, str) else f"{violation.value:.3f}"
        lines.append(Text(f"  {safe_text(violation.layer)}: {violation.rule} (value {value})", style="red"))
    if len(gate.violations) > 50:
        lines.append(Text(f"  … and {len(gate.violations) - 50} more", style="red"))
    return Group(*lines)


def build_tables(
    reports: Sequence[ModelReport], gate: GateResult, *, gate_active: bool, show_skipped: bool
) -> RenderableType:
    """Everything the table format prints."""
    parts: list[RenderableType] = []
    for report in reports:
        parts.append(
            error_line(report) if report.error is not None else model_table(report, show_skipped=show_skipped)
        )
    verdict = gate_lines(gate, gate_active)
    if verdict is not None:
        parts.append(verdict)
    return Group(*parts)
