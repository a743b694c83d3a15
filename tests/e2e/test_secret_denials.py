"""Denied secret references with real server and runner processes: each refused reference
fails only its own step, with a message naming the secret and the rule, before any container
of that step exists; the steps entitled to the secret get it; no value reaches the API, the
logs or the processes' output.

The organisation secret is plugin-only (``images``): a step with commands and a plugin step of
another image are refused it, a plugin step of the right image receives it (and prints it,
masked). The repository secret is limited to ``release/*`` branches: this build of ``main``
is refused it.
"""

from __future__ import annotations

import httpx
import pytest
from tests.e2e._support import Stack, create_local_repo, push

pytestmark = pytest.mark.slow

SLUG = "acme/web"
PLUGIN_VALUE = "plugin-only-Hq4Lz8Vn2Tx6"
RELEASE_VALUE = "release-only-Pm7Rc3Jy9Bd5"

PIPELINE = """\
kind: pipeline
type: docker
name: build
steps:
- name: sneaky
  image: bastion/busybox:latest
  commands: [echo "$PASSWORD"]
  failure: ignore
  environment:
    PASSWORD: {from_secret: docker_password}
- name: other-image
  image: bastion/python:3.11
  failure: ignore
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: docker_password}
- name: plugin
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: docker_password}
- name: release
  image: bastion/busybox:latest
  failure: ignore
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: deploy_token}
"""


def add(api: httpx.Client, path: str, body: dict[str, object]) -> None:
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text


def test_denied_references_fail_their_own_step_with_the_rule(stack: Stack) -> None:
    for value in (PLUGIN_VALUE, RELEASE_VALUE):
        stack.secret(value)  # the stack fails the test if a process ever prints one
    server = stack.server()
    api = stack.api(server)
    checkout, url = create_local_repo(stack, server, SLUG)
    add(
        api,
        "/api/secrets/acme",
        {"name": "docker_password", "data": PLUGIN_VALUE, "images": ["bastion/busybox"]},
    )
    add(
        api,
        f"/api/repos/{SLUG}/secrets",
        {"name": "deploy_token", "data": RELEASE_VALUE, "branches": ["release/*"]},
    )
    stack.runner(server, "r1", backend="fake")
    push(checkout, url, PIPELINE, "Reference secrets some steps may not have")
    build = stack.wait_build(server, SLUG, 1)
    steps = {s["name"]: s for s in build["stages"][0]["steps"]}
    assert {n: s["status"] for n, s in steps.items()} == {
        "sneaky": "failure",
        "other-image": "failure",
        "plugin": "success",
        "release": "failure",
    }, build
    assert steps["sneaky"]["error"] == (
        "secret 'docker_password' is not available to step 'sneaky': it is limited to the "
        "plugin images bastion/busybox, and the step sets commands"
    )
    assert "not 'bastion/python:3.11'" in steps["other-image"]["error"]
    assert steps["release"]["error"] == (
        "secret 'deploy_token' is not available on branch 'main': it is limited to the "
        "branches release/*"
    )
    # The entitled plugin step received it and printed it; the log holds only the mask.
    lines = stack.logs(server, SLUG, 1, 1, steps["plugin"]["number"])
    assert [line["out"] for line in lines] == ["********\n"]
    # Its use is recorded: which build, and when.
    org = api.get("/api/secrets/acme/docker_password").json()
    assert org["last_build"] == f"{SLUG}#1"
    assert api.get(f"/api/repos/{SLUG}/secrets/deploy_token").json()["last_used"] == 0
    for path in (f"/api/repos/{SLUG}/builds/1", "/api/secrets/acme", f"/api/repos/{SLUG}/secrets"):
        text = api.get(path).text
        assert PLUGIN_VALUE not in text and RELEASE_VALUE not in text
