"""Audit events and key rotation on a real server: ``GET /api/audit`` (filters, pagination,
bad parameters), ``POST /api/admin/rekey`` through a full rotation (old key as previous,
dry run, rekey, restart without the old key), audited with the actor, refused when the audit
log cannot be written or another run is going on (the rotation on SQLite and PostgreSQL); the
retention purge; the CLI (``audit ls``, ``secret rekey``); and no secret value in the database
file, the audit table or any answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.integration.server._support import Harness, start_server
from tests.integration.store.conftest import postgres_admin_url, postgres_url
from typer.testing import CliRunner

from bastion.cli import remote
from bastion.cli.app import app
from bastion.client import BastionClient, ClientSettings
from bastion.crypto.secretbox import key_id
from bastion.server.app import purge_audit
from bastion.store import StoreError
from bastion.store.types import AuditQuery

OLD = bytes.fromhex("5e2b7c91a4d3f60817e9c2b5a6d4f3e1c8b7a69584736251f0e9d8c7b6a59483")
NEW = bytes.fromhex("a1c3e5f7092b4d6f8193a5c7e9fb1d3f5072b4d6f8a1c3e5079b2d4f6a8c1e3b")
VALUE = "tr4ce-me-0f-the-rotation-test-9c1d"  # greppable, never to be found at rest
PR_VALUE = "another-tr4ce-for-pull-requests-77"


class Servers:
    """Servers started one after the other on the same data directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._running: Iterator[Harness] | None = None

    def start(self, **settings: Any) -> Harness:
        self.stop()
        self._running = start_server(self.tmp_path, **settings)
        return next(self._running)

    def stop(self) -> None:
        if self._running is not None:
            next(self._running, None)
            self._running = None


