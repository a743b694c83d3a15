"""Audit events in the store and through ``AuditLog``, on SQLite and PostgreSQL: append,
filters (kind prefix with LIKE wildcards taken literally, repo, build, secret, time range),
newest-first pagination, retention purge, and the failure policy of ``record`` / ``require``."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from tests.integration.store.helpers import FakeClock

from bastion.server.services.audit import AuditLog, AuditUnavailableError, clean_detail
from bastion.store import Store
from bastion.store.types import AuditQuery


def test_record_and_read_back(store: Store, clock: FakeClock) -> None:
    audit = AuditLog(store)
    audit.record(
        "secret.delivered",
        actor="runner:r1",
        repo="acme/web",
        build=7,
        stage=1,
        step="deploy",
        runner="r1",
        secret="token",
        detail={"names": ["a", "b"], "count": 2},
    )
    (event,) = store.list_audit_events(AuditQuery())
    assert event.kind == "secret.delivered"
    assert event.created == int(clock())
    assert (event.repo, event.build, event.stage, event.step) == ("acme/web", 7, 1, "deploy")
    assert (event.runner, event.secret, event.actor) == ("r1", "token", "runner:r1")
    assert event.detail == {"names": ["a", "b"], "count": 2}


def test_filters(store: Store, clock: FakeClock) -> None:
    store.add_audit_event("secret.created", repo="acme/web", secret="a")
    clock.advance(10)
    store.add_audit_event("secret.delivered", repo="acme/web", build=1, secret="a")
    clock.advance(10)
    store.add_audit_event("secretive.thing", repo="acme/api", build=1, secret="b")
    store.add_audit_event("log.credential_detected", repo="acme/api", build=2)
    t0 = int(clock()) - 20

    def kinds(**filters: object) -> list[str]:
        return [e.kind for e in store.list_audit_events(AuditQuery(**filters))]  # type: ignore[arg-type]

    assert kinds(kind="secret.") == ["secret.delivered", "secret.created"]
    assert kinds(kind="secret") == ["secretive.thing", "secret.delivered", "secret.created"]
    assert kinds(kind="secret_") == []  # "_" is not a wildcard
    assert kinds(kind="%") == []  # nor is "%"
    assert kinds(repo="acme/api") == ["log.credential_detected", "secretive.thing"]
    assert kinds(build=1) == ["secretive.thing", "secret.delivered"]
    assert kinds(secret="a", build=1) == ["secret.delivered"]
    assert kinds(since=t0 + 10) == [
        "log.credential_detected",
        "secretive.thing",
        "secret.delivered",
    ]
    assert kinds(until=t0 + 10) == ["secret.created"]


def test_pagination_is_newest_first_and_complete(store: Store) -> None:
    for i in range(7):
        store.add_audit_event("test.event", detail={"i": i})
    seen: list[int] = []
    before: int | None = None
    while True:
        page = store.list_audit_events(AuditQuery(limit=3, before_id=before))
        if not page:
            break
        seen.extend(int(e.detail["i"]) for e in page)  # type: ignore[call-overload]
        before = page[-1].id
    assert seen == [6, 5, 4, 3, 2, 1, 0]


def test_limit_is_bounded(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.list_audit_events(AuditQuery(limit=0))
    with pytest.raises(ValueError, match="limit"):
        store.list_audit_events(AuditQuery(limit=100_000))


def test_purge_removes_only_old_events(store: Store, clock: FakeClock) -> None:
    store.add_audit_event("old.event")
    clock.advance(100)
    store.add_audit_event("new.event")
    assert store.purge_audit_events(int(clock()) - 50) == 1
    assert [e.kind for e in store.list_audit_events(AuditQuery())] == ["new.event"]


def test_detail_accepts_metadata_only() -> None:
    assert clean_detail({"n": 1, "ok": True, "names": ("a", "b")}) == {
        "n": 1,
        "ok": True,
        "names": ["a", "b"],
    }
    assert clean_detail({"s": "x" * 2000})["s"] == "x" * 500 + "…"
    with pytest.raises(ValueError, match="nested"):
        clean_detail({"nested": {"value": "hunter2"}})
    with pytest.raises(ValueError, match="scalars"):
        clean_detail({"nested": [{"value": "hunter2"}]})


def test_bad_kind_is_a_programming_error(store: Store) -> None:
    with pytest.raises(ValueError, match="kind"):
        AuditLog(store).record("")
    with pytest.raises(ValueError, match="kind"):
        AuditLog(store).record("x" * 65)


def test_database_failure_record_logs_require_raises(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditLog(store)
    # The database fails every write to the table: it is gone.
    with store._tx(write=True) as session:
        session.execute(text("DROP TABLE audit_events"))
    with caplog.at_level(logging.ERROR, logger="bastion.audit"):
        audit.record("secret.delivered", repo="acme/web", secret="token")  # does not raise
    assert "audit event not stored" in caplog.text
    assert "secret=token" in caplog.text
    with pytest.raises(AuditUnavailableError, match="audit log cannot be written"):
        audit.require("secret.rekey", actor="admin")
