"""Ship a stage's step updates and log lines to the server: in order, batched, never lost.

Producers (the reporter, from the executor's step threads) append to one queue; a single
upload thread sends it. Keeping one queue in the order things happened gives the order
guarantee the server and the UI rely on: a step's ``running`` update arrives before its
lines, its lines before its final update, and everything before ``complete``.

Batching: lines wait at most ``flush_interval`` seconds, or until ``max_lines`` /
``max_bytes`` are queued, and are sent as one ``LogBatch`` per step. A step update is sent
as soon as the lines before it are. Updates are states, not events: a step update that is
still waiting, with no line of its step queued after it, is replaced by a newer update of the
same step (a short step's ``pending`` and ``running`` never leave the runner when its final
state is queued before they were sent), so the order guarantee above still holds.

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

    @property
    def size(self) -> int:
        return len(self.line.text) + 32


@dataclass
class _Update:
    """A queued step update; ``update`` is replaced by a newer one of the same step until the
    upload thread takes it (``taken``)."""

    update: StepUpdate
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
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_queued_bytes = max_queued_bytes
        self.retry_for = retry_for  # per send; the lease normally ends retrying much sooner
        self.lease_lost = False  # the server said the lease is not ours (or the token died)
        self.dropped = 0  # items the server refused for good (4xx), after logging why
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._last: dict[int, _Item] = {}  # step number -> the last item queued for it
        self._oldest: float | None = None  # when the oldest unsent line was queued
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"upload-stage-{stage_id}", daemon=True
        )

    # -- producers -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def add_line(self, step: int, line: LogLine) -> None:
        self._put(_Line(step, line), step)

    def add_step(self, update: StepUpdate) -> None:
        with self._cond:
            if self._closing or self.give_up.is_set():
                return
            last = self._last.get(update.number)
            if isinstance(last, _Update) and not last.taken:
                last.update = update  # not sent yet, and no line of the step after it
                return
        self._put(_Update(update), update.number)

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
            if not self._queue:
                self._oldest = time.monotonic()
            self._queue.append(item)
            self._last[step] = item
            self._queued_bytes += _size(item)
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued, then stop. True when nothing is left to send in time (items
        the server refused for good are not resent: they are counted in ``dropped``)."""
        with self._cond:
            self._closing = True
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

    def _due(self) -> bool:
        if not self._queue:
            return False
        if self._closing:
            return True
        for count, item in enumerate(self._queue, start=1):
            if not isinstance(item, _Line):
                return True  # a step update waits for nobody
            if count >= self.max_lines:
                return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.flush_interval

    def _take(self) -> list[_Item]:
        """The head of the queue up to the first step update (included), or one batch."""
        taken: list[_Item] = []
        size = 0
        for item in self._queue:
            if isinstance(item, _Line):
                if taken and (len(taken) >= self.max_lines or size + item.size > self.max_bytes):
                    break
                taken.append(item)
                size += item.size
            else:
                item.taken = True
                taken.append(item)
                break
        return taken

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due() and not self.give_up.is_set():
                    if self._closing and not self._queue:
                        return
                    wait = self.flush_interval
                    if self._oldest is not None and self._queue:
                        wait = max(0.01, self._oldest + self.flush_interval - time.monotonic())
                    self._cond.wait(wait)
                if self.give_up.is_set():
                    return
                items = self._take()
            try:
                self._send(items)
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
                    self._queued_bytes -= _size(self._queue.popleft())
                self._oldest = time.monotonic() if self._queue else None
                self._cond.notify_all()

    def _send(self, items: list[_Item]) -> None:
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
        if update is not None:
            self.rpc.steps(
                self.stage_id, self.lease_id, update, retry_for=self.retry_for, stop=self.give_up
            )
