"""The `wwinspect` command line: flags and config in, one library call, a renderer, an exit code.

`wwinspect PATH...` analyses models; `wwinspect describe PATH` and `wwinspect compare A B` are verbs
(`inspector.cli_verbs`). An argument that names an existing file or folder is always a path, even if it
spells a verb (`wwinspect ./describe` and `wwinspect describe` with a file named `describe` both analyse it).

Errors are mapped to exit codes in one place (`inspector.exitcodes`) and reported as one line on stderr;
`--debug` shows the traceback instead. The report goes to stdout (or `-o FILE`), progress, notes and the
gate's reasons to stderr.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from typer._click import exceptions as click_exceptions  # typer >= 0.26 vendors click
from typer.core import TyperCommand

from formats.errors import WWInspectError
from inspector import __version__
from inspector.cli_options import given_flags, setting_options
from inspector.config import (
    SETTINGS,
    OutputFormat,
    RunSettings,
    check_destinations,
    find_pyproject,
    read_config,
    resolve_run,
)
from inspector.errors import UsageError
from inspector.exitcodes import ExitCode, exit_code_for, run_exit_code
from inspector.gate import GateResult, evaluate_gate
from inspector.records import LayerRecord, ModelReport
from inspector.targets import expand

#: `-h` as well as `--help`, on every command.
CONTEXT = {"help_option_names": ["-h", "--help"]}
#: Gate reasons written to stderr; the rest are counted (all are in the report).
STDERR_REASONS = 20


def _error_line(message: str) -> None:
    """One line on stderr; control characters from file names are escaped by the message's builder."""
    sys.stderr.write(f"wwinspect: error: {' '.join(message.splitlines())}\n")
    sys.stderr.flush()


def _note_line(message: str) -> None:
    sys.stderr.write(f"wwinspect: {' '.join(message.splitlines())}\n")
    sys.stderr.flush()


class _OneLineErrors(TyperCommand):
    """Click's usage errors as a single `wwinspect: error: ...` line with exit code 2; on the main command,
    a first argument that is a verb (and no existing path) runs that verb instead."""

    def main(self, args: Sequence[str] | None = None, *pargs: Any, **kwargs: Any) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        if self.name == "wwinspect" and words and _is_verb(words[0]):
            from inspector.cli_verbs import verb_command

            kwargs["prog_name"] = f"wwinspect {words[0]}"
            return verb_command(words[0]).main(words[1:], *pargs, **kwargs)
        standalone_mode = kwargs.get("standalone_mode", True)
        kwargs["standalone_mode"] = False  # errors come back here as exceptions instead of exiting
        try:
            code = super().main(words, *pargs, **kwargs)
        except click_exceptions.NoArgsIsHelpError as exc:
            sys.stdout.write(exc.ctx.get_help() + "\n")
            code = ExitCode.USAGE
        except click_exceptions.ClickException as exc:
            _error_line(exc.format_message() + f" (see {kwargs.get('prog_name') or self.name} --help)")
            code = ExitCode.USAGE
        except typer.Abort:
            code = ExitCode.INTERRUPTED
        code = int(code or 0)
        if standalone_mode:
            sys.exit(code)
        return code


def _is_verb(word: str) -> bool:
    from inspector.cli_verbs import VERBS

    return word in VERBS and not Path(word).exists()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"wwinspect {__version__}\n")
        raise typer.Exit(0)


@contextmanager
def reported_errors(debug: bool) -> Iterator[None]:
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


def resolve_settings(flags: dict[str, Any], config: Path | None) -> RunSettings:
    """Flags over `[tool.wwinspect]` (of `config`, else the nearest pyproject.toml upward) over defaults."""
    if config is not None and not config.is_file():
        raise UsageError(f"config file not found: {config}")
    pyproject = config if config is not None else find_pyproject(Path.cwd())
    config_values = read_config(pyproject) if pyproject is not None else {}
    return resolve_run(given_flags(SETTINGS, flags), config_values, pyproject)


