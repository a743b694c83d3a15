"""Promotions and rollbacks to environments: branch rules, approvals by the environment's
approvers (never the promoter), re-checks on restart; the API and the CLI."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tests.integration.server._support import PIPELINE, FakeRunner, Harness, wait_for
from typer.testing import CliRunner, Result

from bastion.cli.app import app

DEPLOY_PIPELINES = (
    PIPELINE
    + b"""---
kind: pipeline
name: deploy
trigger:
  event: [promote, rollback]
  target: [production]
steps:
- name: ship
  image: bastion/busybox:latest
  commands: [echo shipping]
"""
)


def first_build(server: Harness) -> dict[str, Any]:
    checkout = server.local_repo()
    checkout.commit({".drone.yml": DEPLOY_PIPELINES}, "deployable")
    checkout.push()
    return dict(wait_for(server.builds)[0])


def promote(client: httpx.Client, number: int, target: str, **params: str) -> httpx.Response:
    return client.post(
        f"/api/repos/acme/web/builds/{number}/promote", params={"target": target, **params}
    )


def environment(server: Harness, name: str, **rules: Any) -> None:
    response = server.admin.post("/api/repos/acme/web/environments", json={"name": name, **rules})
    assert response.status_code == 200, response.text


def test_promote_to_an_undefined_target_runs_at_once(server: Harness) -> None:
    build = first_build(server)
    response = promote(server.admin, build["number"], "production", VERSION="1.2.3")
    assert response.status_code == 200, response.text
    deployed = response.json()
    assert deployed["event"] == "promote"
    assert deployed["deploy_to"] == "production"
    assert deployed["parent"] == build["number"]
    assert deployed["params"] == {"VERSION": "1.2.3"}
    assert deployed["after"] == build["after"]
    assert deployed["status"] == "pending"
    # The trigger sees the event and the target: the deploy pipeline runs (and, as in Drone,
    # the pipeline without a trigger).
    assert {s["name"]: s["status"] for s in deployed["stages"]} == {
        "build": "pending",
        "deploy": "pending",
    }
    other = promote(server.admin, build["number"], "staging").json()
    assert {s["name"]: s["status"] for s in other["stages"]} == {
        "build": "pending",
        "deploy": "skipped",
    }


def test_a_branch_the_environment_does_not_take_is_refused(server: Harness) -> None:
    build = first_build(server)
    environment(server, "production", branches=["release/*"], approval=False)
    before = len(server.builds())
    refused = promote(server.admin, build["number"], "production")
    assert refused.status_code == 403
    assert "may not be deployed to production" in refused.json()["message"]
    assert len(server.builds()) == before  # nothing stored
    environment(server, "production", branches=["release/*", "ma*"], approval=False)
    assert promote(server.admin, build["number"], "production").json()["status"] == "pending"


def test_a_deployment_waits_for_an_approver_who_is_not_the_promoter(server: Harness) -> None:
    build = first_build(server)
    environment(server, "production", approvers=["reviewer"])
    reviewer = server.client(server.user_token("reviewer", admin=True))
    deployer = server.client(server.user_token("deployer", admin=True))
    held = promote(deployer, build["number"], "production").json()
    assert held["status"] == "blocked"
    assert held["hold"] == "deploy"
    assert "deployments to production wait for an approval" in held["error"]
    runner = FakeRunner(server, "r1")
    pushed = runner.poll(wait=0.3)  # the push build's stage; nothing of the held deployment
    assert pushed is not None
    assert runner.poll(wait=0.3) is None

    admin_try = server.admin.post(f"/api/repos/acme/web/builds/{held['number']}/approve")
    assert admin_try.status_code == 403
    assert "only the approvers of production" in admin_try.json()["message"]
    approved = reviewer.post(f"/api/repos/acme/web/builds/{held['number']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "pending"


def test_the_promoter_cannot_approve_their_own_deployment(server: Harness) -> None:
    build = first_build(server)
    environment(server, "production")
    deployer = server.client(server.user_token("deployer", admin=True))
    held = promote(deployer, build["number"], "production").json()
    own = deployer.post(f"/api/repos/acme/web/builds/{held['number']}/approve")
    assert own.status_code == 403
    assert "your own change" in own.json()["message"]
    other = server.admin.post(f"/api/repos/acme/web/builds/{held['number']}/approve")
    assert other.status_code == 200, other.text


def test_restarting_a_deployment_checks_the_rules_again(server: Harness) -> None:
    build = first_build(server)
    deployed = promote(server.admin, build["number"], "production").json()
    environment(server, "production", branches=["release/*"], approval=False)
    restarted = server.admin.post(f"/api/repos/acme/web/builds/{deployed['number']}")
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["status"] == "error"
    assert "may not be deployed to production" in restarted.json()["error"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "query parameter target is required"),
        ({"target": "prod uction"}, "letters, digits"),
        ({"target": "production", "1BAD": "x"}, "parameter '1BAD'"),
        ({"target": "production", "DRONE_COMMIT_SHA": "x"}, "Bastion's own variables"),
    ],
)
def test_bad_deployment_requests_get_400(
    server: Harness, params: dict[str, str], message: str
) -> None:
    build = first_build(server)
    response = server.admin.post(
        f"/api/repos/acme/web/builds/{build['number']}/promote", params=params
    )
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_a_deployment_of_a_deployment_is_refused(server: Harness) -> None:
    build = first_build(server)
    deployed = promote(server.admin, build["number"], "staging").json()
    again = promote(server.admin, deployed["number"], "production")
    assert again.status_code == 400
    assert "promote a build of a branch or tag" in again.json()["message"]


def test_environment_changes_need_repository_admin_and_are_audited(server: Harness) -> None:
    first_build(server)
    user = server.client(server.user_token("someone"))
    denied = user.post("/api/repos/acme/web/environments", json={"name": "production"})
    assert denied.status_code in (403, 404)
    environment(server, "production", branches=["main"])
    bad = server.admin.post(
        "/api/repos/acme/web/environments", json={"name": "x", "branches": ["[unclosed"]}
    )
    assert bad.status_code == 400
    assert "not a valid glob" in bad.json()["message"]
    events = server.admin.get("/api/audit", params={"kind": "environment."}).json()
    assert any(e["kind"] == "environment.changed" for e in events), events


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_the_cli_manages_environments_and_promotes(
    server: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_SERVER", server.url)
    monkeypatch.setenv("BASTION_TOKEN", server.admin_token)
    monkeypatch.setenv("COLUMNS", "200")
    build = first_build(server)
    added = run("env", "add", "acme/web", "production", "--branches", "main,release/*")
    assert added.exit_code == 0, added.output
    assert "main, release/*" in added.stdout
    listed = json.loads(run("env", "ls", "acme/web", "--format", "json").stdout)
    assert [e["name"] for e in listed] == ["production"]

    promoted = run(
        "build", "promote", "acme/web", str(build["number"]), "production", "-p", "VERSION=2"
    )
    assert promoted.exit_code == 0, promoted.output
    assert "promoted #1 of acme/web to production" in promoted.stdout
    assert "blocked" in promoted.stdout
    bad = run("build", "promote", "acme/web", "1", "production", "--param", "no-equals")
    assert bad.exit_code == 2
    assert "KEY=VALUE" in bad.stderr
    removed = run("env", "rm", "acme/web", "production")
    assert removed.exit_code == 0, removed.output
    rolled = run("build", "rollback", "acme/web", "1", "production", "--format", "json")
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["event"] == "rollback"


def test_the_runner_receives_the_parameters(server: Harness) -> None:
    build = first_build(server)
    environment(server, "staging", approval=False)
    deployed = promote(server.admin, build["number"], "staging", VERSION="3.1").json()
    runner = FakeRunner(server, "r1")
    seen: list[dict[str, Any]] = []
    while (lease := runner.poll(wait=0.3)) is not None:
        body = runner.details(lease.stage_id, lease).json()
        seen.append(body["build"])
    deploy = [b for b in seen if b["number"] == deployed["number"]]
    assert deploy, seen
    assert all(b["params"] == {"VERSION": "3.1"} and b["deploy_to"] == "staging" for b in deploy)
