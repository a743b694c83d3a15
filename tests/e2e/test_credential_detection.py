"""Undeclared credentials, with real server and runner processes: a step prints a GitHub
token, an AWS key id and a private key that nobody declared as secrets. The runner masks
them before anything leaves it (the server only ever sees the markers), the stored log shows
the markers, and the server records one ``credential.detected`` audit event per kind, naming
the repository, build, stage, step and runner, never the value. No process prints a value,
and no file of the server's data directory holds one."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e._support import Stack, create_local_repo, push

pytestmark = pytest.mark.slow

SLUG = "acme/web"
TOKEN = "ghp_" + "Rk7Wq2Lz" * 4 + "Ab3D"
AWS_ID = "AKIA" + "QX7RZ2MV4NP8KT3W"
KEY_BODY = "MHcCAQEEIBkVx8Vh1Y3l2w5S0sR8xE0p3W9hV2yX4a1Q6m9N0bC3oAoGCCqGSM49"
KEY = f"-----BEGIN EC PRIVATE KEY-----\\n{KEY_BODY}\\n-----END EC PRIVATE KEY-----"
VALUES = (TOKEN, AWS_ID, KEY_BODY)

PIPELINE = f"""\
kind: pipeline
type: docker
name: build
steps:
- name: leaky
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: "pushing with {TOKEN}\\\\nid {AWS_ID}\\\\n{KEY}"
"""


def files_holding(root: Path) -> list[str]:
    return [
        str(path.relative_to(root))
        for path in sorted(p for p in root.rglob("*") if p.is_file())
        if any(value.encode() in path.read_bytes() for value in VALUES)
    ]


def test_undeclared_credentials_are_masked_by_the_runner_and_audited(stack: Stack) -> None:
    for value in VALUES:
        stack.secret(value)  # the stack fails the test if a process ever prints one
    server = stack.server()
    api = stack.api(server)
    checkout, url = create_local_repo(stack, server, SLUG)
    runner = stack.runner(server, "r1", backend="fake")
    push(checkout, url, PIPELINE, "Print credentials nobody declared")
    build = stack.wait_build(server, SLUG, 1)
    assert build["status"] == "success", build

    lines = [line["out"] for line in stack.logs(server, SLUG, 1, 1, 1)]
    assert lines == [
        "pushing with [masked: github-token]\n",
        "id [masked: aws-access-key-id]\n",
        *["[masked: private-key]\n"] * 3,
    ]
    answer = api.get("/api/audit", params={"kind": "credential.detected"})
    assert answer.status_code == 200, answer.text
    events = answer.json()
    assert sorted(event["detail"]["kind"] for event in events) == [
        "aws-access-key-id",
        "github-token",
        "private-key",
    ]
    for event in events:
        assert (event["repo"], event["build"], event["stage"]) == (SLUG, 1, 1)
        assert event["detail"]["step_number"] == 1
        # The step's name, or the placeholder the server gives a step whose lines came
        # before its first report (the runner sends them on separate channels).
        assert event["step"] in ("leaky", "step 1"), event
        assert event["runner"] == runner.name
    assert not any(value in answer.text for value in VALUES)

    runner.stop()
    server.stop_gracefully()
    assert files_holding(server.data_dir) == []
    for process in [*stack.servers, *stack.runners]:
        output = process.output()
        assert not any(value in output for value in VALUES), process.log.name
