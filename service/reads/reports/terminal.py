"""Tables for the command line that never break a number or a name across lines.

Rich folds a column that does not fit into fragments (``learn/ing_r/ate``,
``2.15e/+06``). ``show_table`` prints a table only at its natural width:
- piped (not a terminal): plain rows, columns aligned by spaces, however wide, so that
  ``grep``, ``awk`` and files get whole values;
- on a terminal wide enough: a rich table whose cells never wrap, except the ``wrap``
  columns (prose), which wrap between words;
- on a narrower terminal: one block per row, a ``header: value`` line per cell.

A column whose every filled cell is a number is right-aligned, so that digits line up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

# A rich table's frame: "│ " before every cell, " " after it, and the closing "│".
_PER_COLUMN = 3
# A number as the CLI prints one: 12, -0.5, 1.2e+06, 3,200, 45%, 2.0x.
_NUMBER = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?[%x]?", re.IGNORECASE)


def show_table(
    console: Console,
    *,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    wrap: Sequence[str] = (),
) -> None:
    """Print ``rows`` (cells may hold rich markup) under ``headers``; see the module."""
    if not headers:  # nothing to tabulate: the title says why
        console.print(title, highlight=False, markup=False)
    elif console.is_terminal:
        console.print(terminal_table(console, title=title, headers=headers, rows=rows, wrap=wrap))
    else:
        _plain(console, title, headers, [[Text.from_markup(c) for c in row] for row in rows])


def terminal_table(
    console: Console,
    *,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    wrap: Sequence[str] = (),
) -> RenderableType:
    """What ``show_table`` prints on a terminal (a rich table or one block per row), as a
    renderable for a live display."""
    cells = [[Text.from_markup(cell) for cell in row] for row in rows]
    if _natural_width(headers, cells, wrap) <= console.width:
        table = Table(title=title)
        numeric = _numeric_columns(len(headers), cells)
        for i, header in enumerate(headers):
            table.add_column(
                header,
                no_wrap=header not in wrap,
                overflow="fold",
                justify="right" if i in numeric else "left",
            )
        for row in cells:
            table.add_row(*row)
        return table
    lines: list[RenderableType] = [Text(title)]
    for row in cells:
        lines.append(Text())
        lines += [Text(f"  {header}: ") + cell for header, cell in zip(headers, row, strict=True)]
    return Group(*lines)


def _natural_width(headers: Sequence[str], rows: list[list[Text]], wrap: Sequence[str]) -> int:
    """Columns at their widest cell (a ``wrap`` column: at its longest word), framed."""
    total = 1
    for i, header in enumerate(headers):
        widths = [len(header)] + [_width(row[i], header in wrap) for row in rows]
        total += max(widths) + _PER_COLUMN
    return total


def _width(cell: Text, by_word: bool) -> int:
    if not by_word:
        return cell.cell_len
    return max((len(word) for word in cell.plain.split()), default=0)


def _plain(console: Console, title: str, headers: Sequence[str], rows: list[list[Text]]) -> None:
    widths = [
        max([len(header)] + [row[i].cell_len for row in rows]) for i, header in enumerate(headers)
    ]
    numeric = _numeric_columns(len(headers), rows)
    console.print(title, highlight=False, markup=False, soft_wrap=True)
    for line in [[Text(h) for h in headers], *rows]:
        padded = Text("  ").join(
            Text(" " * (width - cell.cell_len)) + cell
            if i in numeric
            else cell + " " * (width - cell.cell_len)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        padded.rstrip()
        console.print(padded, highlight=False, soft_wrap=True)


def _numeric_columns(n_columns: int, rows: list[list[Text]]) -> set[int]:
    """Indices of the columns whose filled cells are all numbers (and that have one)."""
    numeric = set()
    for i in range(n_columns):
        filled = [row[i].plain.strip() for row in rows if row[i].plain.strip() not in ("", "-")]
        if filled and all(_NUMBER.fullmatch(cell) for cell in filled):
            numeric.add(i)
    return numeric


def plural(n: int, noun: str) -> str:
    """``1 point``, ``2 points``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
