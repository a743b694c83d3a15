"""GitHub- and Gitea-format webhooks, signed with the secret the server generated, start builds
that real runners clone from the forge and run in containers; tampered deliveries are
refused and leave no trace. A second runner asking for a stage leased to the first is refused
and sees no secrets.

GitHub and Gitea cannot be reached from here: ``FakeForge`` (``_forge.py``) stands in for
their REST API (the config file at a commit) and their git hosting (the runner's clone), on
127.0.0.1. The payloads are the documented shapes in ``tests/integration/server/payloads``
with the commit id changed to the real commit pushed to the fake forge.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e._forge import FakeForge
from tests.e2e._support import BUSYBOX, ServerProcess, Stack, new_checkout, wait_for

from bastion.rpc.messages import (
    LEASE_HEADER,
    PATH_COMPLETE,
    PATH_HEARTBEAT,
    PATH_LOGS,
    PATH_SOURCE,
    PATH_STAGE,
    PATH_STEPS,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PAYLOADS = Path(__file__).resolve().parents[1] / "integration" / "server" / "payloads"

# The tokens the server uses on each forge. Distinct prefixes, so that a step can look for
# them without printing one (which the runner would mask anyway); the step writes the
# prefixes split in two ('' in the shell), so that .drone.yml itself does not match.
GITHUB_TOKEN = "e2e-github-token-" + secrets.token_hex(16)
GITEA_TOKEN = "e2e-gitea-token-" + secrets.token_hex(16)
CONFIG_MARKER = "e2e-config-marker-7d1f"

# Lists the files holding a token (none expected): the workspace, .git included, and the
# step's environment.
FIND_TOKENS = (
    "grep -rl -e e2e-git''hub-token- -e e2e-git''ea-token- . /proc/self/environ 2>/dev/null"
    " | tr '\\n' ' '"
)

PIPELINE = f"""\
# {CONFIG_MARKER}
kind: pipeline
type: docker
name: default
steps:
  - name: show
    image: {BUSYBOX}
    pull: never
    commands:
      - cat README.md
      - echo "commit=$DRONE_COMMIT_SHA branch=$DRONE_BRANCH event=$DRONE_BUILD_EVENT"
      - echo "files-with-a-token:$({FIND_TOKENS})"
"""

SLEEPING = PIPELINE.replace("      - cat README.md\n", "      - cat README.md\n      - sleep 300\n")


@dataclass(frozen=True)
class ForgeCase:
    forge: str
    owner: str
    name: str
    forge_id: str
    payload: str
    clone_user: str  # the user name the server sends with the forge token for the clone
    token: str

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"


GITHUB = ForgeCase(
    "github",
    "octo-org",
    "hello-world",
    "186853002",
    "github_push.json",
    "x-access-token",
    GITHUB_TOKEN,
)
GITEA = ForgeCase("gitea", "infra", "deploy-tools", "42", "gitea_push.json", "oauth2", GITEA_TOKEN)


@pytest.fixture
def forge(tmp_path: Path) -> Iterator[FakeForge]:
    fake = FakeForge(tmp_path / "forge", api_tokens={"github": GITHUB_TOKEN, "gitea": GITEA_TOKEN})
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def forge_server(stack: Stack, forge: FakeForge) -> ServerProcess:
    """A server that reads configs from the fake forge with its tokens."""
    stack.secret(GITHUB_TOKEN)
    stack.secret(GITEA_TOKEN)
    return stack.server(
        env={
            "BASTION_GITHUB_API_URL": f"{forge.url}/api/v3",
            "BASTION_GITHUB_TOKEN": GITHUB_TOKEN,
            "BASTION_GITEA_URL": forge.url,
            "BASTION_GITEA_TOKEN": GITEA_TOKEN,
        }
    )


def register(stack: Stack, server: ServerProcess, forge: FakeForge, case: ForgeCase) -> str:
    """Register the (private) repository with ``POST /api/repos``; the webhook secret."""
    response = stack.api(server).post(
        "/api/repos",
        json={
            "owner": case.owner,
            "name": case.name,
            "forge": case.forge,
            "forge_id": case.forge_id,
            "http_url": forge.git_url(case.owner, case.name),
        },
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["webhook_url"] == f"{server.url}/hook?repo={case.slug}"
    forge.git_credentials[(case.owner, case.name)] = (case.clone_user, case.token)
    return stack.secret(str(created["webhook_secret"]))


def publish(stack: Stack, forge: FakeForge, case: ForgeCase, config: str) -> str:
    """Commit the pipeline and a README, push them to the fake forge; the commit id."""
    checkout = new_checkout(stack.tmp / f"work-{case.forge}", stack.tmp / "home")
    sha = checkout.commit(
        {".drone.yml": config, "README.md": f"hello from {case.forge}\n"}, "Add a pipeline"
    )
    forge.publish(checkout.path, case.owner, case.name)
    return sha


def push_payload(case: ForgeCase, sha: str) -> bytes:
    """The forge's documented push payload, about commit ``sha``."""
    data: dict[str, Any] = json.loads((PAYLOADS / case.payload).read_text(encoding="utf-8"))
    data["after"] = sha
    data["head_commit"]["id"] = sha
    data["commits"][0]["id"] = sha
    return json.dumps(data, indent=2).encode()


