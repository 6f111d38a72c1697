"""compressed-tensors checkpoints written by its own ModelCompressor, against its own decompression.

fixtures/quantized/compressed_{w4a16,fp8,nvfp4}/ hold what `ModelCompressor.compress_model` and
`save_pretrained` wrote for a tiny Llama (pack-quantized asymmetric int4 group 32; float-quantized FP8 per
channel; nvfp4-pack-quantized), and `reference.safetensors` what `ModelCompressor.decompress_model` makes of
them (bfloat16, the scales' dtype). The comparison is bit for bit.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from formats import TensorError
from formats.quantized import compressed_tensors
from formats.quantized.detect import Scheme, StoredTensor, compressed_weight_args, plan_quantized
from tests.conftest import FIXTURES

QUANTIZED = FIXTURES / "quantized"
_CODES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int32: "I32",
    torch.int64: "I64",
}


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """What a reader hands the dequantisers: floats widened to float32, integers as stored."""
    return tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()


def _checkpoint(kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor]]:
    folder = QUANTIZED / kind
    config = json.loads((folder / "config.json").read_text())
    return (
        load_file(str(folder / "model.safetensors")),
        config,
        load_file(str(folder / "reference.safetensors")),
    )


def _plan(stored: dict[str, torch.Tensor], config: dict[str, Any]) -> Any:
    specs = [StoredTensor(name, tuple(value.shape), _CODES[value.dtype]) for name, value in stored.items()]
    return plan_quantized(specs, config)


def _dequantize(weight: Any, parts: dict[str, np.ndarray], config: dict[str, Any]) -> np.ndarray:
    section = config["quantization_config"]
    args = compressed_weight_args(section, weight.name.removesuffix(".weight"))
    assert args is not None
    if weight.scheme is Scheme.COMPRESSED_PACKED:
        params = compressed_tensors.PackedParams(args["num_bits"], args["group_size"], args["symmetric"])
        shape = tuple(int(dim) for dim in parts["shape"])
        return compressed_tensors.dequantize_pack_quantized(
            weight.name,
            parts["packed"],
            parts["scale"],
            shape,
            params,
            parts.get("zero_point"),
            parts.get("g_idx"),
        )
    if weight.scheme is Scheme.COMPRESSED_FP8:
        return compressed_tensors.dequantize_float_quantized(weight.name, parts["values"], parts["scale"])
    assert weight.scheme is Scheme.COMPRESSED_NVFP4
    return compressed_tensors.dequantize_nvfp4(
        weight.name, parts["packed"], parts["scale"], parts["global_scale"]
    )


@pytest.mark.parametrize(
    ("kind", "encoding"),
    [
        ("compressed_w4a16", "compressed-int4"),
        ("compressed_fp8", "compressed-fp8"),
        ("compressed_nvfp4", "compressed-nvfp4"),
    ],
)
def test_every_weight_equals_compressed_tensors_decompression(kind: str, encoding: str) -> None:
    stored, config, reference = _checkpoint(kind)
    plan = _plan(stored, config)
    assert plan.method == "compressed-tensors" and plan.problems == ()
    assert {weight.name for weight in plan.weights} == set(reference)
    for weight in plan.weights:
        assert weight.encoding == encoding
        ours = _dequantize(
            weight, {role: _numpy(stored[name]) for role, name in weight.parts.items()}, config
        )
        theirs = reference[weight.name].float().numpy()
        np.testing.assert_array_equal(ours, theirs, err_msg=weight.name)  # max abs difference 0
        assert float(np.std(ours)) > 0
    assert "lm_head.weight" not in plan.consumed


def test_lying_weight_shape_and_short_packed_weight_are_tensor_errors() -> None:
    stored, config, _ = _checkpoint("compressed_w4a16")
    weight = _plan(stored, config).weights[0]
    parts = {role: _numpy(stored[name]) for role, name in weight.parts.items()}
    with pytest.raises(TensorError, match="weight_packed"):
        _dequantize(weight, {**parts, "shape": parts["shape"] * 2}, config)
    with pytest.raises(TensorError, match="weight_packed"):
        _dequantize(weight, {**parts, "packed": parts["packed"][:, :-1]}, config)
    with pytest.raises(TensorError, match="weight_zero_point"):
        _dequantize(weight, {**parts, "zero_point": parts["zero_point"][:-1]}, config)
    lying = json.loads(json.dumps(config))
    lying["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 16
    with pytest.raises(TensorError, match="group_size 16"):
        _dequantize(weight, parts, lying)


def test_nvfp4_and_fp8_hostile_scales_are_tensor_errors() -> None:
    stored, config, _ = _checkpoint("compressed_nvfp4")
    weight = _plan(stored, config).weights[0]
    parts = {role: _numpy(stored[name]) for role, name in weight.parts.items()}
    with pytest.raises(TensorError, match="weight_scale"):
        _dequantize(weight, {**parts, "scale": parts["scale"][:, :-1]}, config)
    with pytest.raises(TensorError, match="global"):
        _dequantize(weight, {**parts, "global_scale": np.ones(2, np.float32)}, config)
    with pytest.raises(TensorError, match="tile"):
        compressed_tensors.dequantize_float_quantized(
            "w", np.ones((6, 6), np.float32), np.ones((4, 5), np.float32)
        )
