"""Approval modes: which builds wait for a review before they run, who may approve them, and
that nobody approves their own change."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tests.integration.server._support import (
    PAYLOADS,
    PIPELINE,
    FakeForge,
    FakeRunner,
    Harness,
    github_headers,
    wait_for,
)

GH = "octo-org/hello-world"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
PUSH_SHA = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"


def github_repo(server: Harness, forge: FakeForge) -> str:
    _repo, secret = server.forge_repo("github", "octo-org", "hello-world", forge_id="186853002")
    for sha in (PR_HEAD, PUSH_SHA):
        forge.files[("octo-org", "hello-world", sha, ".drone.yml")] = PIPELINE
    return secret


def pull_request(*, fork: bool, author: str = "octocat", sha: str = PR_HEAD) -> bytes:
    data: dict[str, Any] = json.loads((PAYLOADS / "github_pull_request_opened.json").read_text())
    pr = data["pull_request"]
    pr["user"]["login"] = author
    data["sender"]["login"] = author
    pr["head"]["sha"] = sha
    if fork:
        pr["head"]["repo"]["full_name"] = "mallory/hello-world"
        pr["head"]["repo"]["id"] = 999_999
        pr["head"]["repo"]["owner"]["login"] = "mallory"
    return json.dumps(data).encode()


def deliver(server: Harness, secret: str, event: str, body: bytes) -> dict[str, Any]:
    response = server.client().post(
        "/hook", params={"repo": GH}, content=body, headers=github_headers(event, body, secret)
    )
    assert response.status_code == 200, response.text
    return dict(server.builds(GH)[0])


def push_body() -> bytes:
    return (PAYLOADS / "github_push.json").read_bytes()


def set_repo(server: Harness, **changes: Any) -> dict[str, Any]:
    response = server.admin.patch(f"/api/repos/{GH}", json=changes)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_by_default_a_fork_pull_request_waits_and_nothing_else_does(
    server: Harness, forge: FakeForge
) -> None:
    secret = github_repo(server, forge)
    fork = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    assert fork["status"] == "blocked"
    assert fork["hold"] == "approval"
    assert "pull requests from forks" in fork["error"]
    assert FakeRunner(server, "r1").poll(wait=0.5) is None

    same_repo = deliver(server, secret, "pull_request", pull_request(fork=False))
    assert same_repo["status"] == "pending"
    push = deliver(server, secret, "push", push_body())
    assert push["status"] == "pending"


@pytest.mark.parametrize(
    ("mode", "held"),
    [
        ("none", set()),
        ("forks", {"fork"}),
        ("pull_requests", {"fork", "pull_request"}),
        ("all_events", {"fork", "pull_request", "push"}),
    ],
)
def test_each_mode_holds_what_it_says(
    server: Harness, forge: FakeForge, mode: str, held: set[str]
) -> None:
    secret = github_repo(server, forge)
    assert set_repo(server, approval_mode=mode)["approval_mode"] == mode
    statuses = {
        "fork": deliver(server, secret, "pull_request", pull_request(fork=True))["status"],
        "pull_request": deliver(server, secret, "pull_request", pull_request(fork=False))["status"],
        "push": deliver(server, secret, "push", push_body())["status"],
    }
    assert {kind for kind, status in statuses.items() if status == "blocked"} == held
    # A custom build is started by someone with write access: never held for approval.
    checkout = server.local_repo("acme", "web")
    checkout.commit({".drone.yml": PIPELINE}, "first")
    checkout.push()
    wait_for(lambda: server.builds("acme/web"))
    server.admin.patch("/api/repos/acme/web", json={"approval_mode": mode}).raise_for_status()
    custom = server.admin.post("/api/repos/acme/web/builds", params={"branch": "main"})
    assert custom.status_code == 200, custom.text
    assert custom.json()["status"] == "pending"


def test_the_author_may_not_approve_their_own_change(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    server.user_token("reviewer", admin=True)
    author_token = server.user_token("mallory", admin=True)
    build = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    number = build["number"]
    author: httpx.Client = server.client(author_token)
    own = author.post(f"/api/repos/{GH}/builds/{number}/approve")
    assert own.status_code == 403
    assert "your own change" in own.json()["message"]
    assert server.build(number, GH)["status"] == "blocked"
    # Someone else approves.
    approved = server.admin.post(f"/api/repos/{GH}/builds/{number}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "pending"


def test_the_author_may_approve_when_the_repository_allows_it(
    server: Harness, forge: FakeForge
) -> None:
    secret = github_repo(server, forge)
    set_repo(server, prevent_self_approval=False)
    author_token = server.user_token("mallory", admin=True)
    build = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    own = server.client(author_token).post(f"/api/repos/{GH}/builds/{build['number']}/approve")
    assert own.status_code == 200, own.text


def test_only_named_approvers_may_approve(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    set_repo(server, approvers=["reviewer"])
    reviewer = server.client(server.user_token("reviewer", admin=True))
    build = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    number = build["number"]
    refused = server.admin.post(f"/api/repos/{GH}/builds/{number}/approve")
    assert refused.status_code == 403
    assert "only the approvers" in refused.json()["message"]
    approved = reviewer.post(f"/api/repos/{GH}/builds/{number}/approve")
    assert approved.status_code == 200, approved.text


def test_a_new_commit_needs_a_new_approval(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    first = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    server.admin.post(f"/api/repos/{GH}/builds/{first['number']}/approve").raise_for_status()
    second_sha = "1" * 40
    forge.files[("octo-org", "hello-world", second_sha, ".drone.yml")] = PIPELINE
    second = deliver(
        server,
        secret,
        "pull_request",
        pull_request(fork=True, author="mallory", sha=second_sha),
    )
    assert second["number"] == first["number"] + 1
    assert second["status"] == "blocked"
    # ... and restarting an approved fork build asks again.
    restarted = server.admin.post(f"/api/repos/{GH}/builds/{first['number']}")
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["status"] == "blocked"


def test_changing_approval_settings_needs_repository_admin(
    server: Harness, forge: FakeForge
) -> None:
    github_repo(server, forge)
    user = server.client(server.user_token("someone"))
    server.grant("someone", GH, "read")  # a reader, as every user was before 0007
    for change in ({"approval_mode": "none"}, {"approvers": []}, {"prevent_self_approval": False}):
        assert user.patch(f"/api/repos/{GH}", json=change).status_code == 403
    bad = server.admin.patch(f"/api/repos/{GH}", json={"approval_mode": "sometimes"})
    assert bad.status_code == 422 or bad.status_code == 400
    assert server.admin.get(f"/api/repos/{GH}").json()["approval_mode"] == ""


def test_the_server_default_applies_to_repositories_that_do_not_choose(
    make_server: Any, forge: FakeForge
) -> None:
    server: Harness = make_server(approval_mode="all_events")
    secret = github_repo(server, forge)
    assert deliver(server, secret, "push", push_body())["status"] == "blocked"
    set_repo(server, approval_mode="none")
    assert deliver(server, secret, "push", push_body())["status"] == "pending"


def test_an_approved_fork_build_still_gets_no_secrets(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    repo = server.ctx.store.get_repo("octo-org", "hello-world")
    assert repo is not None
    server.ctx.store.set_repo_secret(repo.id, "token", "fork-must-not-see-this", pull_request=True)
    forge.files[("octo-org", "hello-world", PR_HEAD, ".drone.yml")] = (
        PIPELINE
        + b"""---
