"""Issue 5's acceptance test, with real server and runner processes: after a full build that
uses a repository, an organisation, a global and an external secret, no value is in plaintext
in any file of the server's data directory (the database, its journal, the log store), in the
server's or the runner's own output, or in any answer of the REST API.

The external secret comes from a provider this test starts on 127.0.0.1, which verifies each
signed request. Every step prints its secret (the fake backend's ``BASTION_FAKE_OUTPUT``), so
the build really received all four: each step's stored log is the mask alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e._support import Stack, create_local_repo, push
from tests.support.secret_provider import TOKEN, running_provider

pytestmark = pytest.mark.slow

SLUG = "acme/web"
REPO_VALUE = "repo-Hq4Lz8Vn2Tx6Kw"
ORG_VALUE = "org-Pm7Rc3Jy9Bd5Gs"
GLOBAL_VALUE = "global-Wf2Nk6Qa8Ze4Ut"
EXTERNAL_VALUE = "vault-Yb5Xs1Mh7Ce3Lr"
VALUES = (REPO_VALUE, ORG_VALUE, GLOBAL_VALUE, EXTERNAL_VALUE)

PIPELINE = """\
kind: pipeline
type: docker
name: build
steps:
- name: repo
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: token}
- name: org
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: npm}
- name: global
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: deploy_key}
- name: external
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: docker_password}
---
kind: secret
name: docker_password
get:
  path: secret/data/docker
  name: password
"""

# Values for the path parameters of the API's GET routes (everything this test created).
PARAMS = {
    "owner": "acme",
    "name": "web",
    "namespace": "acme",
    "number": "1",
    "stage": "1",
    "secret": "token",
    "login": "admin",
}


def add(api: httpx.Client, path: str, name: str, value: str) -> None:
    response = api.post(path, json={"name": name, "data": value})
    assert response.status_code == 200, response.text
    assert value not in response.text


def get_routes(api: httpx.Client) -> list[str]:
    """Every GET path of the REST API (from the server's OpenAPI document), but the live
    streams (they never end) and the runner RPC (the leaseholder's channel)."""
    response = api.get("/openapi.json")
    assert response.status_code == 200, response.text
    paths: dict[str, Any] = response.json()["paths"]
    return sorted(
        path
        for path, methods in paths.items()
        if "get" in methods and not path.startswith(("/api/stream", "/rpc", "/hook"))
    )


def concrete(path: str, steps: int) -> list[str]:
    """``path`` with its parameters filled in (every step for ``{step}``); [] when it has a
    parameter this test has no value for."""
    names = re.findall(r"{(\w+)}", path)
    if any(n not in PARAMS and n != "step" for n in names):
        return []
    filled = path
    for n in names:
        if n != "step":
            filled = filled.replace("{" + n + "}", PARAMS[n])
    if "{step}" in filled:
        return [filled.replace("{step}", str(s)) for s in range(1, steps + 1)]
    return [filled]


def files_holding(root: Path, values: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {v[:8]}..." for v in values if v.encode() in data]
    return found


def test_no_secret_value_in_plaintext_anywhere_after_a_build(stack: Stack) -> None:
    for value in VALUES:
        stack.secret(value)  # the stack fails the test if a process ever prints one
    reply = {"data": EXTERNAL_VALUE}
    with running_provider({("secret/data/docker", "password"): reply}) as provider:
        server = stack.server(
            env={
                "BASTION_SECRET_PLUGIN_ENDPOINT": provider.url,
                "BASTION_SECRET_PLUGIN_TOKEN": TOKEN,
            }
        )
        api = stack.api(server)
        checkout, url = create_local_repo(stack, server, SLUG)
        add(api, f"/api/repos/{SLUG}/secrets", "token", REPO_VALUE)
        add(api, "/api/secrets/acme", "npm", ORG_VALUE)
        add(api, "/api/admin/secrets", "deploy_key", GLOBAL_VALUE)
        stack.runner(server, "r1", backend="fake")
        push(checkout, url, PIPELINE, "Use every kind of secret")
        build = stack.wait_build(server, SLUG, 1)
        assert build["status"] == "success", build
        assert provider.received, "the provider was never asked"
        assert provider.refused == []

        # Each step received its secret and printed it; the server stored only the mask.
        steps = build["stages"][0]["steps"]
        assert [s["name"] for s in steps] == ["repo", "org", "global", "external"]
        for step in steps:
            lines = stack.logs(server, SLUG, 1, 1, step["number"])
            assert [line["out"] for line in lines] == ["********\n"], step["name"]

        # No API answer holds a value: every GET route, with this test's objects.
        answers = 0
        for route in get_routes(api):
            for path in concrete(route, len(steps)):
                response = api.get(path)
                answers += 1
                for value in VALUES:
                    assert value not in response.text, f"GET {path} answers a secret value"
        assert answers >= 10

        # Runners first (they would otherwise retry against a stopped server), then the
        # server: the database and its journal as they are at rest.
        for runner in stack.runners:
            runner.stop()
        server.stop_gracefully()

    # The database file (and journal), the log store, every other file of the data dir.
    assert files_holding(server.data_dir, VALUES) == []
    # The server's and the runner's own output.
    for process in [*stack.servers, *stack.runners]:
        output = process.output()
        assert output, process.log
        for value in VALUES:
            assert value not in output, f"{process.log.name} shows a secret"
