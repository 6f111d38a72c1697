"""From finished reports to the run's exit code, and from a format name to the text written out."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from enum import Enum

from inspector.exitcodes import ExitCode, combine
from inspector.gate import GateResult
from inspector.options import AnalysisOptions
from inspector.records import ModelReport
from inspector.render import flat
from inspector.render import json as json_render


class OutputFormat(str, Enum):
    """Report formats of `--format`."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    GITHUB = "github"


def run_exit_code(reports: Sequence[ModelReport], gate: GateResult, *, exit_zero: bool) -> ExitCode:
    """The first that applies of 3 (a file unreadable), 1 (gate), 4 (nothing analysed), 0."""
    codes: set[ExitCode] = set()
    if any(report.error is not None for report in reports):
        codes.add(ExitCode.UNREADABLE)
    if not gate.passed and not exit_zero:
        codes.add(ExitCode.GATE_FAILED)
    readable = [report for report in reports if report.error is None]
    if readable and all(report.summary is None or report.summary.analyzed == 0 for report in readable):
        codes.add(ExitCode.NOTHING_ANALYSED)
    return combine(codes)


def render_text(
    reports: Sequence[ModelReport],
    output_format: OutputFormat,
    *,
    options: AnalysisOptions,
    backend: str,
    gate: GateResult,
    gate_active: bool,
    show_skipped: bool,
    to_terminal: bool,
) -> str:
    """The report in `output_format` as text; the table has colour and the terminal's width `to_terminal`.

    rich is imported for the table only: the machine formats do not pay its ~30 ms of start-up.
    """
    if output_format is OutputFormat.JSON:
        return (
            json.dumps(json_render.document(reports, options, backend, gate), indent=2, allow_nan=False)
            + "\n"
        )
    if output_format is OutputFormat.CSV:
        return flat.to_csv(reports)
    if output_format is OutputFormat.MARKDOWN:
        return flat.to_markdown(reports, gate, gate_active=gate_active)
    if output_format is OutputFormat.GITHUB:
        return flat.to_github(reports, gate)
    from rich.console import Console

    from inspector.render.table import build_tables

    console = Console(
        force_terminal=to_terminal,
        width=None if to_terminal else 200,
        no_color=not to_terminal or "NO_COLOR" in os.environ,
        highlight=False,
    )
    with console.capture() as capture:
        console.print(build_tables(reports, gate, gate_active=gate_active, show_skipped=show_skipped))
    # Rich pads lines to the console width; trailing blanks only get in the way of pipes and diffs.
    return "\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n"
