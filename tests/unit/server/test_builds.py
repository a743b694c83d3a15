"""The build state machine (``BuildService``) on the real store."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bastion.rpc.messages import StageResult, StepState, StepUpdate
from bastion.server.errors import BadRequest, Conflict
from bastion.server.services.builds import BuildService
from bastion.server.services.events import BuildEvent, EventBroker
from bastion.server.services.signals import Wakeups
from bastion.store import Store
from bastion.store.types import Build, NewBuild, NewStage, Repo, Stage, Status

LEASE_HASH = "0" * 63 + "1"


@pytest.fixture
def service(store: Store) -> BuildService:
    return BuildService(
        store,
        events=EventBroker(),
        scheduler_wakeups=Wakeups(),
        log_wakeups=Wakeups(),
        build_event=lambda repo, build: BuildEvent(repo.id, repo.active, "build", {}),
    )


@pytest.fixture
def repo(store: Store) -> Repo:
    return store.create_repo("acme", "web")


def make(
    service: BuildService, repo: Repo, stages: Sequence[NewStage]
) -> tuple[Build, dict[str, Stage]]:
    build = service.create(repo, NewBuild(event="push", after="a" * 40), stages)
    return build, by_name(service, build)


def by_name(service: BuildService, build: Build) -> dict[str, Stage]:
    return {s.name: s for s in service._store.list_stages(build.id)}


def lease(store: Store, service: BuildService, stage: Stage) -> Stage:
    """What the scheduler does when a runner takes ``stage``."""
    taken = store.take_stage(stage.id, 1, "r1", LEASE_HASH, 2**31)
    assert taken is not None
    service.stage_leased(*taken)
    return taken[0]


def run(store: Store, service: BuildService, stage: Stage, state: StepState) -> None:
    leased = lease(store, service, stage)
    error = "the engine broke" if state == StepState.ERROR else ""
    service.complete_stage(leased, StageResult(state=state, error=error))


@pytest.fixture
def runner(store: Store) -> None:
    store.create_runner("r1", "f" * 64)


def pending(name: str, number: int, **extra: object) -> NewStage:
    return NewStage(number=number, name=name, status=Status.PENDING, **extra)  # type: ignore[arg-type]


def waiting(name: str, number: int, deps: tuple[str, ...], **extra: object) -> NewStage:
    return NewStage(
        number=number,
        name=name,
        status=Status.WAITING,
        depends_on=deps,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.usefixtures("runner")
def test_a_build_runs_then_succeeds(store: Store, service: BuildService, repo: Repo) -> None:
    build, stages = make(service, repo, [pending("a", 1)])
    assert build.status == Status.PENDING
    lease(store, service, stages["a"])
    running = store.get_build_by_id(build.id)
    assert running is not None
    assert running.status == Status.RUNNING
    assert running.started > 0
    service.complete_stage(
        stages["a"],
        StageResult(
            state=StepState.SUCCESS,
            steps=[StepUpdate(number=1, name="test", state=StepState.SUCCESS, exit_code=0)],
        ),
    )
    done = store.get_build_by_id(build.id)
    assert done is not None
    assert (done.status, done.finished > 0) == (Status.SUCCESS, True)
    assert [s.status for s in store.list_steps(stages["a"].id)] == [Status.SUCCESS]


@pytest.mark.usefixtures("runner")
@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((StepState.SUCCESS, StepState.FAILURE), Status.FAILURE),
        ((StepState.ERROR, StepState.FAILURE), Status.FAILURE),
        ((StepState.ERROR, StepState.SUCCESS), Status.ERROR),
        ((StepState.KILLED, StepState.SUCCESS), Status.KILLED),
        ((StepState.SKIPPED, StepState.SKIPPED), Status.SKIPPED),
        ((StepState.SUCCESS, StepState.SKIPPED), Status.SUCCESS),
    ],
)
def test_the_final_status_of_a_build(
    store: Store,
    service: BuildService,
    repo: Repo,
    states: tuple[StepState, StepState],
    expected: Status,
) -> None:
    build, stages = make(service, repo, [pending("a", 1), pending("b", 2)])
    run(store, service, stages["a"], states[0])
    assert store.get_build_by_id(build.id).status in (Status.RUNNING, Status.PENDING)  # type: ignore[union-attr]
    run(store, service, stages["b"], states[1])
    final = store.get_build_by_id(build.id)
    assert final is not None
    assert final.status == expected
    if expected == Status.ERROR:
        assert final.error == "stage a: the engine broke"


@pytest.mark.usefixtures("runner")
def test_dependants_wait_and_follow_their_status_rule(
    store: Store, service: BuildService, repo: Repo
) -> None:
    build, stages = make(
        service,
        repo,
        [
            pending("a", 1),
            pending("b", 2),
            waiting("after-both", 3, ("a", "b")),
            waiting("on-failure", 4, ("a", "b"), on_success=False, on_failure=True),
            waiting("always", 5, ("after-both",), on_success=True, on_failure=True),
        ],
    )
    run(store, service, stages["a"], StepState.SUCCESS)
    now = by_name(service, build)
    assert now["after-both"].status == Status.WAITING  # b is not done yet
    run(store, service, stages["b"], StepState.FAILURE)
    now = by_name(service, build)
    assert now["after-both"].status == Status.SKIPPED
    assert "b failed" in now["after-both"].error
    assert now["on-failure"].status == Status.PENDING
    # "always" depended on a stage that was skipped: done, not failed, so it runs.
    assert now["always"].status == Status.PENDING


def test_cancel(store: Store, service: BuildService, repo: Repo) -> None:
    build, stages = make(service, repo, [pending("a", 1), waiting("b", 2, ("a",))])
    cancelled = service.cancel(repo, build, "alice")
    assert cancelled.status == Status.KILLED
    assert cancelled.error == "cancelled by alice"
    assert cancelled.finished > 0
    now = by_name(service, build)
    assert (now["a"].status, now["b"].status) == (Status.KILLED, Status.SKIPPED)
    with pytest.raises(Conflict):
        service.cancel(repo, cancelled, "alice")


@pytest.mark.usefixtures("runner")
def test_a_cancelled_running_stage_ends_when_its_runner_reports(
    store: Store, service: BuildService, repo: Repo
) -> None:
    build, stages = make(service, repo, [pending("a", 1)])
    lease(store, service, stages["a"])
    service.cancel(repo, build, "alice")
    assert store.get_stage(stages["a"].id).status == Status.RUNNING  # type: ignore[union-attr]
    still = store.get_build_by_id(build.id)
    assert still is not None
    assert (still.status, still.finished) == (Status.KILLED, 0)
    leased = store.get_stage(stages["a"].id)
    assert leased is not None
    service.complete_stage(leased, StageResult(state=StepState.KILLED))
    final = store.get_build_by_id(build.id)
    assert final is not None
    assert (final.status, final.finished > 0) == (Status.KILLED, True)


@pytest.mark.usefixtures("runner")
def test_a_lost_stage_ends_as_error_and_reports_are_kept_once(
    store: Store, service: BuildService, repo: Repo
) -> None:
    build, stages = make(service, repo, [pending("a", 1)])
    assert store.lease_stage(stages["a"].id, 1, "r1", LEASE_HASH, 1)  # lapsed long ago
    leased = store.get_stage(stages["a"].id)
    assert leased is not None
    service.update_step(leased, StepUpdate(number=1, name="s", state=StepState.RUNNING))
    lost = service.lose_stage(leased, "r1", 60)
    assert lost.status == Status.ERROR
    assert lost.error == "runner r1 stopped responding (no heartbeat for 60 s)"
    assert [s.status for s in store.list_steps(lost.id)] == [Status.ERROR]
    # A late report from the runner does not change the outcome.
    late = service.complete_stage(leased, StageResult(state=StepState.SUCCESS))
    assert late.status == Status.ERROR
    final = store.get_build_by_id(build.id)
    assert final is not None
    assert final.status == Status.ERROR


def test_a_stage_cannot_end_running(store: Store, service: BuildService, repo: Repo) -> None:
    _build, stages = make(service, repo, [pending("a", 1)])
    with pytest.raises(BadRequest):
        service.complete_stage(stages["a"], StageResult(state=StepState.RUNNING))


def test_a_build_without_runnable_stages_is_finished_at_once(
    service: BuildService, repo: Repo
) -> None:
    build = service.create(repo, NewBuild(event="push", status=Status.ERROR, error="bad yaml"), [])
    assert (build.status, build.finished > 0) == (Status.ERROR, True)
