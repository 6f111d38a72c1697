"""`--scheduler ADDRESS`: the fleet's tasks (one analysable tensor each) computed on a Dask cluster.

The work is the same as on this machine (`inspector.fleet.run_task`): each task names a file, a tensor
number and its plan; the worker opens the file itself, reads that one tensor, measures it and sends back
its records. No weights cross the network, so the cluster's workers must see the files at the same paths
(a shared file system), and must have wwinspect installed. This process lists, plans and summarises every
file in order, taking the results in task order, so the report is the one of a local run.

Tasks are submitted costliest first (Dask's `priority`), as the local queue orders them, and are not
`pure`: two tasks of equal arguments are still two tensors. dask is an optional extra
(`pip install 'wwinspect[dask]'`), imported only when `--scheduler` is given.
"""

from __future__ import annotations

import importlib
from collections.abc import Generator, Sequence
from typing import Any

from inspector.errors import UsageError
from inspector.fleet import FleetTask, TaskResult, run_task
from inspector.options import AnalysisOptions
from inspector.science.eigen import EigenBackend

#: Seconds to wait for the scheduler to answer before the run gives up (nothing has been read by then).
CONNECT_TIMEOUT = 10.0


class DaskRunner:
    """Runs fleet tasks on the cluster of one `distributed.Client`; a `TaskRunner`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def run(
        self,
        tasks: Sequence[FleetTask],
        options: AnalysisOptions,
        backend: EigenBackend,
        keep_spectra: bool,
    ) -> Generator[TaskResult, None, None]:
        rank = {id(task): place for place, task in enumerate(sorted(tasks, key=lambda task: task.cost))}
        futures = [
            self.client.submit(
                run_task,
                task,
                options,
                backend,
                keep_spectra,
                pure=False,
                priority=rank[id(task)],  # higher runs first: the costliest, so no large layer ends last
            )
            for task in tasks
        ]
        try:
            for future in futures:
                yield future.result()
        finally:
            self.client.cancel(futures)  # what is left, when the run stops early (an error, Ctrl-C)

    def close(self) -> None:
        self.client.close()


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> DaskRunner:
    """A runner on the Dask scheduler at `address` (tcp://host:8786, host:8786, or any address Dask takes).

    Raises:
        UsageError: dask's distributed package is not installed, the address is malformed, or no scheduler
            answers there within `timeout` seconds; nothing has been read (exit 2).
    """
    try:
        # Imported by name, typed Any: distributed is an optional extra and ships no type information.
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise UsageError(
            "--scheduler needs Dask's distributed package, which is not installed",
            hint="pip install 'wwinspect[dask]', or leave out --scheduler to run on this machine",
        ) from None
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--scheduler {address!r}: not a Dask scheduler address ({exc})") from None
    except (OSError, TimeoutError) as exc:
        raise UsageError(
            f"--scheduler {address!r}: no Dask scheduler answered within {timeout:g} s ({exc}); "
            "nothing was read",
            hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`; check the address",
        ) from None
    return DaskRunner(client)
