"""States of steps and pipelines, and the rules that combine them.

A step is ``pending`` until the executor decides about it, then ``skipped`` (its ``when`` did
not match, or the run was cancelled first), or ``running`` and finally ``success``,
``failure``, ``killed`` (stopped by cancel, timeout or ``failure: fast``) or ``error`` (it
could not be started: image missing, engine unreachable). A pipeline fails when a step that
does not ignore failures ends in ``failure``, ``error`` or ``killed``.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    KILLED = "killed"
    ERROR = "error"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        return self not in {State.PENDING, State.RUNNING}

    @property
    def failed(self) -> bool:
        return self in {State.FAILURE, State.KILLED, State.ERROR}
