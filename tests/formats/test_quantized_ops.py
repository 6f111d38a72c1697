"""ONNX quantised operators, torch quantised tensors, MXFP4 and compressed-tensors against the libraries.

The ONNX fixtures (fixtures/quantized/onnx/) were quantised by onnxruntime's own MatMulNBitsQuantizer,
quantize_static (QOperator) and quantize_dynamic; the reference is onnxruntime executing the operator (or a
DequantizeLinear over the same initializers) on the stored values. torch quantised tensors are compared
with `Tensor.dequantize()`; MXFP4 with transformers' `convert_moe_packed_tensors` and pack-quantized with
compressed-tensors' `dequantize`, where those packages are installed (the dev extra).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from formats import TensorError
from formats.quantized import compressed_tensors, mxfp4, onnx_ops, torch_quantized
from tests.conftest import FIXTURES

ONNX = FIXTURES / "quantized" / "onnx"


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _run_single(node: onnx.NodeProto, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """onnxruntime running `node` alone, with `model`'s initializers it uses and `feeds` for the rest."""
    used = [tensor for tensor in model.graph.initializer if tensor.name in node.input]
    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
        for name, value in feeds.items()
    ]
    output = helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "single", inputs, [output], used)
    single = helper.make_model(graph, opset_imports=list(model.opset_import))
    session = ort.InferenceSession(single.SerializeToString(), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, feeds)[0]
    return result


@pytest.mark.parametrize("stem", ["matmulnbits_int4_b32", "matmulnbits_int8_b16"])
def test_matmul_nbits_equals_onnxruntime(stem: str) -> None:
    model = onnx.load(str(ONNX / f"{stem}.onnx"))
    values = _initializers(model)
    nodes = [node for node in model.graph.node if node.op_type == "MatMulNBits"]
    assert len(nodes) == 2
    for node in nodes:
        attrs = _attrs(node)
        parsed = onnx_ops.MatMulNBitsAttrs(attrs["K"], attrs["N"], attrs["bits"], attrs["block_size"])
        zero = values[node.input[3]] if len(node.input) > 3 and node.input[3] else None
        ours = onnx_ops.dequantize_matmul_nbits(
            node.name, parsed, values[node.input[1]], values[node.input[2]], zero
        )
        theirs = _run_single(node, model, {node.input[0]: np.eye(parsed.K, dtype=np.float32)})
        assert ours.shape == (parsed.K, parsed.N)
        np.testing.assert_array_equal(ours, theirs)  # max abs difference 0
        assert onnx_ops.matmul_nbits_encoding(parsed) == stem.replace("_", "-", 1).replace("_", "-")


def test_gather_block_quantized_equals_onnxruntime() -> None:
    model = onnx.load(str(ONNX / "matmulnbits_int4_b32.onnx"))
    values = _initializers(model)
    (node,) = [node for node in model.graph.node if node.op_type == "GatherBlockQuantized"]
    attrs = _attrs(node)
    data = values[node.input[0]].astype(np.uint8)  # numpy_helper gives ml_dtypes uint4; the loader, ints
    ours = onnx_ops.dequantize_gather_block_quantized(
        node.name,
        data,
        values[node.input[2]],
        values[node.input[3]].astype(np.uint8),
        bits=int(attrs.get("bits", 4)),
        block_size=int(attrs["block_size"]),
        quantize_axis=int(attrs["quantize_axis"]),
        packed=False,  # UINT4 data: the loader decodes the nibbles
    )
    theirs = _run_single(node, model, {node.input[1]: np.arange(data.shape[0], dtype=np.int64)})
    np.testing.assert_array_equal(ours, theirs)


def _dequantize_linear_reference(
    values: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int
) -> np.ndarray:
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=axis)
    tensors = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")]
    graph = helper.make_graph(
        [node],
        "dq",
        [
            helper.make_tensor_value_info(
                "x", helper.np_dtype_to_tensor_dtype(values.dtype), list(values.shape)
            )
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        tensors,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"x": values})[0]
    return result


