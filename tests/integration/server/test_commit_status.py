"""Commit statuses through a real server: a webhook-started build reports ``pending`` and then
its result to the forge it came from (right commit, context, build page), held builds say they
wait for an approval, a forge that fails is retried and the latest state wins, an unreachable
forge neither blocks nor fails the build, and no token reaches the log."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.integration.server._support import (
    PAYLOADS,
    PIPELINE,
    FakeForge,
    FakeRunner,
    Harness,
    gitea_headers,
    github_headers,
    payload,
    wait_for,
)
from tests.support.commit_forge import TOKEN, CommitForge

from bastion.rpc.messages import StepState

PUSH_SHA = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
GH = "octo-org/hello-world"
GITEA = "infra/deploy-tools"
PAGE = "https://ci.example.com"


@pytest.fixture
def commit_forge() -> Iterator[CommitForge]:
    forge = CommitForge()
    try:
        yield forge
    finally:
        forge.close()


@pytest.fixture
def reporting(
    make_server: Callable[..., Harness], commit_forge: CommitForge, forge: FakeForge
) -> Harness:
    """A server whose GitHub, Gitea and GitLab APIs are the fake commit forge."""
    server = make_server(
        github_api_url=f"{commit_forge.url}/api/v3",
        github_token=TOKEN,
        gitea_url=commit_forge.url,
        gitea_token=TOKEN,
        gitlab_url=commit_forge.url,
        gitlab_token=TOKEN,
        server_host="ci.example.com",
        server_proto="https",
    )
    for owner, name in (("octo-org", "hello-world"), ("infra", "deploy-tools")):
        for sha in (PUSH_SHA, PR_HEAD):
            forge.files[(owner, name, sha, ".drone.yml")] = PIPELINE
    return server


def github_push(server: Harness) -> dict[str, Any]:
    _repo, secret = server.forge_repo("github", "octo-org", "hello-world", forge_id="186853002")
    body = (PAYLOADS / "github_push.json").read_bytes()
    response = server.client().post(
        "/hook", params={"repo": GH}, content=body, headers=github_headers("push", body, secret)
    )
    assert response.status_code == 200, response.text
    return dict(server.builds(GH)[0])


def run_to(server: Harness, state: StepState) -> None:
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.run(lease, state)


def settled(server: Harness) -> None:
    assert server.ctx.statuses.idle(30), "the commit status queue did not drain"


def test_a_push_build_reports_pending_then_success(
    reporting: Harness, commit_forge: CommitForge
) -> None:
    build = github_push(reporting)
    settled(reporting)
    first = commit_forge.posted()[0]
    assert (first.forge, first.owner, first.name, first.sha) == (
        "github",
        "octo-org",
        "hello-world",
        PUSH_SHA,
    )
    assert first.body == {
        "state": "pending",
        "context": "continuous-integration/bastion/push",
        "description": "the build is pending",
        "target_url": f"{PAGE}/octo-org/hello-world/{build['number']}",
    }
    assert first.authorization == f"Bearer {TOKEN}"

    run_to(reporting, StepState.SUCCESS)
    wait_for(lambda: reporting.build(1, GH)["status"] == "success")
    settled(reporting)
    states = commit_forge.states(PUSH_SHA)
    assert states[-1] == "success"
    assert set(states[:-1]) == {"pending"}
    assert {p.body["context"] for p in commit_forge.posted()} == {
        "continuous-integration/bastion/push"
    }


def test_a_failed_build_reports_failure_on_gitea(
    reporting: Harness, commit_forge: CommitForge
) -> None:
    _repo, secret = reporting.forge_repo("gitea", "infra", "deploy-tools", forge_id="42")
    body = payload("gitea_push.json")
    response = reporting.client().post(
        "/hook", params={"repo": GITEA}, content=body, headers=gitea_headers("push", body, secret)
    )
    assert response.status_code == 200, response.text
    run_to(reporting, StepState.FAILURE)
    wait_for(lambda: reporting.build(1, GITEA)["status"] == "failure")
    settled(reporting)
    posted = commit_forge.posted()
    assert {(p.forge, p.owner, p.name, p.sha) for p in posted} == {
        ("gitea", "infra", "deploy-tools", PUSH_SHA)
    }
    assert posted[-1].body["state"] == "failure"
    assert posted[-1].body["description"] == "the build failed"
    assert posted[-1].authorization == f"token {TOKEN}"


def test_a_held_fork_pull_request_says_it_waits_for_an_approval(
    reporting: Harness, commit_forge: CommitForge
) -> None:
    _repo, secret = reporting.forge_repo("github", "octo-org", "hello-world", forge_id="186853002")
    data: dict[str, Any] = json.loads((PAYLOADS / "github_pull_request_opened.json").read_text())
    data["pull_request"]["head"]["sha"] = PR_HEAD
    data["pull_request"]["head"]["repo"]["full_name"] = "mallory/hello-world"
    data["pull_request"]["head"]["repo"]["id"] = 999_999
    data["pull_request"]["head"]["repo"]["owner"]["login"] = "mallory"
    body = json.dumps(data).encode()
    headers = github_headers("pull_request", body, secret)
    reporting.client().post("/hook", params={"repo": GH}, content=body, headers=headers)
    assert reporting.builds(GH)[0]["status"] == "blocked"
    settled(reporting)
    [posted] = commit_forge.posted()
    assert posted.sha == PR_HEAD
    assert posted.body["state"] == "pending"
    assert posted.body["context"] == "continuous-integration/bastion/pr"
    assert "approval" in posted.body["description"]

    reporting.admin.post(f"/api/repos/{GH}/builds/1/decline").raise_for_status()
    settled(reporting)
    assert commit_forge.states(PR_HEAD)[-1] == "failure"


def test_a_failing_forge_is_retried_and_the_latest_state_wins(
    reporting: Harness, commit_forge: CommitForge
) -> None:
    commit_forge.fail_next = 2  # the first calls (pending) get HTTP 500
    github_push(reporting)
    run_to(reporting, StepState.SUCCESS)
    wait_for(lambda: reporting.build(1, GH)["status"] == "success")
    settled(reporting)
    assert commit_forge.fail_next == 0
    states = commit_forge.states(PUSH_SHA)
    assert states, "nothing was reported after the forge recovered"
    assert states[-1] == "success"
    assert "pending" not in states[states.index("success") :]
    failed_calls = len(commit_forge.requests) - len(commit_forge.posted())
    assert failed_calls == 2


def test_an_unreachable_forge_neither_blocks_nor_fails_the_build(
    make_server: Callable[..., Harness],
    forge: FakeForge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    server = make_server(github_api_url=f"http://127.0.0.1:{port}/api/v3", github_token=TOKEN)
    forge.files[("octo-org", "hello-world", PUSH_SHA, ".drone.yml")] = PIPELINE
    caplog.set_level(logging.DEBUG, logger="bastion")
    build = github_push(server)
    assert build["status"] == "pending"
    run_to(server, StepState.SUCCESS)
    wait_for(lambda: server.build(1, GH)["status"] == "success")
    wait_for(lambda: "not reported" in caplog.text)
    assert TOKEN not in caplog.text


def test_local_forge_builds_report_nothing(reporting: Harness, commit_forge: CommitForge) -> None:
    checkout = reporting.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    wait_for(reporting.builds)
    run_to(reporting, StepState.SUCCESS)
    wait_for(lambda: reporting.build(1)["status"] == "success")
    settled(reporting)
    assert commit_forge.requests == []


def test_a_cron_job_of_a_forge_repository_builds_the_branch_head_the_api_gives(
    reporting: Harness, commit_forge: CommitForge
) -> None:
    reporting.forge_repo("github", "octo-org", "hello-world", forge_id="186853002")
    commit_forge.branches[("octo-org", "hello-world", "release/2.0")] = PUSH_SHA
    cron = f"/api/repos/{GH}/cron"
    reporting.admin.post(
        cron, json={"name": "nightly", "expr": "@daily", "branch": "release/2.0"}
    ).raise_for_status()
    response = reporting.admin.post(f"{cron}/nightly")
    assert response.status_code == 200, response.text
    build = response.json()
    assert (build["event"], build["after"], build["target"]) == ("cron", PUSH_SHA, "release/2.0")
    assert build["message"] == "nightly fix"
    settled(reporting)
    [posted] = commit_forge.posted()
    assert posted.body["context"] == "continuous-integration/bastion/cron"
    assert posted.sha == PUSH_SHA

    # The forge does not know the branch any more: a 400, and the job says why.
    reporting.admin.patch(f"{cron}/nightly", json={"branch": "gone"}).raise_for_status()
    missing = reporting.admin.post(f"{cron}/nightly")
    assert missing.status_code == 400
    assert "no branch 'gone'" in reporting.admin.get(f"{cron}/nightly").json()["error"]


def test_a_cron_job_whose_forge_is_down_records_the_error_and_the_loop_goes_on(
    make_server: Callable[..., Harness], forge: FakeForge
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    server = make_server(
        github_api_url=f"http://127.0.0.1:{port}/api/v3", github_token=TOKEN, cron_interval=0.05
    )
    server.forge_repo("github", "octo-org", "hello-world", forge_id="186853002")
    checkout = server.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    for slug in (GH, "acme/web"):
        server.admin.post(f"/api/repos/{slug}/cron", json={"name": "nightly", "expr": "@hourly"})
    store = server.ctx.store
    for owner, name in (("octo-org", "hello-world"), ("acme", "web")):
        repo = store.get_repo(owner, name)
        assert repo is not None
        job = store.get_cron(repo.id, "nightly")
        assert job is not None
        store.update_cron(job.id, next=1)  # long overdue
    wait_for(lambda: server.admin.get(f"/api/repos/{GH}/cron/nightly").json()["error"])
    error = server.admin.get(f"/api/repos/{GH}/cron/nightly").json()["error"]
    assert "cannot read branch 'main'" in error
    assert "unreachable" in error
    assert TOKEN not in error
    # the other repository's job fired in the same loop
    wait_for(lambda: [b for b in server.builds() if b["event"] == "cron"])
    assert server.builds(GH) == []


def test_a_cancelled_build_reports_error(reporting: Harness, commit_forge: CommitForge) -> None:
    github_push(reporting)
    reporting.admin.delete(f"/api/repos/{GH}/builds/1").raise_for_status()
    settled(reporting)
    last = commit_forge.posted()[-1]
    assert (last.body["state"], last.body["description"]) == ("error", "the build was cancelled")


def test_gitlab_a_cron_build_reports_in_gitlabs_terms(
    reporting: Harness, commit_forge: CommitForge, forge: FakeForge
) -> None:
    reporting.forge_repo("gitlab", "acme", "platform-api", forge_id="77")
    forge.files[("acme", "platform-api", PR_HEAD, ".drone.yml")] = PIPELINE
    commit_forge.branches[("acme", "platform-api", "main")] = PR_HEAD
    cron = "/api/repos/acme/platform-api/cron"
    reporting.admin.post(cron, json={"name": "nightly", "expr": "@daily"}).raise_for_status()
    built = reporting.admin.post(f"{cron}/nightly").json()
    assert built["after"] == PR_HEAD
    run_to(reporting, StepState.FAILURE)
    wait_for(lambda: reporting.build(1, "acme/platform-api")["status"] == "failure")
    settled(reporting)
    posted = commit_forge.posted()
    # the project is addressed as one %2F-encoded path segment, as GitLab requires
    assert {(p.forge, p.owner, p.name, p.sha) for p in posted} == {
        ("gitlab", "acme", "platform-api", PR_HEAD)
    }
    assert posted[0].body["state"] == "pending"
    assert posted[-1].body["state"] == "failed"
    assert posted[-1].body["name"] == "continuous-integration/bastion/cron"
    assert posted[-1].authorization == f"Bearer {TOKEN}"
