"""Errors raised by the analysis, beside the file-level errors of `formats.errors`."""

from __future__ import annotations

from formats.errors import WWInspectError


class InspectError(WWInspectError):
    """Root of analysis errors."""


class UsageError(InspectError):
    """Bad options or configuration; nothing was read (exit code 2)."""


class LayerFailedError(InspectError):
    """One layer's numbers cannot be computed (NaN/Inf values, an all-zero matrix, no convergence).

    The pipeline records the layer as failed with this message as its reason and goes on.
    """


class ModelNotFoundError(UsageError, FileNotFoundError):
    """A path names no file or folder: a usage error (exit 2), never a corrupt file.

    It is also a `FileNotFoundError`, so that scripts calling `wwinspect.analyze` catch it as they would
    from `open()`.
    """


class OptionError(UsageError, ValueError):
    """An option given to the Python API is unknown or out of its bounds (a `ValueError` too)."""
