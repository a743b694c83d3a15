"""A push to a local-forge repository builds in real containers; logs come back through the
API and the CLI. Real processes: ``bastion server --dev`` and two ``bastion runner`` on the
Docker engine; once with SQLite in the data directory, once with PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.e2e._support import BUSYBOX, DONE, ServerProcess, Stack, new_checkout

pytestmark = [pytest.mark.slow, pytest.mark.docker]

SLUG = "demo/app"

PIPELINE = f"""\
kind: pipeline
type: docker
name: default

services:
  - name: cache
    image: {BUSYBOX}
    pull: never
    commands:
      - mkdir -p /srv && echo pong > /srv/ping
      - exec httpd -f -p 8080 -h /srv

steps:
  - name: greet
    image: {BUSYBOX}
    pull: never
    commands:
      - echo line-1
      - echo line-2
      - echo line-3
      - echo from-the-first-step > shared.txt
  - name: read
    image: {BUSYBOX}
    pull: never
    commands:
      - cat shared.txt
      - cat README.md
      - for i in $(seq 1 100); do wget -q -O - http://cache:8080/ping && break; sleep 0.1; done
"""

FAILING = f"""\
kind: pipeline
type: docker
name: default

steps:
  - name: good
    image: {BUSYBOX}
    pull: never
    commands:
      - echo fine
  - name: bad
    image: {BUSYBOX}
    pull: never
    commands:
      - echo about-to-fail
      - exit 3
  - name: after
    image: {BUSYBOX}
    pull: never
    commands:
      - echo never-printed
