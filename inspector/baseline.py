"""A baseline for the gate: the layers' alphas and phases of an earlier JSON report (`--baseline FILE`).

The file is any `wwinspect --format json` document (schema_version 1); `--write-baseline FILE` writes one.
The gate re-applies today's rules to the baseline's numbers rather than trusting the gate verdict stored
in it, so a violation is known exactly when the baseline's own numbers already broke the same rule.

Reports are matched by path, else by file name, else (one report on each side) with each other; layers by
name (with `[slice]` in per-slice mode). A file that is not such a report is a usage error: nothing was read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from inspector.errors import UsageError
from inspector.records import Phase

#: Largest baseline read (a JSON report of a 1,000-layer model is about 3 MB).
MAX_BASELINE_BYTES = 256 * 1024 * 1024
#: The JSON report's schema version this reader understands.
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class BaselineLayer:
    """What the gate compares of one layer."""

    alpha: float | None
    phase: Phase | None


@dataclass(frozen=True, slots=True)
class Baseline:
    """The layers of each readable report of a baseline file, keyed by report path and layer label."""

    path: Path
    reports: Mapping[str, Mapping[str, BaselineLayer]] = field(default_factory=dict)

    def report_for(self, path: str, reports_in_run: int) -> Mapping[str, BaselineLayer] | None:
        """The baseline's layers for the report of `path`, or None when it has none for that file."""
        if path in self.reports:
            return self.reports[path]
        name = PurePath(path).name
        by_name = [layers for key, layers in self.reports.items() if PurePath(key).name == name]
        if len(by_name) == 1:
            return by_name[0]
        if reports_in_run == 1 and len(self.reports) == 1:
            return next(iter(self.reports.values()))
        return None


def _layer_label(layer: Mapping[str, Any]) -> str | None:
    name = layer.get("name")
    if not isinstance(name, str):
        return None
    index = layer.get("slice_index")
    return name if not isinstance(index, int) or isinstance(index, bool) else f"{name}[{index}]"


def _layer(layer: Mapping[str, Any]) -> BaselineLayer | None:
    if layer.get("status") != "analyzed":
        return None
    alpha = layer.get("alpha")
    phase = layer.get("phase")
    known = {member.value: member for member in Phase}
    return BaselineLayer(
        alpha=float(alpha) if isinstance(alpha, int | float) and not isinstance(alpha, bool) else None,
        phase=known.get(phase) if isinstance(phase, str) else None,
    )


def parse_baseline(document: object, path: Path) -> Baseline:
    """A baseline from a decoded JSON report.

    Raises:
        UsageError: the document is not a wwinspect JSON report of a schema version we read.
    """
    tool = document.get("tool") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(tool, dict) or tool.get("name") != "wwinspect":
        raise UsageError(f"--baseline {path}: not a wwinspect JSON report (write one with --write-baseline)")
    if document.get("schema_version") != SCHEMA_VERSION:
        version = document.get("schema_version")
        raise UsageError(
            f"--baseline {path}: schema_version {version!r}, this wwinspect reads {SCHEMA_VERSION}"
        )
    reports = document.get("reports")
    if not isinstance(reports, list):
        raise UsageError(f"--baseline {path}: the report has no 'reports' list")
    found: dict[str, dict[str, BaselineLayer]] = {}
    for report in reports:
        if not isinstance(report, dict) or not isinstance(report.get("path"), str):
            continue
        layers: dict[str, BaselineLayer] = {}
        for layer in report.get("layers") or []:
            if not isinstance(layer, dict):
                continue
            label, values = _layer_label(layer), _layer(layer)
            if label is not None and values is not None:
                layers[label] = values
        if "error" not in report:
            found[report["path"]] = layers
    return Baseline(path=path, reports=found)


def load_baseline(path: Path) -> Baseline:
    """Read and parse a baseline file.

    Raises:
        UsageError: the file is missing, too large, not JSON, or not a wwinspect report.
    """
    try:
        size = path.stat().st_size
        if size > MAX_BASELINE_BYTES:
            raise UsageError(f"--baseline {path}: {size} bytes, more than the {MAX_BASELINE_BYTES} read")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--baseline {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--baseline {path}: cannot be read ({exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--baseline {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_baseline(document, path)
