"""External secrets through a real server: a pipeline's ``from_secret`` names a ``kind:
secret`` document, the server asks the HTTP provider these tests start on 127.0.0.1 (which
verifies every request), and the leaseholder's runner gets the value — masked in its log. A
provider that hangs or is down fails the step that needs the secret with a message naming it,
within the provider's timeout; pull request builds get a value only when the provider allows
it, and a fork's build never causes a request at all."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from tests.integration.server._support import (
    Checkout,
    FakeForge,
    FakeRunner,
    Harness,
    github_headers,
    payload,
    wait_for,
)
from tests.support.secret_provider import TOKEN, Provider, running_provider

from bastion.backends.fake import FakeBackend
from bastion.client import Backoff, RunnerClient
from bastion.rpc.messages import Lease, StageDetails, StepState
from bastion.runner import Runner, RunnerSettings

VALUE = "vault-Rt5Yh8Ju2Ik9Ol"
PATH = "secret/data/docker"

PIPELINE = b"""\
kind: pipeline
type: docker
name: build
steps:
- name: deploy
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: docker_password}
- name: test
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: plain
---
kind: secret
name: docker_password
get:
  path: secret/data/docker
  name: password
"""

GH = "octo-org/hello-world"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def provider_server(
    make_server: Callable[..., Harness], provider: Provider, **extra: Any
) -> Harness:
    return make_server(secret_plugin_endpoint=provider.url, secret_plugin_token=TOKEN, **extra)


def push(server: Harness, checkout: Checkout, config: bytes = PIPELINE) -> None:
    checkout.commit({".drone.yml": config}, "Pipeline")
    checkout.push()
    wait_for(server.builds)


def leased(runner: FakeRunner) -> tuple[Lease, StageDetails]:
    lease = runner.poll()
    assert lease is not None
    response = runner.details(lease.stage_id, lease)
    assert response.status_code == 200, response.text
    return lease, StageDetails.model_validate_json(response.content)


def run_real_runner(server: Harness) -> dict[str, Any]:
    """Run build 1 of acme/web with a real runner on the fake backend; the finished build."""
    settings = RunnerSettings(
        server=server.url,
        token=server.runner_token("real"),
        name="real",
        capacity=1,
        backend="fake",
        poll_wait=0.5,
        cleanup_interval=60.0,
    )
    rpc = RunnerClient(
        server.url, settings.token, backoff=Backoff(initial=0.05, maximum=0.5), timeout=30.0
    )
    stop = threading.Event()
    runner = Runner(settings, stop, backend=FakeBackend(), rpc=rpc)
    thread = threading.Thread(target=runner.run, name="real-runner", daemon=True)
    thread.start()
    try:
        build: dict[str, Any] = wait_for(
            lambda: (b := server.build(1))["status"] in ("success", "failure", "error") and b,
            timeout=60,
        )
    finally:
        stop.set()
        thread.join(30)
        rpc.close()
    assert not thread.is_alive()
    return build


def steps_of(build: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in build["stages"][0]["steps"]}


def test_the_leaseholder_gets_the_providers_value(make_server: Callable[..., Harness]) -> None:
    with running_provider({(PATH, "password"): {"data": VALUE}}) as provider:
        server = provider_server(make_server, provider)
        push(server, server.local_repo())
        _lease, details = leased(FakeRunner(server, "r1"))
    assert details.secrets == {"docker_password": VALUE}
    assert details.secret_grants == {"deploy": ["docker_password"], "test": []}
    assert provider.refused == []
    # Asked each time the stage's details are made (at lease time, and again when the runner
    # asks with its lease): every time for the same secret of the same build.
    assert provider.received
    for asked in provider.received:
        assert (asked["path"], asked["name"]) == (PATH, "password")
        assert asked["repo"]["slug"] == "acme/web"
        assert asked["build"]["event"] == "push"
        assert asked["build"]["number"] == 1


def test_a_real_runner_uses_it_and_its_log_is_masked(
    make_server: Callable[..., Harness],
) -> None:
    with running_provider({(PATH, "password"): {"data": VALUE}}) as provider:
        server = provider_server(make_server, provider)
        push(server, server.local_repo())
        build = run_real_runner(server)
    assert build["status"] == "success", build
    logs = server.admin.get("/api/repos/acme/web/builds/1/logs/1/1")
    assert logs.status_code == 200
    assert [line["out"] for line in logs.json()] == ["********\n"]
    assert VALUE not in server.admin.get("/api/repos/acme/web/builds/1").text


def test_a_provider_that_hangs_fails_the_step_at_the_timeout(
    make_server: Callable[..., Harness],
) -> None:
    with running_provider({(PATH, "password"): {"data": VALUE}}) as provider:
        provider.delay = 300.0  # far beyond the runner's and the test's patience
        server = provider_server(make_server, provider, secret_plugin_timeout=0.5)
        push(server, server.local_repo())
        build = run_real_runner(server)
        # Decided while the provider still holds the request: nothing waited for it.
        assert not provider.release.is_set()
    assert build["status"] == "failure", build
    steps = steps_of(build)
    error = steps["deploy"]["error"]
    assert "docker_password" in error
    assert "provider is unavailable" in error
    assert "no answer within 0.5 s" in error
    assert steps["deploy"]["status"] == "failure"
    assert VALUE not in json.dumps(build)


def test_a_provider_that_is_down_fails_the_step_with_a_clear_message(
    make_server: Callable[..., Harness],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server(
        secret_plugin_endpoint=f"http://127.0.0.1:{port}/", secret_plugin_token=TOKEN
    )
    push(server, server.local_repo())
    _lease, details = leased(FakeRunner(server, "r1"))
    assert details.secrets == {}
    denial = details.secret_denials["deploy"]["docker_password"]
    assert "docker_password" in denial
    assert "provider is unavailable" in denial
    assert "cannot connect" in denial


def test_a_missing_external_secret_is_a_step_denial(
    make_server: Callable[..., Harness],
) -> None:
    with running_provider({}) as provider:
        server = provider_server(make_server, provider)
        push(server, server.local_repo())
        _lease, details = leased(FakeRunner(server, "r1"))
    assert details.secrets == {}
    assert "docker_password" in details.secret_denials["deploy"]["docker_password"]


# -- pull requests and forks ---------------------------------------------------------------------


def github_pull_request(server: Harness, forge: FakeForge, *, fork: bool) -> None:
    _repo, hook_secret = server.forge_repo(
        "github", "octo-org", "hello-world", forge_id="186853002"
    )
    forge.files[("octo-org", "hello-world", PR_HEAD, ".drone.yml")] = PIPELINE
    data = json.loads(payload("github_pull_request_opened.json"))
    if fork:
        head_repo = data["pull_request"]["head"]["repo"]
        head_repo.update(id=999_999_999, full_name="mallory/hello-world")
        head_repo["owner"]["login"] = "mallory"
    body = json.dumps(data).encode()
    response = server.client().post(
        "/hook",
        params={"repo": GH},
        content=body,
        headers=github_headers("pull_request", body, hook_secret),
    )
    assert response.status_code == 200, response.text
    [build] = server.builds(GH)
    assert build["event"] == "pull_request"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"data": VALUE}, {}),
        ({"data": VALUE, "pull": True}, {"docker_password": VALUE}),
        ({"data": VALUE, "pull_request": True}, {"docker_password": VALUE}),
    ],
)
def test_a_pull_request_gets_it_only_when_the_provider_allows(
    make_server: Callable[..., Harness],
    forge: FakeForge,
    reply: dict[str, Any],
    expected: dict[str, str],
) -> None:
    with running_provider({(PATH, "password"): reply}) as provider:
        server = provider_server(make_server, provider)
        github_pull_request(server, forge, fork=False)
        _lease, details = leased(FakeRunner(server, "r1"))
    assert details.secrets == expected
    if not expected:
        assert "pull_request" in details.secret_denials["deploy"]["docker_password"]
    assert provider.received[0]["build"]["event"] == "pull_request"


def test_a_fork_never_causes_a_request(
    make_server: Callable[..., Harness], forge: FakeForge
) -> None:
    reply = {"data": VALUE, "pull": True, "fork": True}
    with running_provider({(PATH, "password"): reply}) as provider:
        server = provider_server(make_server, provider)
        github_pull_request(server, forge, fork=True)
        repo = server.ctx.store.get_repo("octo-org", "hello-world")
        assert repo is not None
        build = server.ctx.store.get_build(repo.id, 1)
        assert build is not None and build.fork
        runner = FakeRunner(server, "r1")
        lease = runner.poll()
        if lease is not None:  # fork builds may wait for an approval; then nothing runs
            response = runner.details(lease.stage_id, lease)
            assert response.status_code == 200, response.text
            assert VALUE not in response.text
            assert StageDetails.model_validate_json(response.content).secrets == {}
    assert provider.received == []
    assert provider.refused == []


def test_the_server_masks_an_external_value_a_runner_did_not(
    make_server: Callable[..., Harness],
) -> None:
    """This runner uploads the value unmasked: the server masks it before storing, since the
    value handed to the stage is in the stage's masker like any stored secret's."""
    with running_provider({(PATH, "password"): {"data": VALUE}}) as provider:
        server = provider_server(make_server, provider)
        push(server, server.local_repo())
        runner = FakeRunner(server, "r1")
        lease, details = leased(runner)
        assert details.secrets == {"docker_password": VALUE}
        assert runner.step(lease, 1, StepState.RUNNING).status_code == 204
        lines = [(0, f"password={VALUE}"), (1, "nothing to hide")]
        assert runner.logs(lease, 1, lines).status_code == 204
    stored = server.admin.get("/api/repos/acme/web/builds/1/logs/1/1")
    assert stored.status_code == 200
    assert [line["out"] for line in stored.json()] == [
        "password=********\n",
        "nothing to hide\n",
    ]


def test_another_runner_gets_neither_the_value_nor_a_lookup(
    make_server: Callable[..., Harness],
) -> None:
    with running_provider({(PATH, "password"): {"data": VALUE}}) as provider:
        server = provider_server(make_server, provider)
        push(server, server.local_repo())
        holder = FakeRunner(server, "r1")
        lease, _details = leased(holder)
        asked = len(provider.received)
        thief = FakeRunner(server, "r2")
        stolen = thief.details(lease.stage_id, lease)
        assert stolen.status_code in (401, 409)
        assert VALUE not in stolen.text
        # The refused request never reached the provider.
        assert len(provider.received) == asked
