"""The GGUF reader against files written by the `gguf` package, and dequantisation against its reference.

fixtures/gguf/*.gguf were written by `gguf.GGUFWriter` (fixtures/generate_gguf.py): one file per type, the
K-quants and IQ4_NL from directly built blocks. Every tensor our reader produces is compared with
`gguf.quants.dequantize` over the bytes the `gguf` package's own reader finds for that tensor.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import warnings
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from formats import DType, FormatError, Layout, Role, TensorError, WeightKind, detect, open_model
from formats import gguf_reader as gguf_reader_module
from formats._gguf_quants import GGML_TYPES
from tests.conftest import FIXTURES, MANIFESTS, listing

GGUF_MANIFESTS = [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("gguf_*.json"))]
QUANT_TYPES = [
    *("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl"),
    *("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq4_xs"),
    *("tq1_0", "tq2_0", "mxfp4", "nvfp4"),
]


def _reference(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a file as the gguf package dequantises it, in numpy (row-major) shape."""
    reader = gguf.GGUFReader(str(path))
    values = {}
    for tensor in reader.tensors:
        shape = tuple(int(dim) for dim in reversed(tensor.shape.tolist()))
        dequantised = gguf.quants.dequantize(tensor.data, gguf.GGMLQuantizationType(tensor.tensor_type))
        values[tensor.name] = np.asarray(dequantised, dtype=np.float32).reshape(shape)
    return values


