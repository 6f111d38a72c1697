"""The terminal report: per model a title, a table that fits the width, a summary panel, a legend and a
footer; built as rich renderables (nothing here prints).

The table adapts when rich renders it, to the width and encoding it is given:
* columns are dropped in the order of `SHRINK_STEPS` until the layer names get `NAME_TARGET` cells (or their
  full length), then names that are still too long lose their middle (`elide`);
* when the stream's encoding cannot show box drawing, block characters or Greek (cp1252, latin-1), every
  character of the report is ASCII (`inspector.render.chars.glyphs_for_encoding`).
What a cell says is decided in `inspector.render.view`, shared with Markdown and HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from inspector.gate import GateResult
from inspector.records import ModelReport, Status
from inspector.render import attention, chars, view
from inspector.render.chars import Glyphs
from inspector.render.view import Row

#: Columns removed (or shortened) one step at a time, in this order: first the extra columns (EXTRA_KEYS),
#: while any name would be cut, then the others while the names get fewer than NAME_TARGET cells, least
#: necessary first. The layer number, name, alpha and phase are never dropped.
SHRINK_STEPS: tuple[tuple[str, str], ...] = (
    ("drop", "stable_rank"),
    ("drop", "log_norm"),
    ("drop", "alpha_weighted"),
    ("drop", "num_spikes"),
    ("drop", "num_pl_spikes"),
    ("drop", "kind"),
    ("drop", "lambda_max"),
    ("drop", "D"),
    ("shorten", "band"),
    ("drop", "num_traps"),  # shown only under --randomize, which asked for them: kept longer
    ("drop", "shape"),
    ("drop", "rand_distance"),
    ("drop", "esd"),
    ("drop", "band"),
)
#: Columns only a terminal wide enough for the whole names shows.
EXTRA_KEYS = frozenset({"stable_rank", "log_norm", "alpha_weighted", "num_spikes", "num_pl_spikes"})
#: Cells a layer name should get before a column is dropped for it (a typical transformer name with its
#: block number and module stays whole or loses only a middle word).
NAME_TARGET = 28
#: Fewest cells a name column ever gets, however narrow the terminal.
NAME_MIN = 8
#: Cells between two columns.
GAP = 2
#: Width of a table written to a pipe or file when COLUMNS does not say: the wide layout of a 160-column
#: terminal, so that saved reports keep their columns.
PIPE_WIDTH = 160
#: Narrowest width honoured from COLUMNS; below it the layout would be nothing but elided names.
MIN_WIDTH = 40

_PHASE_STYLE = {
    "random-like": "yellow",
    "bleeding-out": "yellow",
    "bulk+spikes": "cyan",
    "bulk-decay": "cyan",
    "heavy-tailed": "green",
    "rank-collapse": "red",
    "failed": "red",
}
_GATE_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "violation": "red",
    "known": "yellow",
    "unchecked": "yellow",
}
_BAND_STYLE = {"over-trained": "magenta", "well-trained": "green", "under-trained": "yellow"}
# The simple look (a rule under the header, no frame) in ASCII.
_ASCII_HEAD = box.Box("    \n    \n -- \n    \n    \n -- \n    \n    \n", ascii=True)


def report_width(*, is_terminal: bool, environ: Mapping[str, str], terminal_columns: int | None) -> int:
    """The width the table is laid out for: COLUMNS when it is set (terminal or pipe, as
    `shutil.get_terminal_size` reads it), else the terminal's width, else PIPE_WIDTH."""
    columns = environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) >= MIN_WIDTH:
        return int(columns)
    if is_terminal and terminal_columns:
        return max(terminal_columns, 1)
    return PIPE_WIDTH


# --- Names ----------------------------------------------------------------------------------------------

_COMPONENT = re.compile(r"([./])")


