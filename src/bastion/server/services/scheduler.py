"""Leasing pending stages to runners: long-polls, matching, the lease reaper.

A runner's poll (``POST /rpc/v1/request``) waits up to its ``wait`` (at most the server's
``poll_timeout``) for a pending stage it can run: same ``os`` and ``arch``, and every
``node:`` label of the pipeline present on the runner with the same value. The lease is taken
with ``store.take_stage``, a compare-and-set in the database, so of any number of runners
(in any number of server processes) exactly one gets a stage. The lease id is random, shown
to the runner once and stored hashed; it expires ``lease_seconds`` after the last heartbeat.
The reply carries the stage's details too when the endpoint passes ``details`` (runner
protocol 2): made in the same worker thread, right after the lease.

Waiting: in-process, services wake the pollers when a stage becomes pending; in addition
every poller re-reads the store at least every ``requery_interval`` (1 s), which is how
stages created by another server process sharing the database are found.

Before leasing, the poll checks that the runner is still connected; a lease handed to a
request the runner gave up on would be lost and end as error when it lapses. (The runner's
HTTP timeout is longer than the ``wait`` it asks for, so this is a second line of defence.)

The reaper (``reap``) runs every ``reaper_interval`` seconds: a running stage whose lease
lapsed ends as ``error`` ("runner X stopped responding"), and its build is settled.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable

import anyio.to_thread

from bastion.crypto import hash_token, new_token
from bastion.rpc.messages import Lease, RunnerPoll, StageDetails
from bastion.server.services.builds import BuildService
from bastion.server.services.signals import Wakeups
from bastion.server.settings import ServerSettings
from bastion.store.repository import Store
from bastion.store.types import Runner, Stage, StageKey

log = logging.getLogger("bastion.server")

# Candidates per lease attempt: a few, so that leasing one stage does not read (and decode
# the labels of) hundreds; enough of them that concurrent pollers, each starting at a random
# one, rarely compare-and-set the same stage. When none of the first few fits the runner (its
# labels, os, arch), it looks further, up to _CANDIDATES.
_FIRST_CANDIDATES = 20
_CANDIDATES = 200

# Makes a freshly leased stage's details for the lease reply; None when it cannot now.
StageDetailsFor = Callable[[Stage], StageDetails | None]


def runner_can_run(stage: Stage | StageKey, poll: RunnerPoll) -> bool:
    """Whether a runner that polled with ``poll`` may take ``stage``."""
    if stage.os != poll.os or stage.arch != poll.arch:
        return False
    return all(poll.labels.get(key) == value for key, value in stage.labels.items())


class Scheduler:
    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        builds: BuildService,
        wakeups: Wakeups,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._builds = builds
        self.wakeups = wakeups
        self._clock = clock

    def notify(self) -> None:
        """Stages may have become pending: wake the pollers (any thread)."""
        self.wakeups.notify(None)

    def try_lease(
        self, runner: Runner, poll: RunnerPoll, details: StageDetailsFor | None = None
    ) -> Lease | None:
        """Lease one matching pending stage to ``runner`` now, or None (blocking; threads).

        The candidates are the oldest ``_FIRST_CANDIDATES`` pending stages (``_CANDIDATES``
        when none of those fits the runner), read as (id, os, arch, labels) only. The
        attempts start at a random one of those this runner can take and go round:
        concurrent pollers then rarely compare-and-set the same stage.

        ``details``, when given, makes the stage's details for the lease reply (None when
        they cannot be made now: the runner then asks for them with the lease)."""
        keys = self._store.pending_stage_keys(limit=_FIRST_CANDIDATES)
        matching = [key for key in keys if runner_can_run(key, poll)]
        if not matching and len(keys) == _FIRST_CANDIDATES:
            keys = self._store.pending_stage_keys(limit=_CANDIDATES)
            matching = [key for key in keys if runner_can_run(key, poll)]
        if not matching:
            return None
        start = random.randrange(len(matching))  # noqa: S311 - spreads pollers, not a secret
        for key in matching[start:] + matching[:start]:
            lease_id = new_token("lease")
            expires = int(self._clock()) + self._settings.lease_seconds
            taken = self._store.take_stage(
                key.id, runner.id, runner.name, hash_token(lease_id), expires
            )
            if taken is None:
                continue  # another runner took it first
            stage, started = taken
            log.info("stage %d (%s) leased to runner %s", stage.id, stage.name, runner.name)
            self._builds.stage_leased(stage, started)
            return Lease(
                stage_id=stage.id,
                lease_id=lease_id,
                expires_in=float(self._settings.lease_seconds),
                heartbeat_interval=self._settings.effective_heartbeat_interval,
                details=details(stage) if details is not None else None,
            )
        return None

    async def poll(
        self,
        runner: Runner,
        poll: RunnerPoll,
        *,
        disconnected: Callable[[], Awaitable[bool]],
        stopping: Callable[[], bool] = lambda: False,
        details: StageDetailsFor | None = None,
    ) -> Lease | None:
        """Wait up to ``poll.wait`` (capped by ``poll_timeout``) for a lease; None at once
        when the runner went away or the server is stopping."""
        wait = min(poll.wait, self._settings.poll_timeout)
        deadline = time.monotonic() + wait
        with self.wakeups.listen(None) as listener:
            while True:
                listener.clear()
                if stopping() or await disconnected():
                    return None
                lease = await anyio.to_thread.run_sync(self.try_lease, runner, poll, details)
                if lease is not None:
                    return lease
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                await listener.wait(min(remaining, self._settings.requery_interval))

    def renew(self, stage: Stage) -> float:
        """Renew ``stage``'s lease; returns the seconds until it lapses again."""
        self._store.renew_lease(stage.id, int(self._clock()) + self._settings.lease_seconds)
        return float(self._settings.lease_seconds)

    def reap(self) -> int:
        """End every stage whose lease lapsed; returns how many (blocking; threads)."""
        lost = self._store.expired_leases(int(self._clock()))
        for stage in lost:
            runner = self._store.get_runner(stage.runner_id) if stage.runner_id else None
            name = runner.name if runner is not None else (stage.machine or "unknown")
            self._builds.lose_stage(stage, name, self._settings.lease_seconds)
        return len(lost)
