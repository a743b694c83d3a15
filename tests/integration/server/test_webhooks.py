"""``POST /hook``: GitHub and Gitea deliveries with the payload shapes the forges document.

Signatures are checked before anything is parsed or stored: a tampered delivery is a 401 and
leaves no build, no delivery record and no change to the repository.
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.server._support import (
    PIPELINE,
    FakeForge,
    Harness,
    gitea_headers,
    github_headers,
    payload,
)

GITHUB_SHA = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
GH = "octo-org/hello-world"
GITEA = "infra/deploy-tools"


def github_repo(server: Harness, forge: FakeForge, config: bytes = PIPELINE) -> str:
    _repo, secret = server.forge_repo("github", "octo-org", "hello-world", forge_id="186853002")
    forge.files[("octo-org", "hello-world", GITHUB_SHA, ".drone.yml")] = config
    forge.files[("octo-org", "hello-world", PR_HEAD, ".drone.yml")] = config
    return secret


def post(server: Harness, body: bytes, headers: dict[str, str], slug: str = GH) -> Any:
    return server.client().post("/hook", params={"repo": slug}, content=body, headers=headers)


def test_github_push_with_a_valid_signature_starts_a_build(
    server: Harness, forge: FakeForge
) -> None:
    secret = github_repo(server, forge)
    body = payload("github_push.json")
    response = post(server, body, github_headers("push", body, secret))
    assert response.status_code == 200, response.text
    assert response.json()["number"] == 1
    [build] = server.builds(GH)
    assert build["event"] == "push"
    assert build["target"] == "main"
    assert build["after"] == GITHUB_SHA
    assert build["ref"] == "refs/heads/main"
    assert build["message"].startswith("Add a pipeline")
    assert build["status"] == "pending"
    assert forge.calls == [("octo-org", "hello-world", GITHUB_SHA, ".drone.yml")]


def test_github_pull_request_maps_to_drone_fields(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    body = payload("github_pull_request_opened.json")
    response = post(server, body, github_headers("pull_request", body, secret))
    assert response.status_code == 200, response.text
    [build] = server.builds(GH)
    assert build["event"] == "pull_request"
    assert build["action"] == "opened"
    assert build["after"] == PR_HEAD
    assert build["source"] == "feature/greeting"
    assert build["target"] == "main"
    assert build["title"] == "Add the greeting service"


def test_gitea_push_with_a_valid_signature_starts_a_build(
    server: Harness, forge: FakeForge
) -> None:
    _repo, secret = server.forge_repo("gitea", "infra", "deploy-tools", forge_id="42")
    forge.files[("infra", "deploy-tools", GITHUB_SHA, ".drone.yml")] = PIPELINE
    body = payload("gitea_push.json")
    response = post(server, body, gitea_headers("push", body, secret), slug=GITEA)
    assert response.status_code == 200, response.text
    [build] = server.builds(GITEA)
    assert (build["event"], build["target"], build["after"]) == ("push", "main", GITHUB_SHA)
    assert build["message"].startswith("Fix the deploy step")


def test_registering_a_forge_repository_shows_the_webhook_secret_once(server: Harness) -> None:
    repo, secret = server.forge_repo("github", "octo-org", "hello-world")
    assert len(secret) >= 40
    assert repo["webhook_url"] == f"{server.url}/hook?repo={GH}"
    again = server.admin.get(f"/api/repos/{GH}").text
    assert secret not in again
    assert "webhook_secret" not in json.loads(again)


def test_a_tampered_delivery_is_refused_and_leaves_no_trace(
    server: Harness, forge: FakeForge
) -> None:
    secret = github_repo(server, forge)
    repo_before = server.admin.get(f"/api/repos/{GH}").json()
    body = payload("github_push.json")
    headers = github_headers("push", body, secret, delivery="delivery-1")
    tampered = body.replace(b"Add a pipeline", b"Add a backdoor")
    refused = post(server, tampered, headers)
    assert refused.status_code == 401
    assert "does not match" in refused.json()["message"]
    wrong_key = post(server, body, github_headers("push", body, "not-the-secret", "delivery-1"))
    assert wrong_key.status_code == 401
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert post(server, body, unsigned).status_code == 401

    assert server.builds(GH) == []
    assert server.admin.get(f"/api/repos/{GH}").json() == repo_before
    assert forge.calls == []  # nothing was even fetched
    # No delivery record either: the genuine delivery with the same id is not a duplicate.
    genuine = post(server, body, headers)
    assert genuine.status_code == 200
    assert genuine.json()["number"] == 1


def test_unknown_repository_gets_the_same_401_without_a_usable_secret(server: Harness) -> None:
    body = payload("github_push.json")
    response = post(server, body, github_headers("push", body, "guess"), slug="no/such")
    assert response.status_code == 401
    assert (
        response.json()["message"] == "github webhook refused: no webhook secret to verify it with"
    )


def test_a_duplicate_delivery_builds_once(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    body = payload("github_push.json")
    headers = github_headers("push", body, secret, delivery="same-id")
    assert post(server, body, headers).status_code == 200
    again = post(server, body, headers)
    assert again.status_code == 200
    assert "duplicate delivery" in again.json()["message"]
    assert len(server.builds(GH)) == 1


def test_ignored_events_and_malformed_bodies(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    ping = payload("github_ping.json")
    assert post(server, ping, github_headers("ping", ping, secret)).status_code == 204
    broken = b'{"ref": "refs/heads/main", '
    response = post(server, broken, github_headers("push", broken, secret))
    assert response.status_code == 400
    assert server.builds(GH) == []


def test_a_payload_for_another_repository_is_refused(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    data = json.loads(payload("github_push.json"))
    data["repository"]["full_name"] = "octo-org/other"
    data["repository"]["name"] = "other"
    data["repository"]["id"] = 1
    body = json.dumps(data).encode()
    response = post(server, body, github_headers("push", body, secret))
    assert response.status_code == 400
    assert "not octo-org/hello-world" in response.json()["message"]
    assert server.builds(GH) == []


def test_not_a_webhook(server: Harness) -> None:
    response = server.client().post("/hook", params={"repo": GH}, content=b"{}")
    assert response.status_code == 400


def test_ci_skip_makes_no_build(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    data = json.loads(payload("github_push.json"))
    data["head_commit"]["message"] = "Fix typo [ci skip]"
    body = json.dumps(data).encode()
    response = post(server, body, github_headers("push", body, secret))
    assert response.status_code == 200
    assert "skip CI" in response.json()["message"]
    assert server.builds(GH) == []


def test_invalid_yaml_makes_an_error_build_with_the_reason(
    server: Harness, forge: FakeForge
) -> None:
    secret = github_repo(server, forge, config=b"kind: pipeline\nsteps: [\n")
    body = payload("github_push.json")
    assert post(server, body, github_headers("push", body, secret)).status_code == 200
    [build] = server.builds(GH)
    assert build["status"] == "error"
    assert ".drone.yml at 9ef2ec2b8e8d is invalid" in build["error"]
    assert ".drone.yml:" in build["error"]  # file:line:column of the problem
    assert server.build(1, GH)["stages"] == []


def test_missing_config_makes_an_error_build(server: Harness, forge: FakeForge) -> None:
    secret = github_repo(server, forge)
    forge.files.clear()
    body = payload("github_push.json")
    assert post(server, body, github_headers("push", body, secret)).status_code == 200
    [build] = server.builds(GH)
    assert build["status"] == "error"
    assert "there is no .drone.yml" in build["error"]


PRIVILEGED = b"""\
kind: pipeline
name: build
steps:
- name: docker-in-docker
  image: docker:dind
  privileged: true
