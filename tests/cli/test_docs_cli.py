"""docs/cli.md matches the declarations: the generated option and exit-code tables are current, every
flag of every command is in the page, and the README's exit codes say what the page says."""

from __future__ import annotations

import re

import typer

from inspector.cli import app
from inspector.cli_doc import DOC, blocks, render
from inspector.cli_verbs import VERBS
from inspector.config import SETTINGS
from inspector.exitcodes import MEANING, ExitCode
from tests.conftest import ROOT


def test_the_generated_tables_are_current() -> None:
    page = DOC.read_text(encoding="utf-8")
    assert render(page) == page, "run: python -m inspector.cli_doc --write"


def test_every_flag_of_every_command_is_documented() -> None:
    page = DOC.read_text(encoding="utf-8")
    commands = [typer.main.get_command(app), *(typer.main.get_command(verb) for verb in VERBS.values())]
    for command in commands:
        for param in command.params:
            for name in (*param.opts, *param.secondary_opts):
                if name.startswith("-") and name not in ("--help",):
                    assert f"`{name}" in page, name


def test_every_setting_row_states_its_default_and_bounds() -> None:
    rows = "\n".join(line for lines in blocks().values() for line in lines)
    for spec in SETTINGS:
        # the flag whole: the row of `--fit` is not the row of `--fit-cut`
        (row,) = [line for line in rows.splitlines() if re.match(rf"\| `{re.escape(spec.flag)}[ `]", line)]
        shown = spec.default_text()
        if shown:
            assert f"| {shown.replace('|', chr(92) + '|')} |" in row, spec.flag
        if spec.meta.min is not None:
            assert str(spec.meta.min) in row


def test_exit_codes_match_everywhere() -> None:
    assert set(MEANING) == set(ExitCode)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \| ", readme, re.M)}
    assert documented == {int(code) for code in ExitCode}


def test_the_readme_tour_is_a_current_run() -> None:
    from inspector.cli_doc import README, tour_blocks

    readme = README.read_text(encoding="utf-8")
    assert render(readme, tour_blocks()) == readme, "run: python -m inspector.cli_doc --write"


def test_the_readme_hook_selects_what_the_published_hook_selects() -> None:
    import yaml

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (written,) = re.findall(r"^\s+files: '([^']+)'$", readme, re.M)
    assert written == hook["files"]
    assert "require_serial: true" in readme and hook["require_serial"] is True