@app.command(name="wwinspect", cls=_OneLineErrors, no_args_is_help=True, context_settings=CONTEXT)
@setting_options(SETTINGS)
def main_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Model files, folders (of a sharded checkpoint, or of several models) or quoted globs.",
            metavar="PATH...",
            show_default=False,
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

    Other commands: `wwinspect describe PATH` lists every tensor without computing spectra;
    `wwinspect compare A B` compares two checkpoints of one architecture layer by layer.

    Exit codes: 0 analysed, 1 gate violated, 2 usage error, 3 unreadable file, 4 nothing analysable,
    5 internal error, 130 interrupted.
    """
    with reported_errors(debug):
        targets = expand(paths)
        run = resolve_settings(flags, config)
        check_destinations(run, targets.paths)
        if run.plot is not None or run.html is not None or run.output_format is OutputFormat.HTML:
            from inspector.render.plots import require_matplotlib

            require_matplotlib()
        for note in targets.notes:
            _note_line(note)
        code = _run(list(targets.paths), run, debug=debug)
    raise typer.Exit(code)


class _Collector:
    """What the run has finished so far, so that Ctrl-C can still report it."""

    def __init__(self) -> None:
        self.reports: list[ModelReport] = []
        self._current: tuple[Path, str, int] | None = None
        self._records: list[LayerRecord] = []
        self._tensors_done = 0

    def listed(self, path: Path, file_format: str, count: int) -> None:
        self._current, self._records, self._tensors_done = (path, file_format, count), [], 0

    def record(self, path: Path, file_format: str, record: LayerRecord) -> None:
        self._records.append(record)

    def tensor_done(self) -> None:
        self._tensors_done += 1

    def finished(self, report: ModelReport) -> None:
        self.reports.append(report)
        self._current = None

    def partial(self) -> tuple[list[ModelReport], str | None]:
        """The finished reports, plus the file being worked on with its finished layers; and a note."""
        if self._current is None:
            return list(self.reports), None
        from inspector.science.summary import summarize

        path, file_format, count = self._current
        layers = tuple(self._records)
        report = ModelReport(path=str(path), format=file_format, layers=layers, summary=summarize(layers))
        note = f"interrupted: {path} has {self._tensors_done} of {count} tensors done; the rest is not shown"
        return [*self.reports, report], note


def _hooks(*parts: Any) -> Any:
    """One set of hooks calling each part's method of that name, where it has one."""
    from inspector.pipeline import AnalysisHooks

    def calls(name: str) -> Any:
        methods = [getattr(part, name) for part in parts if part is not None and hasattr(part, name)]
        if not methods:
            return None

        def call(*arguments: Any) -> None:
            for method in methods:
                method(*arguments)

        return call

    return AnalysisHooks(listed=calls("listed"), record=calls("record"), finished=calls("finished"))