def elide(name: str, width: int, ellipsis: str = "…", protect: frozenset[int] = frozenset()) -> str:
    """`name` in at most `width` cells, cut in the middle.

    Whole middle components of a dotted or slashed name go first, never a number (the block index is what
    tells `layers.3` from `layers.4`) nor a component whose position is in `protect`: the shortest one whose
    removal is enough, else the longest and on. Names that would still not fit lose characters from the
    middle, keeping more of the end than of the start (the end, `.q_proj.weight`, tells layers apart).
    """
    if cell_len(name) <= width:
        return name
    words, seps = _components(name)
    keep = [True] * len(words)
    while True:
        middle = [
            i for i in range(1, len(words) - 1) if keep[i] and not words[i].isdigit() and i not in protect
        ]
        if not middle:
            break
        trials = [(cell_len(words[i]), i, _joined(words, seps, _without(keep, i), ellipsis)) for i in middle]
        fitting = [trial for trial in trials if cell_len(trial[2]) <= width]
        if fitting:
            return min(fitting)[2]
        keep[max(trials, key=lambda trial: (trial[0], -trial[1]))[1]] = False
    return _cut_middle(name, width, ellipsis)


def elide_all(names: Sequence[str], width: int, ellipsis: str = "…") -> list[str]:
    """Each name elided to `width`, keeping different names different where the width allows.

    Where two different names would read the same, they are elided again keeping the components in which
    the colliding names differ (`layers.0.mlp.gate_proj.weight` and `...up_proj.weight` keep `gate_proj`
    and `up_proj`), and where that still collides they are cut by characters (`bi/forward_lstm/...` and
    `bi/backward_lstm/...` must not both become `bi/…/...`). `names_are_distinct` tells whether it worked.
    """
    short = [elide(name, width, ellipsis) for name in names]
    for retry in (_elide_protecting_differences, _cut_by_characters):
        groups = _collisions(names, short)
        if not groups:
            break
        for group in groups:
            for index, text in zip(group, retry([names[i] for i in group], width, ellipsis), strict=True):
                short[index] = text
    return short


def names_are_distinct(names: Sequence[str], shown: Sequence[str]) -> bool:
    """Whether different names are shown differently."""
    return not _collisions(names, shown)


def _collisions(names: Sequence[str], shown: Sequence[str]) -> list[list[int]]:
    """Positions of the names that share a shown text with a different name, grouped by that text."""
    by_text: dict[str, list[int]] = {}
    for index, text in enumerate(shown):
        by_text.setdefault(text, []).append(index)
    return [group for group in by_text.values() if len({names[i] for i in group}) > 1]


def _elide_protecting_differences(group: Sequence[str], width: int, ellipsis: str) -> list[str]:
    split = [_components(name)[0] for name in group]
    protect = frozenset(
        position
        for position in range(max(len(words) for words in split))
        if len({words[position] if position < len(words) else None for words in split}) > 1
    )
    return [elide(name, width, ellipsis, protect) for name in group]


def _cut_by_characters(group: Sequence[str], width: int, ellipsis: str) -> list[str]:
    return [name if cell_len(name) <= width else _cut_middle(name, width, ellipsis) for name in group]


def _components(name: str) -> tuple[list[str], list[str]]:
    """The words of a dotted or slashed name and the separators between them."""
    parts = _COMPONENT.split(name)
    return parts[0::2], parts[1::2]


def _without(keep: list[bool], index: int) -> list[bool]:
    trial = list(keep)
    trial[index] = False
    return trial


def _joined(words: list[str], seps: list[str], keep: list[bool], ellipsis: str) -> str:
    out: list[str] = []
    for i, word in enumerate(words):
        if keep[i]:
            out.append(word)
        elif i == 0 or keep[i - 1]:
            out.append(ellipsis)
        else:
            out.pop()  # a run of dropped words is one ellipsis: drop the separator between them
        if i < len(seps):
            out.append(seps[i])
    return "".join(out)


def _cut_middle(text: str, width: int, ellipsis: str) -> str:
    room = width - cell_len(ellipsis)
    if room <= 0:
        return ellipsis[:width]
    tail_room = (room * 3 + 4) // 5  # the end of a name (".q_proj.weight") tells layers apart
    head_room = room - tail_room
    head, tail = "", ""
    for char in text:
        if cell_len(head + char) > head_room:
            break
        head += char
    for char in reversed(text):
        if cell_len(char + tail) > tail_room:
            break
        tail = char + tail
    return head + ellipsis + tail


