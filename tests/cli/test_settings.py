"""One declaration per setting: the flags, the config keys, `--help` and the run's objects all derive from it.

Most tests run the real command with the analysis replaced by a probe that keeps the resolved settings, so
a setting whose flag, key, type or field disagree fails here without reading a model.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import inspector.cli
from inspector.cli import app
from inspector.cli_options import given_flags, setting_options
from inspector.config import SETTINGS, OutputFormat, RunSettings, resolve_run, validate_config
from inspector.errors import UsageError
from inspector.exitcodes import ExitCode
from inspector.gate import GateRules
from inspector.options import AnalysisOptions
from inspector.render.dispatch import _RENDERERS
from inspector.settings import SettingSpec, collect, setting
from tests.conftest import FIXTURES, ROOT, run_cli

DEFAULT = FIXTURES / "digits_mlp.safetensors"
SOURCE = Path("pyproject.toml")
COMMAND = typer.main.get_command(app)


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pyproject.toml above the working directory, so only the flags count."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: None)


def _parse(*args: str) -> RunSettings:
    """The settings the real command resolves from this command line (nothing is analysed)."""
    seen: list[RunSettings] = []

    def probe(paths: list[Path], run: RunSettings, *, debug: bool) -> ExitCode:
        seen.append(run)
        return ExitCode.OK

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inspector.cli, "_run", probe)
        result = run_cli(DEFAULT, *args)
    assert result.exit_code == 0, result.output
    return seen[0]


def _field(run: RunSettings, spec: SettingSpec) -> Any:
    owner = {AnalysisOptions: run.options, GateRules: run.rules, RunSettings: run}[spec.owner]
    return getattr(owner, spec.field)


def _other_value(spec: SettingSpec) -> tuple[Any, list[str], Any]:
    """A value other than the default: (value in the key's sense, command-line words, TOML value)."""
    if spec.kind is bool:
        value = not spec.default
        return value, [spec.flag if value else str(spec.meta.off_flag)], value
    if spec.repeated:
        item = list(spec.kind)[-1] if issubclass(spec.kind, enum.Enum) else "x*"
        text = item.value if isinstance(item, enum.Enum) else item
        return (item,), [spec.flag, text], [text]
    if issubclass(spec.kind, enum.Enum):
        member = next(member for member in spec.kind if member != spec.default)
        return member, [spec.flag, member.value], member.value
    if spec.kind is int:
        number = (spec.default if spec.default is not None else 10) + 7  # above min-evals' default
        return number, [spec.flag, str(number)], number
    if spec.kind is float:
        return 2.5, [spec.flag, "2.5"], 2.5
    if spec.kind is str:
        return "tcp://host:8786", [spec.flag, "tcp://host:8786"], "tcp://host:8786"
    assert spec.kind is Path
    return Path("out.txt"), [spec.flag, "out.txt"], "out.txt"


def test_the_table_holds_every_setting_once() -> None:
    keys = [spec.key for spec in SETTINGS]
    # the 24 of issue 10, issue 9's --fit-cut, -o, issue 11's --plot, --html, --write-baseline, --strict,
    # --baseline and --max-alpha-shift, issue 12's --split-fused, --per-head and --base, issue 13's
    # --strict-pickles, and issue 14's --cache and --scheduler; the files a run writes are for the command
    # line alone.
    assert len(keys) == len(set(keys)) == 38
    assert {spec.key for spec in SETTINGS if not spec.meta.in_config} == {
        "output",
        "plot",
        "html",
        "write-baseline",
    }


def test_the_command_has_exactly_the_declared_flags() -> None:
    declared = {"--config", "--debug", "--version"}  # the command's own; click adds --help elsewhere
    for spec in SETTINGS:
        declared |= {spec.flag, *([spec.meta.short] if spec.meta.short else [])}
        declared |= {spec.meta.off_flag} if spec.meta.off_flag else set()
        declared |= {flag for flag, _ in spec.meta.shortcuts}
    offered = {name for param in COMMAND.params for name in (*param.opts, *param.secondary_opts)}
    assert offered - {"PATH..."} - {"paths"} == declared


def test_no_flags_and_no_config_give_the_objects_own_defaults() -> None:
    assert resolve_run({}, {}) == RunSettings()
    assert _parse() == RunSettings(options=AnalysisOptions(), rules=GateRules())


#: Settings that are only valid beside another one: the flags and the config value that go with them.
COMPANIONS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "max-alpha-shift": (["--baseline", "base.json"], {"baseline": "base.json"}),
}


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda spec: spec.key)
def test_each_flag_reaches_its_field(spec: SettingSpec) -> None:
    value, words, _ = _other_value(spec)
    words = [*words, *COMPANIONS.get(spec.key, ([], {}))[0]]
    assert _field(_parse(*words), spec) == spec.to_field(value)
    assert _field(_parse(*words), spec) != _field(_parse(), spec)


