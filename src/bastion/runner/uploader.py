"""Ship a stage's step updates and log lines to the server: in order, batched, never lost.

Producers (the reporter, from the executor's step threads) append to one queue; a single
upload thread sends it. Keeping one queue in the order things happened gives the order
guarantee the server and the UI rely on: a step's ``running`` update arrives before its
lines, its lines before its final update, and everything before ``complete``.

Batching: lines wait at most ``flush_interval`` seconds, or until ``max_lines`` /
``max_bytes`` are queued, and are sent as one ``LogBatch`` per step. Updates are states, not
events: a step update that is still waiting, with no line of its step queued after it, is
replaced by a newer update of the same step, so the order guarantee above still holds. To
give the newer state time to come, an update waits up to ``hold`` seconds (0.5) after it was
first queued, unless lines queued behind it are due: a step that ends at once is reported
once, a long step still shows ``running`` within ``hold``. ``close(drop_updates=True)``
drops the updates still waiting instead of sending them, for a caller whose ``complete``
carries every step's final state; lines are always delivered.

Delivery: an item leaves the queue only once the server has acknowledged it. A failed send
(server restarting, 5xx) is retried by ``RunnerClient`` with backoff until it succeeds or
``give_up`` is set (the stage's lease is gone for good); in the meantime new lines simply
queue up behind. Resending a batch whose answer was lost is harmless: the server keeps each
(step, line number) once.

Memory: when more than ``max_queued_bytes`` wait (a long outage and a chatty step),
``add_line`` blocks. That stops the executor reading the step's output, which (attached
streams apply back-pressure) pauses the step's process until the server is back, instead of
growing the runner's memory without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from bastion.client import ClientError, LeaseLostError, RunnerClient, UnauthorizedError
from bastion.client.errors import RetriesExhaustedError
from bastion.rpc.messages import LogBatch, LogLine, StepUpdate

log = logging.getLogger("bastion.runner.uploader")


@dataclass(frozen=True)
class _Line:
    step: int
    line: LogLine
    queued: float  # monotonic

    @property
    def size(self) -> int:
        return len(self.line.text) + 32


@dataclass
class _Update:
    """A queued step update; ``update`` is replaced by a newer one of the same step until the
    upload thread takes it (``taken``)."""

    update: StepUpdate
    queued: float  # monotonic, when the first update it replaced was queued
    taken: bool = False


_Item = _Line | _Update


def _size(item: _Item) -> int:
    return item.size if isinstance(item, _Line) else 256


class Uploader:
    """The upload queue and thread of one stage. ``start`` it, feed it, ``close`` it."""

    def __init__(
        self,
        rpc: RunnerClient,
        stage_id: int,
        lease_id: str,
        *,
        give_up: threading.Event,
        flush_interval: float = 0.25,
        hold: float = 0.5,
        max_lines: int = 100,
        max_bytes: int = 256 * 1024,
        max_queued_bytes: int = 64 << 20,
        retry_for: float = 600.0,
    ) -> None:
        self.rpc = rpc
        self.stage_id = stage_id
        self.lease_id = lease_id
        self.give_up = give_up
        self.flush_interval = flush_interval
        self.hold = hold
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_queued_bytes = max_queued_bytes
        self.retry_for = retry_for  # per send; the lease normally ends retrying much sooner
        self.lease_lost = False  # the server said the lease is not ours (or the token died)
        self.dropped = 0  # items the server refused for good (4xx), after logging why
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._last: dict[int, _Item] = {}  # step number -> the last item queued for it
        self._lines = 0  # lines in the queue
        self._closing = False
        self._drop_updates = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"upload-stage-{stage_id}", daemon=True
        )

    # -- producers -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def add_line(self, step: int, line: LogLine) -> None:
        self._put(_Line(step, line, time.monotonic()), step)

    def add_step(self, update: StepUpdate) -> None:
        with self._cond:
            if self._closing or self.give_up.is_set():
                return
            last = self._last.get(update.number)
            if isinstance(last, _Update) and not last.taken:
                last.update = update  # not sent yet, and no line of the step after it
                return
        self._put(_Update(update, time.monotonic()), update.number)

    def _put(self, item: _Item, step: int) -> None:
        with self._cond:
            while (
                self._queued_bytes > self.max_queued_bytes
                and not self._closing
                and not self.give_up.is_set()
            ):
                self._cond.wait(0.5)
            if self._closing or self.give_up.is_set():
                return
            self._queue.append(item)
            self._last[step] = item
            if isinstance(item, _Line):
                self._lines += 1
            self._queued_bytes += _size(item)
            self._cond.notify_all()

    def close(self, timeout: float | None = None, *, drop_updates: bool = False) -> bool:
        """Send what is queued, then stop. True when nothing is left to send in time (items
        the server refused for good are not resent: they are counted in ``dropped``).
        ``drop_updates``: step updates not yet taken for sending are dropped, not sent."""
        with self._cond:
            self._closing = True
            self._drop_updates = self._drop_updates or drop_updates
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            return not self._queue and not self.lease_lost

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    # -- the upload thread ---------------------------------------------------------------------

    def _take(self, now: float) -> tuple[list[_Item], float | None]:
        """What to send now: the head of the queue, as one batch of lines and / or up to the
        first step update (included) when it is due. Else nothing, and the monotonic time at
        which something becomes due (None: nothing will until more is queued)."""
        first_line = next((i for i in self._queue if isinstance(i, _Line)), None)
        lines_due = first_line is not None and (
            self._closing
            or self._lines >= self.max_lines
            or now - first_line.queued >= self.flush_interval
        )
        wake: float | None = None
        if first_line is not None and not lines_due:
            wake = first_line.queued + self.flush_interval
        taken: list[_Item] = []
        size = 0
        for item in self._queue:
            if isinstance(item, _Line):
                if not lines_due:
                    break
                if taken and (len(taken) >= self.max_lines or size + item.size > self.max_bytes):
                    break
                taken.append(item)
                size += item.size
                continue
            lines_behind = lines_due and self._lines > len(taken)
            if self._closing or lines_behind or now - item.queued >= self.hold:
                item.taken = True
                taken.append(item)
            else:
                due = item.queued + self.hold
                wake = due if wake is None else min(wake, due)
            break
        return taken, wake

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self.give_up.is_set():
                        return
                    now = time.monotonic()
                    items, wake = self._take(now)
                    if items:
                        break
                    if self._closing and not self._queue:
                        return
                    # Bounded: give_up is an event of its own and does not notify us.
                    self._cond.wait(0.5 if wake is None else max(0.01, min(wake - now, 0.5)))
                drop = self._drop_updates
            try:
                self._send(items, drop_updates=drop)
            except (LeaseLostError, UnauthorizedError) as exc:
                log.warning(
                    "stage %d: the server refused an upload (%s); stopping", self.stage_id, exc
                )
                self.lease_lost = True
                self.give_up.set()
                return
            except RetriesExhaustedError as exc:
                if self.give_up.is_set():
                    return  # the lease is gone: the stage decides what comes next
                # The server answers heartbeats but keeps failing this upload: drop it
                # rather than hold the stage (and a capacity slot) forever.
                log.error(
                    "stage %d: %d items dropped after retrying for %g s (%s)",
                    self.stage_id,
                    len(items),
                    self.retry_for,
                    exc,
                )
                self.dropped += len(items)
            except ClientError as exc:
                # A 4xx that resending cannot fix (too large, malformed): drop, say so, go on.
                log.error(
                    "stage %d: the server refused %d items (%s); they are dropped",
                    self.stage_id,
                    len(items),
                    exc,
                )
                self.dropped += len(items)
            with self._cond:
                for _ in items:
                    item = self._queue.popleft()
                    self._queued_bytes -= _size(item)
                    if isinstance(item, _Line):
                        self._lines -= 1
                self._cond.notify_all()

    def _send(self, items: list[_Item], *, drop_updates: bool = False) -> None:
        batches: dict[int, list[LogLine]] = {}
        update: StepUpdate | None = None
        for item in items:
            if isinstance(item, _Line):
                batches.setdefault(item.step, []).append(item.line)
            else:
                update = item.update
        for step, lines in batches.items():
            self.rpc.logs(
                self.stage_id,
                self.lease_id,
                LogBatch(step=step, lines=lines),
                retry_for=self.retry_for,
                stop=self.give_up,
            )
        if update is not None and not drop_updates:
            self.rpc.steps(
                self.stage_id, self.lease_id, update, retry_for=self.retry_for, stop=self.give_up
            )
