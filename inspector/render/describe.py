"""`wwinspect describe` in every format: one row per tensor, what it is and whether it would be analysed.

The JSON document (`describe_document`) has its own shape: `{"schema_version": 1, "tool", "command":
"describe", "files": [{"path", "format", "tensors": [...], "summary", "metadata", "warnings"} or
{"path", "format": null, "error"}]}`. A tensor is `{"index", "name", "shape", "dtype", "bytes", "kind",
"role", "analysed", "N", "M", "num_slices", "reason", "aliases", "origin"}`; JSON Lines carries one
`{"type": "tensor", "path", ...}` line per tensor, then a `{"type": "file", ...}` line per file. GitHub
annotations are one notice per file (there is nothing to fail on), SARIF a log with the files as
artifacts and no results.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from inspector import __version__
from inspector.describe import Description, TensorEntry
from inspector.render import chars, safe_text, view
from inspector.render.chars import Glyphs

SCHEMA_VERSION = 1
#: Cells the tensor name gets at least, and at most, in the terminal table.
NAME_MIN, NAME_MAX = 12, 60
#: From this width on the table shows the kind and the full reason (narrower: the reason's category).
WIDE = 120


def size_text(nbytes: int) -> str:
    """Bytes for people: 512 B, 1.5 KB, 2.3 MB, 1.2 GB (powers of 1000, as file managers show them)."""
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def matrix_text(entry: TensorEntry, glyphs: Glyphs = chars.UNICODE) -> str:
    """'384x64', '64x32 x9' (nine conv slices; with the glyphs' times sign), or '' for no matrix."""
    if entry.N is None or entry.M is None:
        return ""
    text = f"{entry.N}{glyphs.times}{entry.M}"
    return text + (f" {glyphs.times}{entry.num_slices}" if entry.num_slices > 1 else "")


def summary_line(description: Description) -> str:
    total = len(description.tensors)
    return (
        f"{chars.plural(total, 'tensor')}, {size_text(description.total_bytes)}; "
        f"{description.analysable} would be analysed, {total - description.analysable} skipped"
    )


# --- JSON, JSON Lines, CSV --------------------------------------------------------------------------------


def tensor_dict(entry: TensorEntry) -> dict[str, Any]:
    return {
        "index": entry.index,
        "name": entry.name,
        "shape": list(entry.shape),
        "dtype": entry.dtype,
        "encoding": entry.encoding,
        "bytes": entry.nbytes,
        "kind": entry.kind.value,
        "role": entry.role,
        "analysed": entry.analysed,
        "N": entry.N,
        "M": entry.M,
        "num_slices": entry.num_slices,
        "reason": entry.reason,
        "aliases": list(entry.aliases),
        "origin": entry.origin,
    }


def file_dict(description: Description) -> dict[str, Any]:
    document: dict[str, Any] = {"path": description.path, "format": description.format}
    if description.error is not None:
        document["error"] = {"kind": description.error.kind, "message": description.error.message}
        return document
    document["tensors"] = [tensor_dict(entry) for entry in description.tensors]
    document["summary"] = {
        "tensors": len(description.tensors),
        "bytes": description.total_bytes,
        "analysed": description.analysable,
        "skipped": len(description.tensors) - description.analysable,
    }
    document["metadata"] = {key: value[:500] for key, value in (description.metadata or {}).items()}
    document["warnings"] = list(description.warnings)
    return document


def describe_document(descriptions: Sequence[Description]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "wwinspect", "version": __version__},
        "command": "describe",
        "files": [file_dict(description) for description in descriptions],
    }


def to_json(descriptions: Sequence[Description]) -> str:
    return json.dumps(describe_document(descriptions), indent=2) + "\n"


def to_jsonl(descriptions: Sequence[Description]) -> str:
    lines: list[str] = []
    for description in descriptions:
        document = file_dict(description)
        for tensor in document.pop("tensors", []):
            lines.append(json.dumps({"type": "tensor", "path": description.path, **tensor}))
        lines.append(json.dumps({"type": "file", **document}))
    return "".join(line + "\n" for line in lines)


_CSV_COLUMNS: tuple[str, ...] = ("path", "format", "index", "name", "shape", "dtype", "encoding", "bytes")
_CSV_COLUMNS += ("kind", "role", "analysed", "N", "M", "num_slices", "reason", "aliases", "origin")


