"""The store's cron jobs on SQLite and PostgreSQL: create, unique names, list, change,
delete, the due-jobs query, and the compare-and-set claim that lets one server fire a job."""

from __future__ import annotations

import threading

import pytest
from tests.integration.store.helpers import FakeClock

from bastion.store import Store
from bastion.store.errors import Conflict, NotFound


def _job(store: Store, repo_id: int, name: str = "nightly", next_run: int = 100) -> int:
    cron = store.create_cron(
        repo_id, name=name, expr="@hourly", branch="main", disabled=False, next_run=next_run
    )
    return cron.id


def test_create_list_update_delete(store: Store, clock: FakeClock) -> None:
    repo = store.create_repo("acme", "web")
    other = store.create_repo("acme", "api")
    cron_id = _job(store, repo.id)
    _job(store, repo.id, "early")
    _job(store, other.id)  # the same name in another repository is fine
    with pytest.raises(Conflict, match="nightly"):
        _job(store, repo.id)
    assert [c.name for c in store.list_crons(repo.id)] == ["early", "nightly"]
    found = store.get_cron(repo.id, "nightly")
    assert found is not None
    assert (found.expr, found.branch, found.next, found.prev, found.error) == (
        "@hourly",
        "main",
        100,
        0,
        "",
    )
    assert found.created == int(clock())

    clock.advance(5)
    changed = store.update_cron(cron_id, branch="release", disabled=True, error="boom")
    assert (changed.branch, changed.disabled, changed.error) == ("release", True, "boom")
    assert changed.updated == found.created + 5
    with pytest.raises(ValueError, match="repo_id"):
        store.update_cron(cron_id, repo_id=other.id)

    store.delete_cron(cron_id)
    assert store.get_cron(repo.id, "nightly") is None
    with pytest.raises(NotFound):
        store.delete_cron(cron_id)
    with pytest.raises(NotFound):
        store.update_cron(cron_id, disabled=False)


def test_due_jobs_and_the_claim(store: Store, clock: FakeClock) -> None:
    repo = store.create_repo("acme", "web")
    now = int(clock())
    due = _job(store, repo.id, "due", next_run=now - 10)
    _job(store, repo.id, "later", next_run=now + 10)
    off = _job(store, repo.id, "off", next_run=now - 20)
    store.update_cron(off, disabled=True)
    assert [c.name for c in store.due_crons(now)] == ["due"]

    assert store.claim_cron(due, seen_next=now - 10, new_next=now + 3600)
    assert not store.claim_cron(due, seen_next=now - 10, new_next=now + 3600)  # taken
    job = store.get_cron_by_id(due)
    assert job is not None
    assert (job.next, job.prev) == (now + 3600, now)
    assert store.due_crons(now) == []
    assert not store.claim_cron(off, seen_next=now - 20, new_next=now + 60)  # disabled


def test_racing_claims_succeed_once(store: Store, clock: FakeClock) -> None:
    repo = store.create_repo("acme", "web")
    now = int(clock())
    cron_id = _job(store, repo.id, next_run=now - 1)
    barrier = threading.Barrier(8)
    wins: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait()
        won = store.claim_cron(cron_id, seen_next=now - 1, new_next=now + 3600)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(wins) == [False] * 7 + [True]
