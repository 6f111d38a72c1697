"""The progress display on a terminal's stderr: from the first byte of each file to its last layer.

Each file gets one line while it is worked on: a spinner and "reading NAME" from the moment it is opened
(listing a multi-GB checkpoint, or reading its first large tensor, takes seconds), then a bar over its
tensors with the elapsed time and an estimate of the time left, and the last layer finished. The line is
removed when the file is done and the whole display is transient, so nothing of it stays on the terminal.

Names come from files: they are shown as plain text (never as rich markup: a file named `[red]y.pt` prints
as such), with control characters escaped.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from inspector.records import ModelReport
from inspector.render import safe_text

#: Characters of a layer name shown beside the bar.
NAME_CELLS = 40


class ProgressDisplay:
    """Callbacks for `analyze_paths` (`on_file`, `progress`, and the hooks' `listed` and `finished`)."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta", style="dim"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[layer]}", markup=False, style="dim"),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, traceback)

    def _done(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None

    def on_file(self, path: Path) -> None:
        """A file is about to be opened: show it from now on."""
        self._done()
        name = safe_text(path.name or str(path), 80)
        self._task = self._progress.add_task(f"reading {name}", total=None, layer="")
        self._progress.refresh()  # shown now, not at the next tick: listing a large file takes a while

    def listed(self, path: Path, file_format: str, count: int) -> None:
        """The file is listed: the bar now counts its tensors."""
        if self._task is not None:
            name = safe_text(path.name or str(path), 80)
            self._progress.update(self._task, description=f"{name} ({file_format})", total=count, completed=0)

    def layer(self, name: str, done: int, total: int) -> None:
        """A tensor is done."""
        if self._task is not None:
            self._progress.update(self._task, completed=done, total=total, layer=safe_text(name, NAME_CELLS))

    def finished(self, report: ModelReport) -> None:
        self._done()
