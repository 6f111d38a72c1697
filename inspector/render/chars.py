"""The characters a human report may use, and the small text primitives every renderer shares: how a
number, a count and a name from a file are written, and the ESD sparkline.

Decided once here so the table, Markdown, HTML, the plots and the verbs' reports write a value the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from inspector.render import safe_text


@dataclass(frozen=True, slots=True)
class Glyphs:
    """The characters a report may use: box drawing and Greek on a UTF-8 stream, plain ASCII elsewhere."""

    ascii: bool
    blocks: str  # sparkline levels, blocks[0] for an empty bin
    times: str  # between the dimensions of a shape
    ellipsis: str  # where a name was cut
    none: str  # a number that could not be computed
    dot: str  # between the items of a list on one line
    lam: str  # the eigenvalue symbol in headers


UNICODE = Glyphs(ascii=False, blocks=" ▁▂▃▄▅▆▇█", times="×", ellipsis="…", none="–", dot=" · ", lam="λ")
ASCII = Glyphs(ascii=True, blocks=" .:-=+*#%@", times="x", ellipsis="...", none="-", dot=" | ", lam="lambda")

# What the Unicode report prints besides names: if an encoding cannot show all of it, the report is ASCII.
_UNICODE_PROBE = UNICODE.blocks + UNICODE.times + UNICODE.ellipsis + UNICODE.none + "·λα━─│┃╇┡┩"


def glyphs_for_encoding(encoding: str | None) -> Glyphs:
    """UNICODE when `encoding` can show every character the report uses, else ASCII (cp1252, latin-1...).

    None (an encoding the stream does not state) is taken as ASCII: a report must never fail to print.
    """
    if not encoding:
        return ASCII
    try:
        _UNICODE_PROBE.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return UNICODE


def display_text(text: str, glyphs: Glyphs, limit: int = 200) -> str:
    """A string from a model file, safe for the terminal and, in ASCII mode, made of ASCII only."""
    cleaned = safe_text(text, limit)
    if glyphs.ascii:
        cleaned = cleaned.replace("…", "...").encode("ascii", "backslashreplace").decode("ascii")
    return cleaned


def sparkline(counts: Sequence[int], glyphs: Glyphs = UNICODE) -> str:
    """The ESD histogram as one character per bin, scaled to the square root of the counts so that a thin
    tail stays visible next to the bulk."""
    if not counts or max(counts) == 0:
        return ""
    peak = max(counts) ** 0.5
    levels = len(glyphs.blocks) - 1
    return "".join(
        glyphs.blocks[0 if count == 0 else max(1, round(levels * count**0.5 / peak))] for count in counts
    )


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """'1 layer', '3 layers' (and '1 eigenvalue', never '1 eigenvalues')."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def number(value: float | int | None, digits: int = 2, glyphs: Glyphs = UNICODE) -> str:
    """A metric for a table cell: fixed decimals, scientific notation only for very large or small values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return glyphs.none
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
        return f"{value:.{digits}e}"
    return f"{value:.{digits}f}"
