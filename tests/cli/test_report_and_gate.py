"""Issue 11, the report and the gate as people use them: each test below failed before its fix.

Output files and formats (-o checked before reading, the format from the suffix), streams that are not
UTF-8, gate rules that are validated and layers the gate could not check, the gate's reasons on stderr,
folders of several models and globs, error lines, the config named in the report, -h, exit 4's hint.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

import inspector.cli
from tests.conftest import FIXTURES, ROOT, run_cli

DEFAULT = FIXTURES / "digits_mlp.safetensors"
TRANSFORMER = FIXTURES / "onnx" / "transformer.onnx"


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: None)


def _truncated(tmp_path: Path) -> Path:
    """A model file that cannot be read (exit 3 if anything reads it)."""
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(DEFAULT.read_bytes()[:200])
    return path


def _one_line(result: Any) -> str:
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    line: str = result.stderr
    return line


# --- -o and the output formats ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["missing-dir/out.json", "."])
def test_an_output_that_cannot_be_written_is_exit_2_before_anything_is_read(
    tmp_path: Path, target: str
) -> None:
    # Before: exit 5 ("internal error") after the whole analysis. The truncated model proves nothing is
    # read: reading it would be exit 3.
    result = run_cli(_truncated(tmp_path), "-o", tmp_path / target)
    assert result.exit_code == 2, result.output
    assert "-o" in _one_line(result) and result.stdout == ""


def test_an_output_that_is_one_of_the_models_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    shutil.copy(DEFAULT, model)
    result = run_cli(model, "-o", model)
    assert result.exit_code == 2 and "would be overwritten" in _one_line(result)
    assert model.read_bytes() == DEFAULT.read_bytes()


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("out.json", lambda text: json.loads(text)["schema_version"] == 1),
        ("out.jsonl", lambda text: json.loads(text.splitlines()[-1])["type"] == "gate"),
        ("out.ndjson", lambda text: json.loads(text.splitlines()[0])["type"] == "run"),
        ("out.csv", lambda text: next(csv.DictReader(io.StringIO(text)))["path"].endswith(".safetensors")),
        ("out.md", lambda text: text.startswith("### `")),
        ("out.sarif", lambda text: json.loads(text)["version"] == "2.1.0"),
        ("out.sarif.json", lambda text: json.loads(text)["version"] == "2.1.0"),
        ("out.html", lambda text: text.startswith("<!DOCTYPE html>")),
        ("out.txt", lambda text: "fc1.weight" in text and "\x1b[" not in text and "summary" in text),
    ],
)
def test_the_output_format_follows_the_suffix(tmp_path: Path, name: str, check: Any) -> None:
    # Before: `-o out.json` wrote the box table.
    result = run_cli(DEFAULT, "-o", tmp_path / name)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert check((tmp_path / name).read_text(encoding="utf-8"))


def test_format_given_wins_over_the_suffix(tmp_path: Path) -> None:
    result = run_cli(DEFAULT, "-o", tmp_path / "out.json", "--format", "csv")
    assert result.exit_code == 0
    assert (tmp_path / "out.json").read_text().startswith("path,format,")


def test_piped_table_honours_columns_and_is_160_wide_without_it() -> None:
    # Before: piped output was 200 cells wide whatever COLUMNS said.
    for columns, limit in (("80", 80), (None, 160)):
        env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
        env["PYTHONPATH"] = str(ROOT)
        if columns:
            env["COLUMNS"] = columns
        completed = subprocess.run(
            [sys.executable, "-m", "inspector", str(TRANSFORMER)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        widths = [len(line) for line in completed.stdout.splitlines()]
        assert max(widths) <= limit, (columns, max(widths))
        assert max(widths) > limit - 40  # the width is used, not a narrow default


@pytest.mark.parametrize("fmt", ["markdown", "table", "csv", "json"])
def test_a_stream_that_is_not_utf8_gets_ascii_not_an_internal_error(fmt: str, tmp_path: Path) -> None:
    # Before: exit 5 for the table and Markdown with PYTHONIOENCODING=cp1252 (UnicodeEncodeError).
    named = tmp_path / "modèle_λ.safetensors"
    shutil.copy(DEFAULT, named)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "cp1252"}
    completed = subprocess.run(
        [sys.executable, "-m", "inspector", str(named), "--format", fmt],
        capture_output=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout.decode("cp1252")
    assert "fc1.weight" in text
    if fmt in ("markdown", "table"):
        assert completed.stdout.isascii(), "the human formats fall back to plain ASCII"


# --- The gate -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--fail-alpha-above", "nan"], "--fail-alpha-above must be a finite number"),
        (["--fail-alpha-below", "inf"], "--fail-alpha-below must be a finite number"),
        (["--fail-alpha-above", "2", "--fail-alpha-below", "3"], "every alpha would fail"),
        (["--xmax", "-5"], "--xmax must be above 0"),
        (["--xmax", "0"], "--xmax must be above 0"),
        (["--max-alpha-shift", "0.5"], "give --baseline FILE too"),
        (["--max-alpha-shift", "-1", "--baseline", "b.json"], "--max-alpha-shift"),
    ],
)
def test_rules_that_cannot_be_meant_are_exit_2_before_reading(
    tmp_path: Path, args: list[str], phrase: str
) -> None:
    # Before: each of these was accepted; `--fail-alpha-above nan` passed every layer.
    result = run_cli(_truncated(tmp_path), *args)
    assert result.exit_code == 2, result.output
    assert phrase in _one_line(result)


def test_nan_in_the_config_is_refused_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\nfail-alpha-above = nan\n")
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: tmp_path / "pyproject.toml")
    result = run_cli(DEFAULT)
    assert result.exit_code == 2 and "must be a finite number" in _one_line(result)


def test_a_layer_without_alpha_is_unchecked_and_strict_fails_on_it() -> None:
    # --xmax below every eigenvalue: no alpha can be fitted. Before: `gate: passed`.
    result = run_cli(DEFAULT, "--xmax", "1e-9", "--fail-alpha-above", "2", "--json")
    gate = json.loads(result.stdout)["gate"]
    assert result.exit_code == 0, "without --strict an unchecked layer is reported, not failed"
    assert gate["passed"] is True and gate["violations"] == []
    assert {item["layer"] for item in gate["unchecked"]} == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert all("no alpha" in item["reason"] for item in gate["unchecked"])
    table = run_cli(DEFAULT, "--xmax", "1e-9", "--fail-alpha-above", "2")
    assert "not checked: 3 layers (--strict fails on them)" in table.stdout
    strict = run_cli(DEFAULT, "--xmax", "1e-9", "--fail-alpha-above", "2", "--strict", "--json")
    assert strict.exit_code == 1
    violations = json.loads(strict.stdout)["gate"]["violations"]
    assert {v["rule_id"] for v in violations} == {"unchecked"} and len(violations) == 3


def test_a_failed_layer_is_unchecked(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    broken = weights.copy()
    broken[3, 4] = np.nan
    path = tmp_path / "nan.safetensors"
    save_file({"good.weight": weights, "bad.weight": broken}, str(path))
    result = run_cli(path, "--fail-phase", "rank-collapse", "--strict", "--json")
    assert result.exit_code == 1
    (violation,) = json.loads(result.stdout)["gate"]["violations"]
    assert violation["layer"] == "bad.weight" and violation["rule_id"] == "unchecked"
    assert "NaN" in violation["value"]


def test_violations_carry_a_rule_id_and_their_bound() -> None:
    document = json.loads(
        run_cli(DEFAULT, "--fail-alpha-above", "2.4", "--fail-phase", "bulk+spikes", "--json").stdout
    )
    rules = {(v["layer"], v["rule_id"], v["bound"]) for v in document["gate"]["violations"]}
    assert ("fc1.weight", "alpha-above", 2.4) in rules
    assert ("fc2.weight", "phase", "bulk+spikes") in rules
    assert all(v["rule"] in ("alpha>2.4", "phase=bulk+spikes") for v in document["gate"]["violations"])


@pytest.mark.parametrize("destination", [["-o", "report.json"], ["--format", "json"], ["--format", "sarif"]])
def test_a_failing_gate_prints_its_reasons_on_stderr(tmp_path: Path, destination: list[str]) -> None:
    # Before: with -o FILE and a failing gate nothing at all was printed.
    result = run_cli(DEFAULT, "--fail-alpha-above", "2.4", *destination)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "wwinspect: gate failed: 2 violations"
    assert any("fc1.weight: alpha 2.5" in line and "above 2.4" in line for line in lines[1:])


def test_a_phase_violation_names_the_phase_once() -> None:
    # Before: "phase=heavy-tailed (value heavy-tailed)".
    result = run_cli(DEFAULT, "--fail-phase", "bulk+spikes")
    assert result.exit_code == 1
    (line,) = [line for line in result.stdout.splitlines() if "fc1.weight:" in line and "phase" in line]
    assert line.count("bulk+spikes") == 1


# --- Folders, globs, missing paths ---------------------------------------------------------------------


def test_a_folder_of_several_models_analyses_each(tmp_path: Path) -> None:
    # Before: 7 .onnx, 1 .jit and 1 .safetensors gave the safetensors file alone, silently; a folder of
    # .pt or .onnx files was exit 3 ("no sharded checkpoint found").
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("mlp.onnx", "cnn.onnx", "transformer.onnx"):
        shutil.copy(FIXTURES / "onnx" / name, folder / name)
    shutil.copy(FIXTURES / "torch" / "scripted.pt", folder / "scripted.jit")  # an ending no reader claims
    shutil.copy(DEFAULT, folder / "digits.safetensors")
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("not a model")
    result = run_cli(folder, "--json")
    assert result.exit_code == 0, result.output
    paths = [Path(report["path"]).name for report in json.loads(result.stdout)["reports"]]
    assert paths == ["cnn.onnx", "digits.safetensors", "mlp.onnx", "scripted.jit", "transformer.onnx"]


def test_a_folder_of_torch_files(tmp_path: Path) -> None:
    for name in ("state_dict.pt", "legacy.pt"):
        shutil.copy(FIXTURES / "torch" / name, tmp_path / name)
    result = run_cli(tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["reports"]) == 2


def test_a_sharded_checkpoint_is_still_one_model_and_others_beside_it_are_named(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "sharded", tmp_path / "ckpt")
    shutil.copy(FIXTURES / "torch" / "state_dict.pt", tmp_path / "ckpt" / "optimizer_like.pt")
    result = run_cli(tmp_path / "ckpt", "--json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["reports"]
    assert Path(report["path"]).name == "ckpt"
    assert "not read beside it: optimizer_like.pt" in result.stderr


def test_quoted_globs_are_expanded() -> None:
    result = run_cli(str(FIXTURES / "crossformat" / "digits.*"), "--json")
    assert result.exit_code == 0, result.output
    names = sorted(Path(report["path"]).name for report in json.loads(result.stdout)["reports"])
    assert names == sorted(path.name for path in (FIXTURES / "crossformat").glob("digits.*"))


def test_a_missing_path_among_several_is_exit_2_naming_it(tmp_path: Path) -> None:
    # Decided (docs/cli.md): the contract's exit 2 for a path given that does not exist holds with several
    # paths too, so that a typo in CI is never a smaller run that passes; the line names what is missing.
    result = run_cli(DEFAULT, tmp_path / "typo.onnx", str(tmp_path / "none-*.onnx"))
    assert result.exit_code == 2
    line = _one_line(result)
    assert "typo.onnx" in line and "none-*.onnx" in line and str(DEFAULT) not in line


# --- Messages --------------------------------------------------------------------------------------------


def test_an_error_line_names_the_file_once(tmp_path: Path) -> None:
    path = _truncated(tmp_path)
    result = run_cli(path)
    assert result.exit_code == 3
    assert _one_line(result).count(path.name) == 1
    assert result.stdout.count(path.name) == 1  # the table's line for the file, too


def test_dash_h_is_help() -> None:
    result = run_cli("-h")
    assert result.exit_code == 0 and "--fail-alpha-above" in result.stdout and "Exit codes" in result.stdout
    for verb in ("describe", "compare"):
        assert run_cli(verb, "-h").exit_code == 0


def test_a_layer_glob_that_matches_nothing_says_so() -> None:
    result = run_cli(DEFAULT, "--layer", "encoder.*")
    assert result.exit_code == 4
    assert "--layer 'encoder.*' matched no layer" in result.stderr
    assert "wwinspect describe" in result.stderr


def test_the_config_used_is_named_in_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: nothing showed that a [tool.wwinspect] config was applied. Found upward from the working
    # directory: the real find_pyproject, from a subfolder.
    monkeypatch.undo()
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\nmin-evals = 20\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    table = run_cli(DEFAULT)
    assert f"settings from {tmp_path / 'pyproject.toml'} [tool.wwinspect]" in " ".join(table.stdout.split())
    document = json.loads(run_cli(DEFAULT, "--json").stdout)
    assert document["config"] == str(tmp_path / "pyproject.toml")
    assert document["settings"]["min_evals"] == 20
    assert json.loads(run_cli(DEFAULT, "--json", "--min-evals", "5").stdout)["settings"]["min_evals"] == 5


def test_no_config_section_names_no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(tmp_path)
    assert json.loads(run_cli(DEFAULT, "--json").stdout)["config"] is None


# --- What the table shows ---------------------------------------------------------------------------------


def test_tpl_alphas_on_the_bound_are_marked() -> None:
    # Before: --fit tpl moved alphas to 1.00 and flipped labels, unmarked.
    result = run_cli(TRANSFORMER, "--fit", "tpl")
    assert result.exit_code == 0
    assert "1.00!" in result.stdout
    assert "! = the truncated power law's alpha stopped on its bound" in " ".join(result.stdout.split())
    plain = run_cli(TRANSFORMER)
    assert "!" not in plain.stdout


def test_randomize_shows_its_columns() -> None:
    # Before: --randomize changed nothing in the table.
    plain = run_cli(DEFAULT)
    shuffled = run_cli(DEFAULT, "--randomize")
    assert "rand_dist" not in plain.stdout
    assert "rand_dist" in shuffled.stdout and "traps" in shuffled.stdout


def test_readme_installs_extras_from_the_checkout() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "'wwinspect[" not in readme, "there is no release to install extras from yet"


# --- Files that are not models, and tensors that are not weights ---------------------------------------

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 90000000\n"
)


@pytest.mark.parametrize("name", ["model.safetensors", "model.onnx", "pytorch_model.bin", "model.gguf"])
def test_a_git_lfs_pointer_is_recognised(tmp_path: Path, name: str) -> None:
    # Before: a pointer checked out in place of a model was reported as a corrupt header.
    pointer = tmp_path / name
    pointer.write_text(LFS_POINTER)
    result = run_cli(pointer)
    assert result.exit_code == 3
    line = _one_line(result)
    assert "Git LFS pointer for a 90,000,000-byte file" in line and "git lfs pull" in line


def test_a_sharded_checkpoint_of_pointers_is_recognised(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "sharded", tmp_path / "ckpt")
    for shard in (tmp_path / "ckpt").glob("*.safetensors"):
        shard.write_text(LFS_POINTER)
    result = run_cli(tmp_path / "ckpt")
    assert result.exit_code == 3 and "Git LFS pointer" in _one_line(result)


def test_a_text_file_named_safetensors_is_not_a_safetensors_file(tmp_path: Path) -> None:
    # Before: "header length 8031924123371070824 exceeds the limit of 100000000 bytes".
    path = tmp_path / "notes.safetensors"
    path.write_text("hello world, these are my notes\nsecond line\n")
    result = run_cli(path)
    assert result.exit_code == 3
    line = _one_line(result)
    assert "not a safetensors file: it starts with 'hello world, these are my notes'" in line
    assert "header length" not in line


def test_one_eigenvalue_is_singular(tmp_path: Path) -> None:
    # Before: "1 eigenvalues, fewer than --min-evals 10".
    path = tmp_path / "thin.safetensors"
    save_file(
        {"row.weight": np.ones((64, 1), np.float32), "two.weight": np.ones((64, 2), np.float32)}, str(path)
    )
    layers = json.loads(run_cli(path, "--json").stdout)["reports"][0]["layers"]
    assert [layer["reason"] for layer in layers] == [
        "1 eigenvalue, fewer than --min-evals 10",
        "2 eigenvalues, fewer than --min-evals 10",
    ]


def test_buffers_known_by_name_are_not_scored_as_layers(tmp_path: Path) -> None:
    # Before: a non-trainable buffer (an STFT basis, GPT-2's causal mask) was scored as a layer.
    rng = np.random.default_rng(0)
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "h.0.attn.bias": np.tril(np.ones((1, 1, 256, 256), np.float32)),  # GPT-2's mask buffer
            "h.0.attn.c_attn.weight": rng.standard_normal((64, 192)).astype(np.float32),
            "stft.forward_basis_buffer": rng.standard_normal((258, 1, 256)).astype(np.float32),
            "mel_basis": rng.standard_normal((80, 513)).astype(np.float32),
        },
        str(path),
    )
    layers = {
        layer["name"]: layer for layer in json.loads(run_cli(path, "--json").stdout)["reports"][0]["layers"]
    }
    assert layers["h.0.attn.c_attn.weight"]["status"] == "analyzed"
    for name in ("h.0.attn.bias", "stft.forward_basis_buffer", "mel_basis"):
        assert layers[name]["status"] == "skipped" and "buffer" in layers[name]["reason"], name
    table = run_cli(path, "--show-skipped")
    assert "not a weight" in table.stdout
