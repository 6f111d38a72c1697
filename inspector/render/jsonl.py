"""JSON Lines: one JSON object per line, written as the run goes, for big models and pipes (`jq`, `grep`).

The stream of one run, each line with a "type":
    {"type": "run", "schema_version": 1, "tool": {...}, "settings": {...}}   first
    {"type": "layer", "path": ..., "format": ..., <every key of a JSON layer record>}   one per record,
        as soon as it is measured
    {"type": "summary", "path": ..., "format": ..., "summary": {...}, "warnings": [...]}   after the layers
    {"type": "error", "path": ..., "error": {"kind": ..., "message": ...}}   a file that cannot be read
    {"type": "gate", "passed": ..., "violations": [...]}   last
Layer objects are exactly the JSON report's layer records (`inspector.render.json.layer_dict`), so a line
can be read with the same code; a consumer that stops early (C-c, `| head`) still has every finished layer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from inspector import __version__
from inspector.gate import GateResult
from inspector.options import AnalysisOptions
from inspector.records import LayerRecord, ModelReport
from inspector.render.json import SCHEMA_VERSION, document, layer_dict, settings_dict, summary_dict


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":")) + "\n"


def run_line(options: AnalysisOptions, backend: str) -> str:
    return _line(
        {
            "type": "run",
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "wwinspect", "version": __version__},
            "settings": settings_dict(options, backend),
        }
    )


def layer_line(path: str, file_format: str | None, layer: LayerRecord) -> str:
    return _line({"type": "layer", "path": path, "format": file_format, **layer_dict(layer)})


def end_line(report: ModelReport) -> str:
    """The line that closes a file: its summary, or its error."""
    if report.error is not None:
        return _line(
            {
                "type": "error",
                "path": report.path,
                "error": {"kind": report.error.kind, "message": report.error.message},
            }
        )
    return _line(
        {
            "type": "summary",
            "path": report.path,
            "format": report.format,
            "summary": summary_dict(report.summary) if report.summary is not None else None,
            "warnings": list(report.warnings),
        }
    )


def gate_line(gate: GateResult, options: AnalysisOptions, backend: str) -> str:
    return _line({"type": "gate", **document([], options, backend, gate)["gate"]})


def lines(
    reports: Sequence[ModelReport], options: AnalysisOptions, backend: str, gate: GateResult
) -> Iterator[str]:
    """The whole stream of a finished run (what the streaming writer writes bit by bit)."""
    yield run_line(options, backend)
    for report in reports:
        for layer in report.layers:
            yield layer_line(report.path, report.format, layer)
        yield end_line(report)
    yield gate_line(gate, options, backend)


class JsonlWriter:
    """Writes the stream as it happens, flushing each line (the pipeline calls `layer` per record)."""

    def __init__(self, stream: TextIO, options: AnalysisOptions, backend: str) -> None:
        self._stream = stream
        self._options = options
        self._backend = backend
        self._write(run_line(options, backend))

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def layer(self, path: str, file_format: str | None, record: LayerRecord) -> None:
        self._write(layer_line(path, file_format, record))

    def file_done(self, report: ModelReport) -> None:
        self._write(end_line(report))

    def finish(self, gate: GateResult) -> None:
        self._write(gate_line(gate, self._options, self._backend))
