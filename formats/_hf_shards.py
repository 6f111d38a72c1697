"""Hugging Face sharded checkpoints: the index, its shards, and the rules every sharded format shares.

`transformers` splits a large checkpoint into shards (`model-00001-of-00004.safetensors`,
`pytorch_model-00001-of-00002.bin`) and writes an index beside them (`model.safetensors.index.json`,
`pytorch_model.bin.index.json`): `{"metadata": {...}, "weight_map": {tensor name: shard file name}}`.
The format of the shards differs; the rules do not, and they live here:

- the index is at most `MAX_INDEX_BYTES` and strict JSON (no repeated keys, no NaN; `formats._json`);
- its `weight_map` maps names to file names, and every shard is resolved with the one path rule
  (`formats._paths.resolve_confined`: inside the folder, or the hub cache's `blobs/`), and must exist;
- a tensor held by two shards is refused (two tools would read different values for one name);
- every tensor the index places in a shard must be in that shard;
- tensors come in the order the index lists them; tensors in the shards that the index does not name
  are listed last, with a warning;
- the checkpoint's metadata is the index's `metadata`, then the number of shards, then whatever the
  shards' own metadata adds.

Readers pass what their shards hold (`ShardContents`: each tensor's names and the reader's own item for
it); `assemble` applies the rules and returns the items in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from formats._json import parse_strict_json
from formats._messages import MAX_METADATA_CHARS, MAX_METADATA_ENTRIES, quote_name, short_value
from formats._paths import resolve_confined
from formats.errors import CorruptFileError, UnsupportedFormatError

#: Largest index we parse (the smaller of the caps the two readers had): real ones are well under 1 MB,
#: even for trillion-parameter models, because they list names, not values.
MAX_INDEX_BYTES = 64 << 20
#: Most JSON objects an index may hold: one per tensor would already be absurd (the map is one object).
MAX_INDEX_OBJECTS = 1_000_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ShardIndex:
    """A parsed and checked index file.

    Attributes:
        path: the index file (as the user gave it, links not resolved: its folder is the checkpoint's).
        weight_map: tensor name to shard name, in the order the JSON lists them.
        metadata: the index's `metadata`, stringified and capped.
    """

    path: Path
    weight_map: dict[str, str]
    metadata: dict[str, str]

    @property
    def shard_names(self) -> list[str]:
        """Shard names in the order the index first names each."""
        return list(dict.fromkeys(self.weight_map.values()))


@dataclass(frozen=True, slots=True)
class ShardContents(Generic[T]):
    """What one shard holds, as its reader describes it.

    Attributes:
        items: per tensor, its names (the first is its own, the rest aliases of the same values) and the
            reader's item for it, in the shard's order.
        metadata: the shard's own metadata.
        warnings: what the shard's reader wants the user to hear about.
    """

    items: Sequence[tuple[tuple[str, ...], T]]
    metadata: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sharded(Generic[T]):
    """A whole checkpoint: the readers' items in order, its metadata and warnings."""

    items: list[T]
    metadata: dict[str, str]
    warnings: tuple[str, ...]


def stringify_metadata(raw: Mapping[Any, Any]) -> dict[str, str]:
    """Untrusted metadata as text: the first `MAX_METADATA_ENTRIES` entries, values cut short."""
    text: dict[str, str] = {}
    for key, value in list(raw.items())[:MAX_METADATA_ENTRIES]:
        shown = value if isinstance(value, str) else short_value(value)
        text[str(key)] = shown[:MAX_METADATA_CHARS]
    return text


def read_index(index_path: Path) -> ShardIndex:
    """Parse and check an index file (size, strict JSON, a weight_map of names to file names)."""
    try:
        size = index_path.stat().st_size
        if size > MAX_INDEX_BYTES:
            raise CorruptFileError(
                f"index is {size} bytes, more than the limit {MAX_INDEX_BYTES}", path=index_path
            )
        raw = index_path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"cannot read the index: {exc.strerror or exc}", path=index_path) from None
    document = parse_strict_json(raw, what="index", path=index_path, max_objects=MAX_INDEX_OBJECTS)
    if not isinstance(document, dict) or not isinstance(document.get("weight_map"), dict):
        raise CorruptFileError("index has no weight_map object", path=index_path)
    weight_map: dict[str, Any] = document["weight_map"]
    bad = next((name for name, shard in weight_map.items() if not isinstance(shard, str)), None)
    if bad is not None:
        raise CorruptFileError(
            f"index maps tensor {quote_name(bad)} to something that is not a file name", path=index_path
        )
    raw_metadata = document.get("metadata")
    metadata = stringify_metadata(raw_metadata) if isinstance(raw_metadata, dict) else {}
    return ShardIndex(index_path, dict(weight_map), metadata)


