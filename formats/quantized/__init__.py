"""Dequantisers for the quantised weight formats of shipped checkpoints, in pure numpy.

One module per source format, each taking the stored arrays (as numpy) and returning the float weight in
the shape and orientation the weight has in the unquantised model, and raising `TensorError` (never an
IndexError) when the parts do not fit together:
- `gptq`: GPTQ qweight/qzeros/scales/g_idx (act-order), 2/3/4/8 bits, v1 and v2 zero points;
- `awq`: AutoAWQ gemm qweight/qzeros/scales with its interleaved packing;
- `bitsandbytes`: 4-bit NF4/FP4 with absmax, quant_map and nested quantisation, and LLM.int8() with SCB;
- `compressed_tensors`: pack-quantized (with zero points and g_idx), NVFP4;
- `mxfp4`: gpt-oss expert blocks and E8M0 scales;
- `onnx_ops`: MatMulNBits, GatherBlockQuantized, QLinear*/MatMulInteger/ConvInteger;
- `torch_quantized`: per-tensor and per-channel qint8/quint8/qint32;
- `affine`: the (q - zero_point) * scale rule several of them share;
- `detect`: which stored tensors make up one logical weight, from names, shapes, dtypes and the
  checkpoint's `quantization_config`, and the `encoding` string of each.

Nothing here reads files: the readers hand these functions arrays they have already read and validated
against their headers.
"""
