"""Thread-safe wake-ups for coroutines: "something changed, look again".

Services run in worker threads (the store is synchronous); long-polls and live streams wait
on the event loop. ``Wakeups.notify(key)`` may be called from any thread and wakes every
coroutine listening on ``key``. A listener registers *before* it looks at the store and clears
itself before each look, so a change that lands between the look and the wait still wakes it
(no lost wake-up). Wake-ups are hints only: waiters always re-read the store, and they re-read
it on a timeout too, which is what makes several server processes sharing one database work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterator


class Listener:
    """One coroutine's registration; see :meth:`Wakeups.listen`."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def clear(self) -> None:
        self._event.clear()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up or ``timeout`` seconds; True when woken."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Wakeups:
    """Keyed wake-ups, bound to the event loop that runs the listeners."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: dict[Hashable, set[Listener]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @contextlib.contextmanager
    def listen(self, key: Hashable) -> Iterator[Listener]:
        """Register a listener on ``key`` (call on the event loop)."""
        listener = Listener()
        self._listeners.setdefault(key, set()).add(listener)
        try:
            yield listener
        finally:
            listeners = self._listeners.get(key)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[key]

    def notify(self, key: Hashable) -> None:
        """Wake the listeners on ``key``; safe from any thread, a no-op before ``bind``.

        With nobody listening on ``key`` nothing is scheduled on the loop (the common case
        on the scheduler's hot path). That loses no wake-up: a listener registers before it
        looks at the store, so one that registers after this check sees the change itself."""
        if key not in self._listeners:
            return
        call_on_loop(self._loop, self._wake, key)

    def notify_all(self) -> None:
        call_on_loop(self._loop, self._wake_all)

    def _wake(self, key: Hashable) -> None:
        for listener in list(self._listeners.get(key, ())):
            listener.set()

    def _wake_all(self) -> None:
        for listeners in list(self._listeners.values()):
            for listener in list(listeners):
                listener.set()


def call_on_loop(loop: asyncio.AbstractEventLoop | None, fn: object, *args: object) -> None:
    """Run ``fn(*args)`` on ``loop``: directly when already there, else thread-safely."""
    if loop is None or loop.is_closed():
        return
    assert callable(fn)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
        return
    with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
        loop.call_soon_threadsafe(fn, *args)