@pytest.mark.parametrize(
    "spec", [spec for spec in SETTINGS if spec.meta.in_config], ids=lambda spec: spec.key
)
def test_each_config_key_reaches_its_field(spec: SettingSpec) -> None:
    value, _, toml_value = _other_value(spec)
    if spec.kind is Path:
        value = SOURCE.parent / value  # a path in the config is relative to the config's folder
    for spelling in {spec.key, spec.key.replace("-", "_")}:
        config = validate_config({spelling: toml_value, **COMPANIONS.get(spec.key, ([], {}))[1]}, SOURCE)
        assert _field(resolve_run({}, config), spec) == spec.to_field(value)


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda spec: spec.key)
def test_help_shows_the_declared_default(spec: SettingSpec) -> None:
    param = next(param for param in COMMAND.params if spec.flag in param.opts)
    text = getattr(param, "help", None)  # options have help, click.Parameter does not
    assert isinstance(text, str) and text.startswith(spec.meta.help)
    shown = spec.default_text()
    if shown is not None:
        assert f"[default: {shown}]" in text


def test_flags_win_over_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.wwinspect]\nmin-evals = 3\nformat = 'csv'\nper-slice = true\nlayer = ['a*']\n"
        "fail_phase = 'bulk-decay'\n"
    )
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: tmp_path / "pyproject.toml")
    run = _parse("--min-evals", "5", "--json", "--pooled", "--layer", "b*", "--fail-phase", "rank-collapse")
    assert run.options.min_evals == 5 and run.output_format is OutputFormat.JSON and run.options.pool_conv
    assert run.options.layer_globs == ("b*",) and [phase.value for phase in run.rules.phases] == [
        "rank-collapse"
    ]
    unflagged = _parse()
    assert unflagged.options.min_evals == 3 and unflagged.output_format is OutputFormat.CSV
    assert not unflagged.options.pool_conv and unflagged.options.layer_globs == ("a*",)
    assert [phase.value for phase in unflagged.rules.phases] == ["bulk-decay"]


def test_json_and_another_format_contradict() -> None:
    # Issue 11: `--json --format csv` silently gave JSON; two formats asked for are a usage error.
    result = run_cli(DEFAULT, "--format", "csv", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "--json contradicts --format csv" in result.stderr and result.stderr.count("\n") == 1
    assert _parse("--format", "json", "--json").output_format is OutputFormat.JSON


@pytest.mark.parametrize(
    ("toml", "phrase"),
    [
        ("min-evals = 0", "min-evals must be at least 1, not 0"),
        ("max-fingers = 0", "max-fingers must be at least 1, not 0"),
        ("max-evals = 0", "max-evals must be at least 1, not 0"),
        ("jobs = -3", "jobs must be at least 0, not -3"),
        ("min-evals = true", "min-evals has the wrong type (bool)"),
        ("min-evals = 2.5", "min-evals has the wrong type (float)"),
        ("exit-zero = 1", "exit-zero has the wrong type (int)"),
        ("mp-fit = 'magic'", "mp-fit has an invalid value 'magic' (choose from quantile, kde)"),
        ("fail-phase = ['heavy-tailed', 'bogus']", "fail-phase has an invalid value 'bogus'"),
        ("layer = [1, 2]", "layer must be a list of strings"),
        ("output = 'x.json'", "unknown key 'output'"),
    ],
)
def test_config_values_are_checked_like_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, phrase: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.wwinspect]\n{toml}\n")
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: tmp_path / "pyproject.toml")
    result = run_cli(DEFAULT)
    assert result.exit_code == 2, result.output
    assert phrase in result.stderr and "pyproject.toml" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


