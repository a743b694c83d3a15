"""Organisation and global secrets, filters and per-step delivery through the real server:
the API (create, update, validation, rotation flag, audit), what a leaseholder receives for a
pull request (grants, denials with the rule, no value), the ``orgsecret`` / ``globalsecret``
CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.server._support import FakeForge, FakeRunner, Harness
from tests.integration.server.test_secrets import (
    GH,
    NPM,
    TOKEN,
    Recorder,
    add_secret,
    admin,
    details,
    github_pull_request,
)
from tests.integration.server.test_secrets import client as client_of
from typer.testing import CliRunner

from bastion.cli import remote
from bastion.cli.app import app
from bastion.client import BastionClient, ClientSettings
from bastion.store.types import AuditQuery

ORG = "org-value-Lm4Nb8Xc2Rt"
GLOBAL = "global-value-Rt5Yu1Io9P"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def post(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_org_and_global_secret_api(server: Harness, recorder: Recorder) -> None:
    api = admin(server, recorder)
    created = post(
        api,
        "/api/secrets/acme",
        {"name": "docker_password", "data": ORG, "images": ["plugins/docker"], "events": ["push"]},
    )
    assert (created["scope"], created["namespace"]) == ("org", "acme")
    assert created["images"] == ["plugins/docker"]
    assert created["rotation_due"] is False
    post(api, "/api/admin/secrets", {"name": "npm", "data": GLOBAL, "pull_request": True})
    assert [s["name"] for s in api.get("/api/secrets/acme").json()] == ["docker_password"]
    assert api.get("/api/secrets/evil").json() == []
    assert api.get("/api/secrets/evil/docker_password").status_code == 404
    [npm] = api.get("/api/admin/secrets").json()
    assert (npm["scope"], npm["namespace"], npm["pull_request"]) == ("global", "", True)

    patched = api.patch("/api/secrets/acme/docker_password", json={"branches": ["main"]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["branches"] == ["main"]
    assert patched.json()["images"] == ["plugins/docker"]  # untouched
    assert server.ctx.store.get_shared_secret("org", "acme", "docker_password") == ORG

    # Bad input: 4xx naming the field, never the value.
    bad = api.post("/api/secrets/acme", json={"name": "x", "data": ORG, "events": ["merge"]})
    assert bad.status_code == 400
    assert "'merge' is not an event" in bad.json()["message"]
    short = api.patch("/api/admin/secrets/npm", json={"data": "zq9"})
    assert short.status_code == 400
    assert "zq9" not in short.text
    assert api.patch("/api/admin/secrets/none", json={"events": []}).status_code == 404

    assert api.delete("/api/secrets/acme/docker_password").status_code == 204
    assert api.delete("/api/secrets/acme/docker_password").status_code == 404
    recorder.assert_never_saw(ORG, GLOBAL)

    events = server.ctx.store.list_audit_events(AuditQuery(kind="secret."))
    kinds = sorted((e.kind, e.secret) for e in events)
    assert kinds == [
        ("secret.created", "docker_password"),
        ("secret.created", "npm"),
        ("secret.deleted", "docker_password"),
        ("secret.updated", "docker_password"),
    ]
    assert all(e.actor == "admin" for e in events)
    for event in events:
        assert ORG not in repr(event) and GLOBAL not in repr(event)


def test_non_admins_cannot_read_org_secret_names(server: Harness, recorder: Recorder) -> None:
    post(admin(server, recorder), "/api/secrets/acme", {"name": "token", "data": ORG})
    alice = client_of(server, recorder, server.user_token("alice"))
    assert alice.get("/api/secrets/acme").status_code == 403
    assert alice.post("/api/secrets/acme", json={"name": "x", "data": ORG}).status_code == 403
    anonymous = client_of(server, recorder, None)
    assert anonymous.get("/api/admin/secrets").status_code == 401


def test_rotation_flag_follows_the_value_not_the_filters(
    server: Harness, recorder: Recorder
) -> None:
    api = admin(server, recorder)
    server.local_repo()
    add_secret(api, "token", TOKEN)
    store = server.ctx.store
    web = store.get_repo("acme", "web")
    assert web is not None
    old = server.ctx.now() - 100 * 86400
    engine = store._engine  # an old secret: its value was set 100 days ago
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE repo_secrets SET rotated = {old}, updated = {old}")
    [listed] = api.get("/api/repos/acme/web/secrets").json()
    assert (listed["age_days"], listed["rotation_due"]) == (100, True)
    changed = api.patch("/api/repos/acme/web/secrets/token", json={"events": ["push"]}).json()
    assert changed["rotation_due"] is True  # filters changed, the value did not
    fresh = api.patch("/api/repos/acme/web/secrets/token", json={"data": TOKEN + "-new"}).json()
    assert (fresh["age_days"], fresh["rotation_due"]) == (0, False)


def test_a_pull_request_stage_gets_denials_with_the_rule_and_no_value(
    server: Harness, forge: FakeForge, recorder: Recorder
) -> None:
    github_pull_request(server, forge, fork=False)
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN, slug=GH)
    post(api, "/api/secrets/octo-org", {"name": "npm", "data": NPM, "pull_request": True})
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    raw = runner.details(lease.stage_id, lease)
    assert TOKEN not in raw.text
    got = details(runner, lease)
    assert got.secrets == {"npm": NPM}  # the organisation's, which allows pull requests
    assert got.secret_grants == {"test": ["npm"]}
    assert got.secret_denials["test"]["token"].startswith(
        "secret 'token' is not available to pull_request builds"
    )


def test_a_fork_pull_request_gets_no_org_or_global_secret(
    server: Harness, forge: FakeForge, recorder: Recorder
) -> None:
    github_pull_request(server, forge, fork=True)
    api = admin(server, recorder)
    post(api, "/api/secrets/octo-org", {"name": "npm", "data": NPM, "pull_request": True})
    post(api, "/api/admin/secrets", {"name": "token", "data": GLOBAL, "pull_request": True})
    # A fork's build may wait for an approval first; approved or not, it gets no secret.
    api.post(f"/api/repos/{GH}/builds/1/approve")
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    raw = runner.details(lease.stage_id, lease)
    assert NPM not in raw.text and GLOBAL not in raw.text
    got = details(runner, lease)
    assert got.secrets == {}
    assert "builds of forks" in got.secret_denials["test"]["npm"]


def test_cli_orgsecret_and_globalsecret(
    server: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def factory(settings: ClientSettings) -> BastionClient:
        return BastionClient(settings.server, settings.token)

    monkeypatch.setattr(remote, "client_factory", factory)
    monkeypatch.setenv("BASTION_SERVER", server.url)
    monkeypatch.setenv("BASTION_TOKEN", server.admin_token)
    monkeypatch.setenv("COLUMNS", "200")
    outputs: list[str] = []

    def run(*args: str, stdin: str | None = None) -> Any:
        result = CliRunner().invoke(app, list(args), input=stdin)
        outputs.append(result.output)
        assert "Traceback" not in result.output
        return result

    value = tmp_path / "pw.txt"
    value.write_text(ORG)
    added = run(
        "orgsecret", "add", "acme", "docker_password", "--data-file", str(value),
        "--image", "plugins/docker", "--event", "push", "--event", "tag",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "saved secret docker_password of organisation acme" in added.stdout
    listed = json.loads(run("orgsecret", "ls", "acme", "--format", "json").stdout)
    assert [(s["name"], s["images"], s["events"]) for s in listed] == [
        ("docker_password", ["plugins/docker"], ["push", "tag"])
    ]
    table = run("orgsecret", "ls", "acme")
    assert "docker_password" in table.stdout and "plugins/docker" in table.stdout
    updated = run("orgsecret", "update", "acme", "docker_password", "--branch", "main")
    assert updated.exit_code == 0, updated.output
    info = run("orgsecret", "info", "acme", "docker_password")
    assert "main" in info.stdout and "plugin steps only" in info.stdout

    piped = run("globalsecret", "add", "npm", "-", "--allow-pull-request", stdin=GLOBAL)
    assert piped.exit_code == 0, piped.output
    assert server.ctx.store.get_shared_secret("global", "", "npm") == GLOBAL
    assert "npm" in run("globalsecret", "ls").stdout

    # Bad input: exit 2 with the option and the reason, nothing sent.
    bad_event = run("orgsecret", "add", "acme", "x", "--data", ORG, "--event", "merge")
    assert bad_event.exit_code == 2
    assert "--event 'merge': not an event" in bad_event.stderr
    bad_ns = run("orgsecret", "ls", "acme/web")
    assert bad_ns.exit_code == 2
    assert "NAMESPACE 'acme/web'" in bad_ns.stderr
    nothing = run("globalsecret", "update", "npm")
    assert nothing.exit_code == 2
    assert "nothing to change" in nothing.stderr
    twice = run("globalsecret", "add", "other", ORG, "--data", ORG)
    assert twice.exit_code == 2

    # Repository secrets with filters, updated, and one overdue for rotation.
    server.local_repo()
    repo = ("--repository", "acme/web")
    added = run("secret", "add", *repo, "--name", "token", "--data", "-", "--branch", "main",
                "--allow-pull-request", stdin=ORG)  # fmt: skip
    assert added.exit_code == 0, added.output
    changed = run("secret", "update", *repo, "--name", "token", "--deny-pull-request")
    assert changed.exit_code == 0, changed.output
    assert "(not for pull requests)" in changed.stdout
    web = server.ctx.store.get_repo("acme", "web")
    assert web is not None
    assert server.ctx.store.get_repo_secret(web.id, "token") == ORG
    old = server.ctx.now() - 91 * 86400
    with server.ctx.store._engine.begin() as connection:  # the value was set 91 days ago
        connection.exec_driver_sql(f"UPDATE repo_secrets SET rotated = {old}")
    overdue = run("secret", "ls", *repo)
    assert "91 d (rotate)" in overdue.stdout
    assert "overdue for rotation: token" in overdue.stderr
    [shown] = json.loads(run("secret", "ls", *repo, "--format", "json").stdout)
    assert (shown["branches"], shown["pull_request"], shown["rotation_due"]) == (
        ["main"],
        False,
        True,
    )

    assert run("orgsecret", "rm", "acme", "docker_password").exit_code == 0
    assert run("globalsecret", "rm", "npm").exit_code == 0
    missing = run("orgsecret", "info", "acme", "docker_password")
    assert missing.exit_code == 1
    assert "404" in missing.stderr
    for output in outputs:
        assert ORG not in output and GLOBAL not in output
