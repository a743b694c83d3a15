"""Repository secrets on a real server: the REST API (admins only, values never come back),
encryption at rest, delivery to stages (only what the stage's pipeline references, nothing to
pull requests unless allowed, nothing ever to forks), masking of uploaded logs, and the CLI.

Every response of the REST clients of these tests is recorded (``Recorder``) and searched
for the values; the only answer that may carry one is the leaseholder's stage details.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
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
from typer.testing import CliRunner

from bastion.backends.fake import FakeBackend
from bastion.cli import remote
from bastion.cli.app import app
from bastion.client import Backoff, BastionClient, ClientSettings, RunnerClient
from bastion.crypto import hash_token, new_token
from bastion.rpc.messages import Lease, StageDetails, StepState
from bastion.runner import Runner, RunnerSettings
from bastion.store.types import Scope

TOKEN = "tok-Qz7Wv3Kp9Xr2Lm5Nb8"
OTHER = "other-Fj4Hs6Dg1Yt0Ue"
NPM = "npm-Vc2Bx9Zn4Mq7Wa3Se"

PUSH_PIPELINES = b"""\
kind: pipeline
type: docker
name: build
steps:
- name: test
  image: busybox
  commands: [echo hello]
  environment:
    TOKEN: {from_secret: token}
    PLAIN: not a secret
- name: lint
  image: busybox
  commands: [echo lint]
---
kind: pipeline
type: docker
name: publish
steps:
- name: npm
  image: plugins/npm
  settings:
    token: {from_secret: npm}
    registry: https://registry.example.com
"""

PR_PIPELINE = b"""\
kind: pipeline
type: docker
name: build
steps:
- name: test
  image: busybox
  commands: [echo hello]
  environment:
    TOKEN: {from_secret: token}
    NPM_TOKEN: {from_secret: npm}
"""

LEAKY_PIPELINE = b"""\
kind: pipeline
type: docker
name: build
steps:
- name: leak
  image: bastion/busybox:latest
  environment:
    BASTION_FAKE_OUTPUT: {from_secret: token}
"""

GH = "octo-org/hello-world"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


class Recorder:
    """Every response body (and header) the test's REST clients received."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.seen.append(f"{response.request.method} {response.request.url}")
        self.seen.append(str(dict(response.headers)))
        self.seen.append(response.text)

    def assert_never_saw(self, *values: str) -> None:
        assert self.seen, "nothing was recorded"
        for text in self.seen:
            for value in values:
                assert value not in text


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def client(server: Harness, recorder: Recorder, token: str | None) -> httpx.Client:
    return server.client(token, event_hooks={"response": [recorder]})


def admin(server: Harness, recorder: Recorder) -> httpx.Client:
    return client(server, recorder, server.admin_token)


