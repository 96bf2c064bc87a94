"""How the ``aios`` command prints: ids and links whole at any width, tables that fit, JSON.

- ``line`` prints one line without rich's wrapping or cropping (``soft_wrap``): a run id or a
  Web UI link is never broken by a newline; a narrow terminal wraps it visually, and copying
  it gives it back whole. Text goes out as given: no markup or highlighting is read into it,
  so a client's ``[bold]`` stays text.
- ``records`` prints rows as a table when the table fits the terminal with every key cell
  (ids, amounts, links) whole; summaries are cut to fit (``…``). When even that does not fit,
  each row becomes a short block: its key on a line of its own, then ``field: value`` lines.
- ``emit_json`` prints a JSON document for scripts (``--json``), plain, never wrapped.

The consoles are made per invocation (``reset``), so the terminal width (``COLUMNS``) is read
when a command runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Col", "age", "bold", "emit_json", "err", "line", "one_line", "out", "records", "reset"]

Cell = str | Text


@dataclass(frozen=True)
class Col:
    """A column of ``records``: ``key`` cells are never cut; others are cut to fit, but are
    given at least ``min_width`` characters before the table gives way to blocks."""

    header: str
    key: bool = False
    min_width: int = 8
    max_width: int | None = None
    justify: str = "left"


_consoles: dict[str, Console] = {}


def reset() -> None:
    """Forget the consoles (a new invocation reads the terminal width again)."""
    _consoles.clear()


def out() -> Console:
    if "out" not in _consoles:
        _consoles["out"] = Console(highlight=False)
    return _consoles["out"]


def err() -> Console:
    if "err" not in _consoles:
        _consoles["err"] = Console(stderr=True, highlight=False)
    return _consoles["err"]


def line(*parts: Cell, console: Console | None = None, style: str | None = None) -> None:
    """One line, never wrapped or cut by rich; ``str`` parts are plain text (no markup)."""
    text = Text.assemble(*parts, style=style or "")
    (console or out()).print(text, soft_wrap=True)


def bold(value: str) -> Text:
    return Text(value, style="bold")


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces as single spaces (for a table cell)."""
    return " ".join(text.split())


def records(cols: list[Col], rows: list[list[Cell]], *, title: str | None = None) -> None:
    console = out()
    natural = [
        max(len(col.header), *(_widest_line(row[i]) for row in rows)) for i, col in enumerate(cols)
    ]
    natural = [
        n if col.key or col.max_width is None else min(n, col.max_width)
        for n, col in zip(natural, cols, strict=True)
    ]
    widths = _fit(cols, natural, console.width)
    if widths is None:
        _blocks(cols, rows, title)
        return
    table = Table(title=title)
    for col, width in zip(cols, widths, strict=True):
        table.add_column(
            col.header,
            no_wrap=True,
            overflow="ignore" if col.key else "ellipsis",
            width=width,
            justify=col.justify,  # type: ignore[arg-type]
        )
    for row in rows:
        table.add_row(*(_text(c) for c in row))
    console.print(table)


def _fit(cols: list[Col], natural: list[int], width: int) -> list[int] | None:
    """Column widths that fit ``width``: key columns at their natural width, the others at
    least ``min_width`` (or their natural width if less) and then the room left, narrowest
    first; ``None`` when even that does not fit."""
    padding, borders = 2, len(cols) + 1
    widths = [n if col.key else min(n, col.min_width) for n, col in zip(natural, cols, strict=True)]
    room = width - borders - padding * len(cols) - sum(widths)
    if room < 0:
        return None
    # Narrow columns first: a short "drafted by" is shown whole before a long summary grows.
    for i in sorted((i for i, col in enumerate(cols) if not col.key), key=natural.__getitem__):
        more = min(natural[i] - widths[i], room)
        widths[i] += more
        room -= more
    return widths


def _blocks(cols: list[Col], rows: list[list[Cell]], title: str | None) -> None:
    """One block per row: the first cell as a heading, then ``header: value`` lines; key
    values whole (never wrapped by rich), the others cut to the terminal's width."""
    console = out()
    if title:
        line(bold(title))
    for row in rows:
        heading, *rest = row
        line(Text.assemble(_text(heading), style="bold"))
        for col, cell in zip(cols[1:], rest, strict=True):
            if not str(cell):
                continue
            text = Text.assemble(f"  {col.header}: ", _text(cell))
            if col.key:
                console.print(text, soft_wrap=True)
            else:
                text.truncate(console.width, overflow="ellipsis")
                console.print(text, no_wrap=True, overflow="ellipsis")


def _column(rows: list[list[Cell]], index: int) -> list[Cell]:
    return [row[index] for row in rows]


def _widest_line(cell: Cell) -> int:
    return max((Text(part).cell_len for part in str(cell).splitlines()), default=0)


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def emit_json(document: Any) -> None:
    """Print ``document`` (plain JSON types) for scripts: indented, UTF-8, one document."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def age(delta: timedelta | None) -> str:
    if delta is None:
        return "?"
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
