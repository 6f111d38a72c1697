"""SARIF 2.1.0: valid against the official OASIS schema, one result per violation, stable fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from inspector.gate import GateResult, GateRules, Rule, Violation, evaluate_gate
from inspector.records import FileError, ModelReport, Phase, Status
from inspector.render import sarif
from tests.render.helpers import fixture_report, layer, report_of

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


def _validate(log: dict[str, object]) -> None:
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    json.dumps(log, allow_nan=False)


def test_real_violations_are_valid_sarif_with_one_result_each() -> None:
    report = fixture_report("digits_mlp.safetensors")
    gate = evaluate_gate(
        [report], GateRules(alpha_above=2.4, alpha_below=2.4, phases=(Phase.BULK_PLUS_SPIKES,))
    )
    assert len(gate.violations) >= 4
    log = sarif.to_sarif([report], gate, exit_code=1)
    _validate(log)
    run = log["runs"][0]
    results = run["results"]
    assert len(results) == len(gate.violations)
    assert {result["ruleId"] for result in results} == {"alpha-above", "alpha-below", "phase"}
    for result, violation in zip(results, gate.violations, strict=True):
        location = result["locations"][0]
        assert location["physicalLocation"]["artifactLocation"]["index"] == 0
        assert location["logicalLocations"][0]["name"] == violation.layer
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert "region" not in location["physicalLocation"], "a model file has no lines"
    assert run["artifacts"][0]["location"]["uri"].endswith("digits_mlp.safetensors")
    assert run["invocations"][0]["executionSuccessful"] is True and run["invocations"][0]["exitCode"] == 1


def test_fingerprints_depend_on_file_layer_and_rule_not_on_the_value() -> None:
    first = Violation("models/a.onnx", "fc1.weight", Rule.ALPHA_ABOVE, 7.1, 6.0)
    moved = Violation("models/a.onnx", "fc1.weight", Rule.ALPHA_ABOVE, 9.3, 6.0)
    other_layer = Violation("models/a.onnx", "fc2.weight", Rule.ALPHA_ABOVE, 7.1, 6.0)
    other_rule = Violation("models/a.onnx", "fc1.weight", Rule.ALPHA_BELOW, 1.1, 2.0)

    def prints(violation: Violation) -> dict[str, str]:
        log = sarif.to_sarif([], GateResult(passed=False, violations=(violation,)))
        found: dict[str, str] = log["runs"][0]["results"][0]["partialFingerprints"]
        return found

    assert prints(first) == prints(moved)
    assert prints(first)[sarif.FINGERPRINT_KEY] != prints(other_layer)[sarif.FINGERPRINT_KEY]
    assert prints(first)[sarif.FINGERPRINT_KEY] != prints(other_rule)[sarif.FINGERPRINT_KEY]
    assert prints(first) == prints(Violation("models/a.onnx", "fc1.weight", Rule.ALPHA_ABOVE, 7.1, 6.0)), (
        "same input, same print"
    )


@pytest.mark.parametrize(
    ("path", "uri", "base"),
    [
        ("models/my model.onnx", "models/my%20model.onnx", "%SRCROOT%"),
        ("model.gguf", "model.gguf", "%SRCROOT%"),
        ("/srv/ckpt/model.pt", "file:///srv/ckpt/model.pt", None),
    ],
)
def test_artifact_locations(path: str, uri: str, base: str | None) -> None:
    location = sarif.artifact_location(path)
    assert location["uri"] == uri and location.get("uriBaseId") == base


def test_unreadable_files_and_failed_layers_are_notifications_not_results() -> None:
    broken = ModelReport(
        path="bad.safetensors", format=None, error=FileError("CorruptFileError", "truncated")
    )
    report = report_of(layer("ok", 0), layer("nan", 1, status=Status.FAILED, reason="3 weights are NaN"))
    log = sarif.to_sarif([broken, report], GateResult(passed=True, violations=()), exit_code=3)
    _validate(log)
    invocation = log["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    levels = [note["level"] for note in invocation["toolExecutionNotifications"]]
    assert levels == ["error", "warning"]
    assert log["runs"][0]["results"] == []


def test_the_schema_check_can_fail() -> None:
    log = sarif.to_sarif(
        [], GateResult(passed=False, violations=(Violation("m.onnx", "w", Rule.ALPHA_ABOVE, 7.0, 6.0),))
    )
    log["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        _validate(log)
