"""Exit codes (PRODUCT.md): the one table that maps error types to them, and a run's code from its outcome."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from formats.errors import FormatError, WWInspectError
from inspector.errors import UsageError
from inspector.gate import GateResult
from inspector.records import ModelReport


class ExitCode(IntEnum):
    """What a pipeline can act on. With several paths the first that applies of 5, 3, 1, 4, 0 wins."""

    OK = 0  # analysed; no gate violated (or --exit-zero)
    GATE_FAILED = 1  # analysed; at least one gate violated
    USAGE = 2  # bad option, missing path, bad config: nothing was read
    UNREADABLE = 3  # a model file is truncated, corrupt, unsupported or unsafe
    NOTHING_ANALYSED = 4  # every layer of every file was skipped
    INTERNAL = 5  # a bug: re-run with --debug and report it
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


#: What each code means, in the words docs/cli.md and the README show (a test checks both).
MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "analysed; no gate violated (or `--exit-zero`)",
    ExitCode.GATE_FAILED: "analysed; at least one gate violated (reasons on stderr)",
    ExitCode.USAGE: (
        "usage error: bad option, missing path, bad config or baseline, unwritable output: nothing was read"
    ),
    ExitCode.UNREADABLE: (
        "a model file could not be read: truncated, corrupt, unsupported, a Git LFS pointer, or unsafe"
    ),
    ExitCode.NOTHING_ANALYSED: "nothing analysable: every layer of every file was skipped (stderr says why)",
    ExitCode.INTERNAL: "internal error (a bug): re-run with `--debug` and report it",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C): what was finished is reported",
}

#: First match wins, so specific types come before their parents.
EXIT_FOR_ERROR: tuple[tuple[type[WWInspectError], ExitCode], ...] = (
    (UsageError, ExitCode.USAGE),
    (FormatError, ExitCode.UNREADABLE),
    (WWInspectError, ExitCode.INTERNAL),
)

#: The order in which several files' outcomes combine into one exit code.
PRECEDENCE: tuple[ExitCode, ...] = (
    ExitCode.INTERNAL,
    ExitCode.UNREADABLE,
    ExitCode.GATE_FAILED,
    ExitCode.NOTHING_ANALYSED,
    ExitCode.OK,
)


def exit_code_for(error: WWInspectError) -> ExitCode:
    """The exit code for a typed error."""
    return next(code for kind, code in EXIT_FOR_ERROR if isinstance(error, kind))


def combine(codes: set[ExitCode]) -> ExitCode:
    """The first code of PRECEDENCE present in `codes` (OK when empty)."""
    return next((code for code in PRECEDENCE if code in codes), ExitCode.OK)


def run_exit_code(reports: Sequence[ModelReport], gate: GateResult, *, exit_zero: bool) -> ExitCode:
    """The first that applies of 3 (a file unreadable), 1 (gate), 4 (nothing analysed), 0."""
    codes: set[ExitCode] = set()
    if any(report.error is not None for report in reports):
        codes.add(ExitCode.UNREADABLE)
    if not gate.passed and not exit_zero:
        codes.add(ExitCode.GATE_FAILED)
    readable = [report for report in reports if report.error is None]
    if readable and all(report.summary is None or report.summary.analyzed == 0 for report in readable):
        codes.add(ExitCode.NOTHING_ANALYSED)
    return combine(codes)
