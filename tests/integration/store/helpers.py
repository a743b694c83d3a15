"""Helpers for tests of the store and of code that uses it."""

from __future__ import annotations

import threading


class FakeClock:
    """A clock for ``Store(clock=...)`` that moves only when told (thread-safe)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
