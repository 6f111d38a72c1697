"""`wwinspect describe`: what a model file holds and what the analysis would make of it, without spectra.

Every tensor the reader lists, with its shape, stored type, bytes, the kind and role it is read as, and
whether it would be analysed (as which N x M matrices) or why not, decided by the same plan the analysis
uses (`inspector.layers.plan_layer`) under the same selection settings. Only metadata is read: no tensor's
bytes, so a multi-GB checkpoint is described in the time its header takes to parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from formats import open_model
from formats.errors import FormatError
from inspector.layers import plan_layer
from inspector.options import AnalysisOptions
from inspector.records import FileError, LayerKind


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor as `describe` reports it.

    Attributes:
        index: position in the file's listing (the JSON report's `index`).
        name, shape, dtype, nbytes: as the reader lists them.
        encoding: the format's own finer type name (Q4_K, float8_e4m3fn) or note on how it was stored.
        kind, role: how the analysis would read it.
        analysed: whether the analysis would measure it.
        N, M, num_slices: the matrices it would become (None when it is no matrix).
        reason: why it would not be analysed; None when it would.
        aliases: other names of the same values.
        origin: where it lives in the file(s).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    encoding: str | None
    kind: LayerKind
    role: str | None
    analysed: bool
    N: int | None
    M: int | None
    num_slices: int
    reason: str | None
    aliases: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Description:
    """One PATH described, or the error that stopped it."""

    path: str
    format: str | None
    tensors: tuple[TensorEntry, ...] = ()
    metadata: dict[str, str] | None = None
    warnings: tuple[str, ...] = ()
    error: FileError | None = None

    @property
    def analysable(self) -> int:
        return sum(entry.analysed for entry in self.tensors)

    @property
    def total_bytes(self) -> int:
        return sum(entry.nbytes for entry in self.tensors)


def describe_file(path: Path, options: AnalysisOptions) -> Description:
    """List and plan one path; a file that cannot be read gets its error instead."""
    try:
        with open_model(path, strict_pickles=options.strict_pickles) as reader:
            entries = []
            for index, ref in enumerate(reader.tensors()):
                info = ref.info
                plan = plan_layer(info, options)
                entries.append(
                    TensorEntry(
                        index=index,
                        name=info.name,
                        shape=info.shape,
                        dtype=info.dtype.value,
                        nbytes=info.nbytes,
                        encoding=info.encoding,
                        kind=plan.kind,
                        role=plan.role.value if plan.role is not None else None,
                        analysed=plan.skip_reason is None,
                        N=plan.N,
                        M=plan.M,
                        num_slices=plan.num_slices,
                        reason=plan.skip_reason,
                        aliases=info.aliases,
                        origin=info.origin,
                    )
                )
            metadata = {str(key): str(value) for key, value in reader.metadata().items()}
            return Description(
                path=str(path),
                format=reader.format,
                tensors=tuple(entries),
                metadata=metadata,
                warnings=tuple(reader.warnings),
            )
    except FormatError as exc:
        message = exc.message if exc.path is None or exc.path == path else str(exc)
        return Description(
            path=str(path), format=None, error=FileError(kind=type(exc).__name__, message=message)
        )


def describe_paths(paths: Sequence[Path], options: AnalysisOptions) -> list[Description]:
    return [describe_file(path, options) for path in paths]