def add_secret(
    api: httpx.Client, name: str, data: str, *, pull_request: bool = False, slug: str = "acme/web"
) -> dict[str, Any]:
    response = api.post(
        f"/api/repos/{slug}/secrets",
        json={"name": name, "data": data, "pull_request": pull_request},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def details(runner: FakeRunner, lease: Lease) -> StageDetails:
    response = runner.details(lease.stage_id, lease)
    assert response.status_code == 200, response.text
    return StageDetails.model_validate_json(response.content)


def leased_stages(runner: FakeRunner, count: int) -> dict[str, tuple[Lease, StageDetails]]:
    """Lease ``count`` stages; their leases and details by pipeline name."""
    out: dict[str, tuple[Lease, StageDetails]] = {}
    for _ in range(count):
        lease = runner.poll()
        assert lease is not None
        found = details(runner, lease)
        out[found.pipeline] = (lease, found)
    return out


def push(server: Harness, checkout: Checkout, config: bytes) -> None:
    checkout.commit({".drone.yml": config}, "Pipeline")
    checkout.push()
    wait_for(server.builds)


# -- the REST API ------------------------------------------------------------------------------


def test_create_list_inspect_replace_delete(server: Harness, recorder: Recorder) -> None:
    server.local_repo()
    api = admin(server, recorder)
    created = add_secret(api, "token", TOKEN)
    assert created["name"] == "token"
    assert created["pull_request"] is False
    assert created["created"] > 0
    assert set(created) == {
        "name",
        "scope",
        "namespace",
        "pull_request",
        "events",
        "branches",
        "images",
        "created",
        "updated",
        "rotated",
        "last_used",
        "last_build",
        "age_days",
        "rotation_due",
    }

    add_secret(api, "npm", NPM, pull_request=True)
    listed = api.get("/api/repos/acme/web/secrets").json()
    assert [(s["name"], s["pull_request"]) for s in listed] == [("npm", True), ("token", False)]
    assert all("data" not in s for s in listed)

    one = api.get("/api/repos/acme/web/secrets/token")
    assert one.status_code == 200
    assert one.json() == created

    replaced = add_secret(api, "token", TOKEN + "-v2", pull_request=True)
    assert replaced["pull_request"] is True
    assert replaced["created"] == created["created"]
    repo = server.ctx.store.get_repo("acme", "web")
    assert repo is not None
    assert server.ctx.store.get_repo_secret(repo.id, "token") == TOKEN + "-v2"

    assert api.delete("/api/repos/acme/web/secrets/token").status_code == 204
    gone = api.get("/api/repos/acme/web/secrets/token")
    assert gone.status_code == 404
    assert "has no secret 'token'" in gone.json()["message"]
    assert api.delete("/api/repos/acme/web/secrets/token").status_code == 404
    assert [s["name"] for s in api.get("/api/repos/acme/web/secrets").json()] == ["npm"]
    # Other repository views do not show secrets either.
    api.get("/api/repos/acme/web")
    api.get("/api/repos")
    recorder.assert_never_saw(TOKEN, NPM)


def test_only_admins_with_an_admin_token(server: Harness, recorder: Recorder) -> None:
    server.local_repo()
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN)
    store = server.ctx.store
    admin_user = store.find_user("admin")
    assert admin_user is not None
    read_only = new_token("api")
    store.create_token(admin_user.id, "read-only", hash_token(read_only), (Scope.READ,))
    callers = {
        "anonymous": (client(server, recorder, None), 401),
        "user": (client(server, recorder, server.user_token("alice")), 403),
        "read-scoped admin token": (client(server, recorder, read_only), 403),
    }
    body = {"name": "evil", "data": "attacker-value"}
    for who, (caller, status) in callers.items():
        answers = [
            caller.get("/api/repos/acme/web/secrets").status_code,
            caller.post("/api/repos/acme/web/secrets", json=body).status_code,
            caller.get("/api/repos/acme/web/secrets/token").status_code,
            caller.delete("/api/repos/acme/web/secrets/token").status_code,
            # A repository that does not exist answers the same: its name is not confirmed.
            caller.get("/api/repos/acme/nothing/secrets").status_code,
        ]
        assert answers == [status] * 5, who
    assert [s["name"] for s in api.get("/api/repos/acme/web/secrets").json()] == ["token"]
    missing = api.get("/api/repos/acme/nothing/secrets")
    assert missing.status_code == 404
    # An inactive repository's secrets are still the admins' to manage.
    assert api.delete("/api/repos/acme/web").status_code == 200
    assert api.get("/api/repos/acme/web/secrets").status_code == 200
    recorder.assert_never_saw(TOKEN)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"name": "token", "data": "zq9"}, "secrets shorter than 4 characters cannot be masked"),
        (
            {"name": "token", "data": "  zq \n"},
            "secrets shorter than 4 characters cannot be masked",
        ),
        ({"name": "token", "data": ""}, "secrets shorter than 4 characters cannot be masked"),
        ({"name": "1token", "data": "zq9-long-enough"}, "body field name"),
        ({"name": "to ken", "data": "zq9-long-enough"}, "body field name"),
        ({"name": "$(id)", "data": "zq9-long-enough"}, "body field name"),
        ({"name": "", "data": "zq9-long-enough"}, "body field name"),
        ({"name": "token"}, "body field data"),
        ({"name": "token", "data": 12345678}, "body field data"),
        ({"name": "token", "data": "zq9" * 30000}, "body field data"),
        ({"name": "token", "data": "zq9-long-enough", "pull": True}, "unknown field"),
    ],
)
def test_bad_bodies_are_400_and_do_not_echo_the_value(
    server: Harness, recorder: Recorder, body: dict[str, Any], needle: str
) -> None:
    server.local_repo()
    api = admin(server, recorder)
    response = api.post("/api/repos/acme/web/secrets", json=body)
    assert response.status_code == 400
    message = response.json()["message"]
    assert needle in message
    assert "zq9" not in message
    assert api.get("/api/repos/acme/web/secrets").json() == []


