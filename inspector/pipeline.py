"""The analysis loop: open a file, plan each tensor, read one at a time, measure, emit records.

Memory stays bounded by the largest layer: a tensor's values are read, cut into matrices, measured and
dropped before the next tensor is read. Problems of one tensor (an unsupported dtype, NaN values) become
skipped or failed records; problems of the file (`FormatError`) end that file's analysis and are reported
as the file's error.

With `jobs` > 1 and enough work (`min_parallel_work`), the tensors are shared out between this process and
`jobs - 1` forked children (`inspector.workers`): each child opens the file itself and receives only tensor
numbers, so no weights cross a pipe and memory stays bounded by `jobs` times the largest layer. The records
and their order are the same as in one process, and so is every number up to rounding (BLAS may sum in
another order with another thread count); only the wall-clock time differs.

Several paths share the workers as one queue in `inspector.fleet`.

`AnalysisHooks` lets a caller follow the run as it goes (a file listed, each record, each finished
report: streamed JSON Lines, progress, what to print when Ctrl-C stops the run); `keep_spectra` keeps a
bounded sample of each analysed layer's eigenvalues on its record, for plots.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from formats import open_model, open_with_base
from formats.errors import FormatError, TensorError
from formats.types import Reader, TensorRef
from inspector.adapters import compare_with_base, without_fit
from inspector.cache import unwrapped
from inspector.errors import LayerFailedError
from inspector.groups import summarize_groups
from inspector.layers import LayerPlan, layer_matrices, part_plan, part_record, part_values, plan_layer
from inspector.options import AnalysisOptions
from inspector.readahead import read_ahead
from inspector.records import EsdSample, LayerRecord, ModelReport, Status
from inspector.science.eigen import CpuBackend, EigenBackend, FloatArray
from inspector.science.esd import sample_spectrum
from inspector.science.metrics import measure_layer
from inspector.science.phases import label
from inspector.science.summary import summarize
from inspector.workers import can_fork, ordered_map

#: Called after each layer with (layer name, layers done, layers in the file).
ProgressCallback = Callable[[str, int, int], None]

#: Called when a file is listed: (path, its format, tensors listed).
ListedCallback = Callable[[Path, str, int], None]
#: Called with each record as it is finished, in file order: (path, format, record).
RecordCallback = Callable[[Path, str, LayerRecord], None]


@dataclass(frozen=True, slots=True)
class AnalysisHooks:
    """Callbacks that follow a run; each is optional and none changes a number."""

    listed: ListedCallback | None = None
    record: RecordCallback | None = None
    finished: Callable[[ModelReport], None] | None = None


#: Below this much work (see `work_estimate`; 1e9 is about 0.1 s on one core) a file is analysed in one
#: process: forking workers and re-opening the file in each costs more than it saves on small models.
MIN_PARALLEL_WORK = 1e9


@dataclass(frozen=True, slots=True)
class PendingTensor:
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
        encoding=info.encoding,
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
    keep_spectrum: bool = False,
) -> LayerRecord:
    """Measure one (pooled or single-slice) ESD and fill the record; numerical failures become FAILED."""
    N, M = record.N or 0, record.M or 0
    keeping = _KeepingBackend(backend) if keep_spectrum else None
    try:
        metrics = measure_layer(matrices, N=N, M=M, scale=scale, options=options, backend=keeping or backend)
    except LayerFailedError as exc:
        return replace(record, status=Status.FAILED, reason=exc.message, slice_index=slice_index)
    num_slices = 1 if slice_index is not None else record.num_slices
    spectrum = keeping.sample(scale, N, options, metrics.lambda_max) if keeping is not None else None
    labels = label(metrics)
    return replace(
        record,
        status=Status.ANALYZED,
        metrics=metrics,
        phase=labels.phase,
        phase_confidence=labels.confidence,
        phase_neighbour=labels.neighbour,
        phase_rule=labels.rule,
        alpha_label=labels.alpha_label,
        slice_index=slice_index,
        num_slices=num_slices,
        spectrum=spectrum,
    )


def measure_record(
    record: LayerRecord,
    matrices: Sequence[np.ndarray],
    scale: float,
    options: AnalysisOptions,
    backend: EigenBackend,
) -> LayerRecord:
    """`record` measured on `matrices` (N x M each, as its plan says), classified as the pipeline does;
    numerical failures make it FAILED. `wwinspect compare` measures the update W_B - W_A this way."""
    return _measured(record, matrices, scale, options, backend)


class _KeepingBackend:
    """A backend that remembers the first eigenvalues it computes: those of the layer's own matrices
    (`measure_layer` computes them first; a shuffled copy under --randomize comes later)."""

    def __init__(self, inner: EigenBackend) -> None:
        self._inner = inner
        self.first: tuple[FloatArray, ...] | None = None

    @property
    def name(self) -> str:
        return self._inner.name

    def eigenvalues(self, matrix: np.ndarray) -> FloatArray:
        values = self._inner.eigenvalues(matrix)
        if self.first is None:
            self.first = (values,)
        return values

    def eigenvalues_batch(self, matrices: np.ndarray) -> FloatArray:
        values = self._inner.eigenvalues_batch(matrices)
        if self.first is None:
            self.first = tuple(values)
        return values

    def sample(
        self, scale: float, N: int, options: AnalysisOptions, lambda_max: float | None
    ) -> EsdSample | None:
        """The kept eigenvalues on the report's scale, sampled; None if they are not the measured ESD's
        (its largest eigenvalue must be the record's lambda_max), so a plot never shows another spectrum."""
        if self.first is None or lambda_max is None:
            return None
        unit = 1.0 / N if options.normalization.value == "per-n" else 1.0
        values = np.sort(np.concatenate(self.first)) * scale * unit
        if values.size == 0 or not np.isclose(values[-1], lambda_max, rtol=1e-9, atol=0.0):
            return None
        return sample_spectrum(values)


def _read_values(pending: PendingTensor) -> np.ndarray:
    """The tensor's values, checked against its header's shape.

    Raises:
        TensorError: this tensor cannot be read (it becomes a skipped record).
        FormatError: the file says one shape and holds another.
    """
    values = pending.ref.read()
    if values.shape != pending.ref.info.shape:
        raise FormatError(
            f"tensor {pending.ref.info.name!r} read with shape {list(values.shape)}, "
            f"header says {list(pending.ref.info.shape)}"
        )
    return values


def analyze_tensor(
    pending: PendingTensor,
    options: AnalysisOptions,
    backend: EigenBackend,
    keep_spectra: bool = False,
    read: Callable[[], np.ndarray] | None = None,
) -> Iterator[LayerRecord]:
    """Records for one tensor: one when pooled or skipped, one per slice for experts and per-slice conv
    mode, one per part (and per expert) for split fused projections and heads. `read` gives its values
    (read ahead on another thread); by default they are read here."""
    plan, ref = pending.plan, pending.ref
    if plan.skip_reason is not None:
        yield _base_record(pending.index, ref, plan, Status.SKIPPED, plan.skip_reason)
        return
    record = _base_record(pending.index, ref, plan, Status.ANALYZED, None)
    try:
        values = read() if read is not None else _read_values(pending)
    except TensorError as exc:
        yield _base_record(pending.index, ref, plan, Status.SKIPPED, exc.message)
        return
    if plan.parts:
        for part in plan.parts:
            yield from _measured_plan(
                part_record(record, part, options),
                part_plan(plan, part),
                part_values(values, part),
                options,
                backend,
                keep_spectra,
            )
    else:
        yield from _measured_plan(record, plan, values, options, backend, keep_spectra)
    del values  # release the tensor before the next one is read


def _measured_plan(
    record: LayerRecord,
    plan: LayerPlan,
    values: np.ndarray,
    options: AnalysisOptions,
    backend: EigenBackend,
    keep_spectra: bool,
) -> Iterator[LayerRecord]:
    """The records of one (part of a) tensor: one per slice for experts and per-slice conv, else one."""
    if record.status is Status.SKIPPED:
        yield record
        return
    matrices = layer_matrices(plan, values)
    if plan.slice_axes.per_slice(options.pool_conv):
        measured = [
            _measured(
                record,
                [matrix],
                plan.scale,
                options,
                backend,
                slice_index=position,
                keep_spectrum=keep_spectra,
            )
            for position, matrix in enumerate(matrices)
        ]
    else:
        measured = [_measured(record, matrices, plan.scale, options, backend, keep_spectrum=keep_spectra)]
    del matrices
    for result in measured:
        if plan.rank is not None and plan.rank < options.min_evals and result.metrics is not None:
            # A rank-r matrix (a LoRA update) has r nonzero eigenvalues: too few to fit a tail.
            metrics = without_fit(result.metrics)
            labels = label(metrics)
            result = replace(
                result,
                metrics=metrics,
                phase=labels.phase,
                phase_confidence=labels.confidence,
                phase_neighbour=labels.neighbour,
                phase_rule=labels.rule,
                alpha_label=labels.alpha_label,
            )
        yield result


def open_for_analysis(path: Path, options: AnalysisOptions) -> Reader:
    """The file's reader; with `--base`, the adapter together with its base model."""
    strict = options.strict_pickles
    if options.base is None:
        return open_model(path, strict_pickles=strict)
    return open_with_base(path, options.base, strict_pickles=strict)


def work_estimate(plan: LayerPlan) -> float:
    """Rough cost of measuring one tensor, in flop-like units: the Gram product N*M^2 per slice, plus the
    eigensolver, whose M^3 runs at about a third of the product's speed (benchmarks/bench_eigen.py)."""
    if plan.skip_reason is not None or plan.N is None or plan.M is None:
        return 0.0
    return float(plan.num_slices or 1) * (plan.N * plan.M**2 + 3.0 * plan.M**3)


class _SharedWork:
    """The analysable tensors of one file, as a forked worker sees them.

    The parent measures its share through its own reader; `reopen` runs in each forked child and swaps in
    the child's own reader, because readers hold file positions, memory maps or a pipe to the HDF5 helper
    process, none of which may be shared between processes.
    """

    def __init__(self, path: Path, items: Sequence[PendingTensor], options: AnalysisOptions) -> None:
        self.path = path
        self.items = list(items)
        self.options = options

    def reopen(self) -> None:
        reader = open_for_analysis(
            self.path, self.options
        )  # open for the child's lifetime; its exit closes it
        refs = list(reader.tensors())
        for position, item in enumerate(self.items):
            ref = refs[item.index] if item.index < len(refs) else None
            if ref is None or ref.info.name != item.ref.info.name:
                raise FormatError(f"{self.path}: the file changed while it was being read")
            self.items[position] = PendingTensor(item.index, ref, item.plan)


def forkable(backend: EigenBackend) -> bool:
    """True where forked workers may run this backend: Linux, and the CPU backend (behind any cache)."""
    return can_fork() and isinstance(unwrapped(backend), CpuBackend)


def _worker_count(
    runnable: Sequence[PendingTensor], jobs: int, backend: EigenBackend, min_parallel_work: float
) -> int:
    """How many processes to use for one file: 1 unless parallel work pays and is safe."""
    if jobs <= 1 or len(runnable) < 2 or not forkable(backend):
        return 1  # the torch backend stays in one process: CUDA does not survive a fork
    if sum(work_estimate(item.plan) for item in runnable) < min_parallel_work:
        return 1
    return min(jobs, len(runnable))


def analyze_file(
    path: Path,
    options: AnalysisOptions,
    backend: EigenBackend,
    progress: ProgressCallback | None = None,
    *,
    jobs: int = 1,
    min_parallel_work: float = MIN_PARALLEL_WORK,
    hooks: AnalysisHooks | None = None,
    keep_spectra: bool = False,
    supply: RecordSupply | None = None,
) -> ModelReport:
    """Analyse every layer of one model file or sharded directory, in up to `jobs` processes.

    `supply`: where the records of analysable tensors come from when they are computed elsewhere (the
    fleet's queue, see `analyze_paths`); the file is then only listed, planned and summarised here.

    Raises:
        FormatError: the file cannot be read (the caller turns it into the report's error).
    """
    with open_for_analysis(path, options) as reader:
        return analyze_reader(
            reader,
            path,
            options,
            backend,
            progress,
            jobs=jobs,
            min_parallel_work=min_parallel_work,
            hooks=hooks,
            keep_spectra=keep_spectra,
            supply=supply,
        )


def analyze_reader(
    reader: Reader,
    path: Path,
    options: AnalysisOptions,
    backend: EigenBackend,
    progress: ProgressCallback | None = None,
    *,
    jobs: int = 1,
    min_parallel_work: float = MIN_PARALLEL_WORK,
    hooks: AnalysisHooks | None = None,
    keep_spectra: bool = False,
    reopen: bool = True,
    supply: RecordSupply | None = None,
) -> ModelReport:
    """Analyse the tensors of an open reader; `path` names it in the report. `reopen=False`: a reader
    that cannot be opened again from `path` in a worker (tensors in memory) is analysed in one process.

    Raises:
        FormatError: the file cannot be read.
    """
    chosen = hooks or AnalysisHooks()
    with contextlib.ExitStack() as stack:
        pending = [
            PendingTensor(index, ref, plan_layer(ref.info, options, reader.structure))
            for index, ref in enumerate(reader.tensors())
        ]
        if chosen.listed is not None:
            chosen.listed(path, reader.format, len(pending))
        runnable = [item for item in pending if item.plan.skip_reason is None]
        local = reopen and supply is None
        workers = _worker_count(runnable, jobs, backend, min_parallel_work) if local else 1
        from_workers: Generator[list[LayerRecord], None, None] | None = None
        if workers > 1:
            shared = _SharedWork(path, runnable, options)
            from_workers = stack.enter_context(
                contextlib.closing(
                    ordered_map(
                        lambda position: list(
                            analyze_tensor(shared.items[position], options, backend, keep_spectra)
                        ),
                        [work_estimate(item.plan) for item in runnable],
                        jobs=workers,
                        child_setup=shared.reopen,
                    )
                )
            )
        # In one process, the next tensor is read (and decoded) on a thread while this one is measured.
        ahead = (
            stack.enter_context(contextlib.closing(read_ahead(runnable, _read_values)))
            if from_workers is None and runnable
            else None
        )
        layers: list[LayerRecord] = []
        for done, item in enumerate(pending, start=1):
            if supply is not None and item.plan.skip_reason is None:
                records = supply(item)
            elif from_workers is not None and item.plan.skip_reason is None:
                records = next(from_workers)
            elif ahead is not None and item.plan.skip_reason is None:
                taken = next(ahead)
                assert taken.item is item  # the same order: runnable is pending without the skipped
                records = list(analyze_tensor(item, options, backend, keep_spectra, taken.value))
                del taken
            else:
                records = list(analyze_tensor(item, options, backend, keep_spectra))
            layers.extend(records)
            if chosen.record is not None:
                for finished in records:
                    chosen.record(path, reader.format, finished)
            if progress is not None:
                progress(item.ref.info.name, done, len(pending))
        metadata = {str(key): str(value) for key, value in reader.metadata().items()}
        notes = tuple(dict.fromkeys(item.plan.note for item in pending if item.plan.note))
        base_ref = getattr(reader, "base_ref", None)
        comparisons = (
            compare_with_base(
                layers,
                {item.ref.info.name: item.ref for item in pending},
                base_ref,
                reader.structure,
                options,
                backend,
            )
            if base_ref is not None
            else ()
        )
        report = ModelReport(
            path=str(path),
            format=reader.format,
            layers=tuple(layers),
            summary=summarize(layers),
            metadata=metadata,
            warnings=tuple(reader.warnings) + notes,
            groups=summarize_groups(layers, reader.structure),
            base_comparisons=comparisons,
        )
    if chosen.finished is not None:
        chosen.finished(report)
    return report


#: The records of one analysable tensor, computed elsewhere (`analyze_reader`'s `supply`).
RecordSupply = Callable[[PendingTensor], list[LayerRecord]]
