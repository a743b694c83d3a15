"""The build state machine: the only code that changes the state of builds, stages and steps.

Routes, the RPC endpoints, the scheduler and the lease reaper call these methods; nothing
else calls ``store.update_build`` / ``update_stage`` / ``upsert_step`` / ``finish_stage``.
After a change of a stage that can matter, :meth:`BuildService.advance` settles the build (a
lease only makes the build ``running`` on its first one, in the lease's own transaction; a
stage's end settles it when the statuses read in the end's transaction show a waiting stage,
every stage done, or a build not yet running):

1. **Dependants.** A stage ``waiting_on_dependencies`` whose dependencies are all done becomes
   ``pending`` when the rule of its ``trigger.status`` holds (``on_success`` when none of them
   failed, ``on_failure`` when one did — Drone's ``OnSuccess`` / ``OnFailure``), else
   ``skipped`` with the reason. A skipped stage is done too, so this repeats until nothing
   changes. In a cancelled build, waiting stages are skipped.
2. **Build status.** ``running`` (and ``started``) once a stage runs; when every stage is
   done: ``killed`` if the build was cancelled, else ``failure`` if a stage failed, ``error``
   if a stage errored, ``killed`` if a stage was killed (stages with ``errignore`` do not
   count), ``skipped`` if every stage was skipped, else ``success``; ``finished`` is set.

Cancelling marks the build ``killed`` at once: pending stages become ``killed``, waiting ones
``skipped``; running stages keep running until their runner's next heartbeat, which answers
``cancel: true`` because the build is killed; the runner then reports them ``killed``. A
runner that never answers loses its lease, and the reaper ends the stage (``killed`` in a
cancelled build, ``error`` otherwise).

Transitions of one process are serialised by a lock, so two stages finishing at once cannot
both promote (or both skip) the same dependant. Several server processes on one PostgreSQL
database may still race in ``advance``; the lease (``store.take_stage``) and a stage's end
(``store.finish_stage``, which locks the build's row on PostgreSQL) are atomic everywhere.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from bastion.rpc.messages import StageResult, StepState, StepUpdate
from bastion.server.errors import BadRequest, Conflict
from bastion.server.services.events import BuildEvent, EventBroker
from bastion.server.services.signals import Wakeups
from bastion.store.repository import Store
from bastion.store.types import Build, NewBuild, NewStage, Repo, Stage, Status, Step, StepReport

log = logging.getLogger("bastion.server")

# What a runner may report as the final state of a stage.
_FINAL_STATES = frozenset(
    {StepState.SUCCESS, StepState.FAILURE, StepState.KILLED, StepState.ERROR, StepState.SKIPPED}
)

BuildPayload = Callable[[Repo, Build], BuildEvent]


def lost_stage_message(runner: str, lease_seconds: int) -> str:
    """The error of a stage whose runner stopped heartbeating (also how the cleanup call of a
    returning runner recognises the stages it lost)."""
    return f"runner {runner} stopped responding (no heartbeat for {lease_seconds} s)"


class BuildService:
    def __init__(
        self,
        store: Store,
        *,
        events: EventBroker,
        scheduler_wakeups: Wakeups,
        log_wakeups: Wakeups,
        build_event: BuildPayload,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._events = events
        self._scheduler = scheduler_wakeups
        self._logs = log_wakeups
        self._build_event = build_event
        self._clock = clock
        self._lock = threading.RLock()
        # Called with a build's id whenever it may have changed (commit statuses); each must
        # return at once (hand the id to a queue), never raise and never wait on the network.
        self.on_change: list[Callable[[int], None]] = []

    def _now(self) -> int:
        return int(self._clock())

    # -- creation ------------------------------------------------------------------------------

    def create(self, repo: Repo, build: NewBuild, stages: Sequence[NewStage]) -> Build:
        """Store a new build with its stages (its number comes from the store)."""
        created, _ = self._store.create_build(repo.id, build, stages)
        if created.status.done:
            now = self._now()
            created = self._store.update_build(created.id, started=now, finished=now)
        log.info(
            "build %s#%d created (%s, %s, %d stages)",
            repo.slug,
            created.number,
            created.event,
            created.status.value,
            len(stages),
        )
        if any(s.status == Status.PENDING for s in stages):
            self._scheduler.notify(None)
        self._publish(repo, created)
        return created

    # -- runners' reports ----------------------------------------------------------------------

    def stage_leased(self, stage: Stage, started: Build | None) -> None:
        """A runner took ``stage``: ``store.take_stage`` made it running and, on the build's
        first lease, the build too (``started``, else None). A lease ends no stage, so nothing
        waiting can change: there is nothing to settle."""
        self._publish_build_id(stage.build_id, build=started)

    def update_step(self, stage: Stage, update: StepUpdate) -> Step:
        status = Status(update.state.value)
        step = self._store.upsert_step(
            stage.id,
            update.number,
            update.name,
            status=status,
            exit_code=update.exit_code or 0,
            error=update.detail,
            started=int(update.started or 0),
            stopped=int(update.finished or 0),
            detached=update.detached,
            service=update.service,
        )
        if status.done:
            self._logs.notify(stage.id)
        self._publish_build_id(stage.build_id)
        return step

    def complete_stage(self, stage: Stage, result: StageResult) -> Stage:
        """The runner's final report of ``stage``."""
        if result.state not in _FINAL_STATES:
            raise BadRequest(
                f"a stage cannot end in state {result.state.value}: report one of "
                + ", ".join(sorted(s.value for s in _FINAL_STATES))
            )
        steps = [
            StepReport(
                number=update.number,
                name=update.name,
                status=Status(update.state.value),
                exit_code=update.exit_code or 0,
                error=update.detail,
                started=int(update.started or 0),
                stopped=int(update.finished or 0),
                detached=update.detached,
                service=update.service,
            )
            for update in result.steps
        ]
        status = Status(result.state.value)
        exit_code = next(
            (s.exit_code for s in result.steps if s.exit_code not in (None, 0)),
            0,
        )
        return self.end_stage(stage.id, status, result.error, exit_code=exit_code or 0, steps=steps)

    def end_stage(
        self,
        stage_id: int,
        status: Status,
        error: str,
        *,
        exit_code: int = 0,
        steps: Sequence[StepReport] = (),
    ) -> Stage:
        """End a stage (its lease ends with it) and settle the build. ``steps``: the runner's
        final word on its steps, written in the same transaction. Steps left open take the
        stage's outcome: running → success / killed / error, pending → skipped (so no step of
        a finished stage looks alive)."""
        running_becomes = status if status in (Status.SUCCESS, Status.KILLED) else Status.ERROR
        ended = self._store.finish_stage(
            stage_id,
            status=status,
            error=error,
            exit_code=exit_code,
            steps=steps,
            running_becomes=running_becomes,
        )
        if ended is None:
            raise Conflict(f"stage {stage_id} does not exist")
        stage = ended.stage
        if not ended.ended:
            # Already ended (a retried report, or the reaper and the runner both): the first
            # outcome is kept.
            return stage
        log.info("stage %d (%s) ended: %s", stage.id, stage.name, status.value)
        self._logs.notify(stage.id)
        if _nothing_to_settle(ended.build_status, ended.stage_statuses):
            self._publish_build_id(stage.build_id)
        else:
            self.advance(stage.build_id)
        return stage

    def lose_stage(self, stage: Stage, runner_name: str, lease_seconds: int) -> Stage:
        """The reaper found ``stage``'s lease lapsed: its runner is gone."""
        current = self._store.get_stage(stage.id)
        if current is None or current.status != Status.RUNNING:
            return current or stage
        if current.lease_expires >= self._now():
            return current  # a heartbeat renewed it after the reaper looked
        build = self._store.get_build_by_id(stage.build_id)
        cancelled = build is not None and build.status == Status.KILLED
        message = lost_stage_message(runner_name, lease_seconds)
        log.warning("stage %d (%s): %s", stage.id, stage.name, message)
        return self.end_stage(stage.id, Status.KILLED if cancelled else Status.ERROR, message)

    # -- users' requests -----------------------------------------------------------------------

    def cancel(self, repo: Repo, build: Build, by: str) -> Build:
        with self._lock:
            current = self._store.get_build_by_id(build.id) or build
            if current.status.done:
                raise Conflict(
                    f"build #{build.number} of {repo.slug} has finished already "
                    f"({current.status.value}); nothing to cancel"
                )
            now = self._now()
            self._store.update_build(
                build.id, status=Status.KILLED, error=f"cancelled by {by}", started=None
            )
            for stage in self._store.list_stages(build.id):
                if stage.status == Status.PENDING:
                    self._store.update_stage(
                        stage.id, status=Status.KILLED, error=f"cancelled by {by}", stopped=now
                    )
                elif stage.status in (Status.WAITING, Status.BLOCKED):
                    self._store.update_stage(
                        stage.id, status=Status.SKIPPED, error=f"cancelled by {by}", stopped=now
                    )
                self._logs.notify(stage.id)
            log.info("build %s#%d cancelled by %s", repo.slug, build.number, by)
        return self.advance(build.id)

    # -- settling ------------------------------------------------------------------------------

    def advance(self, build_id: int) -> Build:
        """Promote or skip waiting stages, then recompute the build's status (see the module
        docstring). Safe to call any number of times."""
        with self._lock:
            build, stages = self._store.build_with_stages(build_id)
            if build is None:
                raise Conflict(f"build {build_id} does not exist")
            promoted = False
            changed = True
            while changed:
                changed = False
                by_name = {s.name: s for s in stages}
                for stage in stages:
                    if stage.status != Status.WAITING:
                        continue
                    deps = [by_name[d] for d in stage.depends_on if d in by_name]
                    if not all(d.status.done for d in deps):
                        continue
                    status, error = _after_dependencies(stage, deps, build)
                    self._store.update_stage(
                        stage.id,
                        status=status,
                        error=error,
                        stopped=self._now() if status.done else None,
                    )
                    promoted = promoted or status == Status.PENDING
                    changed = True
                if changed:
                    build, stages = self._store.build_with_stages(build_id)
                    if build is None:
                        raise Conflict(f"build {build_id} does not exist")
            if promoted:
                self._scheduler.notify(None)
            updated = self._settle(build, stages)
        self._publish_build_id(build_id, build=updated)
        return updated

    def _settle(self, build: Build, stages: Sequence[Stage]) -> Build:
        now = self._now()
        if stages and all(s.status.done for s in stages):
            status, error = _final_status(build, stages)
            if build.status != status or not build.finished or build.error != error:
                return self._store.update_build(
                    build.id,
                    status=status,
                    error=error,
                    started=build.started or now,
                    finished=build.finished or now,
                )
            return build
        if build.status in (Status.PENDING, Status.BLOCKED) and any(
            s.status == Status.RUNNING for s in stages
        ):
            return self._store.update_build(
                build.id, status=Status.RUNNING, started=build.started or now
            )
        return build

    # -- events --------------------------------------------------------------------------------

    def _publish_build_id(self, build_id: int, *, build: Build | None = None) -> None:
        for changed in self.on_change:
            changed(build_id)
        if not self._events.active:
            return
        build = build or self._store.get_build_by_id(build_id)
        if build is None:
            return
        repo = self._store.get_repo_by_id(build.repo_id)
        if repo is not None:
            self._publish(repo, build)

    def _publish(self, repo: Repo, build: Build) -> None:
        for changed in self.on_change:
            changed(build.id)
        if self._events.active:
            self._events.publish(self._build_event(repo, build))