def test_values_are_stored_encrypted_and_never_logged(
    server: Harness, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.local_repo()
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN)
    add_secret(api, "npm", NPM, pull_request=True)
    api.post("/api/repos/acme/web/secrets", json={"name": "short", "data": "zq9"})
    data_dir = server.live.settings.data_dir
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("bastion.db") for p in files)
    for path in files:
        content = path.read_bytes()
        assert TOKEN.encode() not in content, path
        assert NPM.encode() not in content, path
    assert "secret token of acme/web created by admin" in caplog.text
    for value in (TOKEN, NPM, "zq9"):
        assert value not in caplog.text
    recorder.assert_never_saw(TOKEN, NPM)


# -- delivery to stages ----------------------------------------------------------------------


def test_a_push_stage_receives_exactly_what_its_pipeline_references(
    server: Harness, recorder: Recorder
) -> None:
    checkout = server.local_repo()
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN)
    add_secret(api, "npm", NPM)
    add_secret(api, "unused", OTHER)
    push(server, checkout, PUSH_PIPELINES)
    runner = FakeRunner(server, "r1")
    stages = leased_stages(runner, 2)
    assert stages["build"][1].secrets == {"token": TOKEN}
    assert stages["publish"][1].secrets == {"npm": NPM}
    # Nobody else learns them: the REST API shows neither the build nor its stages' secrets.
    api.get("/api/repos/acme/web/builds/1")
    api.get("/api/repos/acme/web/builds")
    recorder.assert_never_saw(TOKEN, NPM, OTHER)


def test_a_missing_secret_is_simply_absent(server: Harness) -> None:
    push(server, server.local_repo(), PUSH_PIPELINES)
    runner = FakeRunner(server, "r1")
    stages = leased_stages(runner, 2)
    assert stages["build"][1].secrets == {}
    assert stages["publish"][1].secrets == {}


def github_pull_request(server: Harness, forge: FakeForge, *, fork: bool) -> None:
    _repo, hook_secret = server.forge_repo(
        "github", "octo-org", "hello-world", forge_id="186853002"
    )
    forge.files[("octo-org", "hello-world", PR_HEAD, ".drone.yml")] = PR_PIPELINE
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


def test_a_pull_request_gets_only_secrets_allowed_for_pull_requests(
    server: Harness, forge: FakeForge, recorder: Recorder
) -> None:
    github_pull_request(server, forge, fork=False)
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN, slug=GH)
    add_secret(api, "npm", NPM, slug=GH)
    repo = server.ctx.store.get_repo("octo-org", "hello-world")
    assert repo is not None
    build = server.ctx.store.get_build(repo.id, 1)
    assert build is not None
    assert not build.fork
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    assert details(runner, lease).secrets == {}
    # Allowed for pull requests: the next request for the details gets it, and only it.
    add_secret(api, "npm", NPM, pull_request=True, slug=GH)
    assert details(runner, lease).secrets == {"npm": NPM}
    recorder.assert_never_saw(TOKEN, NPM)


