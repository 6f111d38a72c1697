"""The command line through typer's runner: exit codes, stream separation, and the JSON report's values."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.conftest import FIXTURES, ROOT, run_cli

DEFAULT = FIXTURES / "digits_mlp.safetensors"
PLANTED = FIXTURES / "planted_pareto.safetensors"
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())


def _json(*args: Any) -> tuple[dict[str, Any], Any]:
    result = run_cli(*args, "--format", "json")
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    return document, result


def _layers(document: dict[str, Any], report: int = 0) -> dict[str, dict[str, Any]]:
    return {layer["name"]: layer for layer in document["reports"][report]["layers"]}


def test_table_lists_every_layer_and_keeps_stderr_clean() -> None:
    result = run_cli(DEFAULT)
    assert result.exit_code == 0, result.output
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        assert name in result.stdout
    assert "analysed 3" in result.stdout  # fc3 is 10 x 256: exactly --min-evals 10 eigenvalues
    assert result.stderr == ""


def test_json_values_are_real_numbers_that_match_numpy() -> None:
    document, result = _json(DEFAULT)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert document["schema_version"] == 1
    assert document["tool"]["name"] == "wwinspect"
    report = document["reports"][0]
    assert report["format"] == "safetensors"
    layers = _layers(document)
    weights = load_file(str(DEFAULT))
    for name in ("fc1.weight", "fc2.weight"):
        layer = layers[name]
        assert layer["status"] == "analyzed"
        matrix = weights[name].astype(np.float64)
        singular = np.linalg.svd(matrix, compute_uv=False)
        assert layer["N"] == max(matrix.shape) and layer["M"] == min(matrix.shape)
        assert layer["num_evals"] == min(matrix.shape)
        assert layer["lambda_max"] == pytest.approx(singular[0] ** 2, rel=1e-9)
        assert layer["log_norm"] == pytest.approx(np.log10(np.sum(singular**2)), rel=1e-9)
        assert 1.0 < layer["alpha"] < 10.0
        assert layer["alpha_label"] in ("over-trained", "well-trained", "under-trained")
        assert len(layer["esd_histogram"]) > 0 and sum(layer["esd_histogram"]) == layer["num_evals"]
    # 1-D biases are listed, with a reason, never dropped silently.
    assert layers["fc1.bias"]["status"] == "skipped"
    assert "not a matrix" in layers["fc1.bias"]["reason"]
    summary = report["summary"]
    analysed = [layer for layer in layers.values() if layer["status"] == "analyzed"]
    assert summary["analyzed"] == len(analysed)
    assert summary["mean_alpha"] == pytest.approx(np.mean([layer["alpha"] for layer in analysed]), rel=1e-12)


def test_planted_pareto_exponents_are_recovered() -> None:
    manifest = json.loads((FIXTURES / "manifests" / "planted_pareto.safetensors.json").read_text())
    document, result = _json(PLANTED)
    assert result.exit_code == 0
    layers = _layers(document)
    for name, alpha in manifest["planted_alpha"].items():
        layer = layers[name]
        tolerance = 3 * (alpha - 1) / np.sqrt(layer["num_pl_spikes"])
        assert abs(layer["alpha"] - alpha) <= tolerance, (name, layer["alpha"], alpha, tolerance)


def test_missing_path_is_a_usage_error_and_reads_nothing(tmp_path: Path) -> None:
    result = run_cli(DEFAULT, tmp_path / "nope.safetensors")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "nope.safetensors" in result.stderr


def test_bad_option_is_one_line_exit_2() -> None:
    result = run_cli(DEFAULT, "--no-such-option")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_truncated_file_is_exit_3_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(DEFAULT.read_bytes()[:-1000])
    result = run_cli(broken)
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and "broken.safetensors" in result.stderr


def test_lying_header_is_exit_3(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [100, 100], "data_offsets": [0, 40000]}}).encode()
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    result = run_cli(lying)
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1


def test_several_paths_report_every_readable_file_and_exit_3(tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    document, result = _json(DEFAULT, broken)
    assert result.exit_code == 3
    assert len(document["reports"]) == 2
    assert document["reports"][0]["layers"]
    assert set(document["reports"][1]) >= {"path", "error"} and "layers" not in document["reports"][1]


def test_gate_violation_exits_1_and_exit_zero_turns_it_to_0() -> None:
    document, result = _json(DEFAULT, "--fail-alpha-below", "50")
    assert result.exit_code == 1
    assert document["gate"]["passed"] is False
    assert {violation["rule"] for violation in document["gate"]["violations"]} == {"alpha<50"}
    assert run_cli(DEFAULT, "--fail-alpha-below", "50", "--exit-zero").exit_code == 0
    passed, result = _json(DEFAULT, "--fail-alpha-above", "50")
    assert result.exit_code == 0 and passed["gate"]["passed"] is True


def test_gate_bounds_are_inclusive() -> None:
    document, _ = _json(DEFAULT)
    alpha = _layers(document)["fc1.weight"]["alpha"]
    at_bound = run_cli(DEFAULT, "--layer", "fc1.weight", "--fail-alpha-above", repr(alpha))
    assert at_bound.exit_code == 0, at_bound.stderr


def test_nothing_analysable_exits_4() -> None:
    document, result = _json(DEFAULT, "--min-evals", "100000")
    assert result.exit_code == 4
    assert all(layer["status"] == "skipped" for layer in document["reports"][0]["layers"])
    assert any(
        "fewer than --min-evals 100000" in layer["reason"] for layer in document["reports"][0]["layers"]
    )


def test_layer_and_exclude_filters_say_why() -> None:
    document, result = _json(DEFAULT, "--layer", "fc1*", "--exclude", "*.bias")
    assert result.exit_code == 0
    layers = _layers(document)
    assert layers["fc1.weight"]["status"] == "analyzed"
    assert layers["fc2.weight"]["reason"].startswith("not selected by --layer")


def test_max_evals_bound_skips_with_reason() -> None:
    document, _ = _json(DEFAULT, "--max-evals", "100")
    layers = _layers(document)
    assert layers["fc2.weight"]["status"] == "skipped"
    assert "more than --max-evals 100" in layers["fc2.weight"]["reason"]
    assert layers["fc1.weight"]["status"] == "analyzed"


def test_pyproject_config_is_read_and_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\nfail-alpha-below = 50\nformat = 'json'\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli(DEFAULT)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["gate"]["passed"] is False
    assert run_cli(DEFAULT, "--fail-alpha-below", "0.5").exit_code == 0


def test_unknown_config_key_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\nfail-alpha-abve = 6\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli(DEFAULT)
    assert result.exit_code == 2
    assert "fail-alpha-abve" in result.stderr and result.stderr.count("\n") == 1


def test_output_file_receives_the_report(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = run_cli(DEFAULT, "--json", "-o", target)
    assert result.exit_code == 0 and result.stdout == ""
    jsonschema.validate(json.loads(target.read_text()), SCHEMA)


@pytest.mark.parametrize("output_format", ["csv", "markdown", "github"])
def test_flat_formats_name_the_layers(output_format: str) -> None:
    result = run_cli(DEFAULT, "--format", output_format, "--fail-alpha-below", "50")
    assert result.exit_code == 1
    assert "fc1.weight" in result.stdout
    if output_format == "csv":
        header = result.stdout.splitlines()[0].split(",")
        assert {"path", "name", "alpha", "status", "reason"} <= set(header)
    if output_format == "github":
        assert result.stdout.startswith("::") and "::error" in result.stdout


def test_names_from_files_cannot_drive_the_terminal(tmp_path: Path) -> None:
    hostile = tmp_path / "names.safetensors"
    rng = np.random.default_rng(0)
    save_file({"evil\x1b[31m[bold]name\x07": rng.standard_normal((32, 16)).astype(np.float32)}, str(hostile))
    for output_format in ("table", "markdown", "github", "csv"):
        result = run_cli(hostile, "--format", output_format)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspector.fleet

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(inspector.fleet, "analyze_paths", interrupted)
    result = run_cli(DEFAULT)
    assert result.exit_code == 130
    assert "Traceback" not in result.stderr


def test_a_bug_exits_5_with_one_line_asking_for_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspector.fleet

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(inspector.pipeline, "measure_layer", broken)
    result = run_cli(DEFAULT)
    assert result.exit_code == 5
    assert result.stderr.count("\n") == 1 and "--debug" in result.stderr
    with pytest.raises(RuntimeError):
        from typer.testing import CliRunner

        from inspector.cli import app

        outcome = CliRunner().invoke(app, [str(DEFAULT), "--debug"])
        raise outcome.exception  # type: ignore[misc]


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.startswith("wwinspect ")
    help_text = run_cli("--help").stdout
    for flag in ("--format", "--fail-alpha-above", "--exit-zero", "--device", "--min-evals", "itself passes"):
        assert flag in help_text


def test_reader_warnings_reach_the_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal((32, 16)).astype(np.float32).tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [32, 16], "data_offsets": [0, len(values)]}}).encode()
    gappy = tmp_path / "gap.safetensors"
    gappy.write_bytes(
        struct.pack("<Q", len(header)) + header + values + b"\0" * 64
    )  # 64 unused bytes at the end
    document, result = _json(gappy)
    assert result.exit_code == 0
    assert document["reports"][0]["warnings"], "the trailing unused bytes should be reported"
    assert "warning:" in run_cli(gappy).stdout


def test_normalization_scales_eigenvalues_but_never_alpha() -> None:
    plain, _ = _json(DEFAULT)
    per_n, _ = _json(DEFAULT, "--normalize", "per-n")
    assert per_n["settings"]["normalization"] == "per-n"
    for name in ("fc1.weight", "fc2.weight"):
        a, b = _layers(plain)[name], _layers(per_n)[name]
        assert b["alpha"] == pytest.approx(a["alpha"], rel=1e-12)
        assert b["lambda_max"] == pytest.approx(a["lambda_max"] / a["N"], rel=1e-12)


def test_spectral_options_reach_the_numbers() -> None:
    kde, _ = _json(DEFAULT, "--mp-fit", "kde")
    quantile, _ = _json(DEFAULT)
    assert kde["settings"]["mp_method"] == "kde" and quantile["settings"]["mp_method"] == "quantile"
    assert _layers(kde)["fc2.weight"]["mp_sigma"] != _layers(quantile)["fc2.weight"]["mp_sigma"]
    randomized, _ = _json(DEFAULT, "--randomize", "--seed", "3")
    again, _ = _json(DEFAULT, "--randomize", "--seed", "3")
    layer = _layers(randomized)["fc2.weight"]
    assert layer["rand_distance"] is not None and layer["rand_distance"] > 0
    assert layer["rand_distance"] == _layers(again)["fc2.weight"]["rand_distance"]  # seeded: reproducible
    truncated, _ = _json(DEFAULT, "--fit", "tpl")
    assert _layers(truncated)["fc2.weight"]["Lambda"] is not None
    assert _layers(quantile)["fc2.weight"]["Lambda"] is None


def test_bad_enum_in_config_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\nmp-fit = 'magic'\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli(DEFAULT)
    assert result.exit_code == 2 and "mp-fit" in result.stderr