@pytest.mark.parametrize(
    ("stem", "op", "encoding"),
    [
        ("qlinear_per_channel", "QLinearMatMul", "qlinear-int8"),
        ("matmulinteger", "MatMulInteger", "matmulinteger-uint8"),
        ("qlinearconv_per_channel", "QLinearConv", "qlinear-int8"),
        ("convinteger", "ConvInteger", "convinteger-uint8"),
    ],
)
def test_integer_operator_weights_equal_onnxruntime_dequantize_linear(
    stem: str, op: str, encoding: str
) -> None:
    model = onnx.load(str(ONNX / f"{stem}.onnx"))
    values = _initializers(model)
    nodes = [node for node in model.graph.node if node.op_type == op]
    assert len(nodes) == 2
    weight_input, _scale_input, zero_input = onnx_ops.INTEGER_OPERATOR_INPUTS[op]
    for node in nodes:
        name = node.input[weight_input]
        scale = values[name.replace("_quantized", "_scale")]  # quantize_dynamic's naming; Mul applies it
        zero = values[node.input[zero_input]]
        ours = onnx_ops.dequantize_integer_weight(name, op, values[name], scale, zero)
        theirs = _dequantize_linear_reference(values[name], scale, zero, axis=0 if "Conv" in op else 1)
        np.testing.assert_array_equal(ours, theirs)
        assert onnx_ops.integer_weight_encoding(op, values[name].dtype) == encoding


def test_matmul_nbits_hostile_parts_are_tensor_errors() -> None:
    model = onnx.load(str(ONNX / "matmulnbits_int4_b32.onnx"))
    values = _initializers(model)
    packed, scales, zero = (
        values["fc1.weight_Q4"],
        values["fc1.weight_scales"],
        values["fc1.weight_zero_points"],
    )
    good = onnx_ops.MatMulNBitsAttrs(64, 96, 4, 32)
    with pytest.raises(TensorError, match="B has shape"):
        onnx_ops.dequantize_matmul_nbits("w", onnx_ops.MatMulNBitsAttrs(128, 96, 4, 32), packed, scales, zero)
    with pytest.raises(TensorError, match="block_size 24"):
        onnx_ops.dequantize_matmul_nbits("w", onnx_ops.MatMulNBitsAttrs(64, 96, 4, 24), packed, scales, zero)
    with pytest.raises(TensorError, match="scales"):
        onnx_ops.dequantize_matmul_nbits("w", good, packed, scales[:-1], zero)
    with pytest.raises(TensorError, match="zero points"):
        onnx_ops.dequantize_matmul_nbits("w", good, packed, scales, zero[:-1])
    with pytest.raises(TensorError, match="g_idx"):
        onnx_ops.dequantize_matmul_nbits("w", good, packed, scales, zero, np.full(63, 0, dtype=np.int32))
    with pytest.raises(TensorError, match="B has shape"):
        onnx_ops.dequantize_matmul_nbits("w", good, packed[:, :1], scales, zero)


def test_matmul_nbits_trivial_g_idx_is_accepted_and_a_reordering_one_refused() -> None:
    model = onnx.load(str(ONNX / "matmulnbits_int4_b32.onnx"))
    values = _initializers(model)
    attrs = onnx_ops.MatMulNBitsAttrs(64, 96, 4, 32)
    packed, scales, zero = (
        values["fc1.weight_Q4"],
        values["fc1.weight_scales"],
        values["fc1.weight_zero_points"],
    )
    plain = onnx_ops.dequantize_matmul_nbits("w", attrs, packed, scales, zero)
    same = onnx_ops.dequantize_matmul_nbits(
        "w", attrs, packed, scales, zero, np.arange(64, dtype=np.int32) // 32
    )
    np.testing.assert_array_equal(plain, same)
    reordering = np.random.default_rng(0).permutation(64).astype(np.int32) // 32
    with pytest.raises(TensorError, match="reorders"):
        onnx_ops.dequantize_matmul_nbits("w", attrs, packed, scales, zero, reordering)


