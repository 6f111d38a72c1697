"""Renderers: reports in, renderables or strings out. Nothing here prints."""

from __future__ import annotations

import math
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_text(text: str, limit: int = 200) -> str:
    """A name from a model file made safe for a terminal: control characters shown as escapes, length capped.

    Names come from untrusted files; escape sequences in them could rewrite the terminal.
    """
    cleaned = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def finite_or_none(value: float | int | None) -> float | int | None:
    """Numbers that cannot be computed are null in reports, never NaN or infinity."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
