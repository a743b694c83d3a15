"""The runner channel: leases (exactly once, only for the holder), heartbeats, the reaper,
cancel, step and log uploads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tests.integration.server._support import (
    PIPELINE,
    FakeRunner,
    Harness,
    github_headers,
    payload,
    wait_for,
)

from bastion.rpc.messages import (
    LEASE_HEADER,
    PATH_REQUEST,
    PATH_RUNNER_CLEANUP,
    PATH_SOURCE,
    PROTOCOL_VERSION,
    Lease,
    StageDetails,
    StepState,
)
from bastion.server.services.logs import TRUNCATION_PREFIX
from bastion.store.types import Status


def pushed(server: Harness, config: bytes = PIPELINE, builds: int = 1) -> None:
    checkout = server.local_repo()
    checkout.commit({".drone.yml": config}, "Pipeline")
    checkout.push()
    wait_for(server.builds)
    for _ in range(builds - 1):
        server.admin.post("/api/repos/acme/web/builds").raise_for_status()


def test_concurrent_polls_lease_each_stage_exactly_once(server: Harness) -> None:
    pushed(server, builds=12)
    runners = [FakeRunner(server, f"r{i}") for i in range(8)]
    leases: list[tuple[str, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(runner: FakeRunner) -> None:
        try:
            while True:
                lease = runner.poll(wait=0.5)
                if lease is None:
                    return
                with lock:
                    leases.append((runner.name, lease.stage_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    stage_ids = [stage_id for _, stage_id in leases]
    assert len(stage_ids) == 12
    assert len(set(stage_ids)) == 12, "a stage was leased twice"
    store = server.ctx.store
    for runner_name, stage_id in leases:
        stage = store.get_stage(stage_id)
        assert stage is not None
        assert stage.machine == runner_name
        assert stage.status == Status.RUNNING


def test_a_poll_waits_for_work_and_wakes_when_a_stage_becomes_pending(server: Harness) -> None:
    checkout = server.local_repo()
    runner = FakeRunner(server, "r1")
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(runner.poll(wait=10)))
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    thread.join(timeout=15)
    assert got and got[0] is not None
    assert time.monotonic() - started < 8


def test_another_runner_is_refused_and_learns_nothing(server: Harness) -> None:
    pushed(server)
    first = FakeRunner(server, "first")
    second = FakeRunner(server, "second")
    lease = first.poll()
    assert lease is not None
    other = second.poll(wait=0.2)
    assert other is None  # the only stage is taken
    for attempt in (
        second.details(lease.stage_id, lease),  # the stolen lease id, wrong runner
        second.details(lease.stage_id, "bst_lease_guess"),
        second.call("GET", PATH_SOURCE.format(stage_id=lease.stage_id), lease),
        second.heartbeat(lease),
        second.logs(lease, 1, [(0, "injected")]),
        second.complete(lease, StepState.SUCCESS),
        first.details(lease.stage_id, "bst_lease_wrong"),  # right runner, wrong lease
        first.call("GET", f"/rpc/v1/stages/{lease.stage_id}", ""),
    ):
        assert attempt.status_code == 409
        assert attempt.json() == {
            "message": f"stage {lease.stage_id}: this runner holds no live lease on it"
        }
        assert "busybox" not in attempt.text
    assert server.ctx.store.get_stage(lease.stage_id).status == Status.RUNNING  # type: ignore[union-attr]
    details = first.details(lease.stage_id, lease)
    assert StageDetails.model_validate_json(details.content).config == PIPELINE.decode()


def test_the_lease_reply_carries_the_details_only_to_the_holder(server: Harness) -> None:
    pushed(server, builds=2)
    first = FakeRunner(server, "first")
    lease = first.poll()
    assert lease is not None and lease.details is not None
    fetched = StageDetails.model_validate_json(first.details(lease.stage_id, lease).content)
    assert lease.details == fetched  # the same answer as GET /rpc/v1/stages/{id}
    assert lease.details.stage_id == lease.stage_id
    assert lease.details.config == PIPELINE.decode()
    assert "details" not in repr(lease)  # the secrets inside never reach a log line
    # A runner of protocol 1 gets the lease without them, and asks as before.
    old = first.http.post(PATH_REQUEST, json={"wait": 2.0, "protocol": 1})
    assert old.status_code == 200
    old_lease = Lease.model_validate_json(old.content)
    assert old_lease.details is None
    assert first.details(old_lease.stage_id, old_lease).status_code == 200
    too_new = first.http.post(PATH_REQUEST, json={"wait": 0, "protocol": PROTOCOL_VERSION + 1})
    assert too_new.status_code == 400
    assert "upgrade the older of the two" in too_new.json()["message"]


def test_a_stage_call_with_a_valid_lease_but_a_bad_runner_token_is_401(server: Harness) -> None:
    pushed(server)
    first = FakeRunner(server, "first")
    lease = first.poll()
    assert lease is not None
    for token in ("bst_runner_unknown", server.admin_token):
        response = server.client(token).get(
            f"/rpc/v1/stages/{lease.stage_id}", headers={LEASE_HEADER: lease.lease_id}
        )
        assert response.status_code == 401
        assert "busybox" not in response.text
    server.ctx.store.revoke_runner("first")
    assert first.details(lease.stage_id, lease).status_code == 401


def test_runner_token_checks(server: Harness) -> None:
    runner = FakeRunner(server, "r1")
    assert server.client("bst_runner_unknown").post("/rpc/v1/request", json={}).status_code == 401
    assert server.client().post("/rpc/v1/request", json={}).status_code == 401
    admin_token = server.client(server.admin_token).post("/rpc/v1/request", json={})
    assert admin_token.status_code == 401  # an API token is not a runner token
    server.admin.delete("/api/runners/r1").raise_for_status()
    assert runner.http.post("/rpc/v1/request", json={"wait": 0}).status_code == 401


def test_labels_and_platform_decide_who_gets_a_stage(server: Harness) -> None:
    pushed(
        server,
        config=PIPELINE.replace(b"name: build\n", b"name: build\nnode:\n  pool: gpu\n"),
    )
    plain = FakeRunner(server, "plain")
    assert plain.poll(wait=0.3) is None
    gpu = FakeRunner(server, "gpu", labels={"pool": "gpu", "zone": "a"})
    assert gpu.poll(wait=0.3) is not None


def test_heartbeat_renews_the_lease(make_server: Callable[..., Harness]) -> None:
    server = make_server(lease_seconds=2, heartbeat_interval=0.5)
    pushed(server)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    assert lease.expires_in == 2
    assert lease.heartbeat_interval == 0.5
    for _ in range(4):  # 3 s: longer than the lease, kept alive by heartbeats
        time.sleep(0.75)
        beat = runner.heartbeat(lease)
        assert beat.status_code == 200
        assert beat.json() == {"cancel": False, "expires_in": 2.0}
    stage = server.ctx.store.get_stage(lease.stage_id)
    assert stage is not None
    assert stage.status == Status.RUNNING
    assert stage.lease_expires >= int(time.time()) + 1


def test_a_silent_runner_loses_its_stage_within_the_bound(
    make_server: Callable[..., Harness],
) -> None:
    server = make_server(lease_seconds=1, heartbeat_interval=0.3)
    pushed(server)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    started = time.monotonic()
    build = wait_for(lambda: (b := server.build(1))["status"] == "error" and b, timeout=10)
    assert time.monotonic() - started < 4  # lease 1 s + reaper interval + rounding
    stage = build["stages"][0]
    assert stage["status"] == "error"
    assert stage["error"] == "runner r1 stopped responding (no heartbeat for 1 s)"
    assert build["finished"] > 0
    assert runner.heartbeat(lease).status_code == 409
    cleanup = runner.http.post(PATH_RUNNER_CLEANUP)
    assert cleanup.json() == {"lost_stages": [lease.stage_id]}
    # A later build runs fine.
    server.admin.post("/api/repos/acme/web/builds").raise_for_status()
    assert runner.poll() is not None


def test_cancel_reaches_the_runner_through_its_heartbeat(server: Harness) -> None:
    pushed(server, builds=2)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    running = server.ctx.store.get_stage(lease.stage_id)
    assert running is not None
    number = server.ctx.store.get_build_by_id(running.build_id).number  # type: ignore[union-attr]
    cancelled = server.admin.delete(f"/api/repos/acme/web/builds/{number}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "killed"
    assert runner.heartbeat(lease).json()["cancel"] is True
    assert runner.complete(lease, StepState.KILLED).status_code == 204
    build = server.build(number)
    assert build["status"] == "killed"
    assert build["stages"][0]["status"] == "killed"
    assert build["finished"] > 0
    again = server.admin.delete(f"/api/repos/acme/web/builds/{number}")
    assert again.status_code == 409

    # The other build's pending stage is cancelled at once, without a runner.
    other = 3 - number
    server.admin.delete(f"/api/repos/acme/web/builds/{other}").raise_for_status()
    build = server.build(other)
    assert build["status"] == "killed"
    assert build["stages"][0]["status"] == "killed"
    assert runner.poll(wait=0.2) is None


DEPENDS = b"""\
kind: pipeline
name: first
steps:
- name: a
  image: busybox
