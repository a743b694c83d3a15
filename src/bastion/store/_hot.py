"""The scheduler's hot-path statements, built once with bound parameters.

Leasing and ending a stage run a handful of single-row statements per stage. Building a
SQLAlchemy statement (coercing every column of a ``RETURNING``, computing its cache key) costs
several times what SQLite then spends running it, so ``Store`` executes these prebuilt
objects with a dict of ``p_*`` parameters instead of building new ones per call: the cache
key is memoised on the object and the compiled form comes from the engine's cache.

Status sets are spelled as ``OR`` of equalities rather than ``IN (...)``: an ``IN`` list is an
"expanding" parameter that SQLAlchemy re-processes on every execution.
"""

from __future__ import annotations

from typing import Any, Final, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Table,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)

from bastion.store.models import BuildRow, RepoRow, RunnerRow, StageRow, StepRow
from bastion.store.types import Status

STAGES: Final = cast(Table, StageRow.__table__)
STEPS: Final = cast(Table, StepRow.__table__)
BUILDS: Final = cast(Table, BuildRow.__table__)
REPOS: Final = cast(Table, RepoRow.__table__)
RUNNERS: Final = cast(Table, RunnerRow.__table__)

# States that are not final (a stage or step in one of them may still change).
OPEN_STATES: Final = tuple(s.value for s in Status if not s.done)


def _one_of(column: ColumnElement[Any], values: tuple[str, ...]) -> ColumnElement[bool]:
    return or_(*(column == value for value in values))


_NOW: Final[BindParameter[Any]] = bindparam("p_now")

STAGE_BY_ID: Final = select(STAGES).where(STAGES.c.id == bindparam("p_stage_id"))
BUILD_BY_ID: Final = select(BUILDS).where(BUILDS.c.id == bindparam("p_build_id"))
REPO_BY_ID: Final = select(REPOS).where(REPOS.c.id == bindparam("p_repo_id"))
STAGES_OF_BUILD: Final = (
    select(STAGES).where(STAGES.c.build_id == bindparam("p_build_id")).order_by(STAGES.c.number)
)
RUNNER_BY_TOKEN: Final = select(RUNNERS).where(
    RUNNERS.c.token_hash == bindparam("p_token_hash"), RUNNERS.c.revoked.is_(False)
)
STEP_BY_NUMBER: Final = select(STEPS).where(
    STEPS.c.stage_id == bindparam("p_stage_id"), STEPS.c.number == bindparam("p_number")
)
PENDING_KEYS: Final = (
    select(STAGES.c.id, STAGES.c.os, STAGES.c.arch, STAGES.c.labels)
    .where(STAGES.c.status == Status.PENDING.value)
    .order_by(STAGES.c.id)
    .limit(bindparam("p_limit"))
)

# The lease: a compare-and-set on the stage's status.
TAKE_STAGE: Final = (
    update(STAGES)
    .where(STAGES.c.id == bindparam("p_stage_id"), STAGES.c.status == Status.PENDING.value)
    .values(
        status=Status.RUNNING.value,
        runner_id=bindparam("p_runner_id"),
        machine=bindparam("p_machine"),
        lease_hash=bindparam("p_lease_hash"),
        lease_expires=bindparam("p_expires"),
        started=_NOW,
        updated=_NOW,
    )
    .returning(*STAGES.c)
)
# The build's first lease makes it running (``started`` kept if set).
START_BUILD: Final = (
    update(BUILDS)
    .where(
        BUILDS.c.id == bindparam("p_build_id"),
        _one_of(BUILDS.c.status, (Status.PENDING.value, Status.BLOCKED.value)),
    )
    .values(
        status=Status.RUNNING.value,
        started=func.coalesce(func.nullif(BUILDS.c.started, 0), _NOW),
        updated=_NOW,
    )
    .returning(*BUILDS.c)
)
RENEW_LEASE: Final = (
    update(STAGES)
    .where(STAGES.c.id == bindparam("p_stage_id"), STAGES.c.status == Status.RUNNING.value)
    .values(lease_expires=bindparam("p_expires"))
)

# Ending a stage: a compare-and-set on "not ended yet", which also ends its lease.
FINISH_STAGE: Final = (
    update(STAGES)
    .where(STAGES.c.id == bindparam("p_stage_id"), _one_of(STAGES.c.status, OPEN_STATES))
    .values(
        status=bindparam("p_status"),
        error=bindparam("p_error"),
        exit_code=bindparam("p_exit_code"),
        stopped=_NOW,
        started=func.coalesce(func.nullif(STAGES.c.started, 0), _NOW),
        lease_hash=None,
        lease_expires=0,
        updated=_NOW,
    )
    .returning(*STAGES.c)
)
# Steps a runner left open take the stage's outcome: running ones ``p_running_becomes``,
# the others (pending) skipped.
CLOSE_STEPS: Final = (
    update(STEPS)
    .where(STEPS.c.stage_id == bindparam("p_stage_id"), _one_of(STEPS.c.status, OPEN_STATES))
    .values(
        status=case(
            (STEPS.c.status == Status.RUNNING.value, bindparam("p_running_becomes")),
            else_=Status.SKIPPED.value,
        ),
        stopped=_NOW,
    )
)
# The build's status with each of its stages' (by number), after a stage ended.
BUILD_SNAPSHOT: Final = (
    select(BUILDS.c.status, STAGES.c.status)
    .join_from(BUILDS, STAGES, STAGES.c.build_id == BUILDS.c.id)
    .where(BUILDS.c.id == bindparam("p_build_id"))
    .order_by(STAGES.c.number)
)
BUILD_ID_OF_STAGE: Final = select(STAGES.c.build_id).where(STAGES.c.id == bindparam("p_stage_id"))
LOCK_BUILD: Final = (
    select(BUILDS.c.id).where(BUILDS.c.id == bindparam("p_build_id")).with_for_update()
)