def signed_headers(case: ForgeCase, body: bytes, secret: str, delivery: str) -> dict[str, str]:
    """The headers the forge sends with a push delivery signed with ``secret``."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if case.forge == "github":
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/e2e",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": "4242",
            "X-Hub-Signature-256": f"sha256={signature}",
        }
    # Gitea sends its own headers, Gogs' and GitHub's for compatibility.
    return {
        "Content-Type": "application/json",
        "X-Gitea-Event": "push",
        "X-Gitea-Event-Type": "push",
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Signature": signature,
        "X-Gogs-Event": "push",
        "X-Gogs-Delivery": delivery,
        "X-Gogs-Signature": signature,
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def one_byte_changed(body: bytes) -> bytes:
    """``body`` with the last letter of the branch name changed (still valid JSON)."""
    at = body.index(b"refs/heads/main") + len(b"refs/heads/mai")
    return body[:at] + b"x" + body[at + 1 :]


@pytest.mark.parametrize("case", [GITHUB, GITEA], ids=lambda c: c.forge)
def test_signed_forge_webhooks_start_builds_and_tampered_ones_leave_no_trace(
    docker_stack: Stack, forge: FakeForge, case: ForgeCase
) -> None:
    stack = docker_stack
    server = forge_server(stack, forge)
    stack.runner(server, "r1")
    stack.runner(server, "r2")
    secret = register(stack, server, forge, case)
    sha = publish(stack, forge, case, PIPELINE)
    body = push_payload(case, sha)
    delivery = str(uuid.uuid4())
    hook = stack.api(server, token=None)
    repo_before = stack.api(server).get(f"/api/repos/{case.slug}").json()

    def post(content: bytes, headers: dict[str, str]) -> httpx.Response:
        return hook.post("/hook", params={"repo": case.slug}, content=content, headers=headers)

    genuine = signed_headers(case, body, secret, delivery)
    tampered = post(one_byte_changed(body), genuine)
    assert tampered.status_code == 401, tampered.text
    assert "does not match" in tampered.json()["message"]
    forged = post(body, signed_headers(case, body, "not-" + secret, delivery))
    assert forged.status_code == 401, forged.text
    # No trace: no build, no change to the repository, the forge was not even asked for the
    # config, and no delivery id was recorded (the genuine delivery below is not a duplicate).
    assert stack.builds(server, case.slug) == []
    assert stack.api(server).get(f"/api/repos/{case.slug}").json() == repo_before
    assert forge.api_calls() == []

    accepted = post(body, genuine)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["number"] == 1
    again = post(body, genuine)
    assert again.status_code == 200
    assert "duplicate delivery" in again.json()["message"]

    build = stack.wait_build(server, case.slug, 1)
    assert build["status"] == "success", json.dumps(build, indent=1)
    assert (build["event"], build["after"], build["target"]) == ("push", sha, "main")
    [stage] = build["stages"]
    [step] = stage["steps"]
    lines = [
        line["out"].rstrip("\n") for line in stack.logs(server, case.slug, 1, 1, step["number"])
    ]
    assert f"hello from {case.forge}" in lines  # cloned from the forge, at the commit
    assert f"commit={sha} branch=main event=push" in lines
    # The clone credentials reached the clone only: not the step's environment, not .git.
    assert "files-with-a-token:" in lines
    assert [b["number"] for b in stack.builds(server, case.slug)] == [1]

    # The server fetched the config with its token (once for the trigger, again when the
    # leaseholder asked for the stage's details); the runner cloned with the forge token
    # (the fake forge answers git without credentials with 401, as for a private repository).
    api_calls = forge.api_calls()
    assert api_calls
    assert all(c.authorised for c in api_calls)
    clone_calls = forge.git_calls()
    assert clone_calls
    assert any(c.authorised for c in clone_calls)


def test_a_second_runner_is_refused_the_stage_of_the_first_and_sees_no_secret(
    docker_stack: Stack, forge: FakeForge
) -> None:
    stack = docker_stack
    case = GITHUB
    server = forge_server(stack, forge)
    first = stack.runner(server, "r1")
    secret = register(stack, server, forge, case)
    sha = publish(stack, forge, case, SLEEPING)
    body = push_payload(case, sha)
    response = stack.api(server, token=None).post(
        "/hook",
        params={"repo": case.slug},
        content=body,
        headers=signed_headers(case, body, secret, str(uuid.uuid4())),
    )
    assert response.status_code == 200, response.text

    def sleeping() -> dict[str, Any] | None:
        build = stack.build(server, case.slug, 1)
        steps = [s for st in build["stages"] for s in st["steps"]]
        return build if steps and steps[0]["status"] == "running" else None

    build = wait_for(sleeping, 60, "the step running on the first runner", describe=stack.describe)
    [stage] = build["stages"]
    assert stage["machine"] == first.name
    stage_id = int(stage["id"])
    logs_before = stack.logs(server, case.slug, 1, 1, 1)

    # The second runner: registered, with a valid token of its own, and running too.
    second = stack.runner(server, "r2")
    rpc = stack.api(server, token=second.token)
    made_up = "bst_lease_" + secrets.token_urlsafe(32)
    answers: list[httpx.Response] = [
        rpc.get(PATH_STAGE.format(stage_id=stage_id)),  # no lease at all
        rpc.get(PATH_STAGE.format(stage_id=stage_id), headers={LEASE_HEADER: made_up}),
        rpc.get(PATH_SOURCE.format(stage_id=stage_id), headers={LEASE_HEADER: made_up}),
        rpc.post(PATH_HEARTBEAT.format(stage_id=stage_id), headers={LEASE_HEADER: made_up}),
        rpc.post(
            PATH_STEPS.format(stage_id=stage_id),
            headers={LEASE_HEADER: made_up},
            json={"number": 1, "name": "show", "state": "success", "exit_code": 0},
        ),
        rpc.post(
            PATH_LOGS.format(stage_id=stage_id),
            headers={LEASE_HEADER: made_up},
            json={"step": 1, "lines": [{"n": 999, "t": 1.0, "text": "injected\n"}]},
        ),
        rpc.post(
            PATH_COMPLETE.format(stage_id=stage_id),
            headers={LEASE_HEADER: made_up},
            json={"state": "success", "error": "", "steps": []},
        ),
    ]
    refusal = {"message": f"stage {stage_id}: this runner holds no live lease on it"}
    for answer in answers:
        assert answer.status_code == 409, (answer.request.url, answer.status_code, answer.text)
        assert answer.json() == refusal, answer.text
        for leaked in (CONFIG_MARKER, GITHUB_TOKEN, secret, forge.url, "clone", "secrets"):
            assert leaked not in answer.text
    # A stage that does not exist gets the same answer: nothing to learn from the refusal.
    missing = rpc.get(PATH_STAGE.format(stage_id=stage_id + 1000), headers={LEASE_HEADER: made_up})
    assert missing.status_code == 409
    assert missing.json() == {
        "message": f"stage {stage_id + 1000}: this runner holds no live lease on it"
    }
    # A user's token is not a runner's: the admin gets 401 on the runner channel.
    admin_rpc = stack.api(server).get(
        PATH_STAGE.format(stage_id=stage_id), headers={LEASE_HEADER: made_up}
    )
    assert admin_rpc.status_code == 401

    # The first runner's stage went on undisturbed.
    after = stack.build(server, case.slug, 1)
    assert after["status"] == "running"
    assert after["stages"][0]["status"] == "running"
    assert after["stages"][0]["steps"][0]["status"] == "running"
    assert stack.logs(server, case.slug, 1, 1, 1)[: len(logs_before)] == logs_before
    assert "injected" not in json.dumps(stack.logs(server, case.slug, 1, 1, 1))
    assert second.alive() and first.alive()
