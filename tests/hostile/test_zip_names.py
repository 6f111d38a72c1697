"""Zip member names: one rule for every archive a reader opens (`formats._zip.check_member_name`).

A name that would land outside the folder the archive is extracted to (absolute, drive letter, `..`),
a backslash (which the zip format forbids and Windows tools read as a separator) or a NUL byte is exit 3,
whether the archive is a PyTorch checkpoint or a `.keras` model. Before, a `.pt` holding such a name was
analysed while a `.keras` was refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.hostile.refusals import assert_cli_reads, assert_cli_refuses

ARCHIVES = {"pt": FIXTURES / "torch" / "state_dict.pt", "keras": FIXTURES / "keras" / "mlp.keras"}
EVIL_NAMES = {
    "../evil.txt": "climbs out",
    "assets/../../evil": "climbs out",
    "/etc/cron.d/evil": "absolute path",
    "C:/evil.txt": "absolute path",
    "a\\..\\..\\evil": "backslash",
    "\\evil": "backslash",
    "evil\x00.txt": "NUL byte",
}
# zipfile cuts names at a NUL when it writes them; the byte is patched in afterwards.
_NUL_STAND_IN = "\x01"


def _with_member(source: Path, target: Path, name: str) -> Path:
    written = name.replace("\x00", _NUL_STAND_IN)
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            copy.writestr(info, original.read(info))
        copy.writestr(zipfile.ZipInfo(written), b"owned")
    if written != name:
        target.write_bytes(target.read_bytes().replace(written.encode(), name.encode()))
    return target


@pytest.mark.parametrize("kind", sorted(ARCHIVES))
@pytest.mark.parametrize("name", sorted(EVIL_NAMES), ids=ascii)
def test_an_escaping_member_name_is_exit_3_in_every_archive(tmp_path: Path, kind: str, name: str) -> None:
    source = ARCHIVES[kind]
    path = _with_member(source, tmp_path / source.name, name)
    assert_cli_refuses(path, words=("the archive holds a member named", EVIL_NAMES[name]))
    # the one line is readable text: the NUL and backslashes are escaped, never printed raw
    assert "\x00" not in assert_cli_refuses(path).stderr


@pytest.mark.parametrize("kind", sorted(ARCHIVES))
def test_an_honest_extra_member_is_still_read(tmp_path: Path, kind: str) -> None:
    source = ARCHIVES[kind]
    assert_cli_reads(_with_member(source, tmp_path / source.name, "extra/notes.txt"))
