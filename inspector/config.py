"""Run settings from command-line flags and `[tool.wwinspect]` in the nearest pyproject.toml (flags win).

Keys use the flag names without dashes in front (`fail-alpha-above = 6`); underscores work too. An
unknown key or a value of the wrong type, outside its bounds or not among its choices is a usage error
(exit code 2), so a typo never silently disables a gate. Which keys exist, their types, bounds and defaults
all come from the `setting(...)` fields of `RunSettings`, `AnalysisOptions` and `GateRules` (`SETTINGS`).

Nothing here imports a renderer: building the settings costs a table lookup, not the report's imports.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
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
    JSONL = "jsonl"
    CSV = "csv"
    MARKDOWN = "markdown"
    GITHUB = "github"
    SARIF = "sarif"
    HTML = "html"


#: `-o FILE` picks the format from the file name's ending unless `--format` is given (longest first: a
#: `.sarif.json` is SARIF). Any other ending keeps the format (the table, without colour).
SUFFIX_FORMATS: tuple[tuple[str, OutputFormat], ...] = (
    (".sarif.json", OutputFormat.SARIF),
    (".sarif", OutputFormat.SARIF),
    (".jsonl", OutputFormat.JSONL),
    (".ndjson", OutputFormat.JSONL),
    (".json", OutputFormat.JSON),
    (".csv", OutputFormat.CSV),
    (".markdown", OutputFormat.MARKDOWN),
    (".md", OutputFormat.MARKDOWN),
    (".html", OutputFormat.HTML),
    (".htm", OutputFormat.HTML),
)


def format_for_suffix(path: Path) -> OutputFormat | None:
    """The format a file name asks for, or None when its ending names none."""
    name = path.name.lower()
    return next((fmt for suffix, fmt in SUFFIX_FORMATS if name.endswith(suffix)), None)


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything one run needs besides its paths."""

    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    rules: GateRules = field(default_factory=GateRules)
    output_format: OutputFormat = setting(
        OutputFormat.TABLE,
        key="format",
        short="-f",
        help="Report format; with -o, the file's ending chooses it unless this is given.",
        shortcuts=(("--json", OutputFormat.JSON),),
    )
    output: Path | None = setting(
        None,
        short="-o",
        metavar="FILE",
        help="Write the report to FILE instead of stdout (.json .jsonl .csv .md .sarif .html: that format).",
        in_config=False,
    )
    plot: Path | None = setting(
        None,
        metavar="DIR",
        help="Write an ESD plot per analysed layer and one of alpha by layer to DIR (needs matplotlib).",
        in_config=False,
    )
    html: Path | None = setting(
        None,
        metavar="FILE",
        help="Also write one self-contained HTML page with the summary, a sortable table and the plots.",
        in_config=False,
    )
    write_baseline: Path | None = setting(
        None,
        metavar="FILE",
        help="Also write the JSON report to FILE, as the --baseline of later runs.",
        in_config=False,
    )
    show_skipped: bool = setting(False, help="List skipped tensors in the table.")
    jobs: int = setting(
        0,
        short="-j",
        metavar="N",
        min=0,
        help="Worker processes, shared by every file; 0: one per CPU. Results do not depend on it.",
    )
    cache: Path | None = setting(
        None,
        metavar="DIR",
        unset="off",
        help="Keep eigenvalues in DIR, keyed by each tensor's bytes and the backend: an unchanged layer "
        "costs a hash pass, not an eigensolve. The report is the same.",
    )
    scheduler: str | None = setting(
        None,
        metavar="ADDRESS",
        unset="none",
        help="Run the layers on an existing Dask cluster (tcp://host:8786; pip install 'wwinspect[dask]'); "
        "its workers must see the same paths.",
    )
    #: The pyproject.toml whose [tool.wwinspect] supplied settings (None: none did), named in the report.
    config: Path | None = None


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
            parsed = spec.parse(value)
        except ValueError as exc:
            raise UsageError(f"{source}: [tool.wwinspect] {raw_key} {exc}") from None
        if isinstance(parsed, Path) and not parsed.is_absolute():
            parsed = source.parent / parsed  # a path in the config is relative to the config's folder
        config[key] = parsed
    return config


def resolve_run(
    flags: Mapping[str, Any], config: Mapping[str, Any], config_file: Path | None = None
) -> RunSettings:
    """Flags given on the command line (keyed like the config, values typed) over the config over defaults.

    `-o FILE` chooses the format by its ending (`SUFFIX_FORMATS`) unless `--format` (or `--json`) is given;
    the ending wins over a format set in the config. `config_file` is recorded when the config set anything.

    Raises:
        UsageError: a flag's number is not finite or out of bounds, or settings that are each valid
            contradict one another.
    """
    fields: dict[type, dict[str, Any]] = {}
    for spec in SETTINGS:
        if spec.key in flags:
            value = flags[spec.key]
            if not spec.repeated and value is not None and spec.kind in (int, float):
                try:
                    spec.check_bounds(value)
                except ValueError as exc:
                    raise UsageError(f"{spec.flag} {exc}") from None
        else:
            value = config.get(spec.key, spec.default)
        fields.setdefault(spec.owner, {})[spec.field] = spec.to_field(value)
    run_fields = fields.get(RunSettings, {})
    output = run_fields.get("output")
    if output is not None and "format" not in flags:
        run_fields["output_format"] = format_for_suffix(output) or run_fields["output_format"]
    options = AnalysisOptions(**fields.get(AnalysisOptions, {}))
    if options.max_evals is not None and options.max_evals < options.min_evals:
        raise UsageError(f"--max-evals {options.max_evals} is below --min-evals {options.min_evals}")

    rules = GateRules(**fields.get(GateRules, {}))
    if (
        rules.alpha_above is not None
        and rules.alpha_below is not None
        and rules.alpha_above < rules.alpha_below
    ):
        raise UsageError(
            f"--fail-alpha-above {rules.alpha_above:g} is below --fail-alpha-below {rules.alpha_below:g}:"
            " every alpha would fail"
        )
    if rules.max_alpha_shift is not None and rules.baseline is None:
        raise UsageError("--max-alpha-shift compares with a baseline: give --baseline FILE too")
    return RunSettings(options=options, rules=rules, config=config_file if config else None, **run_fields)


def check_destinations(run: RunSettings, inputs: Sequence[Path]) -> None:
    """Every file the run will write can be written, checked before anything is read.

    Raises:
        UsageError: a folder that does not exist, a destination that is a folder (or, for --plot, a file),
            or a destination that is one of the model files given.
    """
    sources = {_resolved(path) for path in inputs}
    files = [("-o", run.output), ("--html", run.html), ("--write-baseline", run.write_baseline)]
    for flag, target in files:
        if target is None:
            continue
        if target.is_dir():
            raise UsageError(f"{flag} {target}: is a folder; give a file name")
        if not target.parent.is_dir():
            raise UsageError(f"{flag} {target}: the folder {target.parent} does not exist")
        if _resolved(target) in sources:
            raise UsageError(f"{flag} {target}: is one of the model files given; it would be overwritten")
    if run.plot is not None:
        if run.plot.exists() and not run.plot.is_dir():
            raise UsageError(f"--plot {run.plot}: is a file, not a folder")
        if not run.plot.exists() and not run.plot.parent.is_dir():
            raise UsageError(f"--plot {run.plot}: the folder {run.plot.parent} does not exist")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()