def _name_text(row: Row, glyphs: Glyphs, width: int | None) -> str:
    """The name with its aliases when they fit in `width` (None: no limit), else the name alone (the caller
    elides it)."""
    name = view.cell(row, "layer", glyphs)
    if row.layer.aliases:
        aliases = ", ".join(chars.display_text(alias, glyphs, 60) for alias in row.layer.aliases)
        with_aliases = f"{name} (= {aliases})"
        if width is None or cell_len(with_aliases) <= width:
            return with_aliases
    return name


# --- Layout ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns a table shows at one width, each column's width, and the name column's."""

    keys: tuple[str, ...]
    short: frozenset[str]
    widths: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.widths[key] for key in self.keys) + GAP * (len(self.keys) - 1)


def plan_layout(table_rows: Sequence[Row], width: int, glyphs: Glyphs) -> Layout:
    """Choose columns for `width` cells: shrink by SHRINK_STEPS until the names fit, or get NAME_TARGET cells
    and stay distinct once elided."""
    keys = list(view.column_keys(table_rows))
    short: set[str] = set()
    natural_name = max([cell_len(_name_text(row, glyphs, None)) for row in table_rows] + [5])
    full_names = [view.cell(row, "layer", glyphs) for row in table_rows]

    def natural(key: str) -> int:
        shorten = key in short
        cells = [cell_len(view.cell(row, key, glyphs, short=shorten)) for row in table_rows]
        return max([cell_len(view.header(key, glyphs, short=shorten)), *cells])

    steps: list[tuple[str, str] | None] = [None, *SHRINK_STEPS]
    budget = 0
    for step in steps:
        if step is not None:
            action, key = step
            if action == "drop" and key in keys:
                keys.remove(key)
            elif action == "shorten":
                short.add(key)
        fixed = sum(natural(key) for key in keys if key != "layer") + GAP * (len(keys) - 1)
        budget = width - fixed
        needed = natural_name if EXTRA_KEYS & set(keys) else min(natural_name, NAME_TARGET)
        if budget >= needed and (
            budget >= natural_name or names_are_distinct(full_names, elide_all(full_names, budget))
        ):
            break
    widths = {key: natural(key) for key in keys if key != "layer"}
    widths["layer"] = max(NAME_MIN, min(natural_name, budget))
    return Layout(keys=tuple(keys), short=frozenset(short), widths=widths)


# --- Renderables ----------------------------------------------------------------------------------------


class _Adaptive:
    """A renderable built when rich renders it, for the width and encoding of that moment."""

    def __init__(self, build: Callable[[Glyphs, int], Iterable[RenderableType]]) -> None:
        self._build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        glyphs = chars.glyphs_for_encoding(options.encoding)
        yield from self._build(glyphs, options.max_width)


#: For other renderables laid out at render time (`render.describe`, `render.compare`).
Adaptive = _Adaptive


def _styled_cell(row: Row, key: str, glyphs: Glyphs, layout: Layout, name: str) -> Text:
    if key == "layer":
        return Text(name)
    text = view.cell(row, key, glyphs, short=key in layout.short)
    layer = row.layer
    style = ""
    if key == "phase":
        style = _PHASE_STYLE.get(layer.phase.value if layer.phase is not None else text, "")
    elif key == "band" and layer.alpha_label is not None:
        style = _BAND_STYLE.get(layer.alpha_label.value, "") if view.band_applies(layer) else "dim"
    elif key == "alpha" and layer.alpha_label is not None and view.band_applies(layer):
        style = _BAND_STYLE.get(layer.alpha_label.value, "")
    elif key == "esd":
        style = "blue"
    elif key == "number":
        style = "dim"
    return Text(text, style=style)


