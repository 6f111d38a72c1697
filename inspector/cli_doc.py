"""The reference tables of docs/cli.md, derived from the declarations: every option of every command with
its default, bounds, choices and config key (`inspector.settings`), and the exit codes
(`inspector.exitcodes.MEANING`).

`python -m inspector.cli_doc` prints them; `--write` puts them into docs/cli.md between the markers
`<!-- generated:NAME -->` and `<!-- /generated:NAME -->`, and the README's tour (`TOURS`: the command run
for real at 80 and 160 columns) into README.md. A test fails when the files and the declarations or the
command's output disagree, so the pages cannot drift from the command.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from inspector.config import SETTINGS, RunSettings
from inspector.exitcodes import MEANING
from inspector.gate import GateRules
from inspector.options import AnalysisOptions
from inspector.settings import SettingSpec

#: The option tables, in the page's order: (marker, heading owner).
SECTIONS: tuple[tuple[str, type], ...] = (
    ("report-options", RunSettings),
    ("analysis-options", AnalysisOptions),
    ("gate-options", GateRules),
)
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"
#: The README's tour: (marker, terminal width, arguments), run as `wwinspect ARGS` with COLUMNS set.
TOURS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("tour-80", 80, ("fixtures/digits_mlp.safetensors",)),
    ("tour-160", 160, ("fixtures/digits_mlp.safetensors", "--fail-alpha-above", "4")),
    ("describe-80", 80, ("describe", "fixtures/onnx/transformer.onnx")),
)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _flags(spec: SettingSpec) -> str:
    names = [spec.flag]
    if spec.meta.short:
        names.append(spec.meta.short)
    if spec.meta.off_flag:
        names.append(spec.meta.off_flag)
    names.extend(flag for flag, _ in spec.meta.shortcuts)
    value = "" if spec.kind is bool else f" {spec.meta.metavar or _metavar(spec)}"
    shown = [f"`{names[0]}{value}`", *(f"`{name}`" for name in names[1:])]
    return _md(", ".join(shown))  # GitHub reads `\|` inside a table's code span as a pipe


def _metavar(spec: SettingSpec) -> str:
    if issubclass(spec.kind, enum.Enum):
        return "|".join(str(member.value) for member in spec.kind)
    return {int: "N", float: "X", str: "TEXT"}.get(spec.kind, "FILE")


def _bounds(spec: SettingSpec) -> str:
    low, high = spec.meta.min, spec.meta.max
    parts = []
    if low is not None:
        parts.append(f"> {low}" if spec.meta.min_open else f"≥ {low}")
    if high is not None:
        parts.append(f"≤ {high}")
    if spec.kind is float:
        parts.append("finite")
    return ", ".join(parts)


def options_table(specs: Iterable[SettingSpec]) -> list[str]:
    lines = [
        "| option | default | bounds | config key | meaning |",
        "|---|---|---|---|---|",
    ]
    for spec in specs:
        default = spec.default_text()
        key = f"`{spec.key}`" if spec.meta.in_config else "(command line only)"
        cells = (_flags(spec), _md(default) if default else "", _bounds(spec), key, _md(spec.meta.help))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def exit_table() -> list[str]:
    lines = ["| code | meaning |", "|---|---|"]
    lines.extend(f"| {int(code)} | {meaning} |" for code, meaning in MEANING.items())
    return lines


def blocks() -> dict[str, list[str]]:
    """Every generated block by marker name."""
    found = {
        name: options_table(spec for spec in SETTINGS if spec.owner is owner) for name, owner in SECTIONS
    }
    found["exit-codes"] = exit_table()
    return found


def _marked(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(<!-- /generated:{name} -->)", re.S)


def run_tour(columns: int, arguments: Sequence[str]) -> list[str]:
    """What `wwinspect ARGUMENTS` prints `columns` wide (piped, as a terminal shows it without colour)."""
    import os
    import subprocess

    env = {key: value for key, value in os.environ.items() if key not in ("NO_COLOR", "COLUMNS")}
    env.update(COLUMNS=str(columns), PYTHONPATH=str(ROOT))
    completed = subprocess.run(  # noqa: S603 - this interpreter running wwinspect on the tour's fixtures
        [sys.executable, "-m", "inspector", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    shown = " ".join(arguments)
    return ["```", f"$ wwinspect {shown}", *completed.stdout.rstrip("\n").splitlines(), "```"]


def tour_blocks() -> dict[str, list[str]]:
    return {name: run_tour(columns, arguments) for name, columns, arguments in TOURS}


def _replacement(body: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group(1) + body + match.group(3)

    return replace


def render(document: str, generated: dict[str, list[str]] | None = None) -> str:
    """`document` with every generated block replaced by its current content."""
    for name, lines in (blocks() if generated is None else generated).items():
        pattern = _marked(name)
        if not pattern.search(document):
            raise ValueError(f"no block {name!r} to fill")
        document = pattern.sub(_replacement("\n".join(lines) + "\n"), document)
    return document


def main(argv: Sequence[str]) -> int:
    if "--write" in argv:
        DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
        README.write_text(render(README.read_text(encoding="utf-8"), tour_blocks()), encoding="utf-8")
        return 0
    for name, lines in blocks().items():
        sys.stdout.write(
            f"<!-- generated:{name} -->\n" + "\n".join(lines) + f"\n<!-- /generated:{name} -->\n\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
