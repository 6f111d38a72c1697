"""From `--format` to the report's text. Each renderer is imported when its format is asked for, so a run
pays only for the one it writes (rich alone costs ~30 ms of start-up, and only the table uses it)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inspector.config import OutputFormat, RunSettings
from inspector.gate import GateResult
from inspector.records import ModelReport


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished run as every renderer sees it.

    Attributes:
        reports: one per PATH, in the order given.
        gate: the gate's verdict over all of them.
        run: the settings of the run (format, options, gate rules...).
        backend: the eigenvalue backend's name, for the JSON settings.
        to_terminal: the text goes to a terminal (colour, the terminal's width).
    """

    reports: Sequence[ModelReport]
    gate: GateResult
    run: RunSettings
    backend: str
    to_terminal: bool


def render_text(outcome: Outcome) -> str:
    """The report in the run's format, as text."""
    return _RENDERERS[outcome.run.output_format](outcome)


def _json(outcome: Outcome) -> str:
    from inspector.render.json import document

    report = document(outcome.reports, outcome.run.options, outcome.backend, outcome.gate)
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def _csv(outcome: Outcome) -> str:
    from inspector.render.flat import to_csv

    return to_csv(outcome.reports)


def _markdown(outcome: Outcome) -> str:
    from inspector.render.flat import to_markdown

    return to_markdown(outcome.reports, outcome.gate, gate_active=outcome.run.rules.active)


def _github(outcome: Outcome) -> str:
    from inspector.render.flat import to_github

    return to_github(outcome.reports, outcome.gate)


def _table(outcome: Outcome) -> str:
    from rich.console import Console

    from inspector.render.table import build_tables

    console = Console(
        force_terminal=outcome.to_terminal,
        width=None if outcome.to_terminal else 200,
        no_color=not outcome.to_terminal or "NO_COLOR" in os.environ,
        highlight=False,
    )
    tables = build_tables(
        outcome.reports,
        outcome.gate,
        gate_active=outcome.run.rules.active,
        show_skipped=outcome.run.show_skipped,
    )
    with console.capture() as capture:
        console.print(tables)
    # Rich pads lines to the console width; trailing blanks only get in the way of pipes and diffs.
    return "\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n"


#: One renderer per format; a test checks that every OutputFormat has one.
_RENDERERS: dict[OutputFormat, Callable[[Outcome], str]] = {
    OutputFormat.TABLE: _table,
    OutputFormat.JSON: _json,
    OutputFormat.CSV: _csv,
    OutputFormat.MARKDOWN: _markdown,
    OutputFormat.GITHUB: _github,
}
