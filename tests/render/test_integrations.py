"""The pre-commit hook and the GitHub Action: their files load with their tools' own rules, the hook picks
model files by name, and the action's scripts run for real against a fixture."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pre_commit.clientlib import load_manifest

from tests.conftest import FIXTURES, ROOT


def test_pre_commit_manifest_loads_with_pre_commits_own_schema() -> None:
    (hook,) = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert hook["id"] == "wwinspect" and hook["entry"] == "wwinspect" and hook["language"] == "python"
    assert hook["require_serial"] is True and hook["pass_filenames"] is True


@pytest.mark.parametrize(
    ("name", "picked"),
    [
        ("model.safetensors", True),
        ("weights/model-00001-of-00002.safetensors", True),
        ("exports/model.onnx", True),
        ("llama.Q4_K_M.gguf", True),
        ("ckpt/epoch=3.ckpt", True),
        ("model.pt", True),
        ("model.pth", True),
        ("keras/mlp.keras", True),
        ("keras/mlp.weights.h5", True),
        ("hf/pytorch_model.bin", True),
        ("hf/pytorch_model-00001-of-00002.bin", True),
        ("data/train.h5", False),  # plain HDF5 is usually data
        ("firmware.bin", False),
        ("model.safetensors.index.json", False),
        ("notes.md", False),
        ("src/model.py", False),
    ],
)
def test_hook_selects_model_files_by_name(name: str, picked: bool) -> None:
    (hook,) = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert bool(re.search(hook["files"], name)) is picked  # pre-commit matches `files` with re.search


def _action() -> dict[str, Any]:
    action: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return action


def test_action_is_a_composite_that_takes_inputs_only_through_the_environment() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert action["inputs"]["paths"]["required"] is True
    steps = action["runs"]["steps"]
    text = (ROOT / "action.yml").read_text()
    for used in re.findall(r"inputs\.([a-z-]+)", text):
        assert used in action["inputs"], used
    for step in steps:
        if "run" in step:
            assert step["shell"] == "bash"
            assert "${{" not in step["run"], f"step {step.get('name')!r} pastes an expression into its script"
    uses = [step["uses"] for step in steps if "uses" in step]
    assert any(use.startswith("actions/setup-python@") for use in uses)
    assert any(use.startswith("github/codeql-action/upload-sarif@") for use in uses)


def _step(name: str) -> dict[str, Any]:
    return next(step for step in _action()["runs"]["steps"] if step.get("name") == name)


def _run_step(name: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        ["bash", "-e", "-c", _step(name)["run"]],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_action_check_step_annotates_and_records_the_exit_code(tmp_path: Path) -> None:
    output, summary = tmp_path / "output", tmp_path / "summary.md"
    result = _run_step(
        "Check the model files",
        {
            "WWINSPECT_PATHS": f"{FIXTURES / 'digits_mlp.safetensors'}",
            "WWINSPECT_ARGS": "--fail-alpha-above 2.4",
            "WWINSPECT_FORMAT": "github",
            "WWINSPECT_SARIF": str(tmp_path / "out.sarif"),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr  # the step records the code; the last step acts on it
    assert output.read_text().strip() == "exit-code=1"
    assert result.stdout.count("::error ") == 2 and "fc3.weight" in result.stdout  # fc1 2.54, fc3 4.63
    assert summary.read_text().startswith("## wwinspect") and "fc1.weight" in summary.read_text()


def test_action_rejects_an_unknown_format(tmp_path: Path) -> None:
    output = tmp_path / "output"
    result = _run_step(
        "Check the model files",
        {
            "WWINSPECT_PATHS": "x",
            "WWINSPECT_ARGS": "",
            "WWINSPECT_FORMAT": "xml",
            "WWINSPECT_SARIF": "s",
            "GITHUB_OUTPUT": str(output),
        },
        tmp_path,
    )
    assert "format must be github or sarif" in result.stdout and output.read_text().strip() == "exit-code=2"


@pytest.mark.parametrize(
    ("status", "fail_on_gate", "code"),
    [("0", "true", 0), ("1", "true", 1), ("1", "false", 0), ("3", "false", 3)],
)
def test_action_outcome_step(status: str, fail_on_gate: str, code: int, tmp_path: Path) -> None:
    result = _run_step("Report the outcome", {"STATUS": status, "FAIL_ON_GATE": fail_on_gate}, tmp_path)
    assert result.returncode == code
