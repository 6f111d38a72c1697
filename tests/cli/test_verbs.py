"""`wwinspect describe` and `wwinspect compare` (issue 11, verbs), and the rule that a path is a path.

describe lists what the readers list (checked against the fixtures' manifests), decides what the analysis
would do exactly as the analysis decides it, reads no tensor bytes, and writes every format. compare is
checked on a base and a fine-tune whose update is known: a rank-4 change of one layer.
"""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from safetensors.numpy import save_file

import inspector.cli
from formats.types import TensorRef
from tests.conftest import FIXTURES, ROOT, load_manifests, run_cli

DEFAULT = FIXTURES / "digits_mlp.safetensors"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "render" / "data" / "sarif-schema-2.1.0.json").read_text())


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: None)


def _describe(*args: Any) -> dict[str, Any]:
    result = run_cli("describe", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


# --- describe -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("manifest", load_manifests(), ids=lambda manifest: str(manifest["fixture"]))
def test_describe_lists_every_tensor_the_reader_lists(manifest: dict[str, Any]) -> None:
    document = _describe(FIXTURES / manifest["fixture"])
    (described,) = document["files"]
    listed = sorted((tensor["name"], tensor["shape"]) for tensor in described["tensors"])
    assert listed == sorted((tensor["name"], tensor["shape"]) for tensor in manifest["tensors"])


def test_describe_decides_as_the_analysis_does() -> None:
    for path in (DEFAULT, FIXTURES / "onnx" / "transformer.onnx", FIXTURES / "keras" / "cnn.keras"):
        described = _describe(path, "--min-evals", "20")["files"][0]["tensors"]
        analysed = json.loads(run_cli(path, "--json", "--min-evals", "20").stdout)["reports"][0]["layers"]
        assert [t["analysed"] for t in described] == [layer["status"] == "analyzed" for layer in analysed]
        assert [t["reason"] for t in described] == [layer["reason"] for layer in analysed]
        assert [(t["N"], t["M"]) for t in described] == [(layer["N"], layer["M"]) for layer in analysed]


def test_describe_reads_no_tensor_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: TensorRef) -> Any:
        raise AssertionError(f"describe read {self.info.name}")

    monkeypatch.setattr(TensorRef, "read", refuse)
    for path in (DEFAULT, FIXTURES / "torch" / "state_dict.pt", FIXTURES / "gguf" / "q4_k.gguf"):
        assert _describe(path)["files"][0]["summary"]["analysed"] > 0


def test_describe_a_multi_gigabyte_file_from_its_header(tmp_path: Path) -> None:
    # A 3 GB safetensors file, sparse on disk: only its header is read.
    path = tmp_path / "big.safetensors"
    names = [f"model.layers.{i}.mlp.weight" for i in range(24)]
    size = 4096 * 8192 * 4
    header = {
        name: {"dtype": "F32", "shape": [4096, 8192], "data_offsets": [i * size, (i + 1) * size]}
        for i, name in enumerate(names)
    }
    encoded = json.dumps(header).encode()
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        handle.truncate(8 + len(encoded) + 24 * size)
    assert path.stat().st_size > 3_000_000_000
    (described,) = _describe(path)["files"]
    assert described["summary"] == {"tensors": 24, "bytes": 24 * size, "analysed": 24, "skipped": 0}
    assert [t["name"] for t in described["tensors"]] == names


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv", "markdown", "github", "sarif", "html"])
def test_describe_writes_every_format(fmt: str) -> None:
    result = run_cli("describe", DEFAULT, "--format", fmt)
    assert result.exit_code == 0, result.output
    text = result.stdout
    if fmt == "jsonl":
        lines = [json.loads(line) for line in text.splitlines()]
        assert [line["type"] for line in lines] == ["tensor"] * 6 + ["file"]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [row["name"] for row in rows] == [t["name"] for t in _describe(DEFAULT)["files"][0]["tensors"]]
    elif fmt == "sarif":
        log = json.loads(text)
        jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
        assert log["runs"][0]["results"] == []
    elif fmt == "github":
        assert text.startswith("::notice file=") and "3 would be analysed" in text
    elif fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and "fc2.weight" in text
    else:
        assert "fc2.weight" in text and "3 would be analysed" in text


def test_describe_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = run_cli("describe", FIXTURES / "onnx" / "transformer.onnx")
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "layer.self_attn.in_proj_bias" in result.stdout and "not a matrix" in result.stdout


