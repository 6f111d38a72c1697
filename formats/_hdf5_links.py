"""HDF5 soft and external links under the one path rule (`formats._paths`), before weights are planned.

The worker (`formats._hdf5_worker`) never follows a soft or external link; it records each one with its
target. Here, in the parent, each becomes one of:

- an external link whose file resolves outside the model's folder (an absolute `/etc/passwd`, a `..`
  escape, a symbolic link out): `UnsafeFileError`, naming the link, as for ONNX external data and shards;
- an external link to a file inside the folder: not followed (its data belongs to that file, which can be
  given itself), listed with that reason: a warning, and a skipped tensor where a weight names it;
- a soft link that reaches a dataset of this file: a second name of that dataset, like a hard link
  (shared weights are analysed once, the other name listed as an alias);
- a soft link that reaches a group: a warning that its datasets are listed under the group's own path
  (the group is walked once, where the file's hard links put it);
- a soft link that reaches nothing (dangling, `..`, through an external link, a chain too long): not
  followed, listed with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formats._messages import quote_name
from formats._paths import resolve_confined

#: Longest chain of links followed from one name (soft links may point at soft links).
MAX_LINK_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Links:
    """What the links of one file became.

    Attributes:
        links: the catalogue's links, with soft links to datasets rewritten as hard links.
        unfollowed: links not followed, by path, with the reason (a skipped tensor where a weight names one).
        notes: one warning line per link not followed or not walked.
    """

    links: dict[str, Any]
    unfollowed: dict[str, str]
    notes: tuple[str, ...]


def _target_path(link_path: str, target: str) -> str | None:
    """The absolute path a soft link's target names; relative targets start at the link's group."""
    group = link_path.rsplit("/", 1)[0]
    full = target if target.startswith("/") else f"{group}/{target}"
    parts = [part for part in full.split("/") if part not in ("", ".")]
    if ".." in parts:  # HDF5 has no parent component; a name that tries one reaches nothing
        return None
    return "/" + "/".join(parts)


def _reach(path: str, catalogue: Mapping[str, Any], depth: int = 0) -> str | None:
    """The catalogue path (a group or dataset walked by the worker) that `path` reaches, or None."""
    groups: Mapping[str, Any] = catalogue.get("groups", {})
    datasets: Mapping[str, Any] = catalogue.get("datasets", {})
    links: Mapping[str, Any] = catalogue.get("links", {})
    if path in groups or path in datasets:
        return path
    parts = [part for part in path.split("/") if part]
    for end in range(1, len(parts) + 1):
        prefix = "/" + "/".join(parts[:end])
        link = links.get(prefix)
        if link is None:
            if prefix in groups:
                continue
            return None
        if depth >= MAX_LINK_DEPTH or not isinstance(link, Mapping):
            return None
        kind = link.get("type")
        if kind == "hard":
            base: str | None = str(link.get("target"))
        elif kind == "soft":
            base = _target_path(prefix, str(link.get("target")))
        else:  # an external link: the rest of the name lives in another file
            return None
        if base is None:
            return None
        rest = "/".join(parts[end:])
        return _reach(f"{base.rstrip('/')}/{rest}" if rest else base, catalogue, depth + 1)
    return None


def resolve_links(catalogue: Mapping[str, Any], folder: Path, path: Path) -> Links:
    """Apply the rule above to every link of the catalogue.

    Args:
        catalogue: the worker's catalogue.
        folder: the model's folder (the parent of the file as the user gave it).
        path: the file, for messages.

    Raises:
        UnsafeFileError: an external link names a file outside the folder.
    """
    datasets: Mapping[str, Any] = catalogue.get("datasets", {})
    links: dict[str, Any] = dict(catalogue.get("links", {}))
    unfollowed: dict[str, str] = {}
    notes: list[str] = []
    for link_path, link in sorted(links.items()):
        if not isinstance(link, Mapping):
            continue
        kind = link.get("type")
        target = str(link.get("target"))
        if kind == "external":
            file = str(link.get("file"))
            # Refused when it leads out of the folder, whether or not a weight names it: libhdf5 would
            # open that file as soon as anything walks the link.
            resolve_confined(folder, file, what=f"HDF5 external link {quote_name(link_path)}", path=path)
            reason = f"an external link to {quote_name(file)}:{quote_name(target)}, not followed"
            unfollowed[link_path] = reason
            notes.append(f"{quote_name(link_path)}: {reason} (that file can be analysed itself)")
        elif kind == "soft":
            reached = _reach(link_path, catalogue)
            if reached is None:
                reason = (
                    f"a soft link to {quote_name(target)}, which reaches nothing in this file; not followed"
                )
                unfollowed[link_path] = reason
                notes.append(f"{quote_name(link_path)}: {reason}")
            elif reached in datasets:
                links[link_path] = {"type": "hard", "target": reached}
            else:
                notes.append(
                    f"{quote_name(link_path)}: a soft link to the group {quote_name(reached)}, "
                    "whose datasets are listed under that path"
                )
    return Links(links, unfollowed, tuple(notes))