def find_index(folder: Path, suffix: str, label: str) -> Path | None:
    """The one `*<suffix>` index in `folder`, or None; more than one is ambiguous and refused."""
    indexes = sorted(path for path in folder.glob("*" + suffix) if not path.name.startswith("."))
    if len(indexes) > 1:
        listed = ", ".join(quote_name(path.name) for path in indexes[:4])
        raise UnsupportedFormatError(
            f"the folder holds {len(indexes)} {label} index files ({listed}); pass the one to read",
            path=folder,
        )
    return indexes[0] if indexes else None


def open_shards(
    root: Path,
    names: Sequence[str],
    index: ShardIndex | None,
    read_shard: Callable[[Path, str], ShardContents[T]],
) -> Sharded[T]:
    """Resolve, read and assemble the shards of one checkpoint.

    Args:
        root: the index file or the folder, for messages; the shards' folder is its own or its parent.
        names: shard names relative to the folder, in the order their tensors come without an index.
        index: the parsed index; None for a folder of shards without one (shard order, then each
            shard's own order).
        read_shard: the format's reader of one shard, given its resolved path and its name as spelled.
    """
    folder = root if root.is_dir() else root.parent
    resolved: dict[str, Path] = {}
    shards: dict[Path, tuple[str, ShardContents[T]]] = {}
    for name in names:
        shard_path = resolve_confined(folder, name, what="shard", path=root)
        resolved[name] = shard_path
        if shard_path in shards:
            continue  # two spellings of one file
        if not shard_path.is_file():
            raise CorruptFileError(
                f"shard {quote_name(name)} named by the checkpoint does not exist", path=root
            )
        shards[shard_path] = (name, read_shard(shard_path, name))
    return _assemble(root, shards, resolved, index)


def _assemble(
    root: Path,
    shards: Mapping[Path, tuple[str, ShardContents[T]]],
    resolved: Mapping[str, Path],
    index: ShardIndex | None,
) -> Sharded[T]:
    """Apply the shared rules (module docstring) to what the shards hold."""
    holder: dict[str, tuple[Path, int]] = {}  # every name (own and alias) -> (shard, item position)
    every: list[tuple[Path, int]] = []
    for shard_path, (label, contents) in shards.items():
        for position, (item_names, _item) in enumerate(contents.items):
            for name in item_names:
                if name in holder and holder[name][0] != shard_path:
                    first = shards[holder[name][0]][0]
                    raise CorruptFileError(
                        f"tensor {quote_name(name)} appears in both {quote_name(first)} "
                        f"and {quote_name(label)}",
                        path=root,
                    )
                holder.setdefault(name, (shard_path, position))
            every.append((shard_path, position))
    # One line per distinct warning: every shard of a checkpoint names the same unknown classes.
    warnings = list(
        dict.fromkeys(warning for _label, contents in shards.values() for warning in contents.warnings)
    )
    if index is None:
        order = every
    else:
        order = []
        for name, shard_name in index.weight_map.items():
            where = holder.get(name)
            if where is None or where[0] != resolved[shard_name]:
                raise CorruptFileError(
                    f"the index puts tensor {quote_name(name)} in {quote_name(shard_name)}, "
                    "which does not hold it",
                    path=root,
                )
            order.append(where)
        order = list(dict.fromkeys(order))  # aliases of one tensor: listed where the index first names it
        listed = set(order)
        unindexed = [where for where in every if where not in listed]
        if unindexed:
            order.extend(unindexed)
            warnings.append(f"{len(unindexed)} tensors in the shards are missing from the index; listed last")
    metadata = dict(index.metadata) if index is not None else {}
    metadata.setdefault("shards", str(len(shards)))
    for _label, contents in shards.values():
        for key, value in contents.metadata.items():
            metadata.setdefault(key, value)
    items = [shards[shard_path][1].items[position][1] for shard_path, position in order]
    return Sharded(items, metadata, tuple(warnings))