"""


def test_untrusted_privileged_pipeline_is_refused_naming_the_step(
    server: Harness, forge: FakeForge
) -> None:
    secret = github_repo(server, forge, config=PRIVILEGED)
    body = payload("github_push.json")
    assert post(server, body, github_headers("push", body, secret)).status_code == 200
    build = server.build(1, GH)
    assert build["status"] == "error"
    assert "step 'docker-in-docker' uses privileged: true" in build["error"]
    assert build["stages"] == []

    # Trusted by an admin, the same commit builds.
    server.admin.patch(f"/api/repos/{GH}", json={"trusted": True}).raise_for_status()
    restarted = server.admin.post(f"/api/repos/{GH}/builds/1")
    assert restarted.status_code == 200
    assert restarted.json()["parent"] == 1
    assert [s["status"] for s in restarted.json()["stages"]] == ["pending"]


TRIGGERED = b"""\
kind: pipeline
name: always
steps:
- name: a
  image: busybox
---
kind: pipeline
name: release
trigger:
  branch: [release/*]
steps:
- name: b
  image: busybox
---
kind: pipeline
name: after-release
depends_on: [release]
steps:
- name: c
  image: busybox
"""


def test_trigger_mismatch_skips_the_stage_with_the_reason(
    server: Harness, forge: FakeForge
) -> None:
    secret = github_repo(server, forge, config=TRIGGERED)
    body = payload("github_push.json")
    assert post(server, body, github_headers("push", body, secret)).status_code == 200
    stages = {s["name"]: s for s in server.build(1, GH)["stages"]}
    assert stages["always"]["status"] == "pending"
    assert stages["release"]["status"] == "skipped"
    assert "branch 'main' does not match include [release/*]" in stages["release"]["error"]
    # A skipped pipeline is bypassed: its dependant has nothing left to wait for.
    assert stages["after-release"]["status"] == "pending"
    assert stages["after-release"]["depends_on"] == []
