"""Hostile and broken safetensors inputs, built in tmp_path: each is refused with one typed, one-line error.

Also a property test (random mutations of a valid header and random JSON entries only ever raise
`WWInspectError` subclasses) and, once the CLI exists, checks that such files exit 3 with one stderr line.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats import _safetensors_header, open_model
from formats import safetensors_reader as st_reader
from formats.errors import (
    CorruptFileError,
    FormatError,
    UnsafeFileError,
    UnsupportedFormatError,
    WWInspectError,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

GOOD_DATA = np.arange(16, dtype="<f4").tobytes()  # 64 bytes
GOOD_HEADER: dict[str, Any] = {
    "__metadata__": {"format": "pt"},
    "a.weight": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32]},
    "b.weight": {"dtype": "BF16", "shape": [4, 4], "data_offsets": [32, 64]},
}


def raw_file(header: bytes, data: bytes = GOOD_DATA, *, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def with_header(**entries: Any) -> bytes:
    header = {**GOOD_HEADER, **entries}
    return raw_file(json.dumps(header).encode())


def entry(dtype: Any = "F32", shape: Any = (2, 4), offsets: Any = (0, 32)) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
        "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets,
    }


def open_and_read(path: Path) -> None:
    with open_model(path) as reader:
        for ref in reader.tensors():
            if ref.info.skip_reason is None:
                ref.read()


def assert_one_line(error: BaseException) -> None:
    text = str(error)
    assert text and "\n" not in text and "\r" not in text, repr(text)


# ------------------------------------------------------------------------------------------------
# Single files
# ------------------------------------------------------------------------------------------------

HOSTILE_FILES: dict[str, tuple[bytes, type[FormatError], str]] = {
    "empty file": (b"", CorruptFileError, "too short"),
    "truncated length": (b"\x10\x00\x00", CorruptFileError, "too short"),
    "truncated header": (struct.pack("<Q", 500) + b'{"a": {"dtype"', CorruptFileError, "runs past the end"),
    "header length over cap": (
        struct.pack("<Q", 100_000_001) + b"{}" + b"\0" * 64,
        CorruptFileError,
        "exceeds the limit",
    ),
    "header length u64 max": (b"\xff" * 8 + b"{}", CorruptFileError, "exceeds the limit"),
    "header length past file": (raw_file(b"{}", b"", length=4096), CorruptFileError, "runs past the end"),
    "not json": (raw_file(b"{this is not json}"), CorruptFileError, "not valid JSON"),
    "trailing garbage": (raw_file(b"{} {}"), CorruptFileError, "not valid JSON"),
    "does not start with brace": (raw_file(b'["a", 1]'), CorruptFileError, "starts with"),
    "leading space": (raw_file(b' {"a": 1}'), CorruptFileError, "starts with"),
    "not utf-8": (raw_file(b'{"\xff\xfe": 1}'), CorruptFileError, "UTF-8"),
    "duplicate tensor key": (
        raw_file(
            b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
            b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}'
        ),
        CorruptFileError,
        "repeats the key 'a'",
    ),
    "duplicate inner key": (
        raw_file(b'{"a": {"dtype": "F32", "dtype": "I64", "shape": [2], "data_offsets": [0, 8]}}'),
        CorruptFileError,
        "repeats the key 'dtype'",
    ),
    "overlapping offsets": (with_header(**{"c": entry(offsets=(16, 48))}), CorruptFileError, "overlap"),
    "same range other shape": (
        with_header(**{"c": entry(shape=(8,), offsets=(0, 32))}),
        CorruptFileError,
        "share bytes",
    ),
    "offsets past data": (
        with_header(**{"c": entry(offsets=(64, 96))}),
        CorruptFileError,
        "outside the 64-byte data",
    ),
    "offsets reversed": (
        with_header(**{"c": entry(shape=(0,), offsets=(40, 32))}),
        CorruptFileError,
        "begin after end",
    ),
    "negative offset": (
        with_header(**{"c": entry(shape=(0,), offsets=(-8, 0))}),
        CorruptFileError,
        "outside",
    ),
    "size mismatch": (with_header(**{"a.weight": entry(shape=(3, 4))}), CorruptFileError, "needs 48"),
    "negative dim": (with_header(**{"a.weight": entry(shape=(-2, -4))}), CorruptFileError, "negative"),
    "huge dims": (with_header(**{"a.weight": entry(shape=(2**40, 2**40))}), CorruptFileError, "more than"),
    "zero dim with huge others": (
        with_header(**{"c": entry(shape=(0, 2**62, 2**62), offsets=(0, 0))}),
        CorruptFileError,
        "more than",
    ),
    "float dim": (with_header(**{"a.weight": entry(shape=[2.0, 4])}), CorruptFileError, "non-integer"),
    "bool dim": (with_header(**{"a.weight": entry(shape=[True, 8])}), CorruptFileError, "non-integer"),
    "shape not a list": (with_header(**{"a.weight": entry(shape="2x4")}), CorruptFileError, "not a list"),
    "too many dims": (
        with_header(**{"c": entry(shape=[1] * 40, offsets=(0, 4))}),
        CorruptFileError,
        "dimensions",
    ),
    # An undefined string code ("F31") is one tensor's skip now (tests/hostile/test_dtypes.py).
    "dtype not a string": (with_header(**{"a.weight": entry(dtype=32)}), CorruptFileError, "not a string"),
    "entry not an object": (with_header(**{"a.weight": [1, 2, 3]}), CorruptFileError, "not an object"),
    "entry missing offsets": (
        with_header(**{"a.weight": {"dtype": "F32", "shape": [2, 4]}}),
        CorruptFileError,
        "lacks data_offsets",
    ),
    "offsets not a pair": (
        with_header(**{"a.weight": entry(offsets=[0, 16, 32])}),
        CorruptFileError,
        "pair of integers",
    ),
    "offsets not integers": (
        with_header(**{"a.weight": entry(offsets=["0", "32"])}),
        CorruptFileError,
        "pair of integers",
    ),
    "metadata not strings": (with_header(__metadata__={"epoch": 3}), CorruptFileError, "__metadata__"),
    "metadata a list": (with_header(__metadata__=["a"]), CorruptFileError, "__metadata__"),
    "deep nesting": (
        raw_file(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        CorruptFileError,
        "nested too deeply",
    ),
    "integer beyond digit limit": (
        raw_file(b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 0]}}'),
        CorruptFileError,
        "too large",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_file_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    content, error_type, fragment = HOSTILE_FILES[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(error_type) as caught:
        open_and_read(path)
    assert fragment in str(caught.value)
    assert_one_line(caught.value)


def test_long_hostile_names_are_escaped_and_shortened(tmp_path: Path) -> None:
    name = "evil\n\x1b[31m" + "x" * 10_000
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw_file(json.dumps({name: entry(dtype=99)}).encode()))
    with pytest.raises(CorruptFileError) as caught:
        open_model(path)
    assert_one_line(caught.value)
    assert "\x1b" not in str(caught.value) and len(str(caught.value)) < 400


def test_entry_count_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_safetensors_header, "MAX_ENTRIES", 10)
    header = {f"t{index}": entry(shape=(0,), offsets=(0, 0)) for index in range(11)}
    path = tmp_path / "many.safetensors"
    path.write_bytes(raw_file(json.dumps(header).encode(), b""))
    with pytest.raises(CorruptFileError, match="more than") as caught:
        open_model(path)
    assert_one_line(caught.value)


def test_header_length_cap_is_the_reference_value() -> None:
    assert st_reader.MAX_HEADER_BYTES == 100_000_000


# ------------------------------------------------------------------------------------------------
# Sharded checkpoints
# ------------------------------------------------------------------------------------------------


def sharded_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "sharded", folder)
    return folder


def edit_index(folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    change(index)
    index_path.write_text(json.dumps(index))
    return index_path


def point_first_tensor_at(target: str) -> Callable[[dict[str, Any]], None]:
    def change(index: dict[str, Any]) -> None:
        first = next(iter(index["weight_map"]))
        index["weight_map"][first] = target

    return change


@pytest.mark.parametrize(
    ("target", "error_type", "fragment"),
    [
        ("../x.safetensors", UnsafeFileError, "outside the model's folder"),
        ("sub/../../x.safetensors", UnsafeFileError, "outside the model's folder"),
        ("/etc/passwd", UnsafeFileError, "absolute path"),
        ("missing-00003-of-00003.safetensors", CorruptFileError, "does not exist"),
        ("model-00002-of-00002.safetensors", CorruptFileError, "which does not hold it"),
    ],
)
def test_index_naming_bad_shards_is_refused(
    tmp_path: Path, target: str, error_type: type[FormatError], fragment: str
) -> None:
    (tmp_path / "x.safetensors").write_bytes((FIXTURES / "tiny_bf16.safetensors").read_bytes())
    folder = sharded_copy(tmp_path)
    index_path = edit_index(folder, point_first_tensor_at(target))
    for path in (folder, index_path):
        with pytest.raises(error_type) as caught:
            open_and_read(path)
        assert fragment in str(caught.value)
        assert_one_line(caught.value)


def test_index_naming_escaping_symlink_is_unsafe(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(FIXTURES / "sharded" / "model-00001-of-00002.safetensors", outside)
    folder = sharded_copy(tmp_path)
    (folder / "model-00001-of-00002.safetensors").unlink()
    os.symlink(outside, folder / "model-00001-of-00002.safetensors")
    with pytest.raises(UnsafeFileError, match="points outside") as caught:
        open_and_read(folder)
    assert_one_line(caught.value)


def test_tensor_in_two_shards_is_corrupt(tmp_path: Path) -> None:
    folder = sharded_copy(tmp_path)
    shutil.copy(folder / "model-00001-of-00002.safetensors", folder / "copy.safetensors")
    edit_index(folder, lambda index: index["weight_map"].update({"extra": "copy.safetensors"}))
    with pytest.raises(CorruptFileError, match="appears in both") as caught:
        open_and_read(folder)
    assert_one_line(caught.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b'{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}', "repeats the key 'a'"),
        (b'{"metadata": {}}', "no weight_map"),
        (b'{"weight_map": {"a": 3}}', "not a file name"),
        (b"[]", "no weight_map"),
    ],
)
def test_broken_index_is_corrupt(tmp_path: Path, content: bytes, fragment: str) -> None:
    folder = sharded_copy(tmp_path)
    (folder / "model.safetensors.index.json").write_bytes(content)
    with pytest.raises(CorruptFileError) as caught:
        open_and_read(folder)
    assert fragment in str(caught.value)
    assert_one_line(caught.value)


def test_numbered_shard_missing_without_index_is_corrupt(tmp_path: Path) -> None:
    folder = sharded_copy(tmp_path)
    (folder / "model.safetensors.index.json").unlink()
    (folder / "model-00002-of-00002.safetensors").unlink()
    shutil.copy(folder / "model-00001-of-00002.safetensors", folder / "model-00003-of-00003.safetensors")
    with pytest.raises(UnsupportedFormatError):  # two different shard totals: not one checkpoint
        open_and_read(folder)
    (folder / "model-00003-of-00003.safetensors").unlink()
    with pytest.raises(CorruptFileError, match="shard 2 of 2 is missing") as caught:
        open_and_read(folder)
    assert_one_line(caught.value)


def test_two_index_files_are_ambiguous(tmp_path: Path) -> None:
    folder = sharded_copy(tmp_path)
    shutil.copy(folder / "model.safetensors.index.json", folder / "other.safetensors.index.json")
    with pytest.raises(UnsupportedFormatError, match="2 safetensors index files"):
        open_model(folder)


# ------------------------------------------------------------------------------------------------
# Property tests: nothing but WWInspectError, whatever the header says
# ------------------------------------------------------------------------------------------------

VALID = raw_file(json.dumps(GOOD_HEADER).encode())
HEADER_END = 8 + struct.unpack("<Q", VALID[:8])[0]


def attempt(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        open_and_read(path)
    except WWInspectError as error:
        assert_one_line(error)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=HEADER_END - 1), st.integers(min_value=0, max_value=255)
        ),
        min_size=1,
        max_size=6,
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=len(VALID))),
)
def test_mutated_header_bytes_raise_only_typed_errors(
    tmp_path: Path, edits: list[tuple[int, int]], cut: int | None
) -> None:
    content = bytearray(VALID)
    for position, value in edits:
        content[position] = value
    attempt(tmp_path / "fuzz.safetensors", bytes(content[:cut] if cut is not None else content))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
ENTRY_VALUES = (
    st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "BF16", "F16", "F64", "F8_E4M3", "I64", "F4", "C64", "X"])
            | JSON_VALUES,
            "shape": st.lists(st.integers(min_value=-2, max_value=20), max_size=4) | JSON_VALUES,
            "data_offsets": st.lists(st.integers(min_value=-8, max_value=80), min_size=2, max_size=2)
            | JSON_VALUES,
        }
    )
    | JSON_VALUES
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.dictionaries(
        st.sampled_from(["a.weight", "a.weight_scale_inv", "a.weight_scale", "b", "__metadata__"]),
        ENTRY_VALUES,
        max_size=4,
    ),
    data_size=st.integers(min_value=0, max_value=80),
)
def test_random_header_entries_raise_only_typed_errors(
    tmp_path: Path, entries: dict[str, Any], data_size: int
) -> None:
    header = json.dumps(entries, allow_nan=True).encode()
    attempt(tmp_path / "fuzz.safetensors", raw_file(header, bytes(range(data_size))))


# ------------------------------------------------------------------------------------------------
# The CLI: exit 3, one line on stderr, no traceback
# ------------------------------------------------------------------------------------------------

CLI_CASES = [
    "header length over cap",
    "not json",
    "duplicate tensor key",
    "overlapping offsets",
    "size mismatch",
    "dtype not a string",
]


def cli_runner() -> Callable[..., Any]:
    try:
        from tests.conftest import run_cli
    except ImportError:  # tests/ is not a package: conftest is importable as a top-level module
        from conftest import run_cli  # type: ignore[no-redef]
    # The CLI and its analysis pipeline are written in parallel with this reader; until both import,
    # these tests skip (an import failure is the only reason they skip).
    pytest.importorskip("inspector.cli")
    pytest.importorskip("inspector.pipeline")
    return run_cli  # type: ignore[no-any-return]


def assert_exit_3_one_line(result: Any) -> None:
    assert result.exit_code == 3, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_exits_3_with_one_line_for_hostile_file(tmp_path: Path, case: str) -> None:
    run_cli = cli_runner()
    path = tmp_path / "model.safetensors"
    path.write_bytes(HOSTILE_FILES[case][0])
    for extra in ([], ["--format", "json"]):
        assert_exit_3_one_line(run_cli(path, *extra))


def test_cli_exits_3_for_unsafe_index(tmp_path: Path) -> None:
    run_cli = cli_runner()
    folder = sharded_copy(tmp_path)
    edit_index(folder, point_first_tensor_at("../../etc/x.safetensors"))
    result = run_cli(folder)
    assert_exit_3_one_line(result)
    assert "outside" in result.stderr
