"""Hostile variants of every fixture file, whatever its format: truncated files exit 3 with one line, and
corrupted bytes never produce a traceback or an internal error (exit 5), only a report or exit 3.

The per-format hostile suites (tests/formats/test_*_hostile.py) build targeted attacks; this one sweeps
every real fixture so a new reader or fixture is covered without writing anything.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, load_manifests, run_cli

SINGLE_FILES = sorted(
    {
        manifest["fixture"]
        for manifest in load_manifests()
        if (FIXTURES / manifest["fixture"]).is_file() and not manifest["fixture"].endswith(".json")
    }
)


def _copy(tmp_path: Path, fixture: str, data: bytes) -> Path:
    source = FIXTURES / fixture
    target = tmp_path / source.name
    target.write_bytes(data)
    for sibling in source.parent.iterdir():  # external-data files travel with their model
        if sibling != source and sibling.suffix in (".data", ".bin") and source.suffix == ".onnx":
            (tmp_path / sibling.name).write_bytes(sibling.read_bytes())
    return target


def _one_clean_line(result: Any) -> None:
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("fixture", SINGLE_FILES)
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_fixture_exits_3(tmp_path: Path, fixture: str, keep: float) -> None:
    data = (FIXTURES / fixture).read_bytes()
    truncated = _copy(tmp_path, fixture, data[: int(len(data) * keep)])
    result = run_cli(truncated, "--format", "json")
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    _one_clean_line(result)


@pytest.mark.parametrize("fixture", SINGLE_FILES)
def test_corrupted_bytes_never_crash(tmp_path: Path, fixture: str) -> None:
    data = bytearray((FIXTURES / fixture).read_bytes())
    rng = random.Random(fixture)
    for round_index in range(3):
        mutated = bytearray(data)
        head = min(len(mutated), 4096)  # headers, tables and pickles live near the start
        for _ in range(8):
            mutated[rng.randrange(head)] = rng.randrange(256)
        folder = tmp_path / str(round_index)
        folder.mkdir()
        target = _copy(folder, fixture, bytes(mutated))
        result = run_cli(target, "--format", "json")
        assert result.exit_code in (0, 1, 3, 4), (round_index, result.exit_code, result.stderr)
        assert "Traceback" not in result.stderr
        if result.exit_code == 3:
            _one_clean_line(result)
