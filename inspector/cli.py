"""The `wwinspect` command line: flags and config in, one library call, a renderer, an exit code.

Errors are mapped to exit codes in one place (`inspector.exitcodes`) and reported as one line on stderr;
`--debug` shows the traceback instead. The report goes to stdout (or `-o FILE`), progress to stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_exceptions  # typer >= 0.26 vendors click
from typer.core import TyperCommand

from formats.errors import WWInspectError
from inspector import __version__
from inspector.cli_options import given_flags, setting_options
from inspector.config import SETTINGS, RunSettings, find_pyproject, read_config, resolve_run
from inspector.errors import UsageError
from inspector.exitcodes import ExitCode, exit_code_for, run_exit_code
from inspector.gate import evaluate_gate


def _error_line(message: str) -> None:
    """One line on stderr; control characters from file names are escaped by the message's builder."""
    sys.stderr.write(f"wwinspect: error: {' '.join(message.splitlines())}\n")
    sys.stderr.flush()


class _OneLineErrors(TyperCommand):
    """Click's usage errors as a single `wwinspect: error: ...` line with exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standalone_mode = kwargs.get("standalone_mode", True)
        kwargs["standalone_mode"] = False  # errors come back here as exceptions instead of exiting
        try:
            code = super().main(*args, **kwargs)
        except click_exceptions.NoArgsIsHelpError as exc:
            sys.stdout.write(exc.ctx.get_help() + "\n")
            code = ExitCode.USAGE
        except click_exceptions.ClickException as exc:
            _error_line(exc.format_message() + " (see wwinspect --help)")
            code = ExitCode.USAGE
        except typer.Abort:
            code = ExitCode.INTERRUPTED
        code = int(code or 0)
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"wwinspect {__version__}\n")
        raise typer.Exit(0)


@contextmanager
def _reported_errors(debug: bool) -> Iterator[None]:
    """Typed errors and bugs become one line and an exit code; Ctrl-C becomes 130."""
    try:
        yield
    except typer.Exit:
        raise
    except WWInspectError as exc:
        if debug:
            raise
        _error_line(str(exc) + (f" (hint: {exc.hint})" if exc.hint else ""))
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        sys.stderr.write("wwinspect: interrupted\n")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except BrokenPipeError:
        raise
    except Exception as exc:
        if debug:
            raise
        _error_line(f"internal error ({type(exc).__name__}: {exc}); re-run with --debug and report it")
        raise typer.Exit(ExitCode.INTERNAL) from None


def _progress(enabled: bool) -> tuple[Any, Any]:
    """A rich progress bar on a terminal stderr, or nothing."""
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    state: dict[str, Any] = {}

    def on_layer(name: str, done: int, total: int) -> None:
        task = state.get("task")
        if task is None:
            state["task"] = task = progress.add_task("layers", total=total)
        progress.update(task, completed=done, total=total)

    def on_file(path: Path) -> None:
        if "task" in state:
            progress.remove_task(state.pop("task"))
        progress.console.print(f"[dim]reading {path.name}[/dim]", markup=True, highlight=False)

    return progress, (on_layer, on_file)


@app.command(name="wwinspect", cls=_OneLineErrors, no_args_is_help=True)
@setting_options(SETTINGS)
def main_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Model files, or directories of a sharded checkpoint.", metavar="PATH...", show_default=False
        ),
    ],
    *,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="pyproject.toml to read [tool.wwinspect] from [default: nearest]."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    **flags: Any,
) -> None:
    """Report, per layer of each model file, the ESD of WᵀW, its power-law alpha, the MP bulk fit and the
    HTSR phase. Reads ONNX, safetensors, HDF5/Keras, PyTorch and GGUF without running code from the file.

    Exit codes: 0 analysed, 1 gate violated, 2 usage error, 3 unreadable file, 4 nothing analysable,
    5 internal error, 130 interrupted.
    """
    with _reported_errors(debug):
        missing = [str(path) for path in paths if not path.exists()]
        if missing:
            raise UsageError(f"no such file or directory: {', '.join(missing)}; nothing was read")
        pyproject = config if config is not None else find_pyproject(Path.cwd())
        if config is not None and not config.is_file():
            raise UsageError(f"config file not found: {config}")
        config_values = read_config(pyproject) if pyproject is not None else {}
        run = resolve_run(given_flags(SETTINGS, flags), config_values)
        code = _run(paths, run, debug=debug)
    raise typer.Exit(code)


def _run(paths: list[Path], run: RunSettings, *, debug: bool) -> ExitCode:
    """Analyse, render, write; returns the exit code."""
    from inspector.pipeline import analyze_paths
    from inspector.render.dispatch import Outcome, render_text
    from inspector.science.eigen import make_backend

    backend = make_backend(run.options.device)  # fails early (exit 2) when --device cuda is unavailable
    if not debug:
        # Library warnings (numpy overflow notes, quadrature accuracy doubts) are not for the terminal:
        # stderr carries progress and one-line errors only. --debug shows them.
        warnings.simplefilter("ignore")
    progress, callbacks = _progress(sys.stderr.isatty())
    if progress is not None:
        with progress:
            reports = analyze_paths(
                paths, run.options, progress=callbacks[0], on_file=callbacks[1], jobs=run.jobs
            )
    else:
        reports = analyze_paths(paths, run.options, jobs=run.jobs)
    gate = evaluate_gate(reports, run.rules)
    to_terminal = run.output is None and sys.stdout.isatty()
    text = render_text(Outcome(reports, gate, run, backend.name, to_terminal))
    if run.output is not None:
        run.output.write_text(text, encoding="utf-8")
    else:
        _write_stdout(text)
    for report in reports:
        if report.error is not None:
            _error_line(report.error.message)
    return run_exit_code(reports, gate, exit_zero=run.rules.exit_zero)


def _write_stdout(text: str) -> None:
    """Write the report; a reader that stops early (`| head -1`) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    """Console-script entry point: run the command, flush what it wrote, and leave without teardown.

    A normal interpreter exit finalises every module and waits for BLAS to shut its thread pool down:
    60-100 ms on the project's 2-core machine (measured against os._exit, same command, interleaved
    runs), a tenth of a typical run. Nothing is left to do at that point: the report and any -o file are
    written and closed, and the worker processes are reaped, so stdout and stderr are flushed and the
    process ends with the command's exit code.
    """
    try:
        app()
        code: int | str | None = 0
    except SystemExit as exit_:
        code = exit_.code
    if isinstance(code, str):  # sys.exit("message"): Python's own convention, message and status 1
        sys.stderr.write(code + "\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        # a reader that left early (| head), or a closed stream: nothing more can be delivered
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(int(code or 0))
