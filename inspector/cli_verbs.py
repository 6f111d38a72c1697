"""The verbs of the command line: `wwinspect describe PATH...`, `wwinspect compare A B` and
`wwinspect trend CKPT...`.

Each is its own typer command with the settings it understands, generated like the main command's from
the one declaration per setting (`setting_options`).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inspector.cli import (
    CONTEXT,
    _error_line,
    _OneLineErrors,
    _write_stdout,
    reported_errors,
    resolve_settings,
)
from inspector.cli_options import setting_options
from inspector.config import SETTINGS, OutputFormat, RunSettings, check_destinations
from inspector.errors import UsageError
from inspector.exitcodes import ExitCode
from inspector.settings import SettingSpec
from inspector.targets import expand

if TYPE_CHECKING:
    from inspector.records import ModelReport

#: The settings `describe` takes: how tensors are selected and planned (no spectra, no gate).
DESCRIBE_KEYS = (
    "format",
    "output",
    "layer",
    "exclude",
    "min-evals",
    "max-evals",
    "strict-pickles",
    "per-slice",
)
#: The settings `compare` takes: selection, the analysis settings that change numbers, output, jobs.
COMPARE_KEYS = (
    *DESCRIBE_KEYS[:-1],
    *("device", "normalize", "fit", "xmax", "fix-fingers", "spike-rule"),
    *("mp-fit", "xmin-max", "max-fingers", "finger-thresh", "seed", "jobs", "cache"),
)
#: The settings `trend` takes: compare's, and a Dask cluster to run on.
TREND_KEYS = (*COMPARE_KEYS, "scheduler")
#: Formats each verb writes.
DESCRIBE_FORMATS = frozenset(OutputFormat)
COMPARE_FORMATS = frozenset(
    {OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.JSONL, OutputFormat.CSV, OutputFormat.MARKDOWN}
)


def _specs(keys: tuple[str, ...]) -> tuple[SettingSpec, ...]:
    by_key = {spec.key: spec for spec in SETTINGS}
    return tuple(by_key[key] for key in keys)


DESCRIBE_SETTINGS = _specs(DESCRIBE_KEYS)
COMPARE_SETTINGS = _specs(COMPARE_KEYS)
TREND_SETTINGS = _specs(TREND_KEYS)
TREND_FORMATS = frozenset({OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV})

describe_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
compare_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
trend_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

_Config = Annotated[
    Path | None,
    typer.Option("--config", help="pyproject.toml to read [tool.wwinspect] from [default: nearest]."),
]
_Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]


def _emit(text: str, run: RunSettings) -> None:
    if run.output is not None:
        run.output.write_text(text, encoding="utf-8")
    else:
        _write_stdout(text)


def _encoding(run: RunSettings) -> str:
    return "utf-8" if run.output is not None else (sys.stdout.encoding or "ascii")


def _rich_text(renderable: Any, run: RunSettings) -> str:
    """A renderable as the table format prints it (width, colour and encoding as for the analysis)."""
    import os

    from rich.console import Console

    from inspector.render.dispatch import _Sink
    from inspector.render.table import report_width

    to_terminal = run.output is None and sys.stdout.isatty()
    columns = shutil.get_terminal_size().columns if to_terminal else None
    console = Console(
        file=_Sink(_encoding(run)),
        force_terminal=to_terminal,
        width=report_width(is_terminal=to_terminal, environ=os.environ, terminal_columns=columns),
        no_color=not to_terminal or "NO_COLOR" in os.environ,
        highlight=False,
        legacy_windows=False,
    )
    with console.capture() as capture:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n"


@describe_app.command(name="describe", cls=_OneLineErrors, no_args_is_help=True, context_settings=CONTEXT)
@setting_options(DESCRIBE_SETTINGS)
def describe_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Model files, folders or quoted globs.", metavar="PATH...", show_default=False),
    ],
    *,
    config: _Config = None,
    debug: _Debug = False,
    **flags: Any,
) -> None:
    """List every tensor of each model: shape, stored type, size, the kind and role it is read as, and
    whether it would be analysed (as which matrices) or why not. Reads metadata only: no spectra, no tensor
    bytes, so a multi-GB file takes the time its header takes to parse.

    Exit codes: 0 described, 2 usage error, 3 unreadable file.
    """
    with reported_errors(debug):
        targets = expand(paths)
        run = resolve_settings(flags, config)
        check_destinations(run, targets.paths)
        if run.output_format not in DESCRIBE_FORMATS:
            raise UsageError(f"describe cannot write --format {run.output_format.value}")
        from inspector.describe import describe_paths
        from inspector.render import chars
        from inspector.render import describe as render

        descriptions = describe_paths(list(targets.paths), run.options)
        glyphs = chars.glyphs_for_encoding(_encoding(run))
        writers = {
            OutputFormat.TABLE: lambda: _rich_text(render.build_view(descriptions), run),
            OutputFormat.JSON: lambda: render.to_json(descriptions),
            OutputFormat.JSONL: lambda: render.to_jsonl(descriptions),
            OutputFormat.CSV: lambda: render.to_csv(descriptions),
            OutputFormat.MARKDOWN: lambda: render.to_markdown(descriptions, glyphs),
            OutputFormat.GITHUB: lambda: render.to_github(descriptions),
            OutputFormat.SARIF: lambda: render.to_sarif(descriptions),
            OutputFormat.HTML: lambda: render.to_html(descriptions),
        }
        _emit(writers[run.output_format](), run)
        failed = [d for d in descriptions if d.error is not None]
        for description in failed:
            _error_line(f"{description.path}: {description.error.message}")  # type: ignore[union-attr]
        code = ExitCode.UNREADABLE if failed else ExitCode.OK
    raise typer.Exit(code)


@compare_app.command(name="compare", cls=_OneLineErrors, no_args_is_help=True, context_settings=CONTEXT)
@setting_options(COMPARE_SETTINGS)
def compare_command(
    a: Annotated[Path, typer.Argument(help="The base checkpoint.", metavar="A", show_default=False)],
    b: Annotated[
        Path, typer.Argument(help="The checkpoint to compare with it.", metavar="B", show_default=False)
    ],
    *,
    config: _Config = None,
    debug: _Debug = False,
    **flags: Any,
) -> None:
    """Compare two checkpoints of one architecture (a base and its fine-tune) layer by layer: the change of
    alpha, phase and norms, and the update W_B - W_A measured as a layer (its alpha, rank and size).
    Layers are matched by name; layers in one file only, or of another shape, are listed.

    Exit codes: 0 compared, 2 usage error, 3 unreadable file, 4 no layer measured in both.
    """
    with reported_errors(debug):
        paths: list[Path] = []
        for argument in (a, b):
            found = expand([argument]).paths
            if len(found) != 1:
                raise UsageError(
                    f"{argument}: holds {len(found)} models; compare takes one model on each side"
                )
            paths.extend(found)
        run = resolve_settings(flags, config)
        check_destinations(run, paths)
        if run.output_format not in COMPARE_FORMATS:
            choices = ", ".join(sorted(f.value for f in COMPARE_FORMATS))
            raise UsageError(f"compare cannot write --format {run.output_format.value} (it writes {choices})")
        from inspector.cache import cached
        from inspector.compare import compare_files
        from inspector.render import chars
        from inspector.render import compare as render
        from inspector.science.eigen import make_backend
        from inspector.workers import resolve_jobs

        with cached(make_backend(run.options.device), run.cache) as backend:
            comparison = compare_files(paths[0], paths[1], run.options, backend, jobs=resolve_jobs(run.jobs))
        writers = {
            OutputFormat.TABLE: lambda: _rich_text(render.compare_view(comparison), run),
            OutputFormat.JSON: lambda: render.to_json(comparison, run.options, backend.name),
            OutputFormat.JSONL: lambda: render.to_jsonl(comparison, run.options, backend.name),
            OutputFormat.CSV: lambda: render.to_csv(comparison),
            OutputFormat.MARKDOWN: lambda: render.to_markdown(
                comparison, chars.glyphs_for_encoding(_encoding(run))
            ),
        }
        _emit(writers[run.output_format](), run)
        code = _verb_outcome((comparison.a, comparison.b), comparison.readable, bool(comparison.pairs))
    raise typer.Exit(code)


@trend_app.command(name="trend", cls=_OneLineErrors, no_args_is_help=True, context_settings=CONTEXT)
@setting_options(TREND_SETTINGS)
def trend_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoints of one run, in training order (a quoted glob or a folder: natural order).",
            metavar="CKPT...",
            show_default=False,
        ),
    ],
    *,
    config: _Config = None,
    debug: _Debug = False,
    **flags: Any,
) -> None:
    """Follow the checkpoints of one training run: per layer, alpha, phase and MP soft rank against the
    checkpoint order, as a table (80 columns), JSON or CSV, or a figure with `-o trend.png` (the plot
    extra). The checkpoints share the workers as one fleet; `--cache` makes re-running on a growing series
    cost a hash pass for the checkpoints seen before.

    Exit codes: 0 followed, 2 usage error, 3 an unreadable checkpoint, 4 no layer measured.
    """
    with reported_errors(debug):
        targets = expand(paths)
        if len(targets.paths) < 2:
            raise UsageError(f"trend follows two or more checkpoints; {len(targets.paths)} given")
        run = resolve_settings(flags, config)
        check_destinations(run, targets.paths)
        figure = run.output is not None and run.output.suffix.lower() == ".png"
        if figure and run.output_format is not OutputFormat.TABLE:
            raise UsageError(
                f"-o {run.output}: a .png is the figure; leave out --format {run.output_format.value}"
            )
        if not figure and run.output_format not in TREND_FORMATS:
            choices = ", ".join(sorted(f.value for f in TREND_FORMATS))
            raise UsageError(f"trend cannot write --format {run.output_format.value} (it writes {choices})")
        if figure:
            from inspector.render.plots import require_matplotlib

            require_matplotlib()
        from inspector.render import trend as render
        from inspector.science.eigen import make_backend
        from inspector.trend import trend_paths

        backend = make_backend(run.options.device)
        with contextlib.ExitStack() as stack:
            runner = None
            if run.scheduler is not None:
                from inspector.cluster import connect

                runner = connect(run.scheduler)
                stack.callback(runner.close)
            trend = trend_paths(
                list(targets.paths), run.options, jobs=run.jobs, cache=run.cache, runner=runner
            )
        if figure:
            assert run.output is not None
            run.output.write_bytes(render.to_png(trend))
        else:
            writers = {
                OutputFormat.TABLE: lambda: _rich_text(render.trend_view(trend), run),
                OutputFormat.JSON: lambda: render.to_json(trend, run.options, backend.name),
                OutputFormat.CSV: lambda: render.to_csv(trend),
            }
            _emit(writers[run.output_format](), run)
        code = _verb_outcome(trend.reports, trend.readable, bool(trend.layers))
    raise typer.Exit(code)


def _verb_outcome(reports: Iterable[ModelReport], readable: bool, measured: bool) -> ExitCode:
    """A verb's exit code over several files, after one stderr line per file that could not be read."""
    for report in reports:
        if report.error is not None:
            _error_line(f"{report.path}: {report.error.message}")
    if not readable:
        return ExitCode.UNREADABLE
    return ExitCode.OK if measured else ExitCode.NOTHING_ANALYSED


#: Verb name -> its typer app.
VERBS: dict[str, typer.Typer] = {"describe": describe_app, "compare": compare_app, "trend": trend_app}


def verb_command(name: str) -> Any:
    """The click command of a verb."""
    return typer.main.get_command(VERBS[name])