"""


def _step(build: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    [stage] = build["stages"]
    steps = {s["name"]: s for s in stage["steps"]}
    assert name in steps, f"no step {name}: {sorted(steps)}"
    return int(stage["number"]), steps[name]


def _outs(lines: list[dict[str, Any]]) -> list[str]:
    """The text of log lines, in the order given, after checking that the positions run
    0, 1, 2, ... and the times never go back."""
    assert [line["pos"] for line in lines] == list(range(len(lines)))
    times = [line["time"] for line in lines]
    assert times == sorted(times)
    return [str(line["out"]).rstrip("\n") for line in lines]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite in the data directory, else a fresh PostgreSQL database. Requested
    before the stack, so that the database outlives the server at teardown."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_a_push_to_the_local_forge_builds_in_containers_and_logs_come_back(
    database_url: str | None, docker_stack: Stack
) -> None:
    stack = docker_stack
    server = stack.server(database_url=database_url)
    if database_url is not None:
        assert not (server.data_dir / "bastion.db").exists()  # the database is PostgreSQL
    r1 = stack.runner(server, "r1")
    r2 = stack.runner(server, "r2")

    created = stack.cli(server, "repo", "create", SLUG)
    match = re.search(r"git remote add bastion (\S+)", created.stdout)
    assert match, created.stdout
    push_url = match.group(1)
    assert f"created {SLUG}" in created.stdout

    checkout = new_checkout(stack.tmp / "work", stack.tmp / "home")
    sha = checkout.commit(
        {".drone.yml": PIPELINE, "README.md": "hello from the repository\n"}, "Add a pipeline"
    )
    pushed = checkout.git("push", push_url, "main")
    assert "build requested" in pushed

    # `bastion build logs --follow`, started while the build is pending or running, prints
    # the lines as they come and ends with the build.
    stack.wait_build(server, SLUG, 1, states={"pending", "running", *DONE})
    follow = stack.cli_process(server, "build", "logs", SLUG, "1", "--follow")
    build = stack.wait_build(server, SLUG, 1)
    assert build["status"] == "success", json.dumps(build, indent=1)
    assert (build["event"], build["after"], build["target"]) == ("push", sha, "main")
    [stage] = build["stages"]
    assert stage["machine"] in {r1.name, r2.name}
    assert {s["name"]: s["status"] for s in stage["steps"]} == {
        "cache": "success",
        "greet": "success",
        "read": "success",
    }

    # The logs through the API: each line once, in order.
    stage_no, greet = _step(build, "greet")
    greet_lines = _outs(stack.logs(server, SLUG, 1, stage_no, greet["number"]))
    assert [line for line in greet_lines if not line.startswith("+ ")] == [
        "line-1",
        "line-2",
        "line-3",
    ]
    assert greet_lines == [
        "+ echo line-1",
        "line-1",
        "+ echo line-2",
        "line-2",
        "+ echo line-3",
        "line-3",
        "+ echo from-the-first-step > shared.txt",
    ]
    _, read = _step(build, "read")
    read_lines = _outs(stack.logs(server, SLUG, 1, stage_no, read["number"]))
    assert "from-the-first-step" in read_lines  # written to the workspace by the step before
    assert "hello from the repository" in read_lines  # the pushed commit was checked out
    assert "pong" in read_lines  # the service, reached by its name
    assert read_lines.index("from-the-first-step") < read_lines.index("pong")

    # The same logs through the CLI, with the step's name in front of each line.
    logs = stack.cli(server, "build", "logs", SLUG, "1").stdout.splitlines()
    greet_cli = [line.split("│", 1)[1].strip() for line in logs if line.startswith("greet ")]
    assert greet_cli == greet_lines
    followed, follow_err = follow.communicate(timeout=60)
    assert follow.returncode == 0, follow_err
    assert [
        line.split("│", 1)[1].strip() for line in followed.splitlines() if line.startswith("greet ")
    ] == greet_lines
    assert followed.splitlines() == logs
    one_step = stack.cli(server, "build", "logs", SLUG, "1", str(stage_no), "greet").stdout
    assert one_step.splitlines() == greet_lines
    as_json = json.loads(stack.cli(server, "build", "logs", SLUG, "1", "--format", "json").stdout)
    assert [r["out"].rstrip("\n") for r in as_json if r["name"] == "greet"] == greet_lines

    # A failing step fails the build; the steps after it do not run.
    checkout.commit({".drone.yml": FAILING}, "Break the build")
    checkout.git("push", push_url, "main")
    failed = stack.wait_build(server, SLUG, 2)
    assert failed["status"] == "failure", json.dumps(failed, indent=1)
    steps = {s["name"]: s for s in failed["stages"][0]["steps"]}
    assert steps["good"]["status"] == "success"
    assert (steps["bad"]["status"], steps["bad"]["exit_code"]) == ("failure", 3)
    assert steps["after"]["status"] == "skipped"
    bad_lines = _outs(stack.logs(server, SLUG, 2, 1, steps["bad"]["number"]))
    assert bad_lines == ["+ echo about-to-fail", "about-to-fail", "+ exit 3"]

    _check_cli_listing(stack, server, sha)
    assert stack.resources() == []  # every container, network and volume was removed


def _check_cli_listing(stack: Stack, server: ServerProcess, sha: str) -> None:
    table = stack.cli(server, "build", "ls", SLUG).stdout
    rows = [line for line in table.splitlines() if re.match(r"^\s*\d+\s", line)]
    assert [row.split()[0] for row in rows] == ["2", "1"], table
    assert "failure" in rows[0]
    assert "success" in rows[1]
    assert sha[:8] in rows[1]
    listed = json.loads(stack.cli(server, "build", "ls", SLUG, "--format", "json").stdout)
    assert [(b["number"], b["status"]) for b in listed] == [(2, "failure"), (1, "success")]

    info = stack.cli(server, "build", "info", SLUG, "1").stdout
    assert "success" in info
    assert sha[:8] in info
    for name in ("cache", "greet", "read"):
        assert name in info
    info_json = json.loads(stack.cli(server, "build", "info", SLUG, "1", "--format", "json").stdout)
    assert (info_json["number"], info_json["status"], info_json["after"]) == (1, "success", sha)

    repo = json.loads(stack.cli(server, "repo", "info", SLUG, "--format", "json").stdout)
    assert (repo["slug"], repo["forge"], repo["active"]) == (SLUG, "local", True)
