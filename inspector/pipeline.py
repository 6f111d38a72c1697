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

Several paths (`analyze_paths`) share the workers as one queue, a fleet: a small file is one item, analysed
whole by whichever process takes it, a large one's tensors are items of their own; this process then goes
through the paths in order, repeating a small file's run to the hooks and summarising a large one from its
tensors' records, so the reports and every hook call are those of the sequential run. A `TaskRunner` runs
the queue: forked workers here (`LocalRunner`), or a Dask cluster (`inspector.cluster`).

`AnalysisHooks` lets a caller follow the run as it goes (a file listed, each record, each finished
report: streamed JSON Lines, progress, what to print when Ctrl-C stops the run); `keep_spectra` keeps a
bounded sample of each analysed layer's eigenvalues on its record, for plots.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from formats import is_adapter, open_model, open_with_base
from formats.errors import FormatError, TensorError
from formats.types import Reader, TensorRef
from inspector.adapters import compare_with_base, without_fit
from inspector.cache import prune, unwrapped, with_cache
from inspector.errors import LayerFailedError, UsageError
from inspector.groups import summarize_groups
from inspector.layers import LayerPlan, layer_matrices, part_plan, part_record, part_values, plan_layer
from inspector.options import AnalysisOptions
from inspector.readahead import read_ahead
from inspector.records import EsdSample, FileError, LayerRecord, ModelReport, Status
from inspector.science.eigen import CpuBackend, EigenBackend, FloatArray, make_backend
from inspector.science.esd import sample_spectrum
from inspector.science.metrics import measure_layer
from inspector.science.phases import label
from inspector.science.summary import summarize
from inspector.workers import can_fork, ordered_map, resolve_jobs

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


#: Below this much work (see `_work`; 1e9 is about 0.1 s on one core) a file is analysed in one process:
#: forking workers and re-opening the file in each costs more than it saves on small models.
MIN_PARALLEL_WORK = 1e9


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


def _read_values(pending: _Pending) -> np.ndarray:
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


def _analyze_tensor(
    pending: _Pending,
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


def _work(plan: LayerPlan) -> float:
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

    def __init__(self, path: Path, items: Sequence[_Pending], options: AnalysisOptions) -> None:
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
            self.items[position] = _Pending(item.index, ref, item.plan)


def _forkable(backend: EigenBackend) -> bool:
    """True where forked workers may run this backend: Linux, and the CPU backend (behind any cache)."""
    return can_fork() and isinstance(unwrapped(backend), CpuBackend)


def _worker_count(
    runnable: Sequence[_Pending], jobs: int, backend: EigenBackend, min_parallel_work: float
) -> int:
    """How many processes to use for one file: 1 unless parallel work pays and is safe."""
    if jobs <= 1 or len(runnable) < 2 or not _forkable(backend):
        return 1  # the torch backend stays in one process: CUDA does not survive a fork
    if sum(_work(item.plan) for item in runnable) < min_parallel_work:
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
            _Pending(index, ref, plan_layer(ref.info, options, reader.structure))
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
                            _analyze_tensor(shared.items[position], options, backend, keep_spectra)
                        ),
                        [_work(item.plan) for item in runnable],
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
                records = list(_analyze_tensor(item, options, backend, keep_spectra, taken.value))
                del taken
            else:
                records = list(_analyze_tensor(item, options, backend, keep_spectra))
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


def _message(error: FormatError, path: Path) -> str:
    """The error without the report's own path in front (the report names it), but with the path of the
    file inside it that failed (a shard), when that is another; and its hint, which the report keeps."""
    text = error.message if error.path is None or error.path == path else str(error)
    return f"{text} (hint: {error.hint})" if error.hint else text


#: A file smaller than this (bytes on disk, all shards) is one task of the fleet's queue, analysed whole by
#: one worker: opening it once more to share its tensors would cost more than they take (the fixtures take
#: milliseconds each). A larger one is planned here and each of its tensors is a task.
WHOLE_FILE_BYTES = 32 * 1024 * 1024
#: A whole file's place in the queue (costliest first) is guessed from its size: bytes x this, in `_work`'s
#: units (a float32 matrix of M = 256 columns costs about 4 x 256 flops per stored byte).
_WORK_PER_BYTE = 256.0


