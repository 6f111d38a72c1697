"""SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format) for GitHub code scanning.

One result per gate violation: the model file is the artifact (its physical location, with no region: a
model file has no lines, and GitHub shows such results on the file), the layer is the logical location, and
the fingerprints depend on the file, the layer and the rule only, so the same problem in the next run is the
same alert even when its value moved. Files that could not be read and layers that failed become the run's
tool notifications, not results: they are not findings about the model.

Validated against the official schema in tests/render/test_sarif.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Any
from urllib.parse import quote

from inspector import __version__
from inspector.gate import GateResult, Rule, Violation
from inspector.records import ModelReport, Status

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
#: Version of our fingerprint recipe: change it (v2) if the recipe ever changes, never silently.
FINGERPRINT_KEY = "wwinspect/layer-rule/v1"


@dataclass(frozen=True, slots=True)
class SarifRule:
    """A kind of gate violation as a SARIF reportingDescriptor."""

    id: str
    name: str
    short: str
    full: str


#: The gate's rules. Ids are stable: code scanning matches alerts across runs by them.
RULES: tuple[SarifRule, ...] = (
    SarifRule(
        "alpha-above",
        "AlphaAboveBound",
        "Layer alpha above the gate's upper bound",
        "The power-law exponent alpha of the layer's ESD tail is above --fail-alpha-above. Large alphas "
        "mean a thin tail: in HTSR a layer with alpha > 6 has learned little (under-trained).",
    ),
    SarifRule(
        "alpha-below",
        "AlphaBelowBound",
        "Layer alpha below the gate's lower bound",
        "alpha is below --fail-alpha-below. alpha < 2 is a very heavy tail, which HTSR associates with "
        "over-fitting or over-training.",
    ),
    SarifRule(
        "phase",
        "FailingPhase",
        "Layer in a phase the gate fails on",
        "The layer's HTSR phase (read from the whole ESD: MP bulk, outliers, power-law tail) is one of the "
        "phases given to --fail-phase.",
    ),
    SarifRule(
        "alpha-shift",
        "AlphaShiftFromBaseline",
        "Layer alpha moved from the baseline by more than allowed",
        "Compared with the --baseline report, the layer's alpha moved by more than --max-alpha-shift: the "
        "layer's training changed more than the team allows between two versions of the model.",
    ),
    SarifRule(
        "unchecked",
        "UncheckedLayer",
        "Layer the gate could not check",
        "Under --strict, a layer the gate rules could not be applied to (it could not be measured, or no "
        "alpha could be fitted for an alpha rule) fails the gate instead of passing silently.",
    ),
)
_RULE_INDEX = {rule.id: position for position, rule in enumerate(RULES)}


def rule_id(violation: Violation) -> str:
    """The SARIF rule id of a violation (the gate's typed rule)."""
    return violation.rule_id.value


def artifact_location(path: str) -> dict[str, str]:
    """A relative path as a URI relative to the checkout (%SRCROOT%), an absolute one as a file: URI."""
    pure = PurePath(path)
    if pure.is_absolute():
        return {"uri": pure.as_uri()}
    relative = PurePosixPath(*pure.parts).as_posix()
    return {"uri": quote(relative, safe="/"), "uriBaseId": "%SRCROOT%"}


def fingerprint(uri: str, layer: str, identifier: str) -> str:
    """Stable across runs: the file, the layer and the rule, never the measured value."""
    return hashlib.sha256(f"{uri}\0{layer}\0{identifier}".encode()).hexdigest()


def _message(violation: Violation) -> str:
    return f"Layer {violation.layer!r}: {violation.describe()}."


def _result(
    violation: Violation,
    artifacts: dict[str, int],
    reports: dict[str, ModelReport],
    baseline_state: str | None = None,
) -> dict[str, Any]:
    identifier = rule_id(violation)
    location = artifact_location(violation.path)
    uri = location["uri"]
    digest = fingerprint(uri, violation.layer, identifier)
    properties: dict[str, Any] = {"rule": violation.rule, "value": violation.value, "bound": violation.bound}
    if violation.baseline_alpha is not None:
        properties["baseline_alpha"] = violation.baseline_alpha
    report = reports.get(violation.path)
    if report is not None:
        record = next((r for r in report.layers if _label(r) == violation.layer), None)
        if record is not None:
            properties["phase"] = record.phase.value if record.phase is not None else None
            properties["alpha_label"] = record.alpha_label.value if record.alpha_label is not None else None
    result: dict[str, Any] = {
        "ruleId": identifier,
        "ruleIndex": _RULE_INDEX[identifier],
        "level": "error" if baseline_state != "unchanged" else "warning",
        "message": {"text": _message(violation)},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {**location, "index": artifacts[violation.path]}},
                "logicalLocations": [
                    {
                        "name": violation.layer,
                        "fullyQualifiedName": f"{uri}::{violation.layer}",
                        "kind": "member",
                    }
                ],
            }
        ],
        # GitHub keys alerts on primaryLocationLineHash, "a stable intra-file location": for a model file the
        # layer plays the part of the line. Our own key says what the hash is made of.
        "partialFingerprints": {
            "primaryLocationLineHash": hashlib.sha256(violation.layer.encode()).hexdigest()[:16] + ":1",
            FINGERPRINT_KEY: digest,
        },
        "properties": properties,
    }
    if baseline_state is not None:
        result["baselineState"] = baseline_state
    return result


