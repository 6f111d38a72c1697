"""Which reader opens a path: magic bytes first, then the suffix; directories for sharded checkpoints.

Each reader module registers one `FormatSpec` at import time (see the bottom of every `*_reader.py`).
`formats/__init__.py` only *declares* the reader modules, in detection order; a module is imported the
first time detection needs it, so opening a safetensors file never pays for the ONNX, HDF5, PyTorch and
GGUF readers (together about 0.2 s of start-up).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from formats._binary import read_head
from formats._lfs import is_pointer, pointer_error
from formats.errors import UnknownFormatError
from formats.types import Reader

#: Bytes read from the start of a file for sniffing.
HEAD_SIZE = 64


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """How to recognise and open one format.

    Attributes:
        name: the format's name in messages ("safetensors").
        suffixes: file name endings that suggest the format, lower case with the dot.
        sniff: given the first `HEAD_SIZE` bytes and the path, says whether the file is of this format.
        opener: opens the path and returns a reader; it validates headers and raises `FormatError`.
        claims_directory: for directory inputs, says whether the directory is a checkpoint of this format.
    """

    name: str
    suffixes: frozenset[str]
    sniff: Callable[[bytes, Path], bool]
    opener: Callable[[Path], Reader]
    claims_directory: Callable[[Path], bool] | None = None


_SPECS: list[FormatSpec] = []
_READER_MODULES: list[str] = []


def register(spec: FormatSpec) -> None:
    """Add a format; later registrations of the same name replace the earlier one."""
    _SPECS[:] = [existing for existing in _SPECS if existing.name != spec.name]
    _SPECS.append(spec)


def declare(module: str) -> None:
    """Name a reader module to import when detection reaches it (declaration order is detection order)."""
    if module not in _READER_MODULES:
        _READER_MODULES.append(module)


def _specs_in_detection_order() -> Iterator[FormatSpec]:
    """Specs of the declared modules in order, importing each module only when it is reached."""
    seen: set[str] = set()
    for module in _READER_MODULES:
        importlib.import_module(module)
        for spec in _SPECS:
            if spec.opener.__module__ == module and spec.name not in seen:
                seen.add(spec.name)
                yield spec
    for spec in _SPECS:  # formats registered by modules imported directly, not declared
        if spec.name not in seen:
            yield spec


def registered_formats() -> tuple[FormatSpec, ...]:
    """Every format, in detection order (imports every declared reader)."""
    return tuple(_specs_in_detection_order())


def detect(path: Path) -> FormatSpec:
    """Return the spec that should open `path`.

    Raises:
        UnknownFormatError: nothing recognised the file or directory; the message lists what was tried.
        UnsupportedFormatError: the file is a Git LFS pointer, not the model it stands for.
        CorruptFileError: the file exists but cannot be read at all.
    """
    if path.is_dir():
        for spec in _specs_in_detection_order():
            if spec.claims_directory is not None and spec.claims_directory(path):
                return spec
        message = f"no model file and no sharded checkpoint in this folder (tried {_tried()})"
        raise UnknownFormatError(message, path=path)
    head = read_head(path, HEAD_SIZE)
    if is_pointer(head):
        raise pointer_error(path)
    for spec in _specs_in_detection_order():
        if spec.sniff(head, path):
            return spec
    suffix = "".join(path.suffixes[-2:]).lower()
    for spec in _specs_in_detection_order():
        if any(suffix.endswith(candidate) for candidate in spec.suffixes):
            return spec
    if not head:
        raise UnknownFormatError("the file is empty", path=path)
    raise UnknownFormatError(f"not a model file wwinspect can read (tried {_tried()})", path=path)


def _tried() -> str:
    return ", ".join(spec.name for spec in registered_formats())


def open_model(path: Path, *, strict_pickles: bool | None = None) -> Reader:
    """Detect the format of `path` and open it.

    `strict_pickles` refuses pickles that name globals outside the allow-list, not only dangerous ones
    (`formats._pickle_policy`); it holds for every file the open reads (shards, archives); None keeps the
    choice of an open this one is part of.
    """
    from formats._pickle_policy import strict_pickles as strictness

    with strictness(strict_pickles):
        return detect(path).opener(path)