__all__ = ["postgres_admin_url", "postgres_url"]  # fixtures, for the PostgreSQL run


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """ "" for the server's default SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop()


def test_full_rotation_through_the_server(
    servers: Servers, tmp_path: Path, database_url: str
) -> None:
    first = servers.start(database_secret=OLD.hex(), database_url=database_url)
    api = first.admin
    _, webhook_secret = first.forge_repo("github", "acme", "web", forge_id="1")
    for name, value, pr in (("token", VALUE, False), ("npm", PR_VALUE, True)):
        answer = api.post(
            "/api/repos/acme/web/secrets", json={"name": name, "data": value, "pull_request": pr}
        )
        assert answer.status_code == 200, answer.text

    second = servers.start(
        database_secret=NEW.hex(), database_secret_previous=OLD.hex(), database_url=database_url
    )
    api = second.admin
    answers: list[str] = []
    census = api.post("/api/admin/rekey", json={"dry_run": True})
    answers.append(census.text)
    assert census.status_code == 200, census.text
    body = census.json()
    assert body["current_key_id"] == key_id(NEW).hex()
    assert body["keys"]["repo_secrets.value"] == {key_id(OLD).hex(): 2}
    assert body["keys"]["repos.webhook_secret"] == {key_id(OLD).hex(): 1}
    assert body["remaining"] >= 3
    done = api.post("/api/admin/rekey", json={})
    answers.append(done.text)
    assert done.status_code == 200, done.text
    assert done.json()["total_rekeyed"] == body["remaining"]
    assert done.json()["failed"] == {}
    audit = api.get("/api/audit", params={"kind": "secret.rekey"})
    answers.append(audit.text)
    kinds = [(e["kind"], e["actor"]) for e in audit.json()]
    assert kinds == [
        ("secret.rekey", "admin"),
        ("secret.rekey.started", "admin"),
        ("secret.rekey.dry_run", "admin"),
    ]
    assert audit.json()[0]["detail"]["rekeyed"] == body["remaining"]

    third = servers.start(database_secret=NEW.hex(), database_url=database_url)  # old key gone
    store = third.ctx.store
    web = store.get_repo("acme", "web")
    assert web is not None
    assert store.get_repo_secrets(web.id) == {"token": VALUE, "npm": PR_VALUE}
    assert store.get_webhook_secret(web.id) == webhook_secret
    with store._tx() as session:  # the audit table itself, column by column
        events = [str(tuple(row)) for row in session.execute(text("SELECT * FROM audit_events"))]
    assert any("secret.created" in e or "secret.delivered" in e or "rekey" in e for e in events)
    for secret in (VALUE, PR_VALUE, webhook_secret):
        assert all(secret not in event for event in events)
    servers.stop()

    at_rest = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("bastion.db*"))
    assert bool(at_rest) == (not database_url)  # the SQLite file, when it is the database
    for secret in (VALUE, PR_VALUE, webhook_secret):
        assert secret.encode() not in at_rest
        assert all(secret not in answer for answer in answers)


def test_rekey_refused_without_audit_and_while_running(
    server: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = server.admin
    server.ctx.rekey._running.acquire()  # another run in progress
    try:
        busy = api.post("/api/admin/rekey", json={})
    finally:
        server.ctx.rekey._running.release()
    assert busy.status_code == 409
    assert "already running" in busy.json()["message"]

    def database_gone(**_: Any) -> None:
        raise StoreError("database error: connection lost")

    monkeypatch.setattr(server.ctx.store, "rekey_encrypted", database_gone)
    stopped = api.post("/api/admin/rekey", json={})
    assert stopped.status_code == 503
    assert "run it again" in stopped.json()["message"]
    [event] = server.ctx.store.list_audit_events(AuditQuery(kind="secret.rekey.interrupted"))
    assert event.detail["error"] == "StoreError"
    assert event.actor == "admin"
    monkeypatch.undo()

    with server.ctx.store._tx(write=True) as session:  # the audit log cannot be written
        session.execute(text("DROP TABLE audit_events"))
    refused = api.post("/api/admin/rekey", json={})
    assert refused.status_code == 503
    assert "nothing was re-encrypted" in refused.json()["message"]


def test_audit_api_filters_pages_and_refuses_bad_parameters(server: Harness) -> None:
    audit = server.ctx.audit
    for number in range(1, 6):
        audit.record("secret.delivered", repo="acme/web", build=number, secret="token")
    audit.record("log.credential_detected", repo="acme/api", build=1, detail={"kind": "aws"})
    api = server.admin

    def kinds(**params: Any) -> list[str]:
        answer = api.get("/api/audit", params=params)
        assert answer.status_code == 200, answer.text
        return [e["kind"] for e in answer.json()]

    assert kinds(kind="log.") == ["log.credential_detected"]
    assert kinds(repo="acme/web", build=3) == ["secret.delivered"]
    assert len(kinds(secret="token")) == 5
    page = api.get("/api/audit", params={"limit": 4}).json()
    rest = api.get("/api/audit", params={"limit": 4, "before": page[-1]["id"]}).json()
    ids = [e["id"] for e in page + rest]
    assert len(ids) == 6 and ids == sorted(ids, reverse=True)
    for params, where in (
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"build": "x"}, "build"),
        ({"since": 100, "until": 50}, "until"),
    ):
        answer = api.get("/api/audit", params=params)
        assert answer.status_code == 400
        assert where in answer.json()["message"]


def test_retention_purge(make_server: Any) -> None:
    server = make_server(audit_retention_days=10)
    store = server.ctx.store
    now = server.ctx.now()
    store.add_audit_event("old.event", when=now - 11 * 86400)
    store.add_audit_event("recent.event", when=now - 9 * 86400)
    assert purge_audit(server.ctx) == 1
    assert [e.kind for e in store.list_audit_events(AuditQuery())] == ["recent.event"]


def test_cli_audit_ls_and_secret_rekey(server: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(settings: ClientSettings) -> BastionClient:
        return BastionClient(settings.server, settings.token)

    monkeypatch.setattr(remote, "client_factory", factory)
    monkeypatch.setenv("BASTION_SERVER", server.url)
    monkeypatch.setenv("BASTION_TOKEN", server.admin_token)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    server.local_repo()
    web = server.ctx.store.get_repo("acme", "web")
    assert web is not None
    server.ctx.store.set_repo_secret(web.id, "token", VALUE)

    dry = runner.invoke(app, ["secret", "rekey", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"current key id {server.ctx.store.current_key_id}" in dry.output
    assert "repo_secrets.value" in dry.output
    done = runner.invoke(app, ["secret", "rekey", "--format", "json"])
    assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["audit", "ls", "--kind", "secret.rekey", "--since", "1d"])
    assert listed.exit_code == 0, listed.output
    assert "secret.rekey.started" in listed.output
    assert "secret.rekey.dry_run" in listed.output
    as_json = runner.invoke(app, ["audit", "ls", "--limit", "1", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert "more events: add --before" in as_json.output
    for output in (dry.output, done.output, listed.output, as_json.output):
        assert VALUE not in output

    bad = runner.invoke(app, ["audit", "ls", "--since", "last tuesday"])
    assert bad.exit_code == 2
    assert "--since 'last tuesday'" in bad.output
    assert "Traceback" not in bad.output
    backwards = runner.invoke(
        app, ["audit", "ls", "--since", "2026-11-02", "--until", "2026-11-01"]
    )
    assert backwards.exit_code == 2
    assert "--until" in backwards.output
