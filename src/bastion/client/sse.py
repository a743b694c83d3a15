"""A small parser for server-sent events (the ``text/event-stream`` format).

Lines are ``field: value``; ``event`` names the event, ``data`` lines are joined with
newlines, ``id`` and ``retry`` are remembered, lines starting with ``:`` are comments (the
server's keep-alive pings). A blank line dispatches the event collected so far.

One deliberate difference from a browser's ``EventSource``: an event that has a name but no
``data`` line is still dispatched (with empty data), because the server ends a log stream
with a bare ``event: end``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "message" when the server named none
    data: str
    id: str = ""


def iter_events(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """The events of a stream given as lines without their line endings."""
    name = ""
    data: list[str] = []
    last_id = ""
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data or name:
                yield SSEEvent(name or "message", "\n".join(data), last_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\x00" not in value:
            last_id = value
        # "retry" and unknown fields are ignored, as the specification says.
    # An event not ended by a blank line when the stream closes is dropped, as the
    # specification says: the connection may have broken in the middle of its data.
