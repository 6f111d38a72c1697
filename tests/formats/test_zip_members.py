"""Zip archives (`.pt` checkpoints and `.keras` models) pass the same member checks (`formats._zip`)."""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from formats import open_model
from formats.errors import CorruptFileError, UnsafeFileError
from tests.conftest import FIXTURES, assert_refused

# A member each reader reads in place from the archive, at the offset its local header gives.
ARCHIVES = {
    "pt": (FIXTURES / "torch" / "state_dict.pt", "state_dict/data/0"),
    "keras": (FIXTURES / "keras" / "mlp.keras", "model.weights.h5"),
}


@pytest.fixture(params=sorted(ARCHIVES))
def archive(request: pytest.FixtureRequest) -> tuple[Path, str]:
    return ARCHIVES[request.param]


def _local_header_offset(data: bytes, member: str) -> int:
    position = 0
    while True:
        position = data.index(b"PK\x03\x04", position)
        (name_length,) = struct.unpack_from("<H", data, position + 26)
        if data[position + 30 : position + 30 + name_length] == member.encode():
            return position
        position += 4


def test_a_local_header_naming_another_member_is_refused(archive: tuple[Path, str], tmp_path: Path) -> None:
    source, member = archive
    data = bytearray(source.read_bytes())
    start = _local_header_offset(bytes(data), member) + 30
    renamed = member[:-1] + ("X" if member[-1] != "X" else "Y")  # same length, so every offset still holds
    data[start : start + len(member)] = renamed.encode()
    path = tmp_path / source.name
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as check:  # the central directory still names the member as before
        assert member in check.namelist()
    assert_refused(open_model, path, CorruptFileError, "named differently in its local header")


def test_a_declared_compression_ratio_no_compressor_reaches_is_refused(
    archive: tuple[Path, str], tmp_path: Path
) -> None:
    source, member = archive
    path = tmp_path / source.name
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            copy.writestr(info.filename, original.read(info))
    data = bytearray(path.read_bytes())
    start = data.index(b"PK\x01\x02")
    while True:  # the member's central directory entry: declare 4 GiB uncompressed
        (name_length,) = struct.unpack_from("<H", data, start + 28)
        extra, comment = struct.unpack_from("<HH", data, start + 30)
        if data[start + 46 : start + 46 + name_length].decode() == member:
            struct.pack_into("<I", data, start + 24, 0xFFFFFFF0)
            break
        start += 46 + name_length + extra + comment
    path.write_bytes(bytes(data))
    assert_refused(open_model, path, UnsafeFileError, "zip bomb")


def test_two_members_with_one_name_are_refused(archive: tuple[Path, str], tmp_path: Path) -> None:
    source, member = archive
    with zipfile.ZipFile(source) as original:
        members = [(info.filename, original.read(info)) for info in original.infolist()]
    path = tmp_path / source.name
    with zipfile.ZipFile(path, "w") as copy, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        for name, data in [*members, (member, dict(members)[member])]:
            copy.writestr(name, data)
    assert_refused(open_model, path, CorruptFileError, "two members named")


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt", "a\\b.txt"])
def test_a_member_name_that_escapes_is_refused_in_every_archive(
    archive: tuple[Path, str], tmp_path: Path, name: str
) -> None:
    source, _member = archive
    path = tmp_path / source.name
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for info in original.infolist():
            copy.writestr(info, original.read(info))
        copy.writestr(zipfile.ZipInfo(name), b"x")
    assert_refused(open_model, path, UnsafeFileError, "the archive holds a member named")
