"""Leasing: matching a runner's os, arch and labels, looking past stages it cannot take, and
spreading concurrent pollers over the matching stages."""

from __future__ import annotations

import pytest

from bastion.rpc.messages import RunnerPoll
from bastion.server.services.builds import BuildService
from bastion.server.services.events import BuildEvent, EventBroker
from bastion.server.services.scheduler import Scheduler
from bastion.server.services.signals import Wakeups
from bastion.server.settings import ServerSettings
from bastion.store import Store
from bastion.store.types import Build, NewBuild, NewStage, Repo, Runner, Stage, Status


@pytest.fixture
def scheduler(store: Store) -> Scheduler:
    builds = BuildService(
        store,
        events=EventBroker(),
        scheduler_wakeups=Wakeups(),
        log_wakeups=Wakeups(),
        build_event=lambda repo, build: BuildEvent(repo.id, repo.active, "build", {}),
    )
    return Scheduler(ServerSettings(), store, builds, Wakeups())


@pytest.fixture
def repo(store: Store) -> Repo:
    return store.create_repo("acme", "web")


@pytest.fixture
def runner(store: Store) -> Runner:
    return store.create_runner("r1", "f" * 64)


def stages(store: Store, repo: Repo, *specs: dict[str, object]) -> list[int]:
    new = [
        NewStage(number=i, name=f"s{i}", status=Status.PENDING, **spec)  # type: ignore[arg-type]
        for i, spec in enumerate(specs, start=1)
    ]
    _, created = store.create_build(repo.id, NewBuild(event="push", after="a" * 40), new)
    return [s.id for s in created]


def test_a_runner_gets_only_a_stage_it_can_run(
    store: Store, scheduler: Scheduler, repo: Repo, runner: Runner
) -> None:
    others = [{"labels": {"gpu": "yes"}}, {"arch": "arm64"}, {"os": "windows"}] * 30
    ids = stages(store, repo, *others, {"labels": {"zone": "eu"}})
    poll = RunnerPoll(labels={"zone": "eu", "disk": "ssd"})
    lease = scheduler.try_lease(runner, poll)
    assert lease is not None
    assert lease.stage_id == ids[-1]  # found past the 90 stages it cannot take
    leased = store.get_stage(lease.stage_id)
    assert leased is not None
    assert (leased.status, leased.runner_id) == (Status.RUNNING, runner.id)
    assert scheduler.try_lease(runner, poll) is None


def test_pollers_start_at_a_random_matching_stage_and_go_round(
    store: Store,
    scheduler: Scheduler,
    repo: Repo,
    runner: Runner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _, b, _, c = stages(store, repo, {}, {"arch": "arm64"}, {}, {"os": "windows"}, {})
    starts: list[int] = []

    def randrange(n: int) -> int:  # the last of the n matching stages
        starts.append(n)
        return n - 1

    monkeypatch.setattr("bastion.server.services.scheduler.random.randrange", randrange)
    lost = {c}  # another runner takes c between the query and the compare-and-set
    take_stage = store.take_stage

    def racing_take_stage(stage_id: int, *args: object) -> tuple[Stage, Build | None] | None:
        if stage_id in lost:
            lost.discard(stage_id)
            return None
        return take_stage(stage_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "take_stage", racing_take_stage)
    leased = []
    for _ in range(3):
        lease = scheduler.try_lease(runner, RunnerPoll())
        assert lease is not None
        leased.append(lease.stage_id)
    # c lost to the other runner, so the first poll went round to a; then c, then b.
    assert leased == [a, c, b]
    assert starts == [3, 2, 1]
    assert scheduler.try_lease(runner, RunnerPoll()) is None
