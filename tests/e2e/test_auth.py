"""Authentication across processes: the API refuses callers without a valid token; a runner
process whose token is revoked (idle, or while it runs a stage), or was revoked before it
started, exits with a clear message. Runners use the fake backend here (its steps are scripted
by ``BASTION_FAKE_*`` variables): no Docker engine is needed."""

from __future__ import annotations

import time

import pytest
from tests.e2e._support import Stack, create_local_repo, push, wait_for

pytestmark = pytest.mark.slow

# Every kind of route: users, repositories, builds, logs, runners, the event stream.
PROTECTED = [
    ("GET", "/api/user"),
    ("GET", "/api/user/repos"),
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("GET", "/api/repos"),
    ("POST", "/api/repos"),
    ("GET", "/api/repos/demo/app"),
    ("PATCH", "/api/repos/demo/app"),
    ("GET", "/api/repos/demo/app/builds"),
    ("POST", "/api/repos/demo/app/builds"),
    ("GET", "/api/repos/demo/app/builds/1"),
    ("DELETE", "/api/repos/demo/app/builds/1"),
    ("GET", "/api/repos/demo/app/builds/1/logs/1/1"),
    ("GET", "/api/runners"),
    ("POST", "/api/runners"),
    ("DELETE", "/api/runners/r1"),
    ("GET", "/api/stream"),
    ("POST", "/rpc/v1/request"),
    ("POST", "/rpc/v1/runners/cleanup"),
]

REVOKED = "unknown or revoked runner token"
SLUG = "demo/app"
LEASE_SECONDS = 6

# For the fake backend: a step that runs until it is stopped.
SLEEPING = """\
kind: pipeline
type: docker
name: default
steps:
  - name: wait
    image: busybox
    environment:
      BASTION_FAKE_SLEEP: forever
"""


def test_the_api_answers_401_without_a_valid_token(stack: Stack) -> None:
    server = stack.server()
    created = stack.api(server).post("/api/repos", json={"owner": "demo", "name": "app"})
    assert created.status_code == 200, created.text
    anonymous = stack.api(server, token=None)
    bogus = stack.api(server, token="bst_api_" + "x" * 43)
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/version").status_code == 200
    for client in (anonymous, bogus):
        for method, path in PROTECTED:
            answer = client.request(method, path, timeout=10)
            assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
            assert answer.json()["message"], (method, path)
            assert "Traceback" not in answer.text
    # The admin's own token works: the refusals above were about the token alone.
    assert stack.api(server).get("/api/repos/demo/app").status_code == 200

    # The CLI without a token, and with a wrong one: a one-line error, never a traceback.
    for token in (None, "bst_api_" + "y" * 43):
        done = stack.cli(server, "repo", "ls", token=token, check=False)
        assert done.returncode in (1, 2), done
        assert "Traceback" not in done.stdout + done.stderr
        assert done.stderr.startswith("error:"), done.stderr
        assert "token" in done.stderr.lower(), done.stderr


def test_revoked_runners_exit_with_a_clear_message(stack: Stack) -> None:
    server = stack.server(lease_seconds=LEASE_SECONDS)
    busy = stack.runner(server, "busy", backend="fake")
    checkout, url = create_local_repo(stack, server, SLUG)
    push(checkout, url, SLEEPING, "Sleep for ever")

    def running() -> bool:
        steps = [s for st in stack.build(server, SLUG, 1)["stages"] for s in st["steps"]]
        return bool(steps) and steps[0]["status"] == "running"

    wait_for(running, 60, "the step running", describe=stack.describe)
    idle = stack.runner(server, "idle", backend="fake")

    revoked_at = time.monotonic()
    for runner in (busy, idle):
        removed = stack.cli(server, "runner", "rm", runner.name)
        assert f"runner {runner.name} revoked" in removed.stdout

    # The busy one learns it from its next heartbeat, the idle one from its next poll (a poll
    # waits at most 10 s for work); each stops by itself, with one clear line.
    for runner in (busy, idle):
        code = wait_for(runner.returncode, 40, f"{runner.name} exiting", describe=runner.describe)
        assert code == 1, runner.describe()
        output = runner.output()
        last = output.strip().splitlines()[-1]
        assert last.startswith("error:"), output
        assert REVOKED in last
        assert runner.token not in output

    # The revoked runner's stage ends when its lease lapses: no build stays running.
    build = stack.wait_build(server, SLUG, 1, timeout=LEASE_SECONDS + 30)
    took = time.monotonic() - revoked_at
    assert build["status"] == "error", build
    assert busy.name in build["stages"][0]["error"]
    assert took <= LEASE_SECONDS + 10, f"the stage ended {took:.1f} s after the revocation"

    # Started again with the revoked token, a runner exits at once with the same message.
    again = stack.runner(
        server,
        "idle",
        backend="fake",
        token_file=idle.token_file,
        wait=False,
        log_name=f"{idle.name}-again",
    )
    assert wait_for(again.returncode, 30, "the runner refused at start") == 1
    last = again.output().strip().splitlines()[-1]
    assert last.startswith("error:"), again.output()
    assert REVOKED in last

    listed = {r["name"]: r["revoked"] for r in stack.api(server).get("/api/runners").json()}
    assert listed == {busy.name: True, idle.name: True}
