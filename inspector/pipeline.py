"""The analysis loop: open a file, plan each tensor, read one at a time, measure, emit records.

Memory stays bounded by the largest layer: a tensor's values are read, cut into matrices, measured and
dropped before the next tensor is read. Problems of one tensor (an unsupported dtype, NaN values) become
skipped or failed records; problems of the file (`FormatError`) end that file's analysis and are reported
as the file's error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from formats import open_model
from formats.errors import FormatError, TensorError
from formats.types import TensorRef
from inspector.eigen import EigenBackend, make_backend
from inspector.errors import LayerFailedError
from inspector.layers import LayerPlan, layer_matrices, plan_layer
from inspector.metrics import measure_layer
from inspector.options import AnalysisOptions
from inspector.phases import classify_metrics
from inspector.records import FileError, LayerRecord, ModelReport, Status
from inspector.summary import alpha_label, summarize

#: Called after each layer with (layer name, layers done, layers in the file).
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class _Pending:
    """A tensor with its plan, before its values are read."""

    index: int
    ref: TensorRef
    plan: LayerPlan


def _base_record(
    index: int, ref: TensorRef, plan: LayerPlan, status: Status, reason: str | None
) -> LayerRecord:
    info = ref.info
    return LayerRecord(
        index=index,
        name=info.name,
        kind=plan.kind,
        role=plan.role,
        shape=info.shape,
        dtype=info.encoding or info.dtype.value,
        status=status,
        reason=reason,
        N=plan.N,
        M=plan.M,
        num_slices=plan.num_slices,
        aliases=info.aliases,
        stored_name=info.stored_name,
        source_op=info.hint.op,
    )


def _measured(
    record: LayerRecord,
    matrices: Sequence[np.ndarray],
    scale: float,
    options: AnalysisOptions,
    backend: EigenBackend,
    slice_index: int | None = None,
) -> LayerRecord:
    """Measure one (pooled or single-slice) ESD and fill the record; numerical failures become FAILED."""
    N, M = record.N or 0, record.M or 0
    try:
        metrics = measure_layer(matrices, N=N, M=M, scale=scale, options=options, backend=backend)
    except LayerFailedError as exc:
        return replace(record, status=Status.FAILED, reason=exc.message, slice_index=slice_index)
    num_slices = 1 if slice_index is not None else record.num_slices
    return replace(
        record,
        status=Status.ANALYZED,
        metrics=metrics,
        phase=classify_metrics(metrics, M),
        alpha_label=alpha_label(metrics.alpha),
        slice_index=slice_index,
        num_slices=num_slices,
    )


def _analyze_tensor(
    pending: _Pending, options: AnalysisOptions, backend: EigenBackend
) -> Iterator[LayerRecord]:
    """Records for one tensor: one when pooled or skipped, one per slice in per-slice conv mode."""
    plan, ref = pending.plan, pending.ref
    if plan.skip_reason is not None:
        yield _base_record(pending.index, ref, plan, Status.SKIPPED, plan.skip_reason)
        return
    record = _base_record(pending.index, ref, plan, Status.ANALYZED, None)
    try:
        values = ref.read()
    except TensorError as exc:
        yield _base_record(pending.index, ref, plan, Status.SKIPPED, exc.message)
        return
    if values.shape != ref.info.shape:
        raise FormatError(
            f"tensor {ref.info.name!r} read with shape {list(values.shape)}, "
            f"header says {list(ref.info.shape)}"
        )
    matrices = layer_matrices(plan, values)
    per_slice = plan.slice_axes in ("trailing", "leading") and not options.pool_conv
    if per_slice:
        for position, matrix in enumerate(matrices):
            yield _measured(record, [matrix], plan.scale, options, backend, slice_index=position)
    else:
        yield _measured(record, matrices, plan.scale, options, backend)
    del matrices, values  # release the tensor before the next one is read


def analyze_file(
    path: Path,
    options: AnalysisOptions,
    backend: EigenBackend,
    progress: ProgressCallback | None = None,
) -> ModelReport:
    """Analyse every layer of one model file or sharded directory.

    Raises:
        FormatError: the file cannot be read (the caller turns it into the report's error).
    """
    with open_model(path) as reader:
        pending = [
            _Pending(index, ref, plan_layer(ref.info, options)) for index, ref in enumerate(reader.tensors())
        ]
        layers: list[LayerRecord] = []
        for done, item in enumerate(pending, start=1):
            layers.extend(_analyze_tensor(item, options, backend))
            if progress is not None:
                progress(item.ref.info.name, done, len(pending))
        metadata = {str(key): str(value) for key, value in reader.metadata().items()}
        return ModelReport(
            path=str(path),
            format=reader.format,
            layers=tuple(layers),
            summary=summarize(layers),
            metadata=metadata,
            warnings=tuple(reader.warnings),
        )


def analyze_paths(
    paths: Sequence[Path],
    options: AnalysisOptions,
    progress: ProgressCallback | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> list[ModelReport]:
    """Analyse each path in order; a file that cannot be read gets a report with its error instead."""
    backend = make_backend(options.device)
    reports: list[ModelReport] = []
    for path in paths:
        if on_file is not None:
            on_file(path)
        try:
            reports.append(analyze_file(path, options, backend, progress))
        except FormatError as exc:
            reports.append(
                ModelReport(
                    path=str(path), format=None, error=FileError(kind=type(exc).__name__, message=str(exc))
                )
            )
    return reports

