"""GPTQ, AWQ and bitsandbytes dequantisers against the libraries' own dequantisation, and hostile parts.

fixtures/quantized/<kind>/ were written by fixtures/generate_quantized.py with the real libraries on CPU
(transformers + bitsandbytes save the bnb checkpoints; auto-gptq's QuantLinear.pack and autoawq's
WQLinear_GEMM.from_linear pack the GPTQ and AWQ ones). Each `reference.safetensors` holds the library's own
dequantisation of every quantised weight (auto-gptq's torch forward on an identity input, autoawq's
dequantize_gemm, bitsandbytes' dequantize_4bit and int8_vectorwise_dequant), in the library's output
dtype. Where bitsandbytes is installed (the dev extra) it is also run live on the stored parts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formats import TensorError
from formats.quantized import awq, bitsandbytes, dispatch, mxfp4
from formats.quantized.detect import LogicalWeight, Scheme, StoredTensor, gptq_params, plan_quantized
from tests.conftest import FIXTURES

QUANTIZED = FIXTURES / "quantized"
HF_KINDS = ("gptq_int4_actorder", "awq_int4", "bnb_nf4", "bnb_fp4", "bnb_int8")
LINEARS = 7  # q, k, v, o, gate, up, down of the one decoder block
_CODES = {"float16": "F16", "float32": "F32", "bfloat16": "BF16", "uint8": "U8", "int8": "I8", "int32": "I32"}


def _load(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file as numpy, bfloat16 widened to float32 (numpy has no bfloat16)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return {
            name: (
                handle.get_tensor(name).float().numpy()
                if handle.get_slice(name).get_dtype() == "BF16"
                else handle.get_tensor(name).numpy()
            )
            for name in handle.keys()  # noqa: SIM118 - safe_open is not a mapping
        }


def _checkpoint(kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    folder = QUANTIZED / kind
    return (
        _load(folder / "model.safetensors"),
        json.loads((folder / "config.json").read_text()),
        _load(folder / "reference.safetensors"),
    )


def _plan(stored: dict[str, np.ndarray], config: dict[str, Any] | None) -> Any:
    specs = [
        StoredTensor(name, tuple(value.shape), _CODES[str(value.dtype)]) for name, value in stored.items()
    ]
    return plan_quantized(specs, config)


def dequantize(weight: LogicalWeight, parts: dict[str, np.ndarray], config: dict[str, Any]) -> np.ndarray:
    """What the reader does (`formats.quantized.dispatch`), with GPTQ's and AWQ's settings taken from
    `config`: the hostile tests below hand it a config that lies about the group size."""
    section = config["quantization_config"]
    if weight.scheme is Scheme.GPTQ:
        weight = dataclasses.replace(weight, gptq=gptq_params(section))
    elif weight.scheme is Scheme.AWQ:
        params = awq.AWQParams(section["group_size"], section["zero_point"], section["version"])
        weight = dataclasses.replace(weight, awq=params)
    codes = {role: _CODES[str(array.dtype)] for role, array in parts.items() if str(array.dtype) in _CODES}
    return dispatch.dequantize(weight, parts, codes, section)


@pytest.mark.parametrize("kind", HF_KINDS)
def test_every_weight_equals_the_library_dequantisation_bit_for_bit(kind: str) -> None:
    stored, config, reference = _checkpoint(kind)
    plan = _plan(stored, config)
    assert plan.problems == ()
    assert len(plan.weights) == LINEARS
    assert {weight.name for weight in plan.weights} == set(reference)
    for weight in plan.weights:
        ours = dequantize(weight, {role: stored[name] for role, name in weight.parts.items()}, config)
        theirs = reference[weight.name].astype(np.float32)
        assert ours.dtype == np.float32 and ours.shape == theirs.shape, weight.name
        assert weight.shape in (None, ours.shape), weight.name
        # max abs difference 0: the library's float16 result, rounded from the same float32 product.
        np.testing.assert_array_equal(ours, theirs, err_msg=weight.name)
        assert float(np.std(ours)) > 0


@pytest.mark.parametrize(
    ("kind", "encoding", "parts"),
    [
        ("gptq_int4_actorder", "gptq-int4-g32", {"qweight", "qzeros", "scales", "g_idx"}),
        ("awq_int4", "awq-int4", {"qweight", "qzeros", "scales"}),
        (
            "bnb_nf4",
            "nf4",
            {"packed", "absmax", "quant_map", "quant_state", "nested_absmax", "nested_quant_map"},
        ),
        ("bnb_fp4", "fp4", {"packed", "absmax", "quant_map", "quant_state"}),
        ("bnb_int8", "bnb-int8", {"values", "scb"}),
    ],
)
def test_grouping_names_consumes_and_encodes(kind: str, encoding: str, parts: set[str]) -> None:
    stored, config, _ = _checkpoint(kind)
    plan = _plan(stored, config)
    for weight in plan.weights:
        assert weight.encoding == encoding
        assert set(weight.parts) - {"weight_format"} == parts
        assert weight.name.endswith(".weight")
    # Nothing but the quantised parts is consumed: embeddings, norms and lm_head stay plain tensors.
    plain = {name for name in stored if name not in plan.consumed}
    assert "lm_head.weight" in plain and "model.embed_tokens.weight" in plain
    assert not any(name.endswith((".qzeros", ".absmax", ".SCB", ".g_idx")) for name in plain)


@pytest.mark.parametrize("kind", ["gptq_int4_actorder", "awq_int4"])
def test_gptq_and_awq_are_told_apart_by_shapes_without_a_config(kind: str) -> None:
    stored, _config, _ = _checkpoint(kind)
    plan = _plan(stored, None)
    assert plan.method == kind.split("_")[0]
    assert {weight.scheme.value for weight in plan.weights} == {kind.split("_")[0]}


def test_a_config_that_contradicts_the_shapes_is_a_problem_not_a_guess() -> None:
    stored, config, _ = _checkpoint("awq_int4")
    lying = {**config, "quantization_config": {**config["quantization_config"], "quant_method": "gptq"}}
    plan = _plan(stored, lying)
    assert plan.weights == ()
    assert len(plan.problems) == LINEARS and "shapes" in plan.problems[0]


def test_live_bitsandbytes_agrees_where_it_is_installed() -> None:
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("bitsandbytes.functional")
    stored, config, _ = _checkpoint("bnb_nf4")
    plan = _plan(stored, config)
    for weight in plan.weights:
        parts = {role: stored[name] for role, name in weight.parts.items()}
        # QuantState.from_dict takes the parts named as the weight's own suffixes ("absmax", ...).
        state_dict = {
            name.removeprefix(weight.name + "."): torch.from_numpy(stored[name])
            for name in weight.parts.values()
            if name != weight.name
        }
        state = functional.QuantState.from_dict(state_dict, device=torch.device("cpu"))
        theirs = functional.dequantize_4bit(torch.from_numpy(parts["packed"]), state).float().numpy()
        np.testing.assert_array_equal(dequantize(weight, parts, config), theirs)


# --- hostile parts ---------------------------------------------------------------------------------


def _first(kind: str) -> tuple[LogicalWeight, dict[str, np.ndarray], dict[str, Any]]:
    stored, config, _ = _checkpoint(kind)
    weight = _plan(stored, config).weights[0]
    return weight, {role: stored[name] for role, name in weight.parts.items()}, config


def test_gptq_lying_group_size_is_a_tensor_error() -> None:
    weight, parts, config = _first("gptq_int4_actorder")
    lying = {**config, "quantization_config": {**config["quantization_config"], "group_size": 16}}
    with pytest.raises(TensorError, match=r"group_size 16 .* groups"):
        dequantize(weight, parts, lying)


def test_gptq_short_qweight_and_bad_g_idx_are_tensor_errors() -> None:
    weight, parts, config = _first("gptq_int4_actorder")
    with pytest.raises(TensorError, match="g_idx"):
        dequantize(weight, {**parts, "qweight": parts["qweight"][:-1]}, config)
    hostile = parts["g_idx"].copy()
    hostile[0] = 99
    with pytest.raises(TensorError, match="g_idx holds groups"):
        dequantize(weight, {**parts, "g_idx": hostile}, config)
    with pytest.raises(TensorError, match="qzeros"):
        dequantize(weight, {**parts, "qzeros": parts["qzeros"][:, :-1]}, config)


def test_awq_wrong_scale_shape_and_unknown_version_are_tensor_errors() -> None:
    weight, parts, config = _first("awq_int4")
    with pytest.raises(TensorError, match="scales"):
        dequantize(weight, {**parts, "scales": parts["scales"][:, :-1]}, config)
    lying = {**config, "quantization_config": {**config["quantization_config"], "group_size": 64}}
    with pytest.raises(TensorError, match="group_size 64"):
        dequantize(weight, parts, lying)
    gemv = {**config, "quantization_config": {**config["quantization_config"], "version": "gemv"}}
    with pytest.raises(TensorError, match="gemv"):
        dequantize(weight, parts, gemv)


def test_bnb_short_packed_weight_and_wrong_absmax_are_tensor_errors() -> None:
    weight, parts, config = _first("bnb_nf4")
    with pytest.raises(TensorError, match="packed bytes"):
        dequantize(weight, {**parts, "packed": parts["packed"][:-1]}, config)
    with pytest.raises(TensorError, match="absmax"):
        dequantize(weight, {**parts, "absmax": parts["absmax"][:-1]}, config)
    with pytest.raises(TensorError, match="nested_quant_map"):
        dequantize(weight, {**parts, "nested_quant_map": parts["nested_quant_map"][:16]}, config)


@pytest.mark.parametrize(
    "state",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"quant_type": "nf5", "blocksize": 64, "dtype": "float16", "shape": [2, 2]}).encode(),
        json.dumps({"quant_type": "nf4", "blocksize": 63, "dtype": "float16", "shape": [2, 2]}).encode(),
        json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "int8", "shape": [2, 2]}).encode(),
        json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [-2, 2]}).encode(),
        json.dumps(
            {"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [2], "nested_blocksize": 256}
        ).encode(),
    ],
)
def test_hostile_quant_states_are_tensor_errors(state: bytes) -> None:
    with pytest.raises(TensorError):
        bitsandbytes.parse_quant_state("w", np.frombuffer(state, dtype=np.uint8))


def test_bnb_int8_scb_of_the_wrong_length_is_a_tensor_error() -> None:
    weight, parts, config = _first("bnb_int8")
    with pytest.raises(TensorError, match="SCB"):
        dequantize(weight, {**parts, "scb": parts["scb"][:-1]}, config)


def test_fixtures_are_small() -> None:
    for path in QUANTIZED.rglob("*"):
        if path.is_file():
            assert path.stat().st_size < 200_000, path


def test_missing_parts_are_problems(tmp_path: Path) -> None:
    stored, config, _ = _checkpoint("gptq_int4_actorder")
    without = {name: value for name, value in stored.items() if not name.endswith("q_proj.qzeros")}
    plan = _plan(without, config)
    assert len(plan.weights) == LINEARS - 1
    assert any("q_proj" in problem and "qzeros" in problem for problem in plan.problems)


def test_gpt_oss_mxfp4_experts_equal_transformers_dequantisation() -> None:
    stored, config, reference = _checkpoint("mxfp4_experts")
    plan = _plan(stored, config)
    assert plan.method == "mxfp4" and plan.problems == ()
    assert (
        {weight.name for weight in plan.weights}
        == set(reference)
        == {
            "model.layers.0.mlp.experts.gate_up_proj",
            "model.layers.0.mlp.experts.down_proj",
        }
    )
    for weight in plan.weights:
        ours = mxfp4.dequantize_mxfp4(
            weight.name, stored[weight.parts["blocks"]], stored[weight.parts["scales"]]
        )
        theirs = reference[weight.name].astype(np.float32)
        assert weight.shape == ours.shape == theirs.shape  # (experts, in, out)
        assert weight.encoding == "mxfp4" and weight.layout.value == "in_out"
        np.testing.assert_array_equal(ours, theirs)
    assert "model.layers.0.mlp.experts.gate_up_proj_bias" not in plan.consumed


def test_quantisation_moves_singular_values_no_more_than_weyls_bound() -> None:
    """Weyl: |s_i(Q) - s_i(W)| <= ||Q - W||_2 for every i. The dequantised GPTQ weights against the float16
    weights they were quantised from (`original.safetensors`): the bound holds, and the error is smaller than
    the top singular value, which it would not be if a scale were lost."""
    stored, config, _ = _checkpoint("gptq_int4_actorder")
    original = _load(QUANTIZED / "gptq_int4_actorder" / "original.safetensors")
    for weight in _plan(stored, config).weights:
        ours = dequantize(weight, {role: stored[name] for role, name in weight.parts.items()}, config)
        before = original[weight.name].astype(np.float64)
        error = float(np.linalg.norm(ours.astype(np.float64) - before, 2))
        moved = np.abs(
            np.linalg.svd(ours.astype(np.float64), compute_uv=False) - np.linalg.svd(before, compute_uv=False)
        )
        assert float(moved.max()) <= error * (1 + 1e-9), weight.name
        # A lost or misapplied scale leaves Q a matrix of integers, far from W: here the error stays below
        # ||W||_2 (measured: 0.11 to 0.73 of it; heavy tails make min-max int4 coarse).
        assert error < float(np.linalg.norm(before, 2)), weight.name