def _run(paths: list[Path], run: RunSettings, *, debug: bool) -> ExitCode:
    """Analyse, render, write; returns the exit code."""
    from inspector.baseline import load_baseline
    from inspector.fleet import analyze_paths
    from inspector.science.eigen import make_backend

    backend = make_backend(run.options.device)  # fails early (exit 2) when --device cuda is unavailable
    baseline = load_baseline(run.rules.baseline) if run.rules.baseline is not None else None
    if not debug:
        # Library warnings (numpy overflow notes, quadrature accuracy doubts) are not for the terminal:
        # stderr carries progress and one-line errors only. --debug shows them.
        warnings.simplefilter("ignore")
    collector = _Collector()
    keep_spectra = run.plot is not None or run.html is not None or run.output_format is OutputFormat.HTML
    with contextlib.ExitStack() as files:
        runner = None
        if run.scheduler is not None:  # connected before anything is read: an address that fails is exit 2
            from inspector.cluster import connect

            runner = connect(run.scheduler)
            files.callback(runner.close)
        stream = _jsonl_stream(run, files) if run.output_format is OutputFormat.JSONL else None
        writer = None
        if stream is not None:
            from inspector.render.jsonl import JsonlWriter

            writer = _StreamedLines(JsonlWriter(stream, run.options, backend.name))
        interrupted: str | None = None
        # The display is closed (and, being transient, erased) before anything else is printed.
        with _display() as display:

            def on_layer(name: str, done: int, total: int) -> None:
                collector.tensor_done()
                if display is not None:
                    display.layer(name, done, total)

            try:
                reports = analyze_paths(
                    paths,
                    run.options,
                    progress=on_layer,
                    on_file=display.on_file if display is not None else None,
                    jobs=run.jobs,
                    hooks=_hooks(collector, writer, display),
                    keep_spectra=keep_spectra,
                    cache=run.cache,
                    runner=runner,
                )
            except KeyboardInterrupt:
                reports, note = collector.partial()
                interrupted = note or "interrupted before the first file was listed"
        gate = evaluate_gate(reports, run.rules, baseline)
        exit_zero = run.rules.exit_zero
        code = ExitCode.INTERRUPTED if interrupted else run_exit_code(reports, gate, exit_zero=exit_zero)
        if writer is not None and interrupted is None:
            writer.finish(gate)
    _write_report(reports, gate, run, backend.name, code, interrupted, streamed=stream is not None)
    for report in reports:
        if report.error is not None:
            _error_line(f"{report.path}: {report.error.message}")
    if interrupted:
        _note_line(interrupted)
    if code is ExitCode.NOTHING_ANALYSED:
        _nothing_analysed(reports, run)
    if not gate.passed and not _gate_shown_on_stdout(run):
        _gate_reasons(gate)
    return code


class _StreamedLines:
    """JSON Lines written as records finish (the hooks' `record` and `finished`). A reader that leaves
    early (`| head`) is not an error: the run goes on to its own exit code, writing nowhere."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._gone = False

    def _write(self, method: str, *arguments: Any) -> None:
        if self._gone:
            return
        try:
            getattr(self._writer, method)(*arguments)
        except BrokenPipeError:
            self._gone = True
            _silence_stdout()

    def record(self, path: Path, file_format: str, record: LayerRecord) -> None:
        self._write("layer", str(path), file_format, record)

    def finished(self, report: ModelReport) -> None:
        self._write("file_done", report)

    def finish(self, gate: GateResult) -> None:
        self._write("finish", gate)


@contextmanager
def _display() -> Iterator[Any]:
    """The progress display when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        yield None
        return
    from inspector.progress import ProgressDisplay

    with ProgressDisplay() as display:
        yield display


def _jsonl_stream(run: RunSettings, stack: contextlib.ExitStack) -> TextIO:
    if run.output is not None:
        return stack.enter_context(run.output.open("w", encoding="utf-8"))
    return sys.stdout


def _nothing_analysed(reports: Sequence[ModelReport], run: RunSettings) -> None:
    """Exit 4 says why: the skip categories, and a hint when --layer matched no layer."""
    from collections import Counter

    from inspector.render import view

    skipped = [layer for report in reports for layer in report.layers]
    counts = Counter(view.skip_category(layer.reason) for layer in skipped)
    parts = ", ".join(f"{count} {category.value}" for category, count in counts.most_common())
    _note_line(f"nothing was analysed: every tensor was skipped ({parts or 'none listed'})")
    globs = run.options.layer_globs
    if globs and counts.get(view.SkipCategory.NOT_SELECTED):
        shown = " ".join(f"--layer {glob!r}" for glob in globs)
        _note_line(
            f"hint: {shown} matched no layer; globs match whole names (write '*attn*' for a part), and"
            f" `wwinspect describe {reports[0].path}` lists the names"
        )


def _gate_shown_on_stdout(run: RunSettings) -> bool:
    """Whether the reasons are already in front of the reader: the table or Markdown on stdout."""
    return run.output is None and run.output_format in (OutputFormat.TABLE, OutputFormat.MARKDOWN)


