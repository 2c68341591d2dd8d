"""The one table printer of the CLI: words and names are never cut in the middle.

rich shrinks columns to the terminal and, with `overflow="fold"`, breaks words anywhere ("register_stra|tegies").
Each column here is at least as wide as its longest word (up to `MAX_WORD`), so rich wraps between words; only a
word longer than that is folded.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

MAX_WORD = 32
_MARKUP = re.compile(r"\[/?[a-z ]+\]")


def _longest_word(text: str) -> int:
    return max((len(w) for w in _MARKUP.sub("", text).split()), default=0)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], stderr: bool = False,
                **column_options: dict) -> None:
    """Print a rich table; `column_options` maps a column name to extra `add_column` keywords (e.g. justify)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=stderr)
    rows = [[str(c) for c in row] for row in rows]
    mins = [min(MAX_WORD, max([_longest_word(col)] + [_longest_word(r[i]) for r in rows]))
            for i, col in enumerate(columns)]
    if sum(mins) > console.width - (3 * len(columns) + 1):  # borders and padding
        _print_records(console, title, columns, rows)
        return
    table = Table(title=title)
    for col, width in zip(columns, mins):
        table.add_column(col, overflow="fold", min_width=width, **column_options.get(col, {}))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _print_records(console, title: str, columns: Sequence[str], rows: list[list[str]]) -> None:
    """Too narrow a terminal for the columns at word width: one block per row, `column: value` lines."""
    import textwrap

    from rich.markup import escape

    console.print(escape(title), highlight=False)
    for row in rows:
        console.print(f"[bold]{escape(row[0])}[/bold]" if row[0] else "-")
        for col, value in zip(columns[1:], row[1:]):
            if not value:
                continue
            parts = [" ".join(part.split()) for part in _MARKUP.sub("", value).splitlines() if part.strip()]
            for i, part in enumerate(parts):
                head = f"{col}: " if i == 0 else " " * (len(col) + 2)
                lines = textwrap.wrap(head + part, width=max(console.width - 2, 20), break_long_words=False,
                                      break_on_hyphens=False, subsequent_indent=" " * (len(col) + 4))
                for line in lines:
                    console.print("  " + escape(line), highlight=False, soft_wrap=True)


def print_wrapped(text: str) -> None:
    """A line of prose under a table, wrapped between words at the terminal's width."""
    import textwrap

    from rich.console import Console

    width = Console().width
    print("\n".join(textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False,
                                  subsequent_indent="  ")))