def new_table(glyphs: Glyphs, *, ruled: bool = True, collapse_padding: bool = False) -> Table:
    """A table as every report draws one: no outer edge, one space between columns, bold headers, a rule
    under the header when `ruled` (ASCII dashes when the stream cannot show box drawing)."""
    rule = (_ASCII_HEAD if glyphs.ascii else box.SIMPLE_HEAD) if ruled else None
    return Table(
        box=rule,
        show_edge=False,
        pad_edge=False,
        collapse_padding=collapse_padding,
        padding=(0, 1),
        header_style="bold",
        safe_box=glyphs.ascii,
    )


def layer_table(table_rows: Sequence[Row], glyphs: Glyphs, width: int) -> Table:
    """The measured layers (analysed and failed), laid out for `width` cells."""
    layout = plan_layout(table_rows, width, glyphs)
    table = new_table(glyphs, collapse_padding=True)
    for key in layout.keys:
        table.add_column(
            view.header(key, glyphs, short=key in layout.short),
            justify="right" if key in view.NUMERIC_KEYS else "left",
            width=layout.widths[key],
            no_wrap=True,
            overflow="ellipsis" if not glyphs.ascii else "crop",
        )
    width_of_names = layout.widths["layer"]
    names = elide_all(
        [_name_text(row, glyphs, width_of_names) for row in table_rows], width_of_names, glyphs.ellipsis
    )
    for row, name in zip(table_rows, names, strict=True):
        table.add_row(*(_styled_cell(row, key, glyphs, layout, name) for key in layout.keys))
    return table


