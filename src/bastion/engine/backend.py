"""The ``Backend`` protocol: the small surface through which the engine runs containers.

The executor (``bastion.engine.executor``) drives a backend in this order for one plan::

    setup(plan)                      # network and volumes; safe to call twice
    populate_workspace(plan, tar)    # optional: exec mode copies the working tree in
    ready(plan)                      # optional method: what setup left in progress is done
    for each service / step, as the DAG allows (several at once, from several threads):
        prepare(plan, step)          # optional method, ahead of start: create the container
        start(plan, step)            # create (or take the prepared one) + start
        for chunk in output(plan, step): ...   # OutputChunks until the process exits
        wait(plan, step) -> StepExit
        remove(plan, step)           # safe if start failed or never ran
    stop(plan, step)                 # on cancel / timeout / failure: fast; safe at any time
    destroy(plan)                    # removes everything labelled with the run; safe always

Every method may be called from a different thread than ``setup``; implementations must be
thread-safe for different steps of the same plan. ``destroy`` and ``remove`` are idempotent
and must succeed even when ``setup`` or ``start`` failed half way: cleanup is an invariant
(containers, networks and volumes of a run are gone when it ends).

``cleanup_stale`` removes resources of runs whose owning process is gone (a crash), so the
next run, or ``bastion exec --cleanup``, leaves the host clean.

Two methods are optional (not part of the ``Backend`` protocol class, so that a backend
without them still is one; the executor looks them up with ``getattr``). They only make a
run faster, never change what it does:

* ``ready(plan) -> None``: ``setup`` may return before all of its work is done (the Docker
  backend creates the network in the background while the workspace is copied). ``ready``
  waits for it and raises its failure as ``BackendError``; the executor calls it after
  ``populate_workspace`` (or after ``setup`` when there is nothing to copy), so that a
  failure there still means the run could not begin. ``start`` and ``prepare`` wait for it
  too, and ``destroy`` lets it finish before removing anything. Idempotent.
* ``prepare(plan, step) -> None``: create the step's container (not start it) ahead of
  ``start``, while the steps it depends on still run. Best effort and idempotent: it never
  raises, and does nothing when it cannot help (an image to pull, a step already started or
  stopped, a destroyed run). ``start`` uses the prepared container only if it was made from
  the same ``ContainerSpec``; otherwise (a step started after a failure gets another
  environment) it discards it and creates a new one. A prepared container that is never
  started is removed by ``remove`` or ``destroy`` like any other container of the run.

Output keeps stdout and stderr apart (``OutputChunk.stream``): the two are written by the
process independently, so a stderr line may arrive in the middle of an unfinished stdout
line. Masking them as one stream would let such a write cut a secret in two pieces that
are each left unmasked; the executor masks (and decodes) each stream on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Literal, NamedTuple, Protocol, runtime_checkable

from bastion.engine.plan import Plan, StepPlan

OutputStream = Literal["stdout", "stderr"]


class OutputChunk(NamedTuple):
    """Bytes a step's process wrote on one of its output streams, as they arrived.

    A chunk may end anywhere (inside a line, inside a UTF-8 character); only the chunks of
    the same stream, concatenated, make sense.
    """

    stream: OutputStream
    data: bytes


class BackendError(Exception):
    """The backend could not do what was asked (engine unreachable, image missing, ...).

    The message is shown to the user as is: it says what failed and what to do about it.
    """


@dataclass(frozen=True)
class StepExit:
    """How a step's process ended."""

    exit_code: int
    oom_killed: bool = False  # the memory limit was hit and the kernel killed the process
    pids_limit_hit: bool = False  # fork() failed at least once because of the pids limit
    killed: bool = False  # stopped by ``stop`` (cancel, timeout, failure: fast)
    detail: str = ""  # anything else the backend learnt (shown next to the status)


@dataclass(frozen=True)
class CleanupReport:
    containers: int = 0
    networks: int = 0
    volumes: int = 0

    @property
    def total(self) -> int:
        return self.containers + self.networks + self.volumes


@runtime_checkable
class Backend(Protocol):
    """Runs the containers of a plan. See the module docstring for the call order."""

    name: str

    def setup(self, plan: Plan) -> None:
        """Create the per-run network and volumes. Idempotent."""

    def populate_workspace(self, plan: Plan, archive: IO[bytes]) -> None:
        """Extract a tar archive into the workspace volume before any step starts."""

    def start(self, plan: Plan, step: StepPlan) -> None:
        """Pull the image as the step's pull policy says, create and start its container."""

    def output(self, plan: Plan, step: StepPlan) -> Iterator[OutputChunk]:
        """Yield the step's output until its process exits: stdout and stderr in the order
        they arrive, each chunk tagged with its stream (never a chunk with both, nor an
        empty one). A second call yields nothing, and so may a call after ``wait`` (which
        drains unread output, so that the process never blocks on a full pipe)."""

    def wait(self, plan: Plan, step: StepPlan) -> StepExit:
        """Block until the step's process has exited and say how it ended."""

    def stop(self, plan: Plan, step: StepPlan) -> None:
        """Kill the step's process. Safe to call if it never started or already ended."""

    def remove(self, plan: Plan, step: StepPlan) -> None:
        """Remove the step's container. Safe to call if it never started. Idempotent."""

    def destroy(self, plan: Plan) -> None:
        """Remove every container, network and volume of the run. Idempotent, never raises
        for resources that are already gone."""

    def cleanup_stale(self, *, include_live: bool = False) -> CleanupReport:
        """Remove resources of runs whose owner process is gone; with ``include_live``, of
        every run on this host."""
