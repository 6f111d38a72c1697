"""What the PATH arguments name: model files, sharded checkpoints, folders of models, quoted globs.

Decided before anything is read, from names and the first bytes of files only:

* a file is one model;
* a folder holding a sharded checkpoint (an `*.index.json`, or shards named `*-00001-of-00003.*`) is one
  model, as the readers assemble it; other model files beside the shards are named in a note, not read
  (a Hugging Face folder also holds `training_args.bin`, optimizer states and the like);
* any other folder holds models side by side: each file a reader recognises (by its name's ending or its
  magic bytes) is analysed on its own, in natural name order; a folder with none is passed on as it is,
  and the reader says why it cannot be read (exit 3);
* an argument that does not exist but holds `*`, `?` or `[` is a glob (a quoted one, or from a shell that
  does not expand them); a glob that matches nothing is a missing path.

A missing path is a usage error (exit 2) before anything is read, as the contract says for paths given,
even when other paths exist: a typo in a CI command must not pass as a smaller run.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import ModelNotFoundError

#: A shard of a HF checkpoint: `model-00001-of-00004.safetensors`, `pytorch_model-00002-of-00002.bin`
#: (any ending: the readers decide what a shard holds).
SHARD_NAME = re.compile(r"-\d+-of-\d+\.[A-Za-z0-9]+$")
#: The index a sharded checkpoint is described by.
INDEX_SUFFIX = ".index.json"
#: Files a Hugging Face Trainer folder holds that are pickles but not models.
NOT_MODELS = re.compile(
    r"^(training_args\.bin|optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state(_\d+)?\.pth|trainer_state\.json)$"
)
_GLOB_CHARS = re.compile(r"[*?\[]")
#: Largest index read to learn its shard names (real ones are well under 1 MB).
MAX_INDEX_READ = 16 << 20


@dataclass(frozen=True, slots=True)
class Targets:
    """The paths to analyse, in order, and notes on what a folder held besides."""

    paths: tuple[Path, ...]
    notes: tuple[str, ...] = ()


def _natural(name: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part
    )


def _is_model_file(path: Path) -> bool:
    """Whether a reader would take the file, by its name's ending or its first bytes."""
    from formats import FormatError, detect, registered_formats

    name = path.name.lower()
    if name.endswith(INDEX_SUFFIX) or NOT_MODELS.match(path.name):
        return False
    if any(name.endswith(suffix) for spec in registered_formats() for suffix in spec.suffixes):
        return True
    try:
        detect(path)
    except (FormatError, OSError):  # nothing recognised it, or it cannot even be sniffed
        return False
    return True


def _indexed_names(files: list[Path]) -> set[str]:
    """The shard names the folder's indexes list (a shard need not be named `-00001-of-00002`). An index
    that cannot be read here lists nothing: the reader will say what is wrong with it."""
    names: set[str] = set()
    for path in files:
        if not path.name.lower().endswith(INDEX_SUFFIX):
            continue
        try:
            if path.stat().st_size > MAX_INDEX_READ:
                continue
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        weight_map = document.get("weight_map") if isinstance(document, dict) else None
        if isinstance(weight_map, dict):
            names.update(str(shard) for shard in weight_map.values())
    return names


def folder_targets(folder: Path) -> Targets:
    """The models a folder holds (see the module's docstring)."""
    files = sorted((entry for entry in folder.iterdir() if entry.is_file()), key=lambda p: _natural(p.name))
    sharded = any(f.name.lower().endswith(INDEX_SUFFIX) or SHARD_NAME.search(f.name) for f in files)
    if sharded:
        listed = _indexed_names(files)
        others = [
            f for f in files if not SHARD_NAME.search(f.name) and f.name not in listed and _is_model_file(f)
        ]
        notes = (
            (
                f"{folder}: read as one sharded checkpoint; not read beside it: "
                + ", ".join(f.name for f in others[:5])
                + (f" and {len(others) - 5} more" if len(others) > 5 else "")
                + " (give them as paths to analyse them)",
            )
            if others
            else ()
        )
        return Targets((folder,), notes)
    models = [f for f in files if _is_model_file(f)]
    if not models:
        return Targets((folder,))
    return Targets(tuple(models))


def expand(arguments: Sequence[Path]) -> Targets:
    """Every PATH argument as the models it names.

    Raises:
        ModelNotFoundError: an argument names nothing (a usage error: nothing was read).
    """
    paths: list[Path] = []
    notes: list[str] = []
    missing: list[str] = []
    for argument in arguments:
        if argument.exists():
            if argument.is_dir():
                found = folder_targets(argument)
                paths.extend(found.paths)
                notes.extend(found.notes)
            else:
                paths.append(argument)
            continue
        text = str(argument)
        matches = sorted(glob.glob(text, recursive=True), key=_natural) if _GLOB_CHARS.search(text) else []
        if not matches:
            missing.append(text)
            continue
        for match in matches:
            found = folder_targets(Path(match)) if Path(match).is_dir() else Targets((Path(match),))
            paths.extend(found.paths)
            notes.extend(found.notes)
    if missing:
        what = "no such file or directory" if len(missing) == 1 else "no such files or directories"
        raise ModelNotFoundError(f"{what}: {', '.join(missing)}; nothing was read")
    unique = tuple(dict.fromkeys(paths))  # a file named twice (a glob and a path) is analysed once
    return Targets(unique, tuple(notes))