def _label(record: Any) -> str:
    return record.name if record.slice_index is None else f"{record.name}[{record.slice_index}]"


def _notifications(reports: Sequence[ModelReport], artifacts: dict[str, int]) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = []
    for report in reports:
        where = [
            {
                "physicalLocation": {
                    "artifactLocation": {**artifact_location(report.path), "index": artifacts[report.path]}
                }
            }
        ]
        if report.error is not None:
            notes.append(
                {
                    "level": "error",
                    "message": {"text": f"cannot be read: {report.error.message}"},
                    "locations": where,
                }
            )
            continue
        for record in report.layers:
            if record.status is Status.FAILED:
                notes.append(
                    {
                        "level": "warning",
                        "message": {
                            "text": f"layer {_label(record)!r} could not be measured: {record.reason}"
                        },
                        "locations": where,
                    }
                )
    return notes


def _unchecked_notes(gate: GateResult, artifacts: dict[str, int]) -> list[dict[str, Any]]:
    """Layers the gate could not check, when --strict did not make them results."""
    if any(violation.rule_id is Rule.UNCHECKED for violation in gate.violations):
        return []
    return [
        {
            "level": "warning",
            "message": {"text": f"layer {item.layer!r} was not checked by the gate: {item.reason}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {**artifact_location(item.path), "index": artifacts[item.path]}
                    }
                }
            ],
        }
        for item in gate.unchecked
        if item.path in artifacts
    ]


def to_sarif(
    reports: Sequence[ModelReport], gate: GateResult, *, exit_code: int | None = None
) -> dict[str, Any]:
    """The SARIF log of one run: every analysed file an artifact, every violation a result."""
    found = [*gate.violations, *gate.known]
    paths = list(dict.fromkeys([report.path for report in reports] + [v.path for v in found]))
    artifacts = {path: position for position, path in enumerate(paths)}
    by_path = {report.path: report for report in reports}
    invocation: dict[str, Any] = {
        "executionSuccessful": all(report.error is None for report in reports),
        "toolExecutionNotifications": _notifications(reports, artifacts) + _unchecked_notes(gate, artifacts),
    }
    compared = gate.baseline is not None
    results = [_result(v, artifacts, by_path, "new" if compared else None) for v in gate.violations]
    results += [_result(v, artifacts, by_path, "unchanged") for v in gate.known]
    if exit_code is not None:
        invocation["exitCode"] = exit_code
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "wwinspect",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [
                            {
                                "id": rule.id,
                                "name": rule.name,
                                "shortDescription": {"text": rule.short},
                                "fullDescription": {"text": rule.full},
                                "defaultConfiguration": {"level": "error"},
                                "properties": {"tags": ["htsr", "model-quality"]},
                            }
                            for rule in RULES
                        ],
                    }
                },
                "artifacts": [
                    {"location": artifact_location(path), "roles": ["analysisTarget"]} for path in paths
                ],
                "invocations": [invocation],
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