@dataclass(frozen=True, slots=True)
class FleetTask:
    """One item of the fleet's queue: a whole (small) file, or one analysable tensor of a large one. It holds
    no values, only where to find them and how to cut them, and it pickles for a Dask worker."""

    path: Path
    cost: float
    index: int | None = None  # None: the whole file
    name: str = ""
    plan: LayerPlan | None = None


#: What a file's run did, in order, so that the parent can repeat it to its own hooks: ("listed", format,
#: tensors), ("record", position in the report's layers), ("progress", name, done, total).
Event = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A tensor task's records or the file-level error reading it raised (that file's end); or a whole
    file's report with the events of its run."""

    path: Path
    index: int | None
    records: tuple[LayerRecord, ...] = ()
    error: FormatError | None = None
    report: ModelReport | None = None
    events: tuple[Event, ...] = ()


#: The records of one analysable tensor, computed elsewhere (`analyze_reader`'s `supply`).
RecordSupply = Callable[[_Pending], list[LayerRecord]]


class TaskRunner(Protocol):
    """Computes fleet tasks somewhere and yields their results in task order (`LocalRunner` here; the Dask
    cluster's in `inspector.cluster`). Closing the iterator early cancels what is left."""

    def run(
        self,
        tasks: Sequence[FleetTask],
        options: AnalysisOptions,
        backend: EigenBackend,
        keep_spectra: bool,
    ) -> Generator[TaskResult, None, None]: ...


class ReaderPool:
    """The few readers one process has open for the fleet's tensor tasks, most recently used kept: the
    queue is ordered by cost, so a worker moves between files, and re-opening a file for each of its tensors
    would parse its header (for ONNX, its whole graph) again."""

    def __init__(self, options: AnalysisOptions, size: int = 4) -> None:
        self._options = options
        self._size = size
        self._refs: OrderedDict[Path, dict[int, TensorRef]] = OrderedDict()
        self._readers: dict[Path, Reader] = {}

    def ref(self, path: Path, index: int, name: str) -> TensorRef:
        """Tensor `index` of `path`, through this process's own reader of it.

        Raises:
            FormatError: the file cannot be read, or no longer holds that tensor at that place.
        """
        refs = self._refs.get(path)
        if refs is None:
            while len(self._refs) >= self._size:
                oldest, _ = self._refs.popitem(last=False)
                self._readers.pop(oldest).close()
            reader = open_for_analysis(path, self._options)
            self._readers[path] = reader
            refs = self._refs[path] = dict(enumerate(reader.tensors()))
        self._refs.move_to_end(path)
        ref = refs.get(index)
        if ref is None or ref.info.name != name:
            raise FormatError(f"{path}: the file changed while it was being read")
        return ref

    def close(self) -> None:
        for reader in self._readers.values():
            with contextlib.suppress(Exception):
                reader.close()
        self._readers.clear()
        self._refs.clear()


def _failed_report(path: Path, error: FormatError) -> ModelReport:
    return ModelReport(
        path=str(path), format=None, error=FileError(kind=type(error).__name__, message=_message(error, path))
    )


def _whole_file(
    path: Path, options: AnalysisOptions, backend: EigenBackend, keep_spectra: bool
) -> TaskResult:
    """A small file analysed in one process, with what its run did, for the parent to repeat."""
    events: list[Event] = []
    layers = 0

    def listed(_: Path, file_format: str, count: int) -> None:
        events.append(("listed", file_format, count))

    def record(_: Path, file_format: str, finished: LayerRecord) -> None:
        nonlocal layers
        events.append(("record", layers))
        layers += 1

    def progress(name: str, done: int, total: int) -> None:
        events.append(("progress", name, done, total))

    hooks = AnalysisHooks(listed=listed, record=record)
    try:
        report = analyze_file(path, options, backend, progress, hooks=hooks, keep_spectra=keep_spectra)
    except FormatError as exc:
        report = _failed_report(path, exc)
    return TaskResult(path, None, report=report, events=tuple(events))


