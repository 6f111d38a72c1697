"""Zip archives read in place (PyTorch checkpoints, `.keras` models): the checks every member passes.

Readers never extract. They list the members from the central directory, check each one's declared
sizes against the file, read small members with a bound, and read large stored (uncompressed) members
straight from the file at the offset their local header gives. A zip holds each member's name twice (the
central directory and the local header before the bytes); tools that trust different copies disagree
about what an archive holds, so the two must agree (APPNOTE.TXT 4.3.7 and 4.3.12).
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

from formats._binary import read_exact
from formats._decode_budget import Budget
from formats._messages import quote_name
from formats._paths import is_absolute_name
from formats.errors import CorruptFileError, UnsafeFileError, UnsupportedFormatError

#: Signature of a local file header, which is also how every non-empty zip file starts.
ZIP_MAGIC = b"PK\x03\x04"
#: Signature of the end-of-central-directory record: how an empty zip file starts.
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
#: Most members an archive may list (a 100k-tensor checkpoint has about 100k).
MAX_ZIP_MEMBERS = 2_000_000

# The local file header (APPNOTE.TXT 4.3.7): signature, version, flags, method, time, date, CRC-32,
# compressed size, uncompressed size, name length, extra field length; the name follows.
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
#: Errors zipfile raises for damaged archives and members.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError)


def first_member_name(head: bytes) -> bytes | None:
    """The name in the local header that starts `head` (a zip file's first bytes), if `head` holds it."""
    if not head.startswith(ZIP_MAGIC) or len(head) < _LOCAL_HEADER.size:
        return None
    *_fields, name_length, _extra_length = _LOCAL_HEADER.unpack_from(head)
    return head[_LOCAL_HEADER.size : _LOCAL_HEADER.size + name_length]


def open_archive(path: Path, *, what: str = "zip archive") -> zipfile.ZipFile:
    """Open `path` as a zip, turning zipfile's errors into one `CorruptFileError` line."""
    try:
        return zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise CorruptFileError(f"not a readable {what} ({exc})", path=path) from exc


def checked_members(archive: zipfile.ZipFile, file_size: int, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by name, after refusing what no honest archive holds.

    Refused: more than `MAX_ZIP_MEMBERS` members, names that escape the archive's folder
    (`check_member_name`), two members with one name (different tools would read different ones),
    encrypted members, stored members whose two sizes differ, compressed members that declare more than
    `formats._decode_budget` allows for their stored bytes (a zip bomb), and members that run past the end
    of the file.
    """
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise CorruptFileError(f"the zip lists {len(infos)} members, more than {MAX_ZIP_MEMBERS}", path=path)
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        check_member_name(info.orig_filename, path)  # as stored: zipfile cuts `filename` at a NUL
        if info.filename in members:
            raise CorruptFileError(f"the archive holds two members named {info.filename!r}", path=path)
        _check_sizes(info, file_size, path)
        members[info.filename] = info
    return members


def _check_sizes(info: zipfile.ZipInfo, file_size: int, path: Path) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise UnsupportedFormatError(f"zip member {name!r} is encrypted", path=path)
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise CorruptFileError(
                f"zip member {name!r} is stored uncompressed but declares {info.file_size} bytes "
                f"and {info.compress_size} compressed bytes",
                path=path,
            )
    else:
        # zipfile's reader stops at the declared size (it never yields more), so bounding the declared
        # size by the stored bytes bounds every later read of the member, chunk by chunk.
        Budget(f"zip member {name!r}", info.compress_size, path, "zip bomb").check_declared(info.file_size)
    if info.header_offset + info.compress_size > file_size:
        raise CorruptFileError(
            f"zip member {name!r} declares {info.compress_size} bytes at {info.header_offset:#x}, "
            f"past the end of the {file_size}-byte file",
            path=path,
        )


def check_member_name(name: str, path: Path) -> None:
    """Refuse a member name that would land outside a folder the archive is extracted to: the one rule
    for member names of every archive a reader opens (`.pt`, `.keras`), applied by `checked_members`.

    Refused, as exit 3: absolute names and drive letters (`/x`, `\\x`, `C:x`), any `..` component, NUL
    bytes (the "zip slip" names), and backslashes, which APPNOTE.TXT 4.4.17 forbids (all separators are
    `/`) and which Windows tools read as separators (`..\\x`). No reader extracts, but the file's own
    loader may (Keras extracts `.keras` archives), and no honest writer makes such a name.
    """
    if "\x00" in name:
        problem = "holds a NUL byte"
    elif "\\" in name:
        problem = "uses a backslash, which zip names never hold (their separator is '/')"
    elif is_absolute_name(name):
        problem = "is an absolute path"
    elif ".." in name.split("/"):
        problem = "climbs out of the archive's folder with '..'"
    else:
        return
    raise UnsafeFileError(f"the archive holds a member named {quote_name(name)}, which {problem}", path=path)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path) -> bytes:
    """A member's bytes, decompressed; refused when it declares or inflates to more than `limit` bytes."""
    if info.file_size > limit:
        raise CorruptFileError(
            f"{info.filename} declares {info.file_size} bytes, more than the limit {limit}", path=path
        )
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except ZIP_ERRORS as exc:
        raise CorruptFileError(f"cannot read {info.filename} from the archive ({exc})", path=path) from None
    if len(data) > limit:
        raise CorruptFileError(f"{info.filename} decompresses to more than {limit} bytes", path=path)
    return data


def stored_offset(handle: BinaryIO, info: zipfile.ZipInfo, file_size: int, path: Path) -> int:
    """Absolute offset of a stored member's bytes, from its local header, checked against the central one.

    Raises:
        CorruptFileError: no local header at the declared offset, a local name that differs from the
            central directory's, a member that is not stored as it is, or bytes past the end of the file.
    """
    what = f"the zip header of {info.filename!r}"
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise CorruptFileError(f"zip member {info.filename!r} is not stored uncompressed", path=path)
    handle.seek(info.header_offset)
    raw = read_exact(handle, _LOCAL_HEADER.size, what=what, path=path)
    signature, *_rest, name_length, extra_length = _LOCAL_HEADER.unpack(raw)
    if signature != ZIP_MAGIC:
        raise CorruptFileError(
            f"zip member {info.filename!r} has no local header at {info.header_offset:#x}", path=path
        )
    local_name = read_exact(handle, name_length, what=what, path=path)
    # zipfile decodes names as UTF-8 when flag bit 11 says so and as cp437 otherwise; accept either.
    if local_name.decode("utf-8", "replace") != info.filename and local_name.decode("cp437") != info.filename:
        raise CorruptFileError(
            f"zip member {info.filename!r} is named differently in its local header", path=path
        )
    offset: int = info.header_offset + _LOCAL_HEADER.size + int(name_length) + int(extra_length)
    if offset + info.file_size > file_size:
        raise CorruptFileError(
            f"zip member {info.filename!r} ({info.file_size} bytes at {offset:#x}) runs past the end of "
            f"the {file_size}-byte file",
            path=path,
        )
    return offset