def _nothing_to_settle(build: Status | None, stages: Sequence[Status]) -> bool:
    """Whether ``advance`` would change nothing, judged from the statuses of the build and of
    its stages right after a stage ended (in that transaction): the build runs, no stage
    waits for others (none can start waiting later) and some stage is not done (whoever
    ends the last one sees all done in its own, later snapshot and settles the build)."""
    return (
        build == Status.RUNNING and Status.WAITING not in stages and not all(s.done for s in stages)
    )


def _after_dependencies(stage: Stage, deps: Sequence[Stage], build: Build) -> tuple[Status, str]:
    """What a waiting stage becomes once all of ``deps`` are done."""
    if build.status == Status.KILLED:
        return Status.SKIPPED, "the build was cancelled"
    failed = [d.name for d in deps if d.status.failed]
    if failed:
        if stage.on_failure:
            return Status.PENDING, ""
        return (
            Status.SKIPPED,
            f"skipped because {', '.join(failed)} failed (pipelines run after a failure "
            "only with trigger: status: [failure])",
        )
    if stage.on_success:
        return Status.PENDING, ""
    return (
        Status.SKIPPED,
        "skipped because the pipelines it depends on passed and its trigger asks for "
        "status: [failure] only",
    )


def _final_status(build: Build, stages: Sequence[Stage]) -> tuple[Status, str]:
    if build.status == Status.KILLED:
        return Status.KILLED, build.error
    counted = [s for s in stages if not s.errignore]
    for status in (Status.FAILURE, Status.ERROR, Status.KILLED, Status.DECLINED):
        hit = next((s for s in counted if s.status == status), None)
        if hit is not None:
            error = f"stage {hit.name}: {hit.error}" if hit.error else build.error
            if status == Status.FAILURE:
                error = build.error
            return status, error
    if all(s.status == Status.SKIPPED for s in stages):
        return Status.SKIPPED, build.error
    return Status.SUCCESS, build.error
