"""Printing rows for an operator: a table that fits the terminal, or tab-separated lines for a pipe.

Ids stay whole (they are copied into the next command). When a table with whole ids and readable columns does
not fit the terminal's width, each row prints as a block of `header: value` lines instead, wrapped to the width,
rather than squeezing columns down to one letter per line.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

ID_COLUMNS = frozenset({"id", "account", "mailbox", "connection"})
# Rich's default table: a border on each side and one space of padding either side of every cell.
_BORDER_PER_COLUMN = 3
_EDGES = 1


# A column may wrap between words; a word longer than this may be cut (a URL), a shorter one (a date) stays whole.
_LONGEST_WHOLE_WORD = 16


def _min_width(header: str, cells: Sequence[str]) -> int:
    if header in ID_COLUMNS:
        return max([len(header), *(len(cell) for cell in cells)])
    words = [len(word) for cell in cells for word in cell.split()]
    return max(len(header.split()[0]), min(max(words, default=0), _LONGEST_WHOLE_WORD))


def fits(width: int, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """Whether a table keeping ids whole and every other column at least its header's first word wide fits."""
    needed = _EDGES + sum(
        _min_width(header, [row[index] for row in rows]) + _BORDER_PER_COLUMN for index, header in enumerate(headers)
    )
    return needed <= width


def print_rows(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """`rows` under `headers`: tab-separated when not printed to a terminal, so ids are never cut and output pipes
    into tools; a table on a terminal when it fits, blocks of `header: value` lines when it does not."""
    if not console.is_terminal:
        for row in (headers, *rows):
            typer.echo("\t".join(" ".join(cell.split()) for cell in row))
        return
    if not fits(console.width, headers, rows):
        _print_blocks(console, title, headers, rows)
        return
    table = Table(title=title)
    for index, header in enumerate(headers):
        is_id = header in ID_COLUMNS
        table.add_column(
            header,
            no_wrap=is_id,
            min_width=_min_width(header, [row[index] for row in rows]),
            overflow="ellipsis" if is_id else "fold",
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: names are data, never markup
    console.print(table)


def _print_blocks(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    console.print(Text(title, style="bold"))
    label = max(len(header) for header in headers) + 1
    for row in rows:
        console.print()
        for header, cell in zip(headers, row, strict=True):
            line = Text(f"{header + ':':<{label}} ", style="bold")
            line.append(cell)
            console.print(line, overflow="fold")
