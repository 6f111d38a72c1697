"""Exit codes (PRODUCT.md) and the one table that maps error types to them."""

from __future__ import annotations

from enum import IntEnum

from formats.errors import FormatError, WWInspectError
from inspector.errors import UsageError


class ExitCode(IntEnum):
    """What a pipeline can act on. With several paths the first that applies of 5, 3, 1, 4, 0 wins."""

    OK = 0  # analysed; no gate violated (or --exit-zero)
    GATE_FAILED = 1  # analysed; at least one gate violated
    USAGE = 2  # bad option, missing path, bad config: nothing was read
    UNREADABLE = 3  # a model file is truncated, corrupt, unsupported or unsafe
    NOTHING_ANALYSED = 4  # every layer of every file was skipped
    INTERNAL = 5  # a bug: re-run with --debug and report it
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


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