---
kind: pipeline
name: second
depends_on: [first]
steps:
- name: b
  image: busybox
---
kind: pipeline
name: on-failure
depends_on: [first]
trigger:
  status: [failure]
steps:
- name: c
  image: busybox
"""


def test_depends_on_waits_then_runs_after_the_first_completes(server: Harness) -> None:
    pushed(server, config=DEPENDS)
    statuses = {s["name"]: s["status"] for s in server.build(1)["stages"]}
    assert statuses == {
        "first": "pending",
        "second": "waiting_on_dependencies",
        "on-failure": "waiting_on_dependencies",
    }
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    assert runner.poll(wait=0.2) is None  # nothing else is ready
    runner.run(lease)
    stages = {s["name"]: s for s in server.build(1)["stages"]}
    assert stages["second"]["status"] == "pending"
    assert stages["on-failure"]["status"] == "skipped"
    assert "passed" in stages["on-failure"]["error"]
    second = runner.poll()
    assert second is not None
    runner.run(second)
    assert server.build(1)["status"] == "success"


def test_a_failed_dependency_skips_the_dependants_and_fails_the_build(server: Harness) -> None:
    pushed(server, config=DEPENDS)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.run(lease, StepState.FAILURE)
    stages = {s["name"]: s for s in server.build(1)["stages"]}
    assert stages["second"]["status"] == "skipped"
    assert "first failed" in stages["second"]["error"]
    assert stages["on-failure"]["status"] == "pending"
    last = runner.poll()
    assert last is not None
    runner.run(last)
    assert server.build(1)["status"] == "failure"


def test_logs_are_idempotent_by_line_number(server: Harness) -> None:
    pushed(server)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.step(lease, 1, StepState.RUNNING)
    assert runner.logs(lease, 1, [(0, "a"), (1, "b")]).status_code == 204
    assert runner.logs(lease, 1, [(1, "b again"), (2, "c"), (0, "a again")]).status_code == 204
    logs = server.admin.get("/api/repos/acme/web/builds/1/logs/1/1").json()
    assert [(line["pos"], line["out"]) for line in logs] == [(0, "a\n"), (1, "b\n"), (2, "c\n")]


def test_log_lines_before_the_first_step_report_create_the_step(server: Harness) -> None:
    pushed(server)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    assert runner.logs(lease, 2, [(0, "early")]).status_code == 204
    assert runner.step(lease, 2, StepState.RUNNING).status_code == 204
    steps = server.build(1)["stages"][0]["steps"]
    assert [(s["number"], s["name"], s["status"]) for s in steps] == [(2, "step2", "running")]


def test_log_size_limit_writes_one_marker_and_the_step_runs_on(
    make_server: Callable[..., Harness],
) -> None:
    server = make_server(log_limit_bytes=1024)
    pushed(server)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.step(lease, 1, StepState.RUNNING)
    lines = [(n, "x" * 100) for n in range(30)]
    assert runner.logs(lease, 1, lines[:15]).status_code == 204
    assert runner.logs(lease, 1, lines[15:]).status_code == 204
    assert runner.logs(lease, 1, [(30, "after the limit")]).status_code == 204
    runner.run(lease)
    logs = server.admin.get("/api/repos/acme/web/builds/1/logs/1/1").json()
    assert len(logs) == 11
    markers = [line for line in logs if line["out"].startswith(TRUNCATION_PREFIX)]
    assert len(markers) == 1
    assert markers[0] == logs[-1]
    assert "more than 1024 bytes; the step kept running" in markers[0]["out"]
    assert server.build(1)["status"] == "success"


def test_the_server_masks_what_it_handed_out(
    make_server: Callable[..., Harness],
) -> None:
    token = "ghp_" + "Zq8w" * 9
    # The token makes the server report commit statuses: to a closed port here, never out.
    server = make_server(github_token=token, github_api_url="http://127.0.0.1:9/api/v3")
    _repo, secret = server.forge_repo("github", "octo-org", "hello-world", forge_id="186853002")
    sha = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"
    forge = server.ctx.forges.source(server.ctx.store.get_repo("octo-org", "hello-world"))  # type: ignore[arg-type]
    forge.files[("octo-org", "hello-world", sha, ".drone.yml")] = PIPELINE  # type: ignore[attr-defined]
    body = payload("github_push.json")
    headers = github_headers("push", body, secret)
    assert server.client().post("/hook", content=body, headers=headers).status_code == 200
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    details = StageDetails.model_validate_json(runner.details(lease.stage_id, lease).content)
    assert details.clone.kind == "git"
    assert details.clone.password == token  # for the clone, to this leaseholder only
    runner.step(lease, 1, StepState.RUNNING)
    runner.logs(lease, 1, [(0, f"cloning with {token}"), (1, f"url https://x:{token}@github")])
    logs = server.admin.get("/api/repos/octo-org/hello-world/builds/1/logs/1/1").json()
    assert token not in str(logs)
    assert logs[0]["out"] == "cloning with ********\n"
    build_json = server.admin.get("/api/repos/octo-org/hello-world/builds/1").text
    assert token not in build_json
    stored = (server.live.settings.log_dir).rglob("*.log")
    assert all(token not in path.read_text() for path in stored)


def test_restart_creates_a_new_build_of_the_same_commit(server: Harness) -> None:
    pushed(server)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.run(lease, StepState.FAILURE)
    restarted = server.admin.post("/api/repos/acme/web/builds/1")
    assert restarted.status_code == 200
    data = restarted.json()
    first = server.build(1)
    assert (data["number"], data["parent"], data["after"]) == (2, 1, first["after"])
    assert data["event"] == first["event"]
    assert data["status"] == "pending"
    assert server.admin.post("/api/repos/acme/web/builds/99").status_code == 404


def test_a_stopping_server_ends_long_polls_at_once(server: Harness) -> None:
    runner = FakeRunner(server, "r1")
    answers: list[object] = []
    poller = threading.Thread(target=lambda: answers.append(runner.poll(wait=30)))
    poller.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.live.server.should_exit = True
    poller.join(timeout=10)
    assert answers == [None]
    assert time.monotonic() - started < 3
