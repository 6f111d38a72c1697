"""Typed errors raised while opening or reading model files.

Every error wwinspect raises on purpose derives from `WWInspectError`. File-level problems (a bad header,
an offset outside the file, a forbidden pickle global) are `FormatError`s and end the run for that file with
exit code 3; a problem confined to one tensor is a `TensorError`, which the analysis turns into a skipped or
failed layer while the rest of the file is analysed. The CLI maps these types to exit codes in one place
(`inspector.exitcodes`).
"""

from __future__ import annotations

from pathlib import Path


class WWInspectError(Exception):
    """Root of every error wwinspect raises on purpose."""

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path is not None else self.message


class FormatError(WWInspectError):
    """The file cannot be read as the format it claims to be (exit code 3)."""


class UnknownFormatError(FormatError):
    """No reader recognised the file."""


class CorruptFileError(FormatError):
    """Header, offsets or sizes are inconsistent with the bytes: truncated, corrupt or lying."""


class UnsupportedFormatError(FormatError):
    """A well-formed file that uses a layout or feature wwinspect does not read."""


class UnsafeFileError(FormatError):
    """The file asks for something that would run code or escape its folder if loaded the usual way."""


class MissingDependencyError(FormatError):
    """A package needed to read this format is not installed."""


class TensorError(WWInspectError):
    """One tensor cannot be turned into numbers (an unsupported dtype or quantisation, missing scales).

    Unlike `FormatError`, this does not end the run: the layer is reported as skipped with the message
    as its reason.
    """
