"""In-process broker of build events for the ``/api/stream`` server-sent events.

Services publish an event whenever a build or one of its stages or steps changes state; each
SSE client subscribes with a bounded queue. Events are snapshots (the whole build as the API
shows it), so a client that falls behind loses intermediate snapshots, never the latest one:
when its queue is full the oldest event is dropped. Publishing is thread-safe and costs
nothing when nobody listens (``active`` lets callers skip building the payload).

Events of other server processes are not seen here; a client of a multi-server deployment
sees the events of the server it is connected to (the store remains the source of truth).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bastion.server.services.signals import call_on_loop

QUEUE_SIZE = 256


@dataclass(frozen=True)
class BuildEvent:
    """A snapshot of one build. ``repo_active`` lets the stream filter what a user may read."""

    repo_id: int
    repo_active: bool
    kind: str  # "build"
    payload: dict[str, Any]  # RepoOut with ``build`` set, as JSON-ready data


class EventBroker:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: set[asyncio.Queue[BuildEvent]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def active(self) -> bool:
        """True when at least one client listens (read without a lock: a hint)."""
        return bool(self._queues)

    def publish(self, event: BuildEvent) -> None:
        """Hand ``event`` to every subscriber; safe from any thread."""
        call_on_loop(self._loop, self._deliver, event)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[BuildEvent]]:
        """A queue of the events published from now on (use on the event loop)."""
        queue: asyncio.Queue[BuildEvent] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    def _deliver(self, event: BuildEvent) -> None:
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)
