"""The fleet: several paths analysed as one queue of work, with one report per path.

Several paths (`analyze_paths`) share the workers as one queue, a fleet: a small file is one item, analysed
whole by whichever process takes it, a large one's tensors are items of their own; this process then goes
through the paths in order, repeating a small file's run to the hooks and summarising a large one from its
tensors' records, so the reports and every hook call are those of the sequential run. A `TaskRunner` runs
the queue: forked workers here (`LocalRunner`), or a Dask cluster (`inspector.cluster`).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from formats import is_adapter
from formats.errors import FormatError
from formats.types import Reader, TensorRef
from inspector.cache import cached
from inspector.errors import UsageError
from inspector.layers import LayerPlan, plan_layer
from inspector.options import AnalysisOptions
from inspector.pipeline import (
    MIN_PARALLEL_WORK,
    AnalysisHooks,
    PendingTensor,
    ProgressCallback,
    RecordSupply,
    analyze_file,
    analyze_tensor,
    forkable,
    open_for_analysis,
    work_estimate,
)
from inspector.records import FileError, LayerRecord, ModelReport
from inspector.science.eigen import EigenBackend, make_backend
from inspector.workers import ordered_map, resolve_jobs


def _message(error: FormatError, path: Path) -> str:
    """The error without the report's own path in front (the report names it), but with the path of the
    file inside it that failed (a shard), when that is another; and its hint, which the report keeps."""
    text = error.message if error.path is None or error.path == path else str(error)
    return f"{text} (hint: {error.hint})" if error.hint else text


#: A file smaller than this (bytes on disk, all shards) is one task of the fleet's queue, analysed whole by
#: one worker: opening it once more to share its tensors would cost more than they take (the fixtures take
#: milliseconds each). A larger one is planned here and each of its tensors is a task.
WHOLE_FILE_BYTES = 32 * 1024 * 1024
#: A whole file's place in the queue (costliest first) is guessed from its size: bytes x this, in
#: `work_estimate`'s units (a float32 matrix of M = 256 columns costs about 4 x 256 flops per stored byte).
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
        records = tuple(
            analyze_tensor(PendingTensor(task.index, ref, task.plan), options, backend, keep_spectra)
        )
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
                FleetTask(path, work_estimate(plan), index, ref.info.name, plan)
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

    def supply(item: PendingTensor) -> list[LayerRecord]:
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
    workers = resolve_jobs(jobs)
    with cached(make_backend(options.device), cache) as backend:
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
    fleet = runner is not None or (len(paths) > 1 and jobs > 1 and forkable(backend))
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
