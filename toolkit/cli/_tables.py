"""Tables that fit the terminal, and the same rows for scripts (`--json`, `--csv`).

`print_table` prints a rich `Table` whole at any width: a column declared `no_wrap=True` (a path, a
name, an identifier) is never broken or cut; the others wrap at spaces, never into an ellipsis. When
the columns cannot stand side by side at the console's width, the rows are printed one after
another, the first cell as a heading and every other as an indented `header: value` line (a path on
its line whole, however long: the terminal wraps it, a copy of it is still the path).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from dcase9.files import json_text

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of the table.")]
CsvFlag = Annotated[bool, typer.Option("--csv", help="Print CSV for scripts (a header row, one row per line).")]

# A wrapping column is never narrower than this (or its longest line): narrower, its text is a word a line.
MIN_WRAPPED_WIDTH = 12


def print_table(table: Table, console: Console) -> None:
    """`table` at `console`'s width: side by side when its columns fit whole (see the module), else one
    row after another. Cells are text (markup strings or `Text`)."""
    headers = [_text(console, column.header) for column in table.columns]
    cells = [[_text(console, cell) for cell in column.cells] for column in table.columns]
    rows = [list(row) for row in zip(*cells, strict=True)]
    widths = _fitted_widths(table, headers, cells, console.width)
    if widths is None:
        _print_vertically(table, headers, rows, console)
        return
    title = table.title
    if title is not None and cell_len(_text(console, title).plain) > sum(widths) + _frame_width(table):
        # Wider than the table, rich would wrap it to the table's width, centred: a few words a line.
        console.print(_text(console, title, "table.title"))
        table.title = None
    for column, width in zip(table.columns, widths, strict=True):
        column.width = width
        if not column.no_wrap:
            column.overflow = "fold"  # a word never exceeds its column here; were one to, it folds (no ellipsis)
    console.print(table)


def _text(console: Console, renderable: RenderableType, style: str = "") -> Text:
    if isinstance(renderable, Text):
        return renderable
    if isinstance(renderable, str):
        return console.render_str(renderable, style=style, highlight=False)
    raise TypeError(f"print_table prints text cells, not {type(renderable).__name__}")


def _frame_width(table: Table) -> int:
    """Borders and padding around the columns' contents (rich's own rule for them)."""
    columns = len(table.columns)
    _, right, _, left = table.padding
    if table.collapse_padding:
        left, right = 0, abs(left - right)
    padding = columns * (left + right)
    if not table.pad_edge and columns:
        padding -= left + right
    borders = ((2 if table.show_edge else 0) + columns - 1) if table.box else 0
    return padding + borders


def _fitted_widths(table: Table, headers: list[Text], cells: list[list[Text]], width: int) -> list[int] | None:
    """Each column's width (its contents', without padding) when all fit `width` whole; None when they do not."""
    minimum, maximum = [], []
    for column, header, column_cells in zip(table.columns, headers, cells, strict=True):
        lines = [line for cell in column_cells for line in cell.plain.splitlines()]
        longest_line = max(map(cell_len, lines), default=0)
        header_lines = header.plain.splitlines() if table.show_header else []
        if column.no_wrap:  # rich keeps its header unwrapped too
            least = max([longest_line, *map(cell_len, header_lines)])
        else:
            words = [word for line in lines + header_lines for word in line.split()]
            least = max([min(longest_line, MIN_WRAPPED_WIDTH), *map(cell_len, words)])
        minimum.append(least)
        maximum.append(max([least, longest_line, *map(cell_len, header_lines)]))
    room = width - _frame_width(table)
    if sum(minimum) > room:
        return None
    # Spare room goes to the columns that want least first, each up to an even share of what is left: short
    # columns (numbers, a word or two) get their whole width, the long prose ones share the rest.
    spare, widths = room - sum(minimum), list(minimum)
    wanting = sorted(range(len(widths)), key=lambda k: maximum[k] - minimum[k])
    for rank, k in enumerate(wanting):
        given = min(maximum[k] - minimum[k], spare // (len(wanting) - rank))
        widths[k] += given
        spare -= given
    return widths


def _print_vertically(table: Table, headers: list[Text], rows: list[list[Text]], console: Console) -> None:
    if table.title is not None:
        console.print(_text(console, table.title, "table.title"))
    columns = table.columns
    if not table.show_header:  # a table of `key | value` rows: each row is one `key: value` line
        keys = [row[0].plain for row in rows]
        label_width = max(map(cell_len, keys), default=0) + 1
        for key, row in zip(keys, rows, strict=True):
            value = Text(" ").join(row[1:])
            _print_field(console, f"{key}:", label_width, value, whole=any(c.no_wrap for c in columns[1:]))
    else:
        keys = [header.plain for header in headers]
        label_width = max(map(cell_len, keys[1:]), default=0) + 3  # two spaces of indent and the colon
        for row in rows:
            heading = row[0].copy()
            heading.stylize("bold")
            console.print(heading, soft_wrap=True)
            for key, value, column in zip(keys[1:], row[1:], columns[1:], strict=True):
                _print_field(console, f"  {key}:", label_width, value, whole=column.no_wrap)
    if table.caption is not None:
        console.print(_text(console, table.caption, "table.caption"))


def _print_field(console: Console, label: str, label_width: int, value: Text, *, whole: bool) -> None:
    """`label value`, the value's lines under each other after the label; a `whole` value is never broken by
    rich (the terminal wraps a long one), the others wrap at spaces within the console's width."""
    indent = max(label_width, cell_len(label)) + 1
    room = max(console.width - indent, 1)
    if not whole and any(cell_len(word) > room for word in value.plain.split()):
        whole = True  # a word (a URL, a name) wider than the room left would be folded: the terminal wraps it whole
    lines = value.split("\n") if whole else value.wrap(console, room)
    for index, line in enumerate(lines or [Text("")]):
        line.rstrip()
        console.print(Text((label if index == 0 else "").ljust(indent)) + line, soft_wrap=True)


def number_cell(value: float | None) -> str:
    """A number in a table: three decimals, `-` for none (-0.0 prints as 0.000)."""
    return "-" if value is None else f"{round(value, 3) + 0.0:.3f}"


def print_json(payload: Any) -> None:
    """Strict JSON (a NaN is null) on standard output."""
    typer.echo(json_text(payload), nl=False)


def print_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """CSV on standard output: the header, then one line per row (None is an empty field)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    typer.echo(buffer.getvalue(), nl=False)


def one_of_json_csv(as_json: bool, as_csv: bool) -> None:
    """--json and --csv are two forms of one output: one at a time."""
    from dcase9.errors import ConfigError

    if as_json and as_csv:
        raise ConfigError("--json and --csv print the same rows in two forms: give one of them")
