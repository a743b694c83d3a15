"""Repository settings that change what runs: auto-cancel of superseded builds, and the
timeout only a system administrator may raise past the server's maximum."""

from __future__ import annotations

from typing import Any

from tests.integration.server._support import PIPELINE, Checkout, FakeRunner, Harness, wait_for


def push(server: Harness, checkout: Checkout, message: str, branch: str = "main") -> dict[str, Any]:
    before = len(server.builds())
    checkout.commit({".drone.yml": PIPELINE, "note.txt": message.encode()}, message)
    checkout.push(branch)
    builds = wait_for(lambda: len(server.builds()) > before and server.builds())
    return dict(builds[0])


def test_a_new_push_cancels_the_unfinished_builds_of_its_branch(server: Harness) -> None:
    checkout = server.local_repo()
    server.admin.patch("/api/repos/acme/web", json={"auto_cancel_pushes": True}).raise_for_status()
    first = push(server, checkout, "one")
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None  # the first build is running
    second = push(server, checkout, "two")

    old = wait_for(
        lambda: (
            server.build(first["number"])["status"] == "killed" and server.build(first["number"])
        )
    )
    assert "superseded by #" + str(second["number"]) in old["error"]
    assert runner.heartbeat(lease).json()["cancel"] is True  # its runner is told to stop
    assert server.build(second["number"])["status"] == "pending"


def test_without_auto_cancel_earlier_builds_go_on(server: Harness) -> None:
    checkout = server.local_repo()
    first = push(server, checkout, "one")
    push(server, checkout, "two")
    assert server.build(first["number"])["status"] == "pending"


def test_auto_cancel_stays_within_the_branch(server: Harness) -> None:
    checkout = server.local_repo()
    server.admin.patch("/api/repos/acme/web", json={"auto_cancel_pushes": True}).raise_for_status()
    main = push(server, checkout, "on main")
    checkout.git("checkout", "--quiet", "-b", "feature")
    push(server, checkout, "on feature", branch="feature")
    assert server.build(main["number"])["status"] == "pending"


def test_only_a_system_administrator_may_exceed_the_timeout_maximum(make_server: Any) -> None:
    server: Harness = make_server(timeout_max=90)
    server.local_repo()
    writer = server.client(server.user_token("writer"))
    granted = server.admin.put(
        "/api/repos/acme/web/permissions/writer", json={"scopes": ["read", "write"]}
    )
    assert granted.status_code == 200, granted.text
    within = writer.patch("/api/repos/acme/web", json={"timeout": 90})
    assert within.status_code == 200, within.text
    above = writer.patch("/api/repos/acme/web", json={"timeout": 91})
    assert above.status_code == 403
    assert "BASTION_TIMEOUT_MAX" in above.json()["message"]
    assert server.admin.get("/api/repos/acme/web").json()["timeout"] == 90
    ok = server.admin.patch("/api/repos/acme/web", json={"timeout": 600})
    assert ok.status_code == 200, ok.text  # a system administrator may
    assert ok.json()["timeout"] == 600