def run_task(
    task: FleetTask,
    options: AnalysisOptions,
    backend: EigenBackend,
    keep_spectra: bool,
    pool: ReaderPool | None = None,
) -> TaskResult:
    """One task's result; a tensor is read through `pool` (None: a reader opened for this task alone)."""
    if task.index is None or task.plan is None:
        return _whole_file(task.path, options, backend, keep_spectra)
    own = pool is None
    readers = ReaderPool(options, size=1) if pool is None else pool
    try:
        ref = readers.ref(task.path, task.index, task.name)
        records = tuple(_analyze_tensor(_Pending(task.index, ref, task.plan), options, backend, keep_spectra))
        return TaskResult(task.path, task.index, records)
    except FormatError as exc:
        return TaskResult(task.path, task.index, error=exc)
    finally:
        if own:
            readers.close()


@dataclass(frozen=True, slots=True)
class LocalRunner:
    """The fleet on this machine: this process and `jobs - 1` forked children share one queue of every
    file's tasks (`inspector.workers.ordered_map`), costliest first."""

    jobs: int

    def run(
        self,
        tasks: Sequence[FleetTask],
        options: AnalysisOptions,
        backend: EigenBackend,
        keep_spectra: bool,
    ) -> Generator[TaskResult, None, None]:
        pool = ReaderPool(options)  # empty when the children are forked: each opens its own files
        try:
            yield from ordered_map(
                lambda position: run_task(tasks[position], options, backend, keep_spectra, pool),
                [task.cost for task in tasks],
                jobs=min(self.jobs, len(tasks)),
            )
        finally:
            pool.close()


