"""The verbs of the command line: `wwinspect describe PATH` and `wwinspect compare A B`."""

from __future__ import annotations

from typing import Any

#: Verb names, and the module:function building each one's command.
VERBS: dict[str, str] = {}


def verb_command(name: str) -> Any:
    raise KeyError(name)