def test_a_fork_pull_request_gets_nothing_whatever_the_flags(
    server: Harness, forge: FakeForge, recorder: Recorder
) -> None:
    github_pull_request(server, forge, fork=True)
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN, pull_request=True, slug=GH)
    add_secret(api, "npm", NPM, pull_request=True, slug=GH)
    repo = server.ctx.store.get_repo("octo-org", "hello-world")
    assert repo is not None
    build = server.ctx.store.get_build(repo.id, 1)
    assert build is not None
    assert build.fork
    runner = FakeRunner(server, "r1")
    # Held for approval by default (approval mode forks); approving it grants no secrets.
    assert runner.poll(wait=0.2) is None
    assert api.post(f"/api/repos/{GH}/builds/1/approve").status_code == 200
    lease = runner.poll()
    assert lease is not None
    assert details(runner, lease).secrets == {}
    # A restart is a fork's build too.
    assert api.post(f"/api/repos/{GH}/builds/1").status_code == 200
    assert api.post(f"/api/repos/{GH}/builds/2/approve").status_code == 200
    second = runner.poll()
    assert second is not None
    assert details(runner, second).secrets == {}
    recorder.assert_never_saw(TOKEN, NPM)


def test_another_runner_cannot_fetch_the_secrets(server: Harness) -> None:
    checkout = server.local_repo()
    add_secret(server.admin, "token", TOKEN)
    push(server, checkout, PUSH_PIPELINES)
    holder = FakeRunner(server, "r1")
    lease = holder.poll()
    assert lease is not None
    thief = FakeRunner(server, "r2")
    stolen = thief.details(lease.stage_id, lease)
    assert stolen.status_code in (401, 409)
    assert TOKEN not in stolen.text


# -- masking -------------------------------------------------------------------------------


def test_uploaded_log_lines_are_stored_masked(server: Harness, recorder: Recorder) -> None:
    """The runner is supposed to mask; this one does not. The server masks what it handed
    to the stage, and (the choice made in ``services.secrets``) every other secret of the
    repository as well — also a value replaced after the stage received it."""
    checkout = server.local_repo()
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN)
    add_secret(api, "unused", OTHER)
    push(server, checkout, PUSH_PIPELINES)
    runner = FakeRunner(server, "r1")
    stages = leased_stages(runner, 2)
    lease, got = stages["build"]
    assert got.secrets == {"token": TOKEN}
    add_secret(api, "token", TOKEN + "-rotated")  # after the stage received the old value
    assert runner.step(lease, 1, StepState.RUNNING).status_code == 204
    lines = [
        (0, f"the token is {TOKEN}"),
        (1, f"curl -H 'Authorization: Bearer {TOKEN}' https://api.example.com"),
        (2, f"not handed out but a secret of the repository: {OTHER}"),
        (3, f"rotated: {TOKEN}-rotated"),
        (4, "nothing to hide"),
    ]
    assert runner.logs(lease, 1, lines).status_code == 204
    stored = api.get(f"/api/repos/acme/web/builds/1/logs/{got.stage.number}/1").json()
    assert [line["out"] for line in stored] == [
        "the token is ********\n",
        "curl -H 'Authorization: Bearer ********' https://api.example.com\n",
        "not handed out but a secret of the repository: ********\n",
        "rotated: ********\n",
        "nothing to hide\n",
    ]
    for path in server.live.settings.log_dir.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert TOKEN not in text
            assert OTHER not in text
    recorder.assert_never_saw(TOKEN, OTHER)


