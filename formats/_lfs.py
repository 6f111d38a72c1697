"""Git LFS pointer files: what a clone without `git lfs` (or a CI checkout without `lfs: true`) leaves in
place of a model. A pointer is a few lines of text (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md):

    version https://git-lfs.github.com/spec/v1
    oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393
    size 12345

Reading one as a model would report a corrupt header; it is recognised instead, and the message says how
to fetch the real file.
"""

from __future__ import annotations

import re
from pathlib import Path

from formats.errors import UnsupportedFormatError

#: How every pointer file starts (the spec requires `version` to be the first key).
POINTER_START = b"version https://git-lfs.github.com/spec/"
#: Pointers are under 200 bytes; the spec allows at most 1024.
MAX_POINTER_BYTES = 1024
_SIZE = re.compile(rb"^size (\d+)$", re.MULTILINE)


def is_pointer(head: bytes) -> bool:
    """Whether a file starting with `head` is a Git LFS pointer."""
    return head.startswith(POINTER_START)


def pointer_error(path: Path) -> UnsupportedFormatError:
    """The error for a pointer at `path`, with the size of the file it stands for when it says."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_POINTER_BYTES)
    except OSError:
        text = b""
    match = _SIZE.search(text)
    size = f" for a {int(match.group(1)):,}-byte file" if match else ""
    return UnsupportedFormatError(
        f"a Git LFS pointer{size}, not the model: the file was not fetched",
        path=path,
        hint="run `git lfs pull`; in GitHub Actions, check out with `lfs: true`",
    )