@pytest.mark.parametrize("flag", ["--min-evals", "--max-fingers", "--max-evals"])
def test_the_same_bounds_hold_on_the_command_line(flag: str) -> None:
    result = run_cli(DEFAULT, flag, "0")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and flag in result.stderr


def test_contradicting_settings_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--max-evals 5 is below --min-evals 10"):
        resolve_run({"max-evals": 5}, {})


def test_every_format_has_a_renderer() -> None:
    assert set(_RENDERERS) == set(OutputFormat)


def test_settings_and_the_command_import_no_renderer() -> None:
    code = (
        "import sys\n"
        "import inspector.cli\n"
        "loaded = [name for name in sys.modules if name.startswith(('inspector.render', 'rich'))]\n"
        "assert loaded == [], loaded\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr


def test_readme_names_every_flag_with_the_declared_default() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for spec in SETTINGS:
        assert f"`{spec.flag}" in readme, spec.flag
    # "`--min-evals N` (default: 10)": a default written in the README is the declared one.
    for option, written in re.findall(r"`(-[^`]*)`(?:, `-[a-z][^`]*`)? \(default: ([^)]+)\)", readme):
        flag = option.split()[0]
        spec = next(spec for spec in SETTINGS if flag in (spec.flag, spec.meta.off_flag, spec.meta.short))
        assert written == spec.default_text(), flag


# A setting of a new object: the machinery, not the 25 settings above.


class _Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True, slots=True)
class _Toy:
    colour: _Colour = setting(_Colour.RED, help="Paint.")
    tags: tuple[str, ...] = setting((), key="tag", help="Label (repeatable).")
    depth: int | None = setting(None, min=2, max=5, unset="unbounded", help="How deep.")
    plain: float = 1.5


def test_a_new_setting_is_one_field() -> None:
    specs = collect(_Toy)
    assert [spec.key for spec in specs] == ["colour", "tag", "depth"]
    toy = typer.Typer(rich_markup_mode=None)
    seen: list[dict[str, Any]] = []

    @toy.command()
    @setting_options(specs)
    def command(name: str, **flags: Any) -> None:
        seen.append(given_flags(specs, flags))

    runner = CliRunner()
    result = runner.invoke(toy, ["x", "--colour", "blue", "--tag", "a", "--tag", "b", "--depth", "3"])
    assert result.exit_code == 0, result.output
    assert seen == [{"colour": _Colour.BLUE, "tag": ("a", "b"), "depth": 3}]
    assert runner.invoke(toy, ["x", "--depth", "9"]).exit_code == 2  # the declared bounds
    assert "How deep. [default: unbounded]" in " ".join(runner.invoke(toy, ["--help"]).stdout.split())
    depth = specs[2]
    with pytest.raises(ValueError, match="must be at most 5, not 9"):
        depth.parse(9)


def test_unsupported_or_clashing_declarations_are_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Mapping:
        table: dict[str, int] = setting(None, help="No flag can carry this.")  # type: ignore[arg-type]

    @dataclasses.dataclass(frozen=True)
    class Clash:
        first: int = setting(1, key="same", help="One.")
        second: int = setting(2, key="same", help="Two.")

    with pytest.raises(TypeError, match="unsupported setting type"):
        collect(Mapping)
    with pytest.raises(TypeError, match="reuses the name 'same'"):
        collect(Clash)