@pytest.mark.parametrize("manifest", GGUF_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_listing_is_the_manifest(manifest: dict[str, Any]) -> None:
    with open_model(FIXTURES / manifest["fixture"]) as reader:
        assert reader.format == "gguf"
        listed = listing(reader)
    assert listed == [{**entry, "aliases": sorted(entry["aliases"])} for entry in manifest["tensors"]]


@pytest.mark.parametrize("manifest", GGUF_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_dequantisation_matches_the_gguf_reference(manifest: dict[str, Any]) -> None:
    path = FIXTURES / manifest["fixture"]
    reference = _reference(path)
    with open_model(path) as reader:
        for ref in reader.tensors():
            ours = ref.read()
            theirs = reference[ref.info.name]
            assert ours.dtype == np.float32 and ours.shape == theirs.shape, ref.info.name
            scale = max(float(np.abs(theirs).max()), 1.0)
            assert float(np.abs(ours - theirs).max()) <= 1e-6 * scale, (ref.info.name, ref.info.encoding)


@pytest.mark.parametrize("stem", QUANT_TYPES)
def test_each_quantised_fixture_exercises_its_type(stem: str) -> None:
    with open_model(FIXTURES / "gguf" / f"{stem}.gguf") as reader:
        encodings = {ref.info.encoding for ref in reader.tensors()}
        quantised = [ref for ref in reader.tensors() if ref.info.dtype is DType.QUANTIZED]
        # Values are not all equal: a dequantiser returning a constant would not survive this.
        assert all(float(np.std(ref.read())) > 0 for ref in quantised)
    assert stem.upper() in encodings
    assert len(quantised) >= 6


def test_plain_file_widens_f16_and_bf16_exactly() -> None:
    path = FIXTURES / "gguf" / "plain.gguf"
    raw = {tensor.name: tensor for tensor in gguf.GGUFReader(str(path)).tensors}
    with open_model(path) as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        assert refs["blk.0.attn_q.weight"].info.dtype is DType.BF16
        assert refs["blk.0.attn_k.weight"].info.dtype is DType.F16
        bf16_bits = np.asarray(raw["blk.0.attn_q.weight"].data).view(np.uint16).astype(np.uint32) << 16
        np.testing.assert_array_equal(
            refs["blk.0.attn_q.weight"].read().ravel(), bf16_bits.view(np.float32).ravel()
        )
        f16 = np.asarray(raw["blk.0.attn_k.weight"].data).astype(np.float32)
        np.testing.assert_array_equal(refs["blk.0.attn_k.weight"].read().ravel(), f16.ravel())


def test_dimensions_are_reversed_into_numpy_order() -> None:
    with open_model(FIXTURES / "gguf" / "q4_k.gguf") as reader:
        shapes = {ref.info.name: ref.info.shape for ref in reader.tensors()}
    # GGUF stores attn_output as ne = [32, 256] (input first); as a matrix it is (out=256, in=32).
    assert shapes["blk.0.attn_output.weight"] == (256, 32)
    assert shapes["blk.0.ffn_up_exps.weight"] == (4, 16, 256)


def test_names_map_to_roles_and_kinds() -> None:
    with open_model(FIXTURES / "gguf" / "q8_0.gguf") as reader:
        hints = {ref.info.name: ref.info.hint for ref in reader.tensors()}
    assert (hints["token_embd.weight"].kind, hints["token_embd.weight"].role) == (
        WeightKind.EMBEDDING,
        Role.EMBEDDING,
    )
    assert (hints["output.weight"].kind, hints["output.weight"].role) == (WeightKind.DENSE, Role.OUTPUT)
    assert (hints["blk.0.attn_q.weight"].kind, hints["blk.0.attn_q.weight"].role) == (
        WeightKind.DENSE,
        Role.ATTENTION,
    )
    assert hints["blk.0.attn_output.weight"].role is Role.ATTENTION
    assert (hints["blk.0.ffn_down.weight"].kind, hints["blk.0.ffn_down.weight"].role) == (
        WeightKind.DENSE,
        Role.MLP,
    )
    assert hints["blk.0.ffn_up_exps.weight"].kind is WeightKind.EXPERTS
    assert hints["blk.0.ffn_norm.weight"].kind is WeightKind.NORM
    assert hints["output_norm.weight"].kind is WeightKind.NORM
    assert {hint.layout for hint in hints.values()} == {Layout.OUT_IN}


def test_metadata_is_stringified_and_long_arrays_summarised() -> None:
    with open_model(FIXTURES / "gguf" / "q4_0.gguf") as reader:
        metadata = reader.metadata()
    assert metadata["general.architecture"] == "llama"
    assert metadata["llama.embedding_length"] == "256"
    assert metadata["tokenizer.ggml.tokens"] == "[32 x string]"
    assert metadata["gguf.version"] == "3"


def test_row_groups_give_the_same_values_as_one_group(monkeypatch: pytest.MonkeyPatch) -> None:
    path = FIXTURES / "gguf" / "q6_k.gguf"
    with open_model(path) as reader:
        whole = {ref.info.name: ref.read().copy() for ref in reader.tensors()}
    monkeypatch.setattr(gguf_reader_module, "ROW_GROUP_ELEMENTS", 300)  # about one row per group
    with open_model(path) as reader:
        for ref in reader.tensors():
            np.testing.assert_array_equal(ref.read(), whole[ref.info.name])


def test_version_2_files_read_like_version_3(tmp_path: Path) -> None:
    path = tmp_path / "v2.gguf"
    data = bytearray((FIXTURES / "gguf" / "q5_k.gguf").read_bytes())
    struct.pack_into("<I", data, 4, 2)
    path.write_bytes(bytes(data))
    with open_model(path) as v2, open_model(FIXTURES / "gguf" / "q5_k.gguf") as v3:
        for old, new in zip(v2.tensors(), v3.tensors(), strict=True):
            assert dataclasses.replace(old.info, origin=new.info.origin) == new.info
            np.testing.assert_array_equal(old.read(), new.read())
        assert v2.metadata()["gguf.version"] == "2"


def test_unsupported_quantisation_is_listed_but_refused_on_read(tmp_path: Path) -> None:
    # Q8_1 is an intermediate type of ggml's dot products: ggml has no dequantiser for it, nor do we.
    path = tmp_path / "q8_1.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1]
    writer.add_tensor(
        "blk.0.attn_q.weight",
        np.zeros((16, 256 // block_size * type_size), np.uint8),
        raw_dtype=gguf.GGMLQuantizationType.Q8_1,
    )
    writer.add_tensor("output.weight", np.ones((16, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open_model(path) as reader:
        refs = list(reader.tensors())
        assert [ref.info.encoding for ref in refs] == ["Q8_1", "F32"]
        assert refs[0].info.shape == (16, 256)
        with pytest.raises(TensorError, match="Q8_1"):
            refs[0].read()
        assert refs[1].read().sum() == 16 * 32


def test_every_ggml_type_size_matches_the_gguf_package() -> None:
    for type_id, ggml in GGML_TYPES.items():
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(type_id)]
        assert (ggml.block_size, ggml.type_size) == (block_size, type_size), ggml.name
        if ggml.layout is not None:
            assert ggml.layout.itemsize == type_size, ggml.name


def test_detected_by_magic_whatever_the_suffix(tmp_path: Path) -> None:
    copy = tmp_path / "model.bin"
    shutil.copy(FIXTURES / "gguf" / "q4_0.gguf", copy)
    assert detect(copy).name == "gguf"


def test_read_after_close_raises_format_error() -> None:
    reader = open_model(FIXTURES / "gguf" / "q4_k.gguf")
    ref = next(iter(reader.tensors()))
    reader.close()
    with pytest.raises(FormatError, match="closed"):
        ref.read()


def test_infinite_scales_give_nan_values_without_warnings(tmp_path: Path) -> None:
    """Hostile blocks may carry infinite scales: 0 * inf is NaN, which the analysis reports, quietly."""
    path = tmp_path / "nan.gguf"
    blocks = np.zeros((16, 256 // 32 * 34), dtype=np.uint8)
    blocks.reshape(-1, 34)[:, :2] = np.full((16 * 8, 1), np.inf, dtype=np.float16).view(np.uint8)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.attn_q.weight", blocks, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open_model(path) as reader, warnings.catch_warnings():
        warnings.simplefilter("error")
        values = next(iter(reader.tensors())).read()
    assert values.shape == (16, 256) and bool(np.isnan(values).all())