# --- torch quantised tensors -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype_name", ["qint8", "quint8", "qint32"])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_torch_quantised_tensors_equal_torch_dequantize(dtype_name: str, axis: int | None) -> None:
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(3)
    values = torch.randn(24, 40, generator=generator) * 0.3
    dtype = getattr(torch, dtype_name)
    zero_range = {"qint8": (-5, 5), "quint8": (100, 140), "qint32": (-50, 50)}[dtype_name]
    if axis is None:
        tensor = torch.quantize_per_tensor(values, 0.0123, zero_range[0] + 3, dtype)
        quantizer = torch_quantized.TorchQuantizer(
            torch_quantized.QScheme.PER_TENSOR_AFFINE,
            np.array([tensor.q_scale()]),
            np.array([tensor.q_zero_point()]),
        )
    else:
        size = values.shape[axis]
        scales = torch.rand(size, generator=generator, dtype=torch.float64) * 0.02 + 0.001
        zeros = torch.randint(*zero_range, (size,), generator=generator)
        tensor = torch.quantize_per_channel(values, scales, zeros, axis, dtype)
        quantizer = torch_quantized.TorchQuantizer(
            torch_quantized.QScheme.PER_CHANNEL_AFFINE,
            tensor.q_per_channel_scales().numpy(),
            tensor.q_per_channel_zero_points().numpy(),
            tensor.q_per_channel_axis(),
        )
    ours = torch_quantized.dequantize_torch("w", tensor.int_repr().numpy(), quantizer)
    np.testing.assert_array_equal(ours, tensor.dequantize().numpy())
    assert torch_quantized.torch_encoding(dtype_name, quantizer.scheme).startswith(f"torch-{dtype_name}")


def test_torch_float_qparams_equal_torch_dequantize() -> None:
    torch = pytest.importorskip("torch")
    values = torch.randn(16, 8, generator=torch.Generator().manual_seed(4))
    scales = torch.rand(16, dtype=torch.float64) * 0.02 + 0.001
    zeros = torch.randn(16, dtype=torch.float64) * 0.1
    tensor = torch.quantize_per_channel(values, scales, zeros, 0, torch.quint8)
    quantizer = torch_quantized.TorchQuantizer(
        torch_quantized.QScheme.PER_CHANNEL_AFFINE_FLOAT_QPARAMS,
        tensor.q_per_channel_scales().numpy(),
        tensor.q_per_channel_zero_points().numpy(),
        0,
    )
    ours = torch_quantized.dequantize_torch("w", tensor.int_repr().numpy(), quantizer)
    np.testing.assert_allclose(ours, tensor.dequantize().numpy(), rtol=1e-6, atol=1e-7)


def test_torch_hostile_quantizers_are_tensor_errors() -> None:
    values = np.zeros((4, 3), dtype=np.int8)
    with pytest.raises(TensorError, match="scales for axis"):
        torch_quantized.dequantize_torch(
            "w",
            values,
            torch_quantized.TorchQuantizer(
                torch_quantized.QScheme.PER_CHANNEL_AFFINE, np.ones(5), np.zeros(5, dtype=np.int64), 0
            ),
        )
    with pytest.raises(TensorError, match="axis 2"):
        torch_quantized.dequantize_torch(
            "w",
            values,
            torch_quantized.TorchQuantizer(
                torch_quantized.QScheme.PER_CHANNEL_AFFINE, np.ones(4), np.zeros(4, dtype=np.int64), 2
            ),
        )


