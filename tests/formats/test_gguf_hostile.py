"""Hostile GGUF headers, built byte by byte: every lie is refused with exit 3 and one line.

`_gguf` writes a file from parts, each of which a test may replace with a lie: the version, the counts,
metadata entries (raw bytes, so a length or a type can be wrong), tensor-table entries, and the data.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from formats import CorruptFileError, FormatError, UnsupportedFormatError, open_model
from tests.conftest import FIXTURES, run_cli

F32, Q4_0, Q4_K = 0, 2, 12
UINT32, STRING, ARRAY = 4, 8, 9


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _kv_u32(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<II", UINT32, value)


def _kv_string(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", STRING) + _string(value)


def _tensor(name: str, dims: list[int], type_id: int = F32, offset: int = 0) -> bytes:
    return (
        _string(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", dim) for dim in dims)
        + struct.pack("<IQ", type_id, offset)
    )


def _gguf(
    path: Path,
    *,
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes | None = None,
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    alignment: int = 32,
    magic: bytes = b"GGUF",
) -> Path:
    kvs = [_kv_string("general.architecture", "llama")] if kvs is None else kvs
    tensors = [_tensor("output.weight", [16, 12])] if tensors is None else tensors
    header = (
        magic
        + struct.pack("<I", version)
        + struct.pack(
            "<QQ",
            len(tensors) if tensor_count is None else tensor_count,
            len(kvs) if kv_count is None else kv_count,
        )
        + b"".join(kvs)
        + b"".join(tensors)
    )
    header += bytes(-len(header) % alignment)
    payload = np.arange(16 * 12, dtype=np.float32).tobytes() if data is None else data
    path.write_bytes(header + payload)
    return path


def _assert_refused(path: Path, error: type[FormatError], match: str) -> None:
    with pytest.raises(error, match=match):
        open_model(path)
    result = run_cli(str(path), "--format", "json")
    assert result.exit_code == 3, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr


def test_the_builder_makes_a_readable_file(tmp_path: Path) -> None:
    """A control: without a lie, the builder's file reads, so each refusal below is the lie's doing."""
    with open_model(_gguf(tmp_path / "ok.gguf")) as reader:
        (ref,) = list(reader.tensors())
        assert ref.info.shape == (12, 16)
        np.testing.assert_array_equal(ref.read().ravel(), np.arange(192, dtype=np.float32))


def test_bad_magic_in_a_gguf_named_file(tmp_path: Path) -> None:
    _assert_refused(_gguf(tmp_path / "m.gguf", magic=b"GGUX"), CorruptFileError, "magic")


def test_version_1_is_unsupported(tmp_path: Path) -> None:
    _assert_refused(_gguf(tmp_path / "v1.gguf", version=1), UnsupportedFormatError, "version 1")


def test_unknown_version_is_corrupt(tmp_path: Path) -> None:
    _assert_refused(_gguf(tmp_path / "v9.gguf", version=9), CorruptFileError, "version 9")


def test_big_endian_file_is_unsupported(tmp_path: Path) -> None:
    _assert_refused(_gguf(tmp_path / "be.gguf", version=3 << 24), UnsupportedFormatError, "big-endian")


def test_huge_tensor_count_is_corrupt(tmp_path: Path) -> None:
    _assert_refused(_gguf(tmp_path / "n.gguf", tensor_count=1 << 60), CorruptFileError, "tensors")


def test_huge_metadata_count_is_corrupt(tmp_path: Path) -> None:
    _assert_refused(_gguf(tmp_path / "k.gguf", kv_count=1 << 40), CorruptFileError, "metadata entries")


def test_string_longer_than_the_file_is_corrupt(tmp_path: Path) -> None:
    lie = struct.pack("<Q", 1 << 50) + b"general.name"
    _assert_refused(_gguf(tmp_path / "s.gguf", kvs=[lie]), CorruptFileError, "declares")


def test_array_longer_than_the_file_is_corrupt(tmp_path: Path) -> None:
    lie = _string("tokenizer.ggml.scores") + struct.pack("<IIQ", ARRAY, 6, 1 << 58)
    _assert_refused(_gguf(tmp_path / "a.gguf", kvs=[lie]), CorruptFileError, "declares")


def test_string_array_longer_than_the_file_is_corrupt(tmp_path: Path) -> None:
    lie = _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, 1 << 40)
    _assert_refused(_gguf(tmp_path / "t.gguf", kvs=[lie]), CorruptFileError, "elements")


def test_long_string_array_with_a_lying_element_is_corrupt(tmp_path: Path) -> None:
    # 20 strings (past the preview of 16, so the fast skipping loop reads them), the 18th overruns.
    elements = [_string(f"tok{index}") for index in range(17)] + [struct.pack("<Q", 1 << 20) + b"x"]
    lie = _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, 20) + b"".join(elements)
    _assert_refused(_gguf(tmp_path / "ts.gguf", kvs=[lie]), CorruptFileError, "past the end")


def test_arrays_nested_too_deep_are_corrupt(tmp_path: Path) -> None:
    nested = _string("deep") + struct.pack("<I", ARRAY) + struct.pack("<IQ", ARRAY, 1) * 6
    _assert_refused(_gguf(tmp_path / "d.gguf", kvs=[nested]), CorruptFileError, "deeper")


def test_unknown_value_type_is_corrupt(tmp_path: Path) -> None:
    lie = _string("general.name") + struct.pack("<I", 77)
    _assert_refused(_gguf(tmp_path / "v.gguf", kvs=[lie]), CorruptFileError, "value type 77")


def test_duplicate_metadata_keys_are_corrupt(tmp_path: Path) -> None:
    kvs = [_kv_string("general.name", "a"), _kv_string("general.name", "b")]
    _assert_refused(_gguf(tmp_path / "dk.gguf", kvs=kvs), CorruptFileError, "twice")


@pytest.mark.parametrize("alignment", [0, 3, 48])
def test_alignment_must_be_a_power_of_two(tmp_path: Path, alignment: int) -> None:
    path = _gguf(tmp_path / "al.gguf", kvs=[_kv_u32("general.alignment", alignment)])
    _assert_refused(path, CorruptFileError, "power of two")


def test_alignment_of_the_wrong_type_is_corrupt(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "alt.gguf", kvs=[_kv_string("general.alignment", "32")])
    _assert_refused(path, CorruptFileError, "alignment")


def test_tensor_past_the_end_of_the_file_is_corrupt(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "end.gguf", tensors=[_tensor("output.weight", [16, 12], offset=1 << 20)])
    _assert_refused(path, CorruptFileError, "past the end")


def test_truncated_tensor_data_is_corrupt(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "cut.gguf", data=bytes(100))
    _assert_refused(path, CorruptFileError, "past the end")


def test_misaligned_tensor_offset_is_corrupt(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "mis.gguf", tensors=[_tensor("output.weight", [4, 4], offset=4)])
    _assert_refused(path, CorruptFileError, "alignment")


def test_unknown_type_id_is_one_tensors_skip(tmp_path: Path) -> None:
    # The tensor table still parses, so an undefined type id skips that tensor (tests/hostile/test_dtypes.py).
    path = _gguf(tmp_path / "ty.gguf", tensors=[_tensor("output.weight", [16, 12], type_id=99)])
    with open_model(path) as reader:
        (ref,) = reader.tensors()
    assert ref.info.skip_reason is not None and "type id 99" in ref.info.skip_reason


def test_duplicate_tensor_names_are_corrupt(tmp_path: Path) -> None:
    tensors = [_tensor("output.weight", [4, 4]), _tensor("output.weight", [4, 4], offset=64)]
    _assert_refused(_gguf(tmp_path / "dup.gguf", tensors=tensors), CorruptFileError, "listed twice")


def test_overlapping_tensors_are_corrupt(tmp_path: Path) -> None:
    tensors = [_tensor("a.weight", [16, 12]), _tensor("b.weight", [16, 4], offset=32)]
    _assert_refused(_gguf(tmp_path / "ov.gguf", tensors=tensors), CorruptFileError, "overlap")


def test_too_many_dimensions_are_corrupt(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "nd.gguf", tensors=[_tensor("output.weight", [1, 1, 1, 1, 2])])
    _assert_refused(path, CorruptFileError, "5 dimensions")


def test_dimensions_whose_product_overflows_are_corrupt(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "big.gguf", tensors=[_tensor("output.weight", [1 << 32, 1 << 32, 1 << 32])])
    _assert_refused(path, CorruptFileError, "elements")


def test_rows_that_are_not_whole_blocks_are_corrupt(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "blk.gguf", tensors=[_tensor("output.weight", [100, 2], type_id=Q4_K)])
    _assert_refused(path, CorruptFileError, "whole Q4_K blocks")


def test_invalid_utf8_name_is_corrupt(tmp_path: Path) -> None:
    tensors = [_string(b"\xff\xfe") + struct.pack("<IQQ", 2, 16, 12) + struct.pack("<IQ", F32, 0)]
    _assert_refused(_gguf(tmp_path / "u.gguf", tensors=tensors), CorruptFileError, "UTF-8")


def test_file_shorter_than_a_header_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "short.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    _assert_refused(path, CorruptFileError, "too short")


def test_header_cut_inside_the_tensor_table_is_corrupt(tmp_path: Path) -> None:
    data = (FIXTURES / "gguf" / "q4_0.gguf").read_bytes()
    path = tmp_path / "cut_header.gguf"
    path.write_bytes(data[:900])
    _assert_refused(path, CorruptFileError, "needs|declares")


def test_names_with_control_characters_stay_data(tmp_path: Path) -> None:
    """A name is untrusted text: it is kept exactly, never interpreted (the CLI escapes it for display)."""
    path = _gguf(tmp_path / "esc.gguf", tensors=[_tensor("blk.0.attn_q.weight\x1b[31m", [16, 12])])
    with open_model(path) as reader:
        (ref,) = list(reader.tensors())
        assert ref.info.name == "blk.0.attn_q.weight\x1b[31m"
        assert ref.read().shape == (12, 16)
