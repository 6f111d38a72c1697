"""CSV: one row per layer of every readable file (Markdown, GitHub annotations and SARIF have modules of
their own)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from inspector.records import ModelReport
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
