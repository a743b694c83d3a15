"""Output of the client commands: Rich tables for people, JSON for scripts.

``--format json`` prints the API's own JSON shapes (``bastion.rpc.api``) with plain
``print``: no colours, no wrapping, nothing a parser would trip over. Tables and log lines
are Rich ``Text`` built from plain strings: values that come from users or builds (commit
messages, log output) are never interpreted as Rich markup. Log output keeps its ANSI
colours (``Text.from_ansi``) and loses other control sequences, so a build cannot move the
terminal's cursor or retitle its window.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="table (for people) or json (for scripts)"),
]

STATUS_STYLE = {
    "success": "green",
    "failure": "red",
    "error": "red",
    "killed": "red",
    "declined": "red",
    "running": "yellow",
    "pending": "dim",
    "waiting_on_dependencies": "dim",
    "blocked": "magenta",
    "skipped": "dim",
}
DONE = frozenset({"success", "failure", "error", "killed", "skipped", "declined"})


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def dump(data: BaseModel | Sequence[BaseModel] | dict[str, Any] | list[Any]) -> None:
    """Print models (or plain JSON values) as indented JSON on stdout."""
    if isinstance(data, BaseModel):
        value: Any = data.model_dump(mode="json")
    elif isinstance(data, list | tuple):
        value = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    else:
        value = data
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def dump_line(value: dict[str, Any]) -> None:
    """One JSON object per line (``--follow --format json``), flushed at once."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# Columns whose text is long and free-form: these wrap; every other column stays on one line.
_WRAPPING = frozenset({"message", "note", "labels", "email", "value"})


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> Table:
    out = Table(title=title or None, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        wraps = column in _WRAPPING
        out.add_column(column, overflow="fold", no_wrap=not wraps, min_width=8 if wraps else None)
    for row in rows:
        out.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
    return out


def pairs(rows: Iterable[tuple[str, str | Text]]) -> Table:
    """A two-column table of names and values, without a header."""
    out = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    out.add_column("name", style="bold", no_wrap=True)
    out.add_column("value", overflow="fold")
    for name, value in rows:
        out.add_row(Text(name), value if isinstance(value, Text) else Text(value))
    return out


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def when(unix: int) -> str:
    """A Unix time as local date and time; ``-`` for 0 (never)."""
    if not unix:
        return "-"
    return datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S")  # local time, for people


def when_short(unix: int) -> str:
    """``11-25 23:31``: a Unix time in a list, where the year is rarely news."""
    if not unix:
        return "-"
    return datetime.fromtimestamp(unix).strftime("%m-%d %H:%M")  # local time, for people


def took(started: int, finished: int) -> str:
    """``1m05s`` between two Unix times; running if not finished; ``-`` if not started."""
    if not started:
        return "-"
    end = finished or int(time.time())
    seconds = max(0, end - started)
    text = f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    return text if finished else f"{text} (running)"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def log_text(out: str) -> Text:
    """A log line as terminal text: colours kept, other control sequences dropped."""
    return Text.from_ansi(out.removesuffix("\n").removesuffix("\r"))


def first_line(text: str, limit: int = 72) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
