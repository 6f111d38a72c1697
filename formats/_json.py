"""Strict parsing of untrusted JSON (safetensors headers, sharded-checkpoint indexes).

Python's `json` accepts what the JSON standard (RFC 8259) does not and what other parsers of the same
file refuse: repeated keys (it keeps the last, so a file could show one tensor to an auditor and another
to a loader) and the bare words NaN and Infinity. The reference safetensors parser (serde_json) refuses
both, and so do we. An object count cap keeps a small file from building millions of dicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from formats._messages import quote_name
from formats.errors import CorruptFileError


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _TooManyObjectsError(Exception):
    pass


class _NotANumberError(Exception):
    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word


def _strict_loads(text: str, *, max_objects: int) -> Any:
    """`json.loads` refusing repeated keys at any depth, NaN/Infinity, and more than `max_objects` objects."""
    count = 0

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal count
        count += 1
        if count > max_objects:
            raise _TooManyObjectsError
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _DuplicateKeyError(key)
            result[key] = value
        return result

    def refuse_constant(word: str) -> Any:
        raise _NotANumberError(word)

    return json.loads(text, object_pairs_hook=build, parse_constant=refuse_constant)


def parse_strict_json(raw: bytes, *, what: str, path: Path, max_objects: int) -> Any:
    """Decode and parse untrusted JSON, turning every failure into one `CorruptFileError` line.

    Args:
        raw: the bytes as stored.
        what: what they are, for messages ("header", "index").
        path: the file, for messages.
        max_objects: most JSON objects (dicts) the text may hold.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{what} is not valid UTF-8 (byte {exc.start})", path=path) from None
    try:
        return _strict_loads(text, max_objects=max_objects)
    except _DuplicateKeyError as exc:
        raise CorruptFileError(f"{what} repeats the key {quote_name(exc.key)}", path=path) from None
    except _TooManyObjectsError:
        raise CorruptFileError(f"{what} has more than {max_objects} JSON objects", path=path) from None
    except _NotANumberError as exc:
        raise CorruptFileError(
            f"{what} is not valid JSON: {exc.word} is not a JSON number", path=path
        ) from None
    except json.JSONDecodeError as exc:
        raise CorruptFileError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path=path
        ) from None
    except (ValueError, RecursionError) as exc:
        # ValueError: integers beyond Python's digit limit; RecursionError: absurdly deep nesting.
        reason = (
            "nested too deeply" if isinstance(exc, RecursionError) else "holds a number too large to parse"
        )
        raise CorruptFileError(f"{what} is not usable JSON: it {reason}", path=path) from None
