"""Protected repositories: an unsigned or tampered configuration is held for an
administrator's approval, on every trigger; approve runs it, decline ends it; signatures are
per repository and cover every byte."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.integration.server._support import PIPELINE, Checkout, FakeRunner, Harness, wait_for

from bastion.crypto.config_signature import with_signature
from bastion.rpc.messages import StepState
from bastion.server.errors import Forbidden
from bastion.server.services.approvals import ApprovalService
from bastion.store.types import Scope

TWO_PIPELINES = (
    PIPELINE
    + b"""---
kind: pipeline
name: after
depends_on: [build]
steps:
- name: later
  image: bastion/busybox:latest
  commands: [echo later]
"""
)


def protect(server: Harness, slug: str = "acme/web") -> None:
    response = server.admin.patch(f"/api/repos/{slug}", json={"protected": True})
    assert response.status_code == 200, response.text
    assert response.json()["protected"] is True


def signed(server: Harness, config: bytes, slug: str = "acme/web") -> bytes:
    response = server.admin.post(f"/api/repos/{slug}/sign", json={"data": config.decode()})
    assert response.status_code == 200, response.text
    return with_signature(config, response.json()["data"])


def push(checkout: Checkout, server: Harness, config: bytes, message: str) -> dict[str, Any]:
    before = len(server.builds())
    checkout.commit({".drone.yml": config}, message)
    checkout.push()
    builds = wait_for(lambda: len(server.builds()) > before and server.builds())
    return builds[0]


def test_an_unsigned_config_is_held_until_an_administrator_approves_it(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, TWO_PIPELINES, "unsigned")
    assert build["status"] == "blocked"
    assert build["hold"] == "signature"
    assert "carries no valid signature" in build["error"]
    full = server.build(build["number"])
    assert [s["status"] for s in full["stages"]] == ["blocked", "blocked"]

    runner = FakeRunner(server, "r1")
    assert runner.poll(wait=0.5) is None  # nothing of a held build can be leased

    approved = server.admin.post(f"/api/repos/acme/web/builds/{build['number']}/approve")
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "pending"
    assert body["hold"] == ""
    assert [s["status"] for s in body["stages"]] == ["pending", "waiting_on_dependencies"]

    for _ in range(2):
        lease = runner.poll()
        assert lease is not None
        runner.run(lease)
    wait_for(lambda: server.build(build["number"])["status"] == "success")

    again = server.admin.post(f"/api/repos/acme/web/builds/{build['number']}/approve")
    assert again.status_code == 409
    assert "not waiting for an approval" in again.json()["message"]


def test_a_signed_config_runs_without_approval(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, signed(server, PIPELINE), "signed")
    assert build["status"] == "pending"
    assert build["hold"] == ""


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda c: c.replace(b"echo", b"echo pwned;"), "does not match"),
        (lambda c: b"# an innocent comment\n" + c, "does not match"),
        (lambda c: c.split(b"---\nkind: signature")[0], "carries no valid signature"),
    ],
    ids=["command-edited", "comment-added", "signature-removed"],
)
def test_an_edit_after_signing_holds_the_build(server: Harness, tamper: Any, why: str) -> None:
    checkout = server.local_repo()
    protect(server)
    config = tamper(signed(server, PIPELINE))
    build = push(checkout, server, config, "tampered")
    assert build["status"] == "blocked"
    assert why in build["error"]


def test_a_signature_made_for_another_repository_does_not_verify(server: Harness) -> None:
    checkout = server.local_repo()
    server.local_repo("acme", "other")
    protect(server)
    borrowed = signed(server, PIPELINE, slug="acme/other")
    build = push(checkout, server, borrowed, "borrowed signature")
    assert build["status"] == "blocked"
    assert "does not match" in build["error"]


def test_a_declined_build_never_runs(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, TWO_PIPELINES, "unsigned")
    declined = server.admin.post(f"/api/repos/acme/web/builds/{build['number']}/decline")
    assert declined.status_code == 200, declined.text
    body = declined.json()
    assert body["status"] == "declined"
    assert [s["status"] for s in body["stages"]] == ["declined", "declined"]
    assert "declined by" in body["error"]
    assert FakeRunner(server, "r1").poll(wait=0.5) is None
    late = server.admin.post(f"/api/repos/acme/web/builds/{build['number']}/approve")
    assert late.status_code == 409


def test_approving_one_stage_leaves_the_other_held(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, TWO_PIPELINES, "unsigned")
    number = build["number"]
    one = server.admin.post(f"/api/repos/acme/web/builds/{number}/approve/1")
    assert one.status_code == 200, one.text
    assert one.json()["status"] == "blocked"
    assert [s["status"] for s in one.json()["stages"]] == ["pending", "blocked"]
    two = server.admin.post(f"/api/repos/acme/web/builds/{number}/decline/2")
    assert two.status_code == 200, two.text
    assert [s["status"] for s in two.json()["stages"]] == ["pending", "declined"]
    assert two.json()["status"] == "pending"


def test_restart_and_custom_builds_are_checked_again(server: Harness) -> None:
    checkout = server.local_repo()
    build = push(checkout, server, PIPELINE, "unprotected at first")
    assert build["status"] == "pending"
    protect(server)
    restarted = server.admin.post(f"/api/repos/acme/web/builds/{build['number']}")
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["status"] == "blocked"
    custom = server.admin.post("/api/repos/acme/web/builds", params={"branch": "main"})
    assert custom.status_code == 200, custom.text
    assert custom.json()["status"] == "blocked"
    assert custom.json()["hold"] == "signature"


def test_an_unprotected_repository_runs_unsigned_configs(server: Harness) -> None:
    checkout = server.local_repo()
    build = push(checkout, server, PIPELINE, "plain")
    assert build["status"] == "pending"
    assert build["hold"] == ""


def test_only_repository_administrators_may_release_a_signature_hold(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, PIPELINE, "unsigned")
    ctx = server.ctx
    repo = ctx.store.get_repo("acme", "web")
    stored = ctx.store.get_build(repo.id, build["number"]) if repo else None
    assert repo is not None and stored is not None
    service: ApprovalService = ctx.approvals
    with pytest.raises(Forbidden, match="needs admin access"):
        service.approve(
            repo, stored, by="writer", granted=frozenset({Scope.READ, Scope.WRITE}), stage=None
        )
    assert server.build(build["number"])["status"] == "blocked"


def test_users_without_access_cannot_sign_approve_or_unprotect(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, PIPELINE, "unsigned")
    user: httpx.Client = server.client(server.user_token("mallory"))
    server.grant("mallory", "acme/web", "read")  # may look, not sign or approve
    assert user.post("/api/repos/acme/web/sign", json={"data": "x"}).status_code == 403
    approve = user.post(f"/api/repos/acme/web/builds/{build['number']}/approve")
    assert approve.status_code == 403
    assert user.patch("/api/repos/acme/web", json={"protected": False}).status_code == 403
    assert server.build(build["number"])["status"] == "blocked"
    assert server.admin.get("/api/repos/acme/web").json()["protected"] is True


def test_every_release_is_audited(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, PIPELINE, "unsigned")
    server.admin.post(f"/api/repos/acme/web/builds/{build['number']}/approve").raise_for_status()
    events = server.admin.get("/api/audit", params={"kind": "build."}).json()
    assert any(
        e["kind"] == "build.approved" and e["build"] == build["number"] and e["actor"] == "admin"
        for e in events
    ), events


def test_runner_completes_an_approved_build(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, PIPELINE, "unsigned")
    server.admin.post(f"/api/repos/acme/web/builds/{build['number']}/approve").raise_for_status()
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.run(lease, StepState.SUCCESS)
    wait_for(lambda: server.build(build["number"])["status"] == "success")


def test_a_pipeline_smuggled_after_the_end_marker_never_runs(server: Harness) -> None:
    # The signature does not cover text after `...`: the loader must not read it either.
    checkout = server.local_repo()
    protect(server)
    smuggled = signed(server, PIPELINE) + (
        b"---\nkind: pipeline\nname: sneaky\nsteps:\n- name: x\n  image: bastion/busybox:latest\n"
        b"  commands: [cat /etc/passwd]\n"
    )
    build = push(checkout, server, smuggled, "smuggled")
    assert build["status"] == "pending"
    assert [s["name"] for s in server.build(build["number"])["stages"]] == ["build"]


def test_write_access_is_not_enough_to_release_a_signature_hold(server: Harness) -> None:
    checkout = server.local_repo()
    protect(server)
    build = push(checkout, server, PIPELINE, "unsigned")
    writer = server.client(server.user_token("writer"))
    server.admin.put(
        "/api/repos/acme/web/permissions/writer", json={"scopes": ["read", "write"]}
    ).raise_for_status()
    refused = writer.post(f"/api/repos/acme/web/builds/{build['number']}/approve")
    assert refused.status_code == 403
    assert "needs admin access" in refused.json()["message"]
    assert writer.post("/api/repos/acme/web/sign", json={"data": "x"}).status_code == 403
    unprotect = writer.patch("/api/repos/acme/web", json={"protected": False})
    assert unprotect.status_code == 403
    assert server.build(build["number"])["status"] == "blocked"