kind: pipeline
name: uses-secret
steps:
- name: s
  image: bastion/busybox:latest
  environment:
    TOKEN:
      from_secret: token
  commands: [echo $TOKEN]
"""
    )
    build = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    server.admin.post(f"/api/repos/{GH}/builds/{build['number']}/approve").raise_for_status()
    runner = FakeRunner(server, "r1")
    seen: list[str] = []
    for _ in range(2):
        lease = runner.poll()
        assert lease is not None
        details = runner.details(lease.stage_id, lease)
        assert details.status_code == 200
        seen.append(details.text)
        runner.run(lease)
    wait_for(lambda: server.build(build["number"], GH)["status"] in ("success", "failure"))
    assert all("fork-must-not-see-this" not in text for text in seen)


def test_the_author_may_decline_their_own_change(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    author = server.client(server.user_token("mallory", admin=True))
    build = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    declined = author.post(f"/api/repos/{GH}/builds/{build['number']}/decline")
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"


def test_write_access_releases_an_approval_hold_on_a_local_repository(server: Harness) -> None:
    checkout = server.local_repo("acme", "web")
    server.admin.patch("/api/repos/acme/web", json={"approval_mode": "all_events"})
    checkout.commit({".drone.yml": PIPELINE}, "held push")
    checkout.push()
    build = wait_for(lambda: server.builds("acme/web"))[0]
    assert build["status"] == "blocked"
    reader = server.client(server.user_token("reader"))
    writer = server.client(server.user_token("writer"))
    for login, scopes in (("reader", ["read"]), ("writer", ["read", "write"])):
        server.admin.put(
            f"/api/repos/acme/web/permissions/{login}", json={"scopes": scopes}
        ).raise_for_status()
    assert reader.post(f"/api/repos/acme/web/builds/{build['number']}/approve").status_code == 403
    approved = writer.post(f"/api/repos/acme/web/builds/{build['number']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "pending"


PRIVILEGED = b"""kind: pipeline
name: build
steps:
- name: escape
  image: bastion/busybox:latest
  privileged: true
  commands: [id]
"""


def test_a_fork_pull_request_is_never_trusted(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    set_repo(server, trusted=True, approval_mode="none")
    forge.files[("octo-org", "hello-world", PR_HEAD, ".drone.yml")] = PRIVILEGED
    fork = deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    assert fork["status"] == "error"
    assert "a pull request from a fork is never trusted" in fork["error"]
    assert "privileged" in fork["error"]
    assert FakeRunner(server, "r1").poll(wait=0.3) is None
    # The same config from a branch of the repository itself runs: the repository is trusted.
    own = deliver(server, secret, "pull_request", pull_request(fork=False))
    assert own["status"] == "pending"
    runner = FakeRunner(server, "r2")
    lease = runner.poll()
    assert lease is not None
    details = runner.details(lease.stage_id, lease)
    assert details.json()["repo"]["trusted"] is True


def test_the_runner_is_told_a_fork_build_is_untrusted(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    set_repo(server, trusted=True, approval_mode="none")
    deliver(server, secret, "pull_request", pull_request(fork=True, author="mallory"))
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    details = runner.details(lease.stage_id, lease)
    assert details.status_code == 200
    assert details.json()["repo"]["trusted"] is False
