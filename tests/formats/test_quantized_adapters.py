"""The adapter and mixture-of-experts fixtures that phase two of issue 12 reads, against what peft computes.

fixtures/quantized/{lora,dora}_adapter/ were saved by peft (r 4, lora_alpha 8, q/v/down targets) beside
the float16 base model; reference.safetensors holds peft's own get_delta_weight and merge_and_unload
results. These tests pin down the rules a reader must implement from the files alone: the update is
(lora_alpha / r) * B @ A, and DoRA's merged weight is magnitude * (W + update) / row norms of (W + update).
"""

from __future__ import annotations

import json

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