def to_csv(descriptions: Sequence[Description]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for description in descriptions:
        if description.error is not None:
            writer.writerow({"path": description.path, "reason": safe_text(description.error.message, 2000)})
            continue
        for entry in description.tensors:
            row = tensor_dict(entry)
            row.update(
                path=description.path,
                format=description.format,
                name=safe_text(entry.name, 10_000),
                shape="x".join(str(dim) for dim in entry.shape),
                aliases=";".join(safe_text(alias) for alias in entry.aliases),
                reason=safe_text(entry.reason or "", 2000),
                origin=safe_text(entry.origin, 2000),
            )
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


# --- People: table, Markdown, HTML --------------------------------------------------------------------------


#: A type name longer than this (a note on how the tensor was stored) stays out of the narrow cells.
TYPE_CELLS = 10


def type_text(entry: TensorEntry) -> str:
    """The format's own type name when it is a short one (Q4_K), else the element type."""
    encoding = entry.encoding
    return encoding if encoding and len(encoding) <= TYPE_CELLS else entry.dtype


def _analysed_text(entry: TensorEntry, glyphs: Glyphs) -> str:
    return f"yes {matrix_text(entry, glyphs)}" if entry.analysed else "no"


def file_view(description: Description) -> RenderableType:
    """One described file for the terminal, laid out for the console's width and encoding."""
    from inspector.render.table import Adaptive, elide_all, new_table

    def build(glyphs: Glyphs, width: int) -> Iterable[RenderableType]:
        title = Text(chars.display_text(description.path, glyphs, 300), style="bold")
        if description.error is not None:
            yield Text(
                f"{chars.display_text(description.path, glyphs)}: cannot be read: "
                f"{chars.display_text(description.error.message, glyphs, 300)}",
                style="red",
            )
            return
        title.append(f" ({description.format})", style="dim")
        yield title
        names = [chars.display_text(entry.name, glyphs) for entry in description.tensors]
        full_reasons = width >= WIDE
        rows = [
            [
                str(entry.index),
                glyphs.times.join(str(dim) for dim in entry.shape),
                type_text(entry),
                size_text(entry.nbytes),
                entry.kind.value,
                _analysed_text(entry, glyphs),
                chars.display_text(entry.reason or "", glyphs, 300)
                if full_reasons
                else (view.skip_category(entry.reason).value if entry.reason else ""),
            ]
            for entry in description.tensors
        ]
        headers = ["#", "shape", "dtype", "size", "kind", "analysed", "why not"]
        shown = [i for i in range(len(headers)) if i != 4 or width >= WIDE]  # kind only when wide
        widths = {i: max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in shown}
        reason_room = widths[6] if not full_reasons else min(widths[6], max(30, width // 3))
        fixed = sum(widths[i] for i in shown if i != 6) + reason_room + 2 * len(shown)  # 2: padding
        longest = max([len(name) for name in names] + [6])
        name_width = max(NAME_MIN, min(NAME_MAX, width - fixed, longest))
        table = new_table(glyphs, ruled=False)
        for i in shown[:1]:
            table.add_column(headers[i], justify="right", style="dim", no_wrap=True)
        table.add_column("tensor", width=name_width, no_wrap=True)
        for i in shown[1:]:
            table.add_column(
                headers[i],
                justify="right" if i == 3 else "left",
                no_wrap=i != 6,
                overflow="fold" if i == 6 else "ellipsis",
            )
        short = elide_all(names, name_width, glyphs.ellipsis)
        for entry, name, row in zip(description.tensors, short, rows, strict=True):
            cells = [row[0], name, *(row[i] for i in shown[1:])]
            table.add_row(*cells, style="" if entry.analysed else "dim")
        yield table
        yield Text(summary_line(description))
        for warning in description.warnings:
            yield Text(f"warning: {chars.display_text(warning, glyphs, 300)}", style="yellow")

    return Adaptive(build)


def build_view(descriptions: Sequence[Description]) -> RenderableType:
    parts: list[RenderableType] = []
    for position, description in enumerate(descriptions):
        if position:
            parts.append(Text(""))
        parts.append(file_view(description))
    return Group(*parts)


def _md(text: str) -> str:
    return (
        safe_text(text, 10_000).replace("|", "\\|").replace("`", "'").replace("*", "\\*").replace("_", "\\_")
    )


def _code(text: str) -> str:
    return "`" + safe_text(text, 10_000).replace("`", "'").replace("|", "\\|") + "`" if text else ""


def to_markdown(descriptions: Sequence[Description], glyphs: Glyphs = chars.UNICODE) -> str:
    lines: list[str] = []
    for description in descriptions:
        lines.extend([f"### {_code(description.path)} ({description.format or 'unreadable'})", ""])
        if description.error is not None:
            lines.extend([f"Cannot be read: {_md(description.error.message)}", ""])
            continue
        lines.append("| # | tensor | shape | dtype | size | kind | role | analysed | why not |")
        lines.append("|---:|---|---|---|---:|---|---|---|---|")
        for entry in description.tensors:
            shape = glyphs.times.join(str(dim) for dim in entry.shape)
            cells = (
                str(entry.index),
                _code(entry.name),
                shape,
                _md(type_text(entry)),
                size_text(entry.nbytes),
                entry.kind.value,
                entry.role or "",
                _analysed_text(entry, glyphs),
                _md(entry.reason or ""),
            )
            lines.append("| " + " | ".join(cells) + " |")
        lines.extend(["", _md(summary_line(description)), ""])
    text = "\n".join(lines).rstrip("\n") + "\n"
    return text.encode("ascii", "backslashreplace").decode("ascii") if glyphs.ascii else text


def to_html(descriptions: Sequence[Description]) -> str:
    from inspector.render.html import CONTENT_SECURITY_POLICY

    sections = []
    for description in descriptions:
        path = escape(safe_text(description.path, 300))
        if description.error is not None:
            sections.append(
                f"<h2>{path}</h2><p>Cannot be read: {escape(safe_text(description.error.message, 500))}</p>"
            )
            continue
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{escape(cell)}</td>"
                for cell in (
                    str(entry.index),
                    safe_text(entry.name, 300),
                    "×".join(str(dim) for dim in entry.shape),
                    type_text(entry),
                    size_text(entry.nbytes),
                    entry.kind.value,
                    entry.role or "",
                    _analysed_text(entry, chars.UNICODE),
                    safe_text(entry.reason or "", 500),
                )
            )
            + "</tr>"
            for entry in description.tensors
        )
        head = "".join(
            f"<th>{name}</th>"
            for name in ("#", "tensor", "shape", "dtype", "size", "kind", "role", "analysed", "why not")
        )
        sections.append(
            f"<h2>{path} ({escape(description.format or '')})</h2><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table><p>{escape(summary_line(description))}</p>"
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">"
        "<title>wwinspect describe</title><style>body{font-family:system-ui,sans-serif;margin:1.5em}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
        "</style></head><body><h1>wwinspect describe</h1>" + "".join(sections) + "</body></html>\n"
    )


# --- CI formats ----------------------------------------------------------------------------------------


def to_github(descriptions: Sequence[Description]) -> str:
    from inspector.render.github import escape_data, escape_property

    lines = []
    for description in descriptions:
        kind = "error" if description.error is not None else "notice"
        message = description.error.message if description.error is not None else summary_line(description)
        properties = f"file={escape_property(safe_text(description.path, 1000))},title=wwinspect describe"
        lines.append(f"::{kind} {properties}::{escape_data(safe_text(message, 2000))}")
    return "".join(line + "\n" for line in lines)


def to_sarif(descriptions: Sequence[Description]) -> str:
    from inspector.render.sarif import SARIF_SCHEMA, SARIF_VERSION, artifact_location

    notes = [
        {
            "level": "error",
            "message": {"text": f"cannot be read: {description.error.message}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {**artifact_location(description.path), "index": i}
                    }
                }
            ],
        }
        for i, description in enumerate(descriptions)
        if description.error is not None
    ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {"name": "wwinspect", "version": __version__, "semanticVersion": __version__}
                },
                "artifacts": [
                    {"location": artifact_location(description.path), "roles": ["analysisTarget"]}
                    for description in descriptions
                ],
                "invocations": [
                    {
                        "executionSuccessful": all(d.error is None for d in descriptions),
                        "toolExecutionNotifications": notes,
                    }
                ],
                "results": [],
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"
