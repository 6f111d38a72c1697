"""From `--format` to the report's text. Each renderer is imported when its format is asked for, so a run
pays only for the one it writes (rich alone costs ~30 ms of start-up, and only the table uses it)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inspector.config import OutputFormat, RunSettings
from inspector.gate import GateResult
from inspector.records import ModelReport

if TYPE_CHECKING:
    from inspector.render.plots import ReportImages


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished (or interrupted) run as every renderer sees it.

    Attributes:
        reports: one per PATH, in the order given.
        gate: the gate's verdict over all of them.
        run: the settings of the run (format, options, gate rules...).
        backend: the eigenvalue backend's name, for the JSON settings.
        to_terminal: the text goes to a terminal (colour).
        width: cells the table is laid out for (`render.table.report_width`).
        encoding: the encoding of the stream the text goes to; the table and Markdown fall back to plain
            ASCII when it cannot show their characters.
        notes: run-level lines for the human formats: the config file used, an interrupted run.
        images: per report, its plots (HTML); None for a page without plots.
        exit_code: the run's exit code, for SARIF's invocation.
    """

    reports: Sequence[ModelReport]
    gate: GateResult
    run: RunSettings
    backend: str
    to_terminal: bool
    width: int = 160
    encoding: str = "utf-8"
    notes: Sequence[str] = field(default_factory=tuple)
    images: Sequence[ReportImages | None] | None = None
    exit_code: int | None = None


def render_text(outcome: Outcome, output_format: OutputFormat | None = None) -> str:
    """The report in the run's format (or `output_format`), as text."""
    return _RENDERERS[output_format or outcome.run.output_format](outcome)


def _document(outcome: Outcome) -> dict[str, object]:
    from inspector.render.json import document

    config = str(outcome.run.config) if outcome.run.config is not None else None
    return document(outcome.reports, outcome.run.options, outcome.backend, outcome.gate, config=config)


def _json(outcome: Outcome) -> str:
    return json.dumps(_document(outcome), indent=2, allow_nan=False) + "\n"


def _jsonl(outcome: Outcome) -> str:
    from inspector.render.jsonl import lines

    return "".join(lines(outcome.reports, outcome.run.options, outcome.backend, outcome.gate))


def _csv(outcome: Outcome) -> str:
    from inspector.render.flat import to_csv

    return to_csv(outcome.reports)


def _markdown(outcome: Outcome) -> str:
    from inspector.render import chars
    from inspector.render.markdown import to_markdown

    return to_markdown(
        outcome.reports,
        outcome.gate,
        gate_active=outcome.run.rules.active,
        show_skipped=outcome.run.show_skipped,
        glyphs=chars.glyphs_for_encoding(outcome.encoding),
        notes=outcome.notes,
    )


def _github(outcome: Outcome) -> str:
    from inspector.render.github import to_github

    return to_github(outcome.reports, outcome.gate)


def _sarif(outcome: Outcome) -> str:
    from inspector.render.sarif import to_sarif

    log = to_sarif(outcome.reports, outcome.gate, exit_code=outcome.exit_code)
    return json.dumps(log, indent=2, allow_nan=False) + "\n"


def _html(outcome: Outcome) -> str:
    from inspector.render.html import to_html

    return to_html(
        outcome.reports,
        outcome.gate,
        gate_active=outcome.run.rules.active,
        images=outcome.images,
        notes=outcome.notes,
    )


class _Sink(io.StringIO):
    """Where rich writes the table: text in memory, with the encoding of the stream it will go to (rich
    reads a console's encoding from its file, and the table chooses its characters by it)."""

    def __init__(self, encoding: str) -> None:
        super().__init__()
        self._target_encoding = encoding

    @property
    def encoding(self) -> str:  # type: ignore[override]  # StringIO's is None
        return self._target_encoding


def _table(outcome: Outcome) -> str:
    from rich.console import Console, Group
    from rich.text import Text

    from inspector.render import chars
    from inspector.render.table import build_tables

    console = Console(
        file=_Sink(outcome.encoding),
        force_terminal=outcome.to_terminal,
        width=outcome.width,
        no_color=not outcome.to_terminal or "NO_COLOR" in os.environ,
        highlight=False,
        legacy_windows=False,
    )
    tables = build_tables(
        outcome.reports,
        outcome.gate,
        gate_active=outcome.run.rules.active,
        show_skipped=outcome.run.show_skipped,
    )
    glyphs = chars.glyphs_for_encoding(outcome.encoding)
    notes = [Text(chars.display_text(note, glyphs, 600), style="dim") for note in outcome.notes]
    with console.capture() as capture:
        console.print(Group(tables, *notes))
    # Rich pads lines to the console width; trailing blanks only get in the way of pipes and diffs.
    return "\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n"


#: One renderer per format; a test checks that every OutputFormat has one.
_RENDERERS: dict[OutputFormat, Callable[[Outcome], str]] = {
    OutputFormat.TABLE: _table,
    OutputFormat.JSON: _json,
    OutputFormat.JSONL: _jsonl,
    OutputFormat.CSV: _csv,
    OutputFormat.MARKDOWN: _markdown,
    OutputFormat.GITHUB: _github,
    OutputFormat.SARIF: _sarif,
    OutputFormat.HTML: _html,
}
