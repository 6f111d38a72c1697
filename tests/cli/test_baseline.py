"""The gate against a committed baseline: --write-baseline, --baseline, --max-alpha-shift (issue 11).

A baseline is an earlier JSON report. The gate fails only on what is new: a violation the baseline's own
numbers did not commit under the same rule, a layer the baseline did not have, an alpha that moved by
more than --max-alpha-shift. The files are real: a model written, its baseline written by the command,
then the model changed and checked again.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import inspector.cli
from tests.conftest import FIXTURES, ROOT, run_cli

DEFAULT = FIXTURES / "digits_mlp.safetensors"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "render" / "data" / "sarif-schema-2.1.0.json").read_text())
REPORT_SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: None)


def _alphas(path: Path) -> dict[str, float]:
    document = json.loads(run_cli(path, "--json").stdout)
    return {layer["name"]: layer["alpha"] for layer in document["reports"][0]["layers"] if layer["alpha"]}


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model.safetensors"
    model.write_bytes(DEFAULT.read_bytes())
    return model


def test_write_baseline_writes_the_json_report(tmp_path: Path) -> None:
    model = _model(tmp_path)
    result = run_cli(model, "--write-baseline", tmp_path / "baseline.json")
    assert result.exit_code == 0
    assert "fc1.weight" in result.stdout, "the report itself still goes where it goes"
    document = json.loads((tmp_path / "baseline.json").read_text())
    jsonschema.validate(document, REPORT_SCHEMA)
    assert document["reports"][0]["path"] == str(model)


def test_known_violations_do_not_fail_new_ones_do(tmp_path: Path) -> None:
    model = _model(tmp_path)
    alphas = _alphas(model)  # fc1 2.54, fc2 2.32, fc3 4.63
    bound = "2.4"
    assert alphas["fc1.weight"] > 2.4 and alphas["fc3.weight"] > 2.4 and alphas["fc2.weight"] < 2.4
    run_cli(model, "--write-baseline", tmp_path / "baseline.json")

    same = run_cli(model, "--fail-alpha-above", bound, "--baseline", tmp_path / "baseline.json", "--json")
    gate = json.loads(same.stdout)["gate"]
    assert same.exit_code == 0, "the two violations were there in the baseline"
    assert gate["passed"] and gate["violations"] == []
    assert {v["layer"] for v in gate["known_violations"]} == {"fc1.weight", "fc3.weight"}
    assert gate["baseline"] == str(tmp_path / "baseline.json")
    without = run_cli(model, "--fail-alpha-above", bound)
    assert without.exit_code == 1, "without the baseline they fail"

    # fc2 pushed past the bound: Gaussian noise in its place has a thin tail (alpha far above 2.4).
    weights = load_file(str(model))
    rng = np.random.default_rng(1)
    weights["fc2.weight"] = rng.standard_normal(weights["fc2.weight"].shape).astype(np.float32)
    save_file(weights, str(model))
    assert _alphas(model)["fc2.weight"] > 2.4
    moved = run_cli(model, "--fail-alpha-above", bound, "--baseline", tmp_path / "baseline.json", "--json")
    gate = json.loads(moved.stdout)["gate"]
    assert moved.exit_code == 1
    assert [v["layer"] for v in gate["violations"]] == ["fc2.weight"], "only the layer that crossed fails"
    assert gate["violations"][0]["baseline_alpha"] == pytest.approx(alphas["fc2.weight"])
    assert "fc2.weight" in moved.stderr and "fc1.weight" not in moved.stderr


def test_max_alpha_shift_fails_a_layer_that_moved_too_far(tmp_path: Path) -> None:
    model = _model(tmp_path)
    run_cli(model, "--write-baseline", tmp_path / "baseline.json")
    before = _alphas(model)
    weights = load_file(str(model))
    weights["fc2.weight"] = (
        np.random.default_rng(2).standard_normal(weights["fc2.weight"].shape).astype(np.float32)
    )
    save_file(weights, str(model))
    shift = abs(_alphas(model)["fc2.weight"] - before["fc2.weight"])
    args = [model, "--baseline", tmp_path / "baseline.json", "--json"]
    loose = run_cli(*args, "--max-alpha-shift", f"{shift + 0.01:.4f}")
    assert loose.exit_code == 0
    tight = run_cli(*args, "--max-alpha-shift", f"{shift - 0.01:.4f}")
    gate = json.loads(tight.stdout)["gate"]
    assert tight.exit_code == 1
    (violation,) = gate["violations"]
    assert violation["layer"] == "fc2.weight" and violation["rule_id"] == "alpha-shift"
    assert violation["baseline_alpha"] == pytest.approx(before["fc2.weight"])


def test_a_layer_the_baseline_did_not_have_is_new(tmp_path: Path) -> None:
    model = _model(tmp_path)
    run_cli(model, "--write-baseline", tmp_path / "baseline.json")
    weights = load_file(str(model))
    weights["extra.weight"] = np.random.default_rng(3).standard_normal((300, 100)).astype(np.float32)
    save_file(weights, str(model))
    result = run_cli(model, "--fail-alpha-above", "2.4", "--baseline", tmp_path / "baseline.json", "--json")
    violations = json.loads(result.stdout)["gate"]["violations"]
    assert [v["layer"] for v in violations] == ["extra.weight"]


def test_sarif_marks_new_and_unchanged_results(tmp_path: Path) -> None:
    model = _model(tmp_path)
    run_cli(model, "--write-baseline", tmp_path / "baseline.json")
    weights = load_file(str(model))
    weights["fc2.weight"] = (
        np.random.default_rng(1).standard_normal(weights["fc2.weight"].shape).astype(np.float32)
    )
    save_file(weights, str(model))
    result = run_cli(
        model, "--fail-alpha-above", "2.4", "--baseline", tmp_path / "baseline.json", "-o", "x.sarif"
    )
    assert result.exit_code == 1
    log = json.loads(Path("x.sarif").read_text())
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
    states = {
        r["locations"][0]["logicalLocations"][0]["name"]: r["baselineState"]
        for r in log["runs"][0]["results"]
    }
    assert states == {"fc2.weight": "new", "fc1.weight": "unchanged", "fc3.weight": "unchanged"}


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (None, "no such file"),
        ("not json", "not JSON"),
        ('{"tool": {"name": "other"}}', "not a wwinspect JSON report"),
        ('{"tool": {"name": "wwinspect"}, "schema_version": 9, "reports": []}', "schema_version 9"),
    ],
)
def test_a_bad_baseline_is_exit_2_before_reading(tmp_path: Path, content: str | None, phrase: str) -> None:
    baseline = tmp_path / "baseline.json"
    if content is not None:
        baseline.write_text(content)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(DEFAULT.read_bytes()[:100])
    result = run_cli(truncated, "--fail-alpha-above", "6", "--baseline", baseline)
    assert result.exit_code == 2, result.output
    assert phrase in result.stderr and result.stderr.count("\n") == 1


def test_a_baseline_in_the_config_is_relative_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(tmp_path)
    (tmp_path / "ci").mkdir()
    run_cli(model, "--write-baseline", tmp_path / "ci" / "baseline.json")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.wwinspect]\nfail-alpha-above = 2.4\nbaseline = 'ci/baseline.json'\n"
    )
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: tmp_path / "pyproject.toml")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = run_cli(model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["gate"]["baseline"] == str(tmp_path / "ci" / "baseline.json")