def test_torch_fixture_equals_torch_dequantize() -> None:
    """fixtures/quantized/torch_qtensors/qtensors.pt, as torch.load gives it, against its stored reference."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    folder = FIXTURES / "quantized" / "torch_qtensors"
    state = torch.load(folder / "qtensors.pt", weights_only=True)
    reference = load_file(str(folder / "reference.safetensors"))
    quantised = {name: tensor for name, tensor in state.items() if tensor.is_quantized}
    assert set(quantised) == set(reference) == {"fc1.weight", "fc2.weight", "conv.weight", "embed.weight"}
    for name, tensor in quantised.items():
        if tensor.qscheme() == torch.per_tensor_affine:
            quantizer = torch_quantized.TorchQuantizer(
                torch_quantized.QScheme.PER_TENSOR_AFFINE,
                np.array([tensor.q_scale()]),
                np.array([tensor.q_zero_point()]),
            )
        else:
            quantizer = torch_quantized.TorchQuantizer(
                torch_quantized.QScheme.PER_CHANNEL_AFFINE,
                tensor.q_per_channel_scales().numpy(),
                tensor.q_per_channel_zero_points().numpy(),
                tensor.q_per_channel_axis(),
            )
        ours = torch_quantized.dequantize_torch(name, tensor.int_repr().numpy(), quantizer)
        np.testing.assert_array_equal(ours, reference[name].numpy(), err_msg=name)


# --- MXFP4 (gpt-oss) -------------------------------------------------------------------------------


def _mxfp4_parts() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    blocks = rng.integers(0, 256, (3, 40, 2, 16), dtype=np.uint8)  # 3 experts, out 40, in 64
    scales = rng.integers(117, 131, (3, 40, 2), dtype=np.uint8)  # 2**-10 .. 2**3
    return blocks, scales


def test_mxfp4_equals_transformers_convert_moe_packed_tensors() -> None:
    torch = pytest.importorskip("torch")
    integration = pytest.importorskip("transformers.integrations.mxfp4")
    blocks, scales = _mxfp4_parts()
    theirs = integration.convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(scales))
    ours = mxfp4.dequantize_mxfp4("experts.gate_up_proj", blocks, scales)
    assert ours.shape == (3, 64, 40) == tuple(theirs.shape)
    np.testing.assert_array_equal(ours, theirs.float().numpy())


def test_mxfp4_values_and_orientation() -> None:
    blocks = np.zeros((1, 2, 1, 16), dtype=np.uint8)
    blocks[0, 1, 0, 0] = 0x71  # element 0 code 1 (0.5), element 1 code 7 (6.0)
    scales = np.full((1, 2, 1), 128, dtype=np.uint8)  # 2**1
    out = mxfp4.dequantize_mxfp4("w", blocks, scales)
    assert out.shape == (1, 32, 2)  # (experts, in, out)
    assert (out[0, 0, 1], out[0, 1, 1]) == (1.0, 12.0)
    assert not out[:, :, 0].any()
    with pytest.raises(TensorError, match="scales have shape"):
        mxfp4.dequantize_mxfp4("w", blocks, scales[:, :1])


# --- compressed-tensors ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [4, 8, 3])
def test_pack_quantized_equals_compressed_tensors(bits: int) -> None:
    torch = pytest.importorskip("torch")
    helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    forward = pytest.importorskip("compressed_tensors.quantization.lifecycle.forward")
    from compressed_tensors.quantization import QuantizationArgs

    generator = torch.Generator().manual_seed(bits)
    out_features, in_features, group = 40, 96, 32
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    quantised = torch.randint(
        low, high + 1, (out_features, in_features), generator=generator, dtype=torch.int8
    )
    zero = torch.randint(
        low, high + 1, (out_features, in_features // group), generator=generator, dtype=torch.int8
    )
    scale = (torch.rand(out_features, in_features // group, generator=generator) * 0.01 + 1e-3).to(
        torch.bfloat16
    )
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=False, strategy="group", group_size=group)
    theirs = forward.dequantize(quantised, scale, zero, args).float().numpy()
    packed = helpers.pack_to_int32(quantised, bits).numpy()
    packed_zero = helpers.pack_to_int32(zero, bits, packed_dim=0).numpy()
    params = compressed_tensors.PackedParams(bits, group, symmetric=False, output_dtype="bfloat16")
    ours = compressed_tensors.dequantize_pack_quantized(
        "w", packed, scale.float().numpy(), (out_features, in_features), params, packed_zero
    )
    np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(TensorError, match="weight_packed"):
        compressed_tensors.dequantize_pack_quantized(
            "w", packed[:, :-1], scale.float().numpy(), (out_features, in_features), params, packed_zero
        )
    with pytest.raises(TensorError, match="weight_scale"):
        compressed_tensors.dequantize_pack_quantized(
            "w", packed, scale.float().numpy()[:, :-1], (out_features, in_features), params, packed_zero
        )
    with pytest.raises(TensorError, match="zero"):
        compressed_tensors.dequantize_pack_quantized(
            "w", packed, scale.float().numpy(), (out_features, in_features), params, None
        )