def _stored_bytes(path: Path) -> int:
    """A file's size, or the sum of a folder's files (a sharded checkpoint); 0 when unreadable."""
    try:
        if path.is_dir():
            return sum(entry.stat().st_size for entry in path.iterdir() if entry.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def plan_tasks(path: Path, options: AnalysisOptions) -> list[FleetTask]:
    """The tasks of one file: itself, when small (`WHOLE_FILE_BYTES`) or unreadable (its run reports the
    error), else each analysable tensor."""
    size = _stored_bytes(path)
    whole = [FleetTask(path, cost=size * _WORK_PER_BYTE)]
    if size < WHOLE_FILE_BYTES:
        return whole
    try:
        with open_for_analysis(path, options) as reader:
            tasks = [
                FleetTask(path, _work(plan), index, ref.info.name, plan)
                for index, ref in enumerate(reader.tensors())
                if (plan := plan_layer(ref.info, options, reader.structure)).skip_reason is None
            ]
    except FormatError:
        return whole
    return tasks or whole


def _tensor_supply(
    results: Iterator[TaskResult], path: Path, count: int
) -> tuple[RecordSupply, Callable[[], None]]:
    """A supply of `path`'s `count` tensor results from the queue, and a function that skips those it did
    not take (the file ended early with an error)."""
    taken = 0

    def supply(item: _Pending) -> list[LayerRecord]:
        nonlocal taken
        if taken >= count:  # more tensors than when it was planned: the next result is another file's
            raise FormatError(f"{path}: the file changed while it was being read")
        taken += 1
        result = next(results)
        if result.path != path or result.index != item.index:
            raise FormatError(f"{path}: the file changed while it was being read")
        if result.error is not None:
            raise result.error
        return list(result.records)

    def skip_rest() -> None:
        nonlocal taken
        while taken < count:
            taken += 1
            next(results)

    return supply, skip_rest


def _replay(
    result: TaskResult, progress: ProgressCallback | None, hooks: AnalysisHooks | None
) -> ModelReport:
    """A whole file's report, its run's events repeated to this process's hooks in their order."""
    report = result.report
    assert report is not None  # a whole-file task always has its report
    chosen = hooks or AnalysisHooks()
    for event in result.events:
        if event[0] == "listed" and chosen.listed is not None:
            chosen.listed(result.path, str(event[1]), int(str(event[2])))
        elif event[0] == "record" and chosen.record is not None:
            chosen.record(result.path, str(report.format), report.layers[int(str(event[1]))])
        elif event[0] == "progress" and progress is not None:
            progress(str(event[1]), int(str(event[2])), int(str(event[3])))
    if chosen.finished is not None:
        chosen.finished(report)
    return report


def analyze_paths(
    paths: Sequence[Path],
    options: AnalysisOptions,
    progress: ProgressCallback | None = None,
    on_file: Callable[[Path], None] | None = None,
    *,
    jobs: int = 1,
    min_parallel_work: float = MIN_PARALLEL_WORK,
    hooks: AnalysisHooks | None = None,
    keep_spectra: bool = False,
    cache: Path | None = None,
    runner: TaskRunner | None = None,
) -> list[ModelReport]:
    """Analyse each path; the reports come in path order, a file that cannot be read with its error.

    `jobs`: worker processes (0: one per usable CPU). With several paths and enough work, every file's
    tensors join one queue that all the workers share, costliest first (`LocalRunner`), so that small files
    do not run one after another each in one process; a single file shares its tensors as `analyze_file`
    says. `runner`: compute the tensors elsewhere (a Dask cluster, `inspector.cluster`) through the same
    queue. Either way each file is then listed, planned and summarised here, in order, so the records, the
    hooks' calls and the reports are those of the sequential run. `cache`: the eigenvalue cache's folder
    (`inspector.cache`), pruned to its bound at the end.

    Raises:
        UsageError: `--base` names no file, or a path is not an adapter (before anything is read), or the
            cache folder cannot be created.
    """
    if options.base is not None:
        if not options.base.exists():
            raise UsageError(f"--base {options.base}: no such file or directory; nothing was read")
        not_adapters = [str(path) for path in paths if not is_adapter(path)]
        if not_adapters:
            raise UsageError(
                f"--base applies to LoRA/PEFT adapters (adapter_config.json beside the weights); "
                f"not one: {', '.join(not_adapters)}"
            )
    backend = with_cache(make_backend(options.device), cache)
    workers = resolve_jobs(jobs)
    try:
        return _analyze_all(
            paths,
            options,
            backend,
            progress,
            on_file,
            jobs=workers,
            min_parallel_work=min_parallel_work,
            hooks=hooks,
            keep_spectra=keep_spectra,
            runner=runner,
        )
    finally:
        prune(backend)


def _analyze_all(
    paths: Sequence[Path],
    options: AnalysisOptions,
    backend: EigenBackend,
    progress: ProgressCallback | None,
    on_file: Callable[[Path], None] | None,
    *,
    jobs: int,
    min_parallel_work: float,
    hooks: AnalysisHooks | None,
    keep_spectra: bool,
    runner: TaskRunner | None,
) -> list[ModelReport]:
    fleet = runner is not None or (len(paths) > 1 and jobs > 1 and _forkable(backend))
    planned = {path: plan_tasks(path, options) for path in dict.fromkeys(paths)} if fleet else {}
    tasks = [task for file_tasks in planned.values() for task in file_tasks]
    if runner is None and (len(tasks) < 2 or sum(task.cost for task in tasks) < min_parallel_work):
        planned, tasks = {}, []  # too little work to share: forking would cost more than it saves
    reports: list[ModelReport] = []
    with contextlib.ExitStack() as stack:
        results: Iterator[TaskResult] | None = None
        if tasks:
            chosen = runner if runner is not None else LocalRunner(jobs)
            results = stack.enter_context(
                contextlib.closing(chosen.run(tasks, options, backend, keep_spectra))
            )
        for path in paths:
            if on_file is not None:
                on_file(path)
            # A path given twice is queued once, for its first place; its second is analysed here.
            file_tasks = planned.pop(path, None)
            if results is not None and file_tasks is not None and file_tasks[0].index is None:
                reports.append(_replay(next(results), progress, hooks))
                continue
            supply, skip_rest = (
                _tensor_supply(results, path, len(file_tasks))
                if results is not None and file_tasks is not None
                else (None, None)
            )
            try:
                reports.append(
                    analyze_file(
                        path,
                        options,
                        backend,
                        progress,
                        jobs=jobs if results is None else 1,
                        min_parallel_work=min_parallel_work,
                        hooks=hooks,
                        keep_spectra=keep_spectra,
                        supply=supply,
                    )
                )
            except FormatError as exc:
                failed = _failed_report(path, exc)
                reports.append(failed)
                if hooks is not None and hooks.finished is not None:
                    hooks.finished(failed)
            if skip_rest is not None:
                skip_rest()  # the results of a file that ended early (its error) are dropped
    return reports