def test_describe_of_an_unreadable_file_is_exit_3(tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(DEFAULT.read_bytes()[:100])
    result = run_cli("describe", broken)
    assert result.exit_code == 3 and result.stderr.count("\n") == 1


def test_an_existing_path_that_spells_a_verb_is_a_path(tmp_path: Path) -> None:
    (tmp_path / "describe").write_bytes(DEFAULT.read_bytes())
    result = run_cli("describe", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"][0]["path"] == "describe", "analysed, not described"


# --- compare --------------------------------------------------------------------------------------------


def _pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A base and a fine-tune: l1 gets a rank-4 update, l2 is unchanged, one layer is on each side only."""
    rng = np.random.default_rng(0)
    base = {
        "l1.weight": rng.standard_normal((256, 128)).astype(np.float32),
        "l2.weight": rng.standard_normal((128, 64)).astype(np.float32),
        "old_head.weight": rng.standard_normal((64, 64)).astype(np.float32),
        "l1.bias": np.zeros(256, np.float32),
    }
    update = (rng.standard_normal((256, 4)) @ rng.standard_normal((4, 128)) * 0.1).astype(np.float32)
    tuned = dict(base)
    del tuned["old_head.weight"]
    tuned["l1.weight"] = base["l1.weight"] + update
    tuned["new_head.weight"] = rng.standard_normal((32, 32)).astype(np.float32)
    save_file(base, str(tmp_path / "base.safetensors"))
    save_file(tuned, str(tmp_path / "tuned.safetensors"))
    delta = tuned["l1.weight"].astype(np.float64) - base["l1.weight"].astype(np.float64)
    return tmp_path / "base.safetensors", tmp_path / "tuned.safetensors", delta


def test_compare_measures_the_update(tmp_path: Path) -> None:
    base, tuned, delta = _pair(tmp_path)
    result = run_cli("compare", base, tuned, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    layers = {layer["name"]: layer for layer in document["layers"]}
    assert set(layers) == {"l1.weight", "l2.weight"}
    l1, l2 = layers["l1.weight"], layers["l2.weight"]
    assert l1["update_rank"] == 4 and l1["M"] == 128, "a rank-4 update has rank 4"
    singular = np.linalg.svd(delta, compute_uv=False)
    assert l1["update_lambda_max"] == pytest.approx(singular[0] ** 2, rel=1e-6)
    assert l1["relative_change"] == pytest.approx(
        np.linalg.norm(delta) / np.linalg.norm(np.asarray(load(base)["l1.weight"], np.float64)), rel=1e-9
    )
    a, b = (json.loads(run_cli(p, "--json").stdout)["reports"][0]["layers"] for p in (base, tuned))
    alpha_a = next(x["alpha"] for x in a if x["name"] == "l1.weight")
    alpha_b = next(x["alpha"] for x in b if x["name"] == "l1.weight")
    assert l1["alpha_a"] == pytest.approx(alpha_a) and l1["delta_alpha"] == pytest.approx(alpha_b - alpha_a)
    assert (
        l2["relative_change"] == 0 and l2["update_status"] == "failed" and "unchanged" in l2["update_reason"]
    )
    assert document["only_in_a"] == ["old_head.weight"] and document["only_in_b"] == ["new_head.weight"]


def load(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown", "jsonl"])
def test_compare_formats(tmp_path: Path, fmt: str) -> None:
    base, tuned, _ = _pair(tmp_path)
    result = run_cli("compare", base, tuned, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "l1.weight" in result.stdout
    if fmt in ("table", "markdown"):
        assert "4/128" in result.stdout and "unchanged" in result.stdout
        assert "only in A (1): old_head.weight" in result.stdout.replace("\\_", "_")  # Markdown escapes _


def test_compare_lists_shape_mismatches_and_needs_a_shared_layer(tmp_path: Path) -> None:
    result = run_cli("compare", FIXTURES / "crossformat" / "digits.safetensors", DEFAULT, "--json")
    assert result.exit_code == 4, "no layer is measured in both"
    document = json.loads(result.stdout)
    assert {m["name"] for m in document["shape_mismatches"]} == {"fc1.weight", "fc2.weight"}


def test_compare_takes_one_model_a_side_and_refuses_formats_it_cannot_write(tmp_path: Path) -> None:
    assert run_cli("compare", FIXTURES / "crossformat", DEFAULT).exit_code == 2
    assert run_cli("compare", DEFAULT, DEFAULT, "--format", "sarif").exit_code == 2