def _gate_reasons(gate: GateResult) -> None:
    """Why the gate failed, on stderr: a CI log shows it whatever -o and --format say."""
    _note_line(f"gate failed: {len(gate.violations)} violation{'s' if len(gate.violations) != 1 else ''}")
    from inspector.render import safe_text

    for violation in gate.violations[:STDERR_REASONS]:
        where = f"{safe_text(violation.path)}: {safe_text(violation.layer)}"
        _note_line(f"  {where}: {safe_text(violation.describe(), 400)}")
    if len(gate.violations) > STDERR_REASONS:
        _note_line(f"  and {len(gate.violations) - STDERR_REASONS} more (every one is in the report)")


def _write_report(
    reports: list[ModelReport],
    gate: GateResult,
    run: RunSettings,
    backend: str,
    code: ExitCode,
    interrupted: str | None,
    *,
    streamed: bool,
) -> None:
    """The report (unless streamed), then the files the run asked for: plots, HTML page, baseline."""
    from inspector.render.dispatch import Outcome, render_text
    from inspector.render.table import report_width

    to_terminal = run.output is None and sys.stdout.isatty()
    columns = shutil.get_terminal_size().columns if to_terminal else None
    notes = [note for note in (_config_note(run), interrupted) if note]
    wants_images = run.html is not None or run.output_format is OutputFormat.HTML
    images = _images(reports) if wants_images else None
    outcome = Outcome(
        reports,
        gate,
        run,
        backend,
        to_terminal,
        width=report_width(is_terminal=to_terminal, environ=os.environ, terminal_columns=columns),
        encoding="utf-8" if run.output is not None else (sys.stdout.encoding or "ascii"),
        notes=notes,
        images=images,
        exit_code=int(code),
    )
    if not streamed:
        text = render_text(outcome)
        if run.output is not None:
            run.output.write_text(text, encoding="utf-8")
        else:
            _write_stdout(text)
    if run.html is not None:
        run.html.write_text(render_text(outcome, OutputFormat.HTML), encoding="utf-8")
    if run.plot is not None:
        _write_plots(reports, run.plot)
    if run.write_baseline is not None:
        if interrupted:
            _note_line(f"--write-baseline {run.write_baseline}: not written, the run was interrupted")
        else:
            run.write_baseline.write_text(render_text(outcome, OutputFormat.JSON), encoding="utf-8")


def _config_note(run: RunSettings) -> str | None:
    return f"settings from {run.config} [tool.wwinspect]; flags win" if run.config is not None else None


def _samples(report: ModelReport) -> dict[Any, Any]:
    from inspector.render.plots import layer_key

    return {layer_key(record): record.spectrum for record in report.layers if record.spectrum is not None}


def _images(reports: Sequence[ModelReport]) -> list[Any]:
    from inspector.render.plots import report_images

    return [report_images(report, _samples(report)) for report in reports]


def _write_plots(reports: Sequence[ModelReport], directory: Path) -> None:
    """One folder per file when there are several (named by the file, numbered when names repeat)."""
    from inspector.render.plots import write_plots

    readable = [report for report in reports if report.error is None]
    seen: dict[str, int] = {}
    for report in readable:
        target = directory
        if len(readable) > 1:
            stem = Path(report.path).name or "model"
            seen[stem] = seen.get(stem, 0) + 1
            target = directory / (stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
        write_plots(report, _samples(report), target)


def _write_stdout(text: str) -> None:
    """Write the report; a reader that stops early (`| head -1`) is not an error, and a character the
    stream cannot encode is escaped rather than fatal."""
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:
            encoding = sys.stdout.encoding or "ascii"
            sys.stdout.flush()
            sys.stdout.buffer.write(text.encode(encoding, "backslashreplace"))
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    """After the reader of stdout left: what is still written (and flushed at exit) goes nowhere."""
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
