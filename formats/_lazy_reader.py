"""The part every lazy reader shares: entries planned at open, refs that read one entry each, closing.

A reader parses its file's metadata when it opens and keeps one entry per tensor (an object with the
tensor's `info` and whatever the reader needs to fetch its values). `LazyReader` turns those entries into
`TensorRef`s, refuses every use after `close()`, refuses to read a tensor the reader itself marked with
a skip reason, and keeps the metadata and warnings; a reader adds only how one entry's values are fetched
(`_fetch`) and what closing releases (`_release`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from formats._messages import quote_name
from formats.errors import FormatError, TensorError
from formats.types import Reader, TensorInfo, TensorRef


class Entry(Protocol):
    """What a reader keeps per tensor: at least its description."""

    @property
    def info(self) -> TensorInfo: ...


E = TypeVar("E", bound=Entry)


class LazyReader(Reader, Generic[E]):
    """A reader whose tensors are `entries`, planned when the file was opened.

    Attributes:
        warnings: what the user should hear about that did not stop the reading (shown in the report).
        bytes_materialized: tensor bytes read so far, for readers that count them (tests check laziness).
    """

    def __init__(
        self,
        path: Path,
        entries: Sequence[E],
        metadata: Mapping[str, str],
        warnings: tuple[str, ...] = (),
    ) -> None:
        super().__init__(path)
        self._entries: list[E] = list(entries)
        self._metadata = dict(metadata)
        self._closed = False
        self.warnings = warnings
        self.bytes_materialized = 0

    def tensors(self) -> Iterator[TensorRef]:
        """Yield every weight once, in the reader's order, without reading tensor bytes."""
        self._check_open()
        for entry in self._entries:
            yield TensorRef(info=entry.info, _fetch=partial(self._read, entry))

    def metadata(self) -> Mapping[str, str]:
        """Free-form file metadata, stringified; untrusted text."""
        return dict(self._metadata)

    def close(self) -> None:
        """Mark the reader closed and release what it holds; reads afterwards raise `FormatError`."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        """Free files, processes or memory maps the reader holds between reads."""

    def _check_open(self) -> None:
        if self._closed:
            raise FormatError("reader closed", path=self.path)

    def _read(self, entry: E) -> npt.NDArray[np.floating]:
        self._check_open()
        info = entry.info
        if info.skip_reason is not None:
            raise TensorError(f"tensor {quote_name(info.name)}: {info.skip_reason}", path=self.path)
        return self._fetch(entry)

    @abstractmethod
    def _fetch(self, entry: E) -> npt.NDArray[np.floating]:
        """The values of one entry that is not skipped (the reader is open)."""
