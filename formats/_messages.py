"""How untrusted text from a model file appears in messages: escaped, on one line, and cut short.

Names, header values and exception texts come from the file; a hostile one can be a megabyte long or hold
escape characters. Every message that quotes one goes through these helpers, so a refusal stays one line
of readable text (PRODUCT.md: exit 3 with one clear line).
"""

from __future__ import annotations

import json

#: Longest piece of a name quoted in a message.
MAX_NAME_IN_MESSAGE = 120
#: Longest header value quoted in a message.
MAX_VALUE_IN_MESSAGE = 80
#: Longest piece of an exception's text quoted in a message.
MAX_ERROR_IN_MESSAGE = 160
#: Free-form metadata a file carries (index metadata, a checkpoint's scalar entries) kept for the report:
#: at most this many entries, each value cut to this many characters.
MAX_METADATA_ENTRIES = 64
MAX_METADATA_CHARS = 200


def quote_name(name: str) -> str:
    """A name as messages show it: repr-escaped (one line, no control characters) and shortened."""
    if len(name) > MAX_NAME_IN_MESSAGE:
        return repr(name[:MAX_NAME_IN_MESSAGE]) + f"... ({len(name)} characters)"
    return repr(name)


def short_value(value: object) -> str:
    """Compact JSON text of a header value (ASCII only), cut so a hostile value cannot flood stderr."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = type(value).__name__
    limit = MAX_VALUE_IN_MESSAGE
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """One line about an exception: its type and the start of its text, white space folded."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:MAX_ERROR_IN_MESSAGE]}" if text else type(exc).__name__
