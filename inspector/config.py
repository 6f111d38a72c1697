"""Run settings from command-line flags and `[tool.wwinspect]` in the nearest pyproject.toml (flags win).

Keys use the flag names without dashes in front (`fail-alpha-above = 6`); underscores work too. An
unknown key or a value of the wrong type, outside its bounds or not among its choices is a usage error
(exit code 2), so a typo never silently disables a gate. Which keys exist, their types, bounds and defaults
all come from the `setting(...)` fields of `RunSettings`, `AnalysisOptions` and `GateRules` (`SETTINGS`).

Nothing here imports a renderer: building the settings costs a table lookup, not the report's imports.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from inspector.errors import UsageError
from inspector.gate import GateRules
from inspector.options import AnalysisOptions
from inspector.settings import SettingSpec, collect, setting


class OutputFormat(str, Enum):
    """Report formats of `--format`."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    GITHUB = "github"


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything one run needs besides its paths."""

    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    rules: GateRules = field(default_factory=GateRules)
    output_format: OutputFormat = setting(
        OutputFormat.TABLE,
        key="format",
        short="-f",
        help="Report format.",
        shortcuts=(("--json", OutputFormat.JSON),),
    )
    output: Path | None = setting(
        None, short="-o", metavar="FILE", help="Write the report to FILE instead of stdout.", in_config=False
    )
    show_skipped: bool = setting(False, help="List skipped tensors in the table.")
    jobs: int = setting(
        0,
        short="-j",
        metavar="N",
        min=0,
        help="Worker processes per file; 0: one per CPU. Results do not depend on it.",
    )


#: Every setting, in the order `--help` lists them: output, analysis, gate, run.
SETTINGS: tuple[SettingSpec, ...] = collect(RunSettings, AnalysisOptions, GateRules)

_BY_KEY: dict[str, SettingSpec] = {spec.key: spec for spec in SETTINGS if spec.meta.in_config}


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in `start` or its parents."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_config(pyproject: Path) -> dict[str, Any]:
    """The validated `[tool.wwinspect]` table of one pyproject.toml (empty when absent), values typed."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {pyproject}: {exc}") from exc
    section = data.get("tool", {}).get("wwinspect", {})
    if not isinstance(section, Mapping):
        raise UsageError(f"{pyproject}: [tool.wwinspect] must be a table")
    return validate_config(section, pyproject)


def validate_config(section: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """Normalise key spelling, check every key and value, and convert the values to the settings' types."""
    config: dict[str, Any] = {}
    for raw_key, value in section.items():
        key = str(raw_key).replace("_", "-")
        spec = _BY_KEY.get(key)
        if spec is None:
            known = ", ".join(sorted(_BY_KEY))
            raise UsageError(f"{source}: unknown key {raw_key!r} in [tool.wwinspect] (known: {known})")
        try:
            config[key] = spec.parse(value)
        except ValueError as exc:
            raise UsageError(f"{source}: [tool.wwinspect] {raw_key} {exc}") from None
    return config


def resolve_run(flags: Mapping[str, Any], config: Mapping[str, Any]) -> RunSettings:
    """Flags given on the command line (keyed like the config, values typed) over the config over defaults.

    Raises:
        UsageError: settings that are each valid but contradict one another.
    """
    fields: dict[type, dict[str, Any]] = {}
    for spec in SETTINGS:
        value = flags[spec.key] if spec.key in flags else config.get(spec.key, spec.default)
        fields.setdefault(spec.owner, {})[spec.field] = spec.to_field(value)
    options = AnalysisOptions(**fields.get(AnalysisOptions, {}))
    if options.max_evals is not None and options.max_evals < options.min_evals:
        raise UsageError(f"--max-evals {options.max_evals} is below --min-evals {options.min_evals}")

    rules = GateRules(**fields.get(GateRules, {}))
    return RunSettings(options=options, rules=rules, **fields.get(RunSettings, {}))
