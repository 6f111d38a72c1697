"""The JSON report, schema_version 1 (PRODUCT.md; JSON Schema in docs/report.schema.json).

Keys are stable: new keys may be added, the required ones are never renamed. Every metric key of a layer
is present on every layer, null where it was not computed, so scripts can index without guards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inspector import __version__
from inspector.gate import GateResult, Violation
from inspector.options import AnalysisOptions, FitCut
from inspector.records import LayerGroup, LayerMetrics, LayerRecord, ModelReport, Summary
from inspector.render import finite_or_none

SCHEMA_VERSION = 1

_METRIC_FIELDS = tuple(field.name for field in dataclasses.fields(LayerMetrics))


def settings_dict(options: AnalysisOptions, backend: str) -> dict[str, Any]:
    """Every setting that changes a number, plus the conventions behind the numbers."""
    settings: dict[str, Any] = {}
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if hasattr(value, "value"):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path):
            value = str(value)
        settings[field.name] = value
    settings.update(
        {
            "backend": backend,
            "eigenvalues": "of W^T W, W oriented N x M with N >= M",
            "xmin_rule": "Clauset: every eigenvalue a candidate, xmin minimises the KS distance D",
            "alpha_estimator": "continuous MLE alpha = 1 + n / sum(ln(x / xmin))",
            "fit_sees": (
                f"eigenvalues > {options.evals_threshold:g} on weightwatcher's scale "
                f"(s^2, conv x {options.conv_scale:g})"
                if options.fit_cut == FitCut.ABSOLUTE
                else "eigenvalues counted in the matrix rank (> lambda_max (N eps)^2 of their matrix)"
            ),
            "log_base": 10,
        }
    )
    return settings


def _metrics_dict(metrics: LayerMetrics | None) -> dict[str, Any]:
    if metrics is None:
        return {name: None if name != "esd_histogram" else [] for name in _METRIC_FIELDS}
    return {
        name: finite_or_none(getattr(metrics, name))
        if name != "esd_histogram"
        else list(metrics.esd_histogram)
        for name in _METRIC_FIELDS
    }


def layer_dict(layer: LayerRecord) -> dict[str, Any]:
    """One layer record; identity keys first, then every metric."""
    document: dict[str, Any] = {
        "index": layer.index,
        "name": layer.name,
        "kind": layer.kind.value,
        "role": layer.role.value if layer.role is not None else None,
        "shape": list(layer.shape),
        "dtype": layer.dtype,
        "encoding": layer.encoding,
        "status": layer.status.value,
        "reason": layer.reason,
        "N": layer.N,
        "M": layer.M,
        "num_slices": layer.num_slices,
        "slice_index": layer.slice_index,
        "aliases": list(layer.aliases),
        "stored_name": layer.stored_name,
        "source_op": layer.source_op,
        "phase": layer.phase.value if layer.phase is not None else None,
        "phase_confidence": layer.phase_confidence,
        "phase_neighbour": layer.phase_neighbour.value if layer.phase_neighbour is not None else None,
        "phase_rule": layer.phase_rule,
        "alpha_label": layer.alpha_label.value if layer.alpha_label is not None else None,
    }
    metrics = _metrics_dict(layer.metrics)
    if layer.metrics is None:
        metrics["num_evals"] = (layer.M or 0) * layer.num_slices if layer.M is not None else None
    document.update(metrics)
    return document


def summary_dict(summary: Summary) -> dict[str, Any]:
    return {
        field.name: finite_or_none(getattr(summary, field.name))
        if not isinstance(getattr(summary, field.name), dict)
        else dict(getattr(summary, field.name))
        for field in dataclasses.fields(summary)
    }


def group_dict(group: LayerGroup) -> dict[str, Any]:
    """One group of records summarised together (the experts of one projection)."""
    document: dict[str, Any] = {}
    for field in dataclasses.fields(group):
        value = getattr(group, field.name)
        if isinstance(value, tuple):
            document[field.name] = list(value)
        elif isinstance(value, str):
            document[field.name] = value
        else:
            document[field.name] = finite_or_none(value)
    return document


def report_dict(report: ModelReport) -> dict[str, Any]:
    """One PATH's entry in `reports`: layers and summary, or an error object."""
    document: dict[str, Any] = {"path": report.path, "format": report.format}
    if report.error is not None:
        document["error"] = {"kind": report.error.kind, "message": report.error.message}
        return document
    document["layers"] = [layer_dict(layer) for layer in report.layers]
    if report.summary is not None:
        document["summary"] = summary_dict(report.summary)
    document["warnings"] = list(report.warnings)
    document["groups"] = [group_dict(group) for group in report.groups]
    if report.base_comparisons:
        document["base_comparison"] = [
            {
                field.name: getattr(item, field.name)
                if field.name == "name"
                else finite_or_none(getattr(item, field.name))
                for field in dataclasses.fields(item)
            }
            for item in report.base_comparisons
        ]
    if report.metadata:
        document["metadata"] = {key: value[:500] for key, value in report.metadata.items()}
    return document


def document(
    reports: Sequence[ModelReport],
    options: AnalysisOptions,
    backend: str,
    gate: GateResult,
    *,
    config: str | None = None,
) -> dict[str, Any]:
    """The whole JSON document; `config`: the pyproject.toml whose [tool.wwinspect] set anything."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "wwinspect", "version": __version__},
        "config": config,
        "settings": settings_dict(options, backend),
        "reports": [report_dict(report) for report in reports],
        "gate": gate_dict(gate),
    }


def violation_dict(violation: Violation) -> dict[str, Any]:
    """One violation: the rule as one word (`alpha>6`) and typed (`rule_id`, `bound`), and the value."""
    value = violation.value
    bound = violation.bound
    return {
        "path": violation.path,
        "layer": violation.layer,
        "rule": violation.rule,
        "rule_id": violation.rule_id.value,
        "bound": finite_or_none(bound) if isinstance(bound, int | float) else bound,
        "value": finite_or_none(value) if not isinstance(value, str) else value,
        "baseline_alpha": finite_or_none(violation.baseline_alpha),
        "message": violation.describe(),
    }


def gate_dict(gate: GateResult) -> dict[str, Any]:
    """The gate's verdict: failing violations, those the baseline already had, and unchecked layers."""
    return {
        "passed": gate.passed,
        "violations": [violation_dict(violation) for violation in gate.violations],
        "known_violations": [violation_dict(violation) for violation in gate.known],
        "unchecked": [{"path": u.path, "layer": u.layer, "reason": u.reason} for u in gate.unchecked],
        "baseline": gate.baseline,
    }
