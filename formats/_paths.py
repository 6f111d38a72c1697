"""Where a name written inside a model file may lead: the one rule for paths and links out of its folder.

Model files name other files: a sharded checkpoint's index names its shards, an ONNX tensor names its
external data file. A hostile file can name `/etc/passwd`, `../../secret` or a symbolic link that points
anywhere, and a reader that follows such a name reads (and reports on) a file the user never gave it.

The rule, applied by `resolve_confined` to every such name:
- an empty or absolute name (`/x`, `\\x`, `C:x`) is refused;
- a name whose `..` components climb above the folder, read as text, is refused (split at this
  platform's separators; a backslash is part of a POSIX file name);
- the name is resolved, links and all; the result must lie inside the model's folder;
- one exception: the Hugging Face hub cache. There every file of `models--<org>--<name>/snapshots/<rev>/`
  is a symbolic link to `../../blobs/<hash>` (huggingface_hub's `file_download`, "cache layout"). When
  the folder lies inside such a snapshot, a link that lands in that same repository's `blobs/` folder is
  followed: the cache made the link, not the checkpoint, and it cannot leave the cache's repository.

Anything else raises `UnsafeFileError`, naming the name and, for a link, where it leads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from formats.errors import UnsafeFileError

#: Folder names of the hub cache layout: `<HF_HUB_CACHE>/models--<org>--<name>/{snapshots,blobs}`.
HUB_REPOSITORY_PREFIX = "models--"
HUB_SNAPSHOTS = "snapshots"
HUB_BLOBS = "blobs"

_SEPARATORS = "|".join(re.escape(sep) for sep in sorted({"/", os.sep, os.altsep or "/"}))


def is_absolute_name(name: str) -> bool:
    """True for names that start at a root on any platform: `/x`, `\\x`, `C:x`, `C:\\x`."""
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":")


def climbs_out(name: str) -> bool:
    """True when the `..` components of `name`, read as text, climb above the folder it is relative to.

    Components are split at this platform's separators: on POSIX a backslash is an ordinary character,
    so `..\\x` is a file name there, which cannot leave the folder.
    """
    depth = 0
    for part in re.split(_SEPARATORS, name):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def hub_cache_repository(folder: Path) -> Path | None:
    """The `models--*` folder of the hub cache snapshot that holds `folder`, if it is inside one.

    `folder` must be `<repository>/snapshots/<rev>` or a folder below it, and the repository must have
    its `blobs/` folder; anything else is not the cache layout. The folder is resolved first, so a link to
    a snapshot (or a cache moved behind a link) is recognised; the snapshot folders themselves are real.
    """
    parts = folder.resolve().parts
    for position in range(len(parts) - 2, 0, -1):
        if parts[position] == HUB_SNAPSHOTS and parts[position - 1].startswith(HUB_REPOSITORY_PREFIX):
            repository = Path(*parts[:position])
            return repository if (repository / HUB_BLOBS).is_dir() else None
    return None


def _inside(candidate: Path, base: Path) -> bool:
    return candidate == base or base in candidate.parents


def resolve_confined(folder: Path, name: str, *, what: str, path: Path | None = None) -> Path:
    """Resolve `name`, as a model file names another file, against `folder` under the rule above.

    Args:
        folder: the model's folder (the parent of the file that holds the name, as the user gave it).
        name: the name as the file spells it.
        what: what the name is, for messages ("shard", "external data of tensor 'w'").
        path: the file that holds the name, for messages.

    Returns:
        The fully resolved path (links followed).

    Raises:
        UnsafeFileError: the name is absolute, climbs out of the folder, or resolves outside it (and
            outside the hub cache repository's blobs, where that exception applies).
    """
    if not name or is_absolute_name(name):
        raise UnsafeFileError(f"{what} names an absolute path {name!r}", path=path)
    if climbs_out(name):
        raise UnsafeFileError(f"{what} {name!r} points outside the model's folder", path=path)
    candidate = (folder / name).resolve()
    if _inside(candidate, folder.resolve()):
        return candidate
    repository = hub_cache_repository(folder)
    if repository is not None and _inside(candidate, (repository / HUB_BLOBS).resolve()):
        return candidate
    # The text of the name stays inside the folder, so only a link on the way can have led out of it.
    cache = f" and its Hugging Face cache repository {repository.name!r}" if repository is not None else ""
    raise UnsafeFileError(
        f"{what} {name!r} points outside the model's folder{cache} (a link to {os.fspath(candidate)!r})",
        path=path,
    )