def skipped_table(table_rows: Sequence[Row], glyphs: Glyphs, width: int) -> Table:
    """The skipped tensors with their reason's category and the reason (--show-skipped)."""
    name_width = max(
        NAME_MIN, min(max(cell_len(view.cell(row, "layer", glyphs)) for row in table_rows), width // 3)
    )
    table = new_table(glyphs, collapse_padding=True)
    cut: Literal["crop", "ellipsis"] = "crop" if glyphs.ascii else "ellipsis"
    table.add_column("skipped tensor", width=name_width, no_wrap=True, overflow=cut)
    table.add_column("shape", no_wrap=True, overflow=cut)
    table.add_column("why", no_wrap=True, overflow=cut)
    table.add_column("reason", overflow="fold", ratio=1)
    for row in table_rows:
        table.add_row(
            Text(elide(view.cell(row, "layer", glyphs), name_width, glyphs.ellipsis), style="dim"),
            Text(view.cell(row, "shape", glyphs), style="dim"),
            Text(row.category.value if row.category else "", style="dim"),
            Text(chars.display_text(row.layer.reason or "", glyphs, 300), style="dim"),
        )
    return table


def summary_panel(report: ModelReport, table_rows: Sequence[Row], glyphs: Glyphs, width: int) -> Table | None:
    """Counts, mean and weighted alpha, phase counts, and the layers most worth a look with their reasons."""
    summary = report.summary
    if summary is None:
        return None
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("summary", view.counts_line(summary, len(report.layers)))
    alpha = view.alpha_line(summary, glyphs)
    if alpha is not None:
        grid.add_row("alpha", alpha)
    phases = view.phase_counts(summary)
    if phases:
        grid.add_row(
            "phases",
            Text(glyphs.dot).join(
                Text(f"{phase.value} {count}", style=_PHASE_STYLE.get(phase.value, ""))
                for phase, count in phases
            ),
        )
    worth = attention.attention(table_rows)
    name_room = max(NAME_MIN, min(NAME_TARGET + 12, width // 2))
    for position, line in enumerate(worth.lines):
        grid.add_row("look at" if position == 0 else "", attention_text(line, glyphs, name_room))
    if worth.more:
        grid.add_row("", Text(f"and {chars.plural(worth.more, 'more layer')} with a concern", style="dim"))
    return grid


#: Layers named on a line that groups several layers sharing one concern.
NAMES_PER_GROUP = 3


def attention_text(line: attention.AttentionLine, glyphs: Glyphs, name_room: int) -> Text:
    """'#3 fc3.weight: reason; reason' or '6 layers: reason: #1 a, #2 b, #3 c and 3 more'."""
    text = Text()
    if len(line.rows) == 1:
        row = line.rows[0]
        text.append(f"#{row.number} ", style="dim")
        text.append(elide(view.cell(row, "layer", glyphs), name_room, glyphs.ellipsis), style="bold")
        text.append(": " + chars.display_text("; ".join(line.reasons), glyphs, 400))
        return text
    text.append(f"{chars.plural(len(line.rows), 'layer')}: {chars.display_text(line.reasons[0], glyphs)}: ")
    for position, row in enumerate(line.rows[:NAMES_PER_GROUP]):
        if position:
            text.append(", ")
        text.append(f"#{row.number} ", style="dim")
        text.append(elide(view.cell(row, "layer", glyphs), name_room, glyphs.ellipsis), style="bold")
    if len(line.rows) > NAMES_PER_GROUP:
        text.append(f" and {len(line.rows) - NAMES_PER_GROUP} more")
    return text


def _title(report: ModelReport, glyphs: Glyphs) -> Text:
    title = Text(chars.display_text(report.path, glyphs, 300), style="bold")
    title.append(f" ({report.format})", style="dim")
    return title


def model_view(report: ModelReport, *, show_skipped: bool) -> RenderableType:
    """One readable model: title, layer table, summary panel, legend, skipped tensors or their count."""

    def build(glyphs: Glyphs, width: int) -> Iterable[RenderableType]:
        all_rows, order = view.rows(report)
        measured = [row for row in all_rows if row.layer.status is not Status.SKIPPED]
        skipped = [row for row in all_rows if row.layer.status is Status.SKIPPED]
        yield _title(report, glyphs)
        if measured:
            yield layer_table(measured, glyphs, width)
        panel = summary_panel(report, measured, glyphs, width)
        if panel is not None:
            yield panel
        for line in view.legend(measured, glyphs):
            yield Text(line, style="dim")
        if measured:
            yield Text(view.order_line(order, len(measured)), style="dim")
        for warning in report.warnings:
            yield Text(f"warning: {chars.display_text(warning, glyphs, 300)}", style="yellow")
        if skipped and show_skipped:
            yield skipped_table(skipped, glyphs, width)
        elif skipped:
            hidden = view.hidden_line(skipped)
            if hidden is not None:
                yield Text(hidden, style="dim")

    return _Adaptive(build)


def error_view(report: ModelReport) -> RenderableType:
    """A file that could not be read, in the place of its table."""
    message = report.error.message if report.error is not None else "unknown error"

    def build(glyphs: Glyphs, width: int) -> Iterable[RenderableType]:
        path = chars.display_text(report.path, glyphs)
        yield Text(f"{path}: cannot be read: {chars.display_text(message, glyphs, 300)}", style="red")

    return _Adaptive(build)


#: Violations listed under the tables; the rest are counted (every one is in the JSON report).
MAX_VIOLATIONS_SHOWN = 50


def gate_view(gate: GateResult, active: bool) -> RenderableType | None:
    """The gate's verdict under the tables, when a gate was asked for: violations, then what the baseline
    already had, then the layers it could not check."""
    if not active:
        return None

    def build(glyphs: Glyphs, width: int) -> Iterable[RenderableType]:
        for line in view.gate_lines(gate, MAX_VIOLATIONS_SHOWN):
            text = line.text if line.layer is None else f"  {line.layer}: {line.text}"
            yield Text(chars.display_text(text, glyphs, 600), style=_GATE_STYLE[line.style])

    return _Adaptive(build)


def build_tables(
    reports: Sequence[ModelReport], gate: GateResult, *, gate_active: bool, show_skipped: bool
) -> RenderableType:
    """Everything the table format prints, one model after another, then the gate."""
    parts: list[RenderableType] = []
    for position, report in enumerate(reports):
        if position:
            parts.append(Text(""))
        parts.append(
            error_view(report) if report.error is not None else model_view(report, show_skipped=show_skipped)
        )
    verdict = gate_view(gate, gate_active)
    if verdict is not None:
        parts.append(verdict)
    return Group(*parts)