def test_a_real_runner_runs_a_from_secret_pipeline_and_its_log_is_masked(
    server: Harness, recorder: Recorder
) -> None:
    """The whole path: API → store → the leaseholder's details → the runner's compiler (the
    step's environment) → the fake backend prints it → masked by the runner and the server."""
    checkout = server.local_repo()
    api = admin(server, recorder)
    add_secret(api, "token", TOKEN)
    config = RunnerSettings(
        server=server.url,
        token=server.runner_token("real"),
        name="real",
        capacity=1,
        backend="fake",
        poll_wait=0.5,
        cleanup_interval=60.0,
    )
    rpc = RunnerClient(
        server.url, config.token, backoff=Backoff(initial=0.05, maximum=0.5), timeout=10.0
    )
    stop = threading.Event()
    runner = Runner(config, stop, backend=FakeBackend(), rpc=rpc)
    thread = threading.Thread(target=runner.run, name="real-runner", daemon=True)
    thread.start()
    try:
        push(server, checkout, LEAKY_PIPELINE)
        build = wait_for(
            lambda: (b := server.build(1))["status"] in ("success", "failure", "error") and b,
            timeout=60,
        )
    finally:
        stop.set()
        thread.join(30)
        rpc.close()
    assert not thread.is_alive()
    assert build["status"] == "success", build
    logs = api.get("/api/repos/acme/web/builds/1/logs/1/1").json()
    assert [line["out"] for line in logs] == ["********\n"]
    recorder.assert_never_saw(TOKEN)


# -- the CLI against this server ---------------------------------------------------------------


def test_cli_add_ls_info_rm(
    server: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.local_repo()

    def factory(settings: ClientSettings) -> BastionClient:
        return BastionClient(settings.server, settings.token)

    monkeypatch.setattr(remote, "client_factory", factory)
    monkeypatch.setenv("BASTION_SERVER", server.url)
    monkeypatch.setenv("BASTION_TOKEN", server.admin_token)
    monkeypatch.setenv("COLUMNS", "200")
    outputs: list[str] = []

    def run(*args: str, stdin: str | None = None) -> Any:
        result = CliRunner().invoke(app, list(args), input=stdin)
        outputs.append(result.output)
        assert "Traceback" not in result.output
        return result

    value_file = tmp_path / "token.txt"
    value_file.write_text(TOKEN)
    repo = ("--repository", "acme/web")
    added = run("secret", "add", *repo, "--name", "token", "--data-file", str(value_file))
    assert added.exit_code == 0, added.output
    assert "saved secret token of acme/web (not for pull requests)" in added.stdout
    piped = run(
        "secret", "add", *repo, "--name", "npm", "--data", "-", "--allow-pull-request", stdin=NPM
    )
    assert piped.exit_code == 0, piped.output
    store = server.ctx.store
    web = store.get_repo("acme", "web")
    assert web is not None
    assert store.get_repo_secrets(web.id) == {"token": TOKEN, "npm": NPM}

    table = run("secret", "ls", *repo)
    assert table.exit_code == 0
    assert "npm" in table.stdout
    assert "token" in table.stdout
    listed = json.loads(run("secret", "ls", *repo, "--format", "json").stdout)
    assert [(s["name"], s["pull_request"]) for s in listed] == [("npm", True), ("token", False)]
    info = run("secret", "info", *repo, "--name", "npm")
    assert "pull requests" in info.stdout
    assert json.loads(run("secret", "info", *repo, "--name", "npm", "--format", "json").stdout)[
        "pull_request"
    ]

    short = run("secret", "add", *repo, "--name", "pin", "--data", "zq9")
    assert short.exit_code == 2
    assert "cannot be masked" in short.stderr
    user = run("secret", "ls", "--repository", "acme/nothing")
    assert user.exit_code == 1
    assert "404" in user.stderr

    removed = run("secret", "rm", *repo, "--name", "token")
    assert removed.exit_code == 0
    assert "deleted secret token of acme/web" in removed.stdout
    again = run("secret", "rm", *repo, "--name", "token")
    assert again.exit_code == 1
    assert "has no secret 'token'" in again.stderr
    assert store.list_repo_secrets(web.id) == ["npm"]
    for text in outputs:
        assert TOKEN not in text
        assert NPM not in text
        assert "zq9" not in text
