"""Project settings from `[tool.wwinspect]` in the nearest pyproject.toml (command-line flags win).

Keys use the flag names without dashes in front (`fail-alpha-above = 6`); underscores work too. An
unknown key or a value of the wrong type is a usage error (exit code 2), so a typo never silently
disables a gate.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspector.errors import UsageError

#: Each key and the Python types its value may have.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "device": (str,),
    "format": (str,),
    "min-evals": (int,),
    "max-evals": (int,),
    "layer": (list, str),
    "exclude": (list, str),
    "fail-alpha-above": (int, float),
    "fail-alpha-below": (int, float),
    "fail-phase": (list, str),
    "exit-zero": (bool,),
    "normalize": (str,),
    "fit": (str,),
    "xmax": (int, float),
    "fix-fingers": (str,),
    "spike-rule": (str,),
    "randomize": (bool,),
    "seed": (int,),
    "mp-fit": (str,),
    "xmin-max": (int, float),
    "max-fingers": (int,),
    "finger-thresh": (int, float),
    "per-slice": (bool,),
    "show-skipped": (bool,),
}


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in `start` or its parents."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_config(pyproject: Path) -> dict[str, Any]:
    """The validated `[tool.wwinspect]` table of one pyproject.toml (empty when absent)."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {pyproject}: {exc}") from exc
    section = data.get("tool", {}).get("wwinspect", {})
    if not isinstance(section, Mapping):
        raise UsageError(f"{pyproject}: [tool.wwinspect] must be a table")
    return validate_config(section, pyproject)


def validate_config(section: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """Normalise key spelling and check every key and type."""
    config: dict[str, Any] = {}
    for raw_key, value in section.items():
        key = str(raw_key).replace("_", "-")
        allowed = CONFIG_KEYS.get(key)
        if allowed is None:
            known = ", ".join(sorted(CONFIG_KEYS))
            raise UsageError(f"{source}: unknown key {raw_key!r} in [tool.wwinspect] (known: {known})")
        if isinstance(value, bool) and bool not in allowed:
            raise UsageError(
                f"{source}: [tool.wwinspect] {raw_key} has the wrong type ({type(value).__name__})"
            )
        if not isinstance(value, allowed):
            raise UsageError(
                f"{source}: [tool.wwinspect] {raw_key} has the wrong type ({type(value).__name__})"
            )
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise UsageError(f"{source}: [tool.wwinspect] {raw_key} must be a list of strings")
        config[key] = value
    return config
