"""The adapter and mixture-of-experts fixtures that phase two of issue 12 reads, against what peft computes.

fixtures/quantized/{lora,dora}_adapter/ were saved by peft (r 4, lora_alpha 8, q/v/down targets) beside
the float16 base model; reference.safetensors holds peft's own get_delta_weight and merge_and_unload
results. These tests pin down the rules a reader must implement from the files alone: the update is
(lora_alpha / r) * B @ A, and DoRA's merged weight is magnitude * (W + update) / row norms of (W + update).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import FIXTURES

QUANTIZED = FIXTURES / "quantized"
MODULES = (
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.0.mlp.down_proj",
)


@pytest.mark.parametrize("kind", ["lora_adapter", "dora_adapter"])
def test_update_and_merge_follow_the_documented_rules(kind: str) -> None:
    folder = QUANTIZED / kind
    adapter = load_file(str(folder / "adapter_model.safetensors"))
    base = load_file(str(folder / "base.safetensors"))
    reference = load_file(str(folder / "reference.safetensors"))
    config = json.loads((folder / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    assert set(config["target_modules"]) == {"q_proj", "v_proj", "down_proj"}
    for module in MODULES:
        prefix = f"base_model.model.{module}"
        a = adapter[f"{prefix}.lora_A.weight"].astype(np.float64)
        b = adapter[f"{prefix}.lora_B.weight"].astype(np.float64)
        delta = scale * b @ a
        np.testing.assert_allclose(delta, reference[f"{module}.delta"], rtol=1e-6, atol=1e-8)
        assert np.linalg.matrix_rank(delta) == config["r"]
        combined = base[f"{module}.weight"].astype(np.float64) + delta
        if config.get("use_dora"):
            magnitude = adapter[f"{prefix}.lora_magnitude_vector"].astype(np.float64)
            combined = magnitude[:, None] * combined / np.linalg.norm(combined, axis=1, keepdims=True)
        else:
            assert f"{prefix}.lora_magnitude_vector" not in adapter
        # peft merges into the float16 base: equal to float16 rounding.
        np.testing.assert_allclose(combined, reference[f"{module}.merged"], rtol=2e-3, atol=1e-4)


def test_moe_fixtures_store_experts_per_expert_and_stacked() -> None:
    from safetensors import safe_open

    with safe_open(str(QUANTIZED / "moe_mixtral" / "model.safetensors"), "np") as handle:
        per_expert = [name for name in handle.keys() if ".experts." in name]  # noqa: SIM118
    assert len(per_expert) == 4 * 3  # 4 experts x w1, w2, w3
    with safe_open(str(QUANTIZED / "moe_gptoss" / "model.safetensors"), "np") as handle:
        shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}  # noqa: SIM118
    assert shapes["model.layers.0.mlp.experts.gate_up_proj"] == [4, 64, 128]
    assert shapes["model.layers.0.mlp.experts.down_proj"] == [4, 64, 64]
    config = json.loads((QUANTIZED / "moe_gptoss" / "config.json").read_text())
    assert config["num_local_experts"] == 4


# --- the readers: the update alone, and merged with --base --------------------------------------------


def _layers(*args: object) -> tuple[int, dict[str, Any], list[str]]:
    from tests.conftest import run_cli

    result = run_cli(*args, "--format", "json")
    if result.exit_code not in (0, 1):
        return result.exit_code, {}, [result.stderr]
    (report,) = json.loads(result.stdout)["reports"]
    return result.exit_code, report, report["warnings"]


@pytest.mark.parametrize("kind", ["lora_adapter", "dora_adapter"])
def test_the_update_alone_is_one_record_per_module_equal_to_peft(kind: str) -> None:
    from formats import open_model

    folder = QUANTIZED / kind
    reference = load_file(str(folder / "reference.safetensors"))
    with open_model(folder / "adapter_model.safetensors") as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        for module in MODULES:
            ref = refs[f"{module}.lora_delta"]
            assert ref.info.encoding == ("dora-r4" if "dora" in kind else "lora-r4")
            # peft's get_delta_weight in float32: (B @ A) * scaling, the same operations.
            np.testing.assert_allclose(ref.read(), reference[f"{module}.delta"], rtol=1e-6, atol=1e-9)
    assert not any(name.endswith((".lora_A.weight", ".lora_B.weight")) for name in refs)
    code, report, _ = _layers(folder / "adapter_model.safetensors")
    deltas = {layer["name"]: layer for layer in report["layers"] if layer["name"].endswith(".lora_delta")}
    assert code == 0 and len(deltas) == len(MODULES)
    for layer in deltas.values():
        # rank 4: lambda_max, norms and stable rank are measured; 4 eigenvalues are too few for alpha.
        assert layer["status"] == "analyzed" and layer["alpha"] is None and layer["alpha_label"] is None
        assert layer["matrix_rank"] == 4 and layer["lambda_max"] > 0 and layer["stable_rank"] >= 1
    _, fitted, _ = _layers(folder / "adapter_model.safetensors", "--min-evals", "4")
    assert all(
        layer["alpha"] is not None for layer in fitted["layers"] if layer["name"].endswith(".lora_delta")
    )


@pytest.mark.parametrize("kind", ["lora_adapter", "dora_adapter"])
def test_merged_with_base_equals_peft_merge_and_is_compared_with_the_base(kind: str) -> None:
    from formats import open_with_base

    folder = QUANTIZED / kind
    reference = load_file(str(folder / "reference.safetensors"))
    adapter, base = folder / "adapter_model.safetensors", folder / "base.safetensors"
    with open_with_base(adapter, base) as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        for module in MODULES:
            merged = refs[f"{module}.weight"]
            assert merged.info.encoding == ("dora-merged-r4" if "dora" in kind else "lora-merged-r4")
            # peft merges into the float16 base (merge_and_unload): equal to float16 rounding.
            np.testing.assert_allclose(merged.read(), reference[f"{module}.merged"], rtol=2e-3, atol=1e-4)
    code, report, _ = _layers(adapter, "--base", base)
    assert code == 0
    comparisons = {item["name"]: item for item in report["base_comparison"]}
    assert set(comparisons) == {f"{module}.weight" for module in MODULES}
    base_only = _layers(base)[1]
    base_layers = {layer["name"]: layer for layer in base_only["layers"]}
    for name, item in comparisons.items():
        # The base's numbers are the base analysed alone; the change is the update's size as merged.
        assert abs(item["base_alpha"] - base_layers[name]["alpha"]) < 1e-9
        assert 0 < item["relative_change"] < 1
        expected_rank = 4 if "dora" not in kind else min(base_layers[name]["shape"])
        assert item["update_rank"] == expected_rank  # DoRA's row rescaling is full rank


def test_base_is_refused_for_a_model_that_is_not_an_adapter_and_when_missing(tmp_path: Any) -> None:
    from tests.conftest import run_cli

    base = QUANTIZED / "lora_adapter" / "base.safetensors"
    plain = FIXTURES / "llm" / "phi3" / "model.safetensors"  # no adapter_config.json beside it: a usage error
    result = run_cli(plain, "--base", base)
    assert result.exit_code == 2 and "adapter" in result.stderr and result.stderr.count("\n") == 1
    # Beside an adapter_config.json but without lora_A/lora_B tensors: the file is refused, one line.
    result = run_cli(base, "--base", base)
    assert result.exit_code == 3 and "lora_A" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(QUANTIZED / "lora_adapter" / "adapter_model.safetensors", "--base", tmp_path / "nowhere")
    assert result.exit_code == 2 and "nowhere" in result.stderr


def test_a_base_without_the_module_skips_that_merged_weight(tmp_path: Any) -> None:
    from safetensors.numpy import save_file

    base = load_file(str(QUANTIZED / "lora_adapter" / "base.safetensors"))
    del base["model.layers.0.self_attn.q_proj.weight"]
    save_file(base, str(tmp_path / "base.safetensors"))
    _, report, _ = _layers(
        QUANTIZED / "lora_adapter" / "adapter_model.safetensors", "--base", tmp_path / "base.safetensors"
    )
    layers = {layer["name"]: layer for layer in report["layers"]}
    record = layers["model.layers.0.self_attn.q_proj.weight"]
    assert record["status"] == "skipped" and "has no tensor" in record["reason"]
    assert layers["model.layers.0.self_attn.v_proj.weight"]["status"] == "analyzed"
