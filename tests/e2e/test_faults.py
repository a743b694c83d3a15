"""Faults with real processes on the Docker engine: a runner killed with SIGKILL mid-build, the
server restarted mid-build, a build cancelled while its step sleeps."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.e2e._support import (
    BUSYBOX,
    LABEL_RUN,
    LABEL_STAGE,
    ServerProcess,
    Stack,
    create_local_repo,
    push,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker]

SLUG = "demo/app"
LEASE_SECONDS = 6
REAPER_INTERVAL = 1.0  # the Stack's servers reap lapsed leases every second
# Generous: the lease runs from the last heartbeat before the kill, then the reaper's round,
# on a machine that may be busy.
LOST_STAGE_BOUND = LEASE_SECONDS + REAPER_INTERVAL + 8.0


def pipeline(commands: list[str], *, service: bool = False) -> str:
    lines = [
        "kind: pipeline",
        "type: docker",
        "name: default",
    ]
    if service:
        lines += [
            "services:",
            "  - name: web",
            f"    image: {BUSYBOX}",
            "    pull: never",
            "    commands:",
            "      - exec httpd -f -p 8080 -h /tmp",
        ]
    lines += [
        "steps:",
        "  - name: work",
        f"    image: {BUSYBOX}",
        "    pull: never",
        "    commands:",
        *(f"      - {command}" for command in commands),
    ]
    return "\n".join(lines) + "\n"


def running_step(stack: Stack, server: ServerProcess, number: int) -> dict[str, Any]:
    """The build once its ``work`` step runs and its container is up."""

    def up() -> dict[str, Any] | None:
        build = stack.build(server, SLUG, number)
        steps = {s["name"]: s for st in build["stages"] for s in st["steps"]}
        if steps.get("work", {}).get("status") != "running":
            return None
        stage_id = str(build["stages"][0]["id"])
        containers = stack.containers(**{LABEL_STAGE: stage_id})
        return build if any(c["State"] == "running" for c in containers) else None

    return wait_for(up, 60, f"build #{number}: step work running", describe=stack.describe)


def test_a_runner_killed_mid_build_loses_its_stage_within_the_lease(docker_stack: Stack) -> None:
    stack = docker_stack
    server = stack.server(lease_seconds=LEASE_SECONDS)
    runners = {r.name: r for r in (stack.runner(server, "r1"), stack.runner(server, "r2"))}
    checkout, url = create_local_repo(stack, server, SLUG)
    push(checkout, url, pipeline(["echo started", "sleep 120"]), "Sleep for a long time")

    build = running_step(stack, server, 1)
    [stage] = build["stages"]
    stage_id = str(stage["id"])
    victim = runners.pop(stage["machine"])
    [survivor] = runners.values()
    orphans = stack.containers(**{LABEL_STAGE: stage_id})
    assert orphans

    killed_at = time.monotonic()
    victim.kill9()
    assert victim.returncode() == -9
    lost = stack.wait_build(server, SLUG, 1, timeout=LOST_STAGE_BOUND + 30)
    took = time.monotonic() - killed_at
    assert lost["status"] == "error", json.dumps(lost, indent=1)
    assert took <= LOST_STAGE_BOUND, f"the stage ended {took:.1f} s after the kill"
    [lost_stage] = lost["stages"]
    assert lost_stage["status"] == "error"
    assert f"runner {victim.name} stopped responding" in lost_stage["error"]
    assert f"{LEASE_SECONDS} s" in lost_stage["error"]
    assert lost_stage["steps"][0]["status"] not in {"running", "pending"}

    # A later build runs fine, on the runner that is still there.
    push(checkout, url, pipeline(["echo after-the-crash"]), "A quick one")
    later = stack.wait_build(server, SLUG, 2, timeout=60)
    assert later["status"] == "success", json.dumps(later, indent=1)
    assert later["stages"][0]["machine"] == survivor.name
    lines = stack.logs(server, SLUG, 2, 1, later["stages"][0]["steps"][0]["number"])
    assert "after-the-crash\n" in [line["out"] for line in lines]

    # The server keeps the stage on the list of what the runner lost, for when it returns.
    lost_list = stack.api(server, token=victim.token).post("/rpc/v1/runners/cleanup")
    assert lost_list.status_code == 200, lost_list.text
    assert lost_list.json()["lost_stages"] == [int(stage_id)]

    # The killed runner comes back under its name and token: the containers, network and
    # volume of the stage it lost are removed (its start-up cleanup removes what crashed
    # runner processes left on the host, then those of the stages the server says it lost).
    # Until then nothing of this test removes them; but any Bastion process on this host
    # may, their owner being dead (`bastion exec` cleans up crashed runs before it starts),
    # so the test does not insist on who removed them.
    back = stack.runner(
        server,
        "r1" if victim.name.endswith("-r1") else "r2",
        token_file=victim.token_file,
        log_name=f"{victim.name}-again",
    )
    assert back.name == victim.name
    wait_for(
        lambda: stack.resources(**{LABEL_STAGE: stage_id}) == [],
        30,
        "the lost stage's containers, network and volume removed",
        describe=lambda: "\n".join(stack.resources(**{LABEL_STAGE: stage_id})) + back.describe(),
    )

    # Coming back changes nothing about the builds.
    assert [b["status"] for b in stack.builds(server, SLUG)] == ["success", "error"]


def test_a_server_restart_mid_build_loses_no_log_line(docker_stack: Stack) -> None:
    stack = docker_stack
    server = stack.server()
    stack.runner(server, "r1")
    checkout, url = create_local_repo(stack, server, SLUG)
    push(
        checkout,
        url,
        pipeline(["for i in $(seq 1 50); do echo line-$i; sleep 0.2; done"]),
        "Count slowly",
    )
    build = running_step(stack, server, 1)
    step = build["stages"][0]["steps"][0]

    def counted() -> int:
        lines = stack.logs(server, SLUG, 1, 1, step["number"])
        return sum(1 for line in lines if line["out"].startswith("line-"))

    wait_for(lambda: counted() >= 5, 30, "the first lines stored")
    server.stop_gracefully()  # SIGTERM
    time.sleep(2)  # the step goes on printing while the server is away
    server.start()
    seen_after_restart = counted()
    assert seen_after_restart < 50, "the step ended before the server came back"

    done = stack.wait_build(server, SLUG, 1, timeout=60)
    assert done["status"] == "success", json.dumps(done, indent=1)
    lines = stack.logs(server, SLUG, 1, 1, step["number"])
    assert [line["pos"] for line in lines] == list(range(len(lines)))
    outs = [line["out"].rstrip("\n") for line in lines]
    assert outs[0].startswith("+ for i in")
    assert outs[1:] == [f"line-{i}" for i in range(1, 51)]
    assert server.starts == 2


def test_cancel_removes_the_containers_within_seconds(docker_stack: Stack) -> None:
    stack = docker_stack
    server = stack.server()
    stack.runner(server, "r1")
    checkout, url = create_local_repo(stack, server, SLUG)
    push(checkout, url, pipeline(["sleep 300"], service=True), "Sleep for ever")
    build = running_step(stack, server, 1)
    stage_id = str(build["stages"][0]["id"])
    containers = stack.containers(**{LABEL_STAGE: stage_id})
    assert len(containers) == 2  # the service and the step
    [run_id] = {c["Labels"][LABEL_RUN] for c in containers}

    # Measured from before the CLI starts: its own start-up counts against the 10 s.
    cancelled_at = time.monotonic()
    stopped = stack.cli(server, "build", "stop", SLUG, "1")
    assert "cancelled build #1" in stopped.stdout
    wait_for(
        lambda: stack.containers(**{LABEL_RUN: run_id}) == [],
        10,
        "the cancelled build's containers gone",
        interval=0.1,
        describe=lambda: json.dumps(stack.containers(**{LABEL_RUN: run_id}), indent=1)[:3000],
    )
    took = time.monotonic() - cancelled_at
    assert took <= 10

    done = stack.wait_build(server, SLUG, 1, timeout=30)
    assert done["status"] == "killed"
    wait_for(lambda: done_stage(stack, server)["status"] == "killed", 30, "the stage killed")
    wait_for(lambda: stack.resources(**{LABEL_RUN: run_id}) == [], 10, "network and volume gone")


def done_stage(stack: Stack, server: ServerProcess) -> dict[str, Any]:
    stage: dict[str, Any] = stack.build(server, SLUG, 1)["stages"][0]
    return stage
