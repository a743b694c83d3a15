"""GitHub, Gitea and GitLab webhooks: detection, signatures, and the mapping of every event
to Drone's build events, on the sample payloads in ``payloads/``."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.scm import (
    HookEvent,
    IgnoredEvent,
    WebhookError,
    detect_forge,
    parse_webhook,
    repo_hint,
    skip_ci,
    verify_signature,
)

PAYLOADS = Path(__file__).with_name("payloads")
SECRET = "s3cr3t-webhook-key"
TAG_OBJECT = "3c1a1b9f0d7e6a5c4b3a29180716f5e4d3c2b1a0"
HEAD = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"
BEFORE = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
PR_BASE = "c0ffee5a2b1f0e9d8c7b6a5f4e3d2c1b0a998877"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return data


def raw(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(event: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body),
        "Content-Type": "application/json",
    }


def gitea_headers(event: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    # what Gitea sends: its own headers, the Gogs ones, and GitHub's for compatibility
    signature = hex_hmac(secret, body)
    return {
        "X-Gitea-Event": event,
        "X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "X-Gitea-Signature": signature,
        "X-Gogs-Event": event,
        "X-Gogs-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "X-Gogs-Signature": signature,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        "X-Hub-Signature-256": "sha256=" + signature,
    }


def gitlab_headers(event: str, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        "X-Gitlab-Token": secret,
    }


def github(event: str, body: bytes) -> HookEvent:
    headers = github_headers(event, body)
    verify_signature("github", headers, body, SECRET)
    return parse_webhook("github", headers, body)


def gitea(event: str, body: bytes) -> HookEvent:
    headers = gitea_headers(event, body)
    verify_signature("gitea", headers, body, SECRET)
    return parse_webhook("gitea", headers, body)


def gitlab(event: str, body: bytes) -> HookEvent:
    headers = gitlab_headers(event)
    verify_signature("gitlab", headers, body, SECRET)
    return parse_webhook("gitlab", headers, body)


# -- detect_forge ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "forge"),
    [
        ({"X-GitHub-Event": "push"}, "github"),
        ({"x-github-event": "push"}, "github"),
        ({"X-Gitlab-Event": "Push Hook"}, "gitlab"),
        ({"X-GITLAB-EVENT": "Push Hook"}, "gitlab"),
        ({"X-Gogs-Event": "push"}, "gitea"),
        ({"X-Forgejo-Event": "push", "X-Gitea-Event": "push", "X-GitHub-Event": "push"}, "gitea"),
        (gitea_headers("push", b"{}"), "gitea"),  # Gitea also sends X-GitHub-Event
        ({"Content-Type": "application/json"}, None),
        ({"X-GitHub-Event": ""}, None),
        ({}, None),
    ],
)
def test_detect_forge(headers: dict[str, str], forge: str | None) -> None:
    assert detect_forge(headers) == forge


# -- repo_hint ------------------------------------------------------------------------------
def test_repo_hint_reads_only_the_repository_name() -> None:
    assert repo_hint("github", raw("github_push.json")) == ("octo-org", "hello-world")
    assert repo_hint("github", raw("github_ping.json")) == ("octo-org", "hello-world")
    assert repo_hint("gitea", raw("gitea_pull_request_opened.json")) == ("infra", "deploy-tools")
    # a GitLab namespace may hold subgroups; the name is the last component
    assert repo_hint("gitlab", raw("gitlab_push.json")) == ("platform/tools", "hello-world")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"repository": "octo-org/hello-world"}',
        b'{"repository": {"full_name": "no-slash"}}',
        b'{"repository": {"full_name": "a/b/c"}}',
        b'{"repository": {"full_name": "/b"}}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_repo_hint_never_raises(body: bytes) -> None:
    assert repo_hint("github", body) is None
    assert repo_hint("gitlab", body) is None


def test_unknown_forge_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="unknown webhook forge"):
        repo_hint("bitbucket", b"{}")
    with pytest.raises(ValueError, match="unknown webhook forge"):
        verify_signature("local", {}, b"{}", SECRET)


# -- verify_signature -----------------------------------------------------------------------
SIGNED: list[tuple[str, Callable[[bytes, str], dict[str, str]]]] = [
    ("github", lambda body, secret: github_headers("push", body, secret)),
    ("gitea", lambda body, secret: gitea_headers("push", body, secret)),
    ("gitlab", lambda body, secret: gitlab_headers("Push Hook", secret)),
]


@pytest.mark.parametrize(("forge", "headers_for"), SIGNED)
def test_signature_valid(forge: str, headers_for: Callable[[bytes, str], dict[str, str]]) -> None:
    body = raw(f"{forge}_push.json")
    verify_signature(forge, headers_for(body, SECRET), body, SECRET)


@pytest.mark.parametrize(("forge", "headers_for"), SIGNED[:2])
def test_signature_tampered_body(
    forge: str, headers_for: Callable[[bytes, str], dict[str, str]]
) -> None:
    body = raw(f"{forge}_push.json")
    headers = headers_for(body, SECRET)
    tampered = body.replace(b"refs/heads/main", b"refs/heads/evil")
    with pytest.raises(WebhookError) as caught:
        verify_signature(forge, headers, tampered, SECRET)
    assert caught.value.status_code == 401
    assert "does not match" in caught.value.message


@pytest.mark.parametrize(("forge", "headers_for"), SIGNED)
def test_signature_wrong_secret(
    forge: str, headers_for: Callable[[bytes, str], dict[str, str]]
) -> None:
    body = raw(f"{forge}_push.json")
    with pytest.raises(WebhookError) as caught:
        verify_signature(forge, headers_for(body, "another-secret"), body, SECRET)
    assert caught.value.status_code == 401
    assert SECRET not in str(caught.value)
    assert "another-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("forge", "headers"),
    [
        ("github", {"X-GitHub-Event": "push"}),
        ("gitea", {"X-Gitea-Event": "push"}),
        ("gitlab", {"X-Gitlab-Event": "Push Hook"}),
    ],
)
def test_signature_missing_header(forge: str, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookError) as caught:
        verify_signature(forge, headers, b"{}", SECRET)
    assert caught.value.status_code == 401
    assert "no X-" in caught.value.message


@pytest.mark.parametrize(("forge", "headers_for"), SIGNED)
def test_empty_secret_refuses_everything(
    forge: str, headers_for: Callable[[bytes, str], dict[str, str]]
) -> None:
    # even a delivery "signed" with the empty secret: there is no accept-unsigned mode
    body = raw(f"{forge}_push.json")
    with pytest.raises(WebhookError) as caught:
        verify_signature(forge, headers_for(body, ""), body, "")
    assert caught.value.status_code == 401
    assert "no webhook secret" in caught.value.message


def test_github_signature_needs_the_sha256_form() -> None:
    body = raw("github_push.json")
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    for headers in (
        {"X-Hub-Signature": sha1},  # SHA-1 header alone is not accepted
        {"X-Hub-Signature-256": sha1},
        {"X-Hub-Signature-256": hex_hmac(SECRET, body)},  # no "sha256=" prefix
    ):
        with pytest.raises(WebhookError) as caught:
            verify_signature("github", headers, body, SECRET)
        assert caught.value.status_code == 401


def test_gitea_signature_alternative_headers_and_case() -> None:
    body = raw("gitea_push.json")
    signature = hex_hmac(SECRET, body)
    verify_signature("gitea", {"X-Gogs-Signature": signature}, body, SECRET)
    verify_signature("gitea", {"X-Forgejo-Signature": signature}, body, SECRET)
    verify_signature("gitea", {"x-gitea-signature": signature.upper()}, body, SECRET)
    with pytest.raises(WebhookError):
        verify_signature("gitea", {"X-Gitea-Signature": "zz" + signature[2:]}, body, SECRET)
    with pytest.raises(WebhookError):
        verify_signature("gitea", {"X-Gitea-Signature": "é" * 64}, body, SECRET)


def test_gitlab_token_must_match_exactly() -> None:
    body = raw("gitlab_push.json")
    for token in (SECRET + " ", SECRET[:-1], SECRET.upper()):
        with pytest.raises(WebhookError):
            verify_signature("gitlab", {"X-Gitlab-Token": token}, body, SECRET)


# -- GitHub ---------------------------------------------------------------------------------
def test_github_push_branch() -> None:
    event = github("push", raw("github_push.json"))
    assert event == HookEvent(
        forge="github",
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        event="push",
        action="",
        repo_owner="octo-org",
        repo_name="hello-world",
        repo_forge_id="186853002",
        clone_url="https://github.com/octo-org/hello-world.git",
        repo_link="https://github.com/octo-org/hello-world",
        ref="refs/heads/main",
        before=BEFORE,
        after=HEAD,
        branch="main",
        source_branch="main",
        source_repo="",
        message="Add a pipeline\n\nRuns the unit tests on every push.",
        title="",
        author_login="octocat",
        author_name="Mona Lisa Octocat",
        author_email="mona@example.com",
        author_avatar="https://avatars.githubusercontent.com/u/583231?v=4",
        sender="octocat",
        pull_request=0,
        fork=False,
        tag="",
        link="https://github.com/octo-org/hello-world/compare/6113728f27ae...9ef2ec2b8e8d",
        deleted=False,
    )
    assert event.slug == "octo-org/hello-world"


def test_github_push_of_an_annotated_tag_builds_its_commit() -> None:
    event = github("push", raw("github_push_tag.json"))
    assert event.event == "tag"
    assert event.tag == "v1.2.0"
    assert event.ref == "refs/tags/v1.2.0"
    assert event.branch == ""  # Drone: tags have no branch
    assert event.source_branch == ""
    assert event.after == HEAD  # head_commit.id, not the tag object in "after"
    assert event.message.startswith("Add a pipeline")


def test_github_tag_push_without_head_commit_uses_after() -> None:
    data = load("github_push_tag.json")
    data["head_commit"] = None
    data["after"] = HEAD
    event = github("push", encode(data))
    assert event.after == HEAD
    assert event.message == ""


def test_github_push_deleting_a_branch_is_ignored() -> None:
    with pytest.raises(IgnoredEvent, match="deleted refs/heads/feature/old"):
        github("push", raw("github_push_delete.json"))


def test_github_push_to_another_ref_is_ignored() -> None:
    data = load("github_push.json")
    data["ref"] = "refs/notes/commits"
    with pytest.raises(IgnoredEvent, match="only branches and tags"):
        github("push", encode(data))


@pytest.mark.parametrize(
    ("event_name", "payload", "reason"),
    [
        ("ping", "github_ping.json", "ping"),
        ("create", "github_create_tag.json", "built from the push event"),
        ("delete", "github_create_tag.json", "built from the push event"),
        ("issues", "github_ping.json", "'issues' does not start builds"),
        ("pull_request_review", "github_pull_request_opened.json", "does not start builds"),
    ],
)
def test_github_events_that_start_no_build(event_name: str, payload: str, reason: str) -> None:
    with pytest.raises(IgnoredEvent) as caught:
        github(event_name, raw(payload))
    assert reason in caught.value.reason


def test_github_pull_request_opened() -> None:
    event = github("pull_request", raw("github_pull_request_opened.json"))
    assert event.event == "pull_request"
    assert event.action == "opened"
    assert event.pull_request == 7
    assert event.ref == "refs/pull/7/head"
    assert event.after == PR_HEAD
    assert event.before == PR_BASE
    assert event.branch == "main"  # the base branch: what Drone's branch conditions match
    assert event.source_branch == "feature/greeting"
    assert event.source_repo == "octo-org/hello-world"
    assert event.fork is False
    assert event.title == "Add the greeting service"
    assert event.message == event.title
    assert event.author_login == "octocat"
    assert event.author_avatar == "https://avatars.githubusercontent.com/u/583231?v=4"
    assert event.sender == "octocat"
    assert event.link == "https://github.com/octo-org/hello-world/pull/7"
    assert (event.repo_owner, event.repo_name, event.repo_forge_id) == (
        "octo-org",
        "hello-world",
        "186853002",
    )


def test_github_pull_request_synchronize_from_a_fork() -> None:
    event = github("pull_request", raw("github_pull_request_synchronize_fork.json"))
    assert event.action == "synchronized"  # Drone's spelling
    assert event.fork is True
    assert event.source_repo == "forker/hello-world"
    assert event.source_branch == "patch-1"
    assert event.pull_request == 8
    assert event.author_login == "forker"
    # the event belongs to the base repository, and is cloned from it (refs/pull/8/head)
    assert event.slug == "octo-org/hello-world"
    assert event.clone_url == "https://github.com/octo-org/hello-world.git"


@pytest.mark.parametrize(("action", "expected"), [("reopened", "reopened"), ("closed", "closed")])
def test_github_pull_request_other_building_actions(action: str, expected: str) -> None:
    data = load("github_pull_request_opened.json")
    data["action"] = action
    assert github("pull_request", encode(data)).action == expected


@pytest.mark.parametrize(
    "action",
    ["labeled", "unlabeled", "edited", "assigned", "review_requested", "ready_for_review"],
)
def test_github_pull_request_actions_that_start_no_build(action: str) -> None:
    data = load("github_pull_request_labeled.json")
    data["action"] = action
    with pytest.raises(IgnoredEvent, match=f"pull request {action}"):
        github("pull_request", encode(data))


def test_github_pull_request_from_a_deleted_fork_counts_as_a_fork() -> None:
    data = load("github_pull_request_synchronize_fork.json")
    data["pull_request"]["head"]["repo"] = None
    event = github("pull_request", encode(data))
    assert event.fork is True
    assert event.source_repo == ""


def test_github_fork_detection_without_ids_compares_names() -> None:
    data = load("github_pull_request_opened.json")
    del data["pull_request"]["head"]["repo"]["id"]
    assert github("pull_request", encode(data)).fork is False
    data["pull_request"]["head"]["repo"]["full_name"] = "someone/hello-world"
    assert github("pull_request", encode(data)).fork is True


# -- Gitea ----------------------------------------------------------------------------------
def test_gitea_push_branch() -> None:
    event = gitea("push", raw("gitea_push.json"))
    assert event.forge == "gitea"
    assert event.delivery_id == "f6266f16-1bf3-46a5-9ea4-602e06ead473"
    assert (event.event, event.branch, event.source_branch) == ("push", "main", "main")
    assert (event.repo_owner, event.repo_name, event.repo_forge_id) == (
        "infra",
        "deploy-tools",
        "42",
    )
    assert event.clone_url == "https://gitea.example.com/infra/deploy-tools.git"
    assert event.repo_link == "https://gitea.example.com/infra/deploy-tools"
    assert (event.before, event.after) == (BEFORE, HEAD)
    assert event.message == "Fix the deploy step\n"
    assert (event.author_login, event.author_name, event.author_email) == (
        "gitea",
        "Gitea Admin",
        "gitea@example.com",
    )
    assert event.author_avatar.endswith("/avatars/a7fcb8f4e4b0d4f1c0e0c8b0f0e0d0c0")
    assert event.sender == "gitea"
    assert event.link.endswith(f"/compare/{BEFORE}...{HEAD}")


def test_gitea_push_without_head_commit_reads_the_newest_commit() -> None:
    # Gitea before 1.17 sent no head_commit; commits are listed newest first
    data = load("gitea_push.json")
    del data["head_commit"]
    assert gitea("push", encode(data)).message == "Fix the deploy step\n"
    data["commits"] = []
    event = gitea("push", encode(data))
    assert (event.message, event.author_name) == ("", "")


def test_gitea_push_of_a_tag() -> None:
    event = gitea("push", raw("gitea_push_tag.json"))
    assert (event.event, event.tag, event.branch) == ("tag", "v0.3.0", "")
    assert event.after == HEAD


def test_gitea_push_deleting_a_tag_is_ignored() -> None:
    data = load("gitea_push_tag.json")
    data["before"], data["after"], data["head_commit"] = HEAD, "0" * 40, None
    with pytest.raises(IgnoredEvent, match=r"deleted refs/tags/v0\.3\.0"):
        gitea("push", encode(data))


@pytest.mark.parametrize("event_name", ["create", "delete"])
def test_gitea_create_and_delete_are_ignored(event_name: str) -> None:
    with pytest.raises(IgnoredEvent, match="built from the push event"):
        gitea(event_name, raw("gitea_create.json"))


def test_gitea_pull_request_opened() -> None:
    event = gitea("pull_request", raw("gitea_pull_request_opened.json"))
    assert (event.event, event.action, event.pull_request) == ("pull_request", "opened", 12)
    assert event.ref == "refs/pull/12/head"
    assert (event.before, event.after) == (PR_BASE, PR_HEAD)
    assert (event.branch, event.source_branch) == ("main", "staging")
    assert (event.source_repo, event.fork) == ("infra/deploy-tools", False)
    assert event.title == event.message == "Deploy to the staging cluster"
    assert (event.author_login, event.author_name, event.author_email) == (
        "gitea",
        "Gitea Admin",
        "gitea@example.com",
    )
    assert event.link == "https://gitea.example.com/infra/deploy-tools/pulls/12"


def test_gitea_pull_request_synchronized_from_a_fork() -> None:
    event = gitea("pull_request", raw("gitea_pull_request_synchronized_fork.json"))
    assert (event.action, event.fork, event.source_repo) == (
        "synchronized",
        True,
        "contrib/deploy-tools",
    )
    assert event.sender == "contrib"


@pytest.mark.parametrize(
    ("action", "expected"),
    [("reopened", "reopened"), ("closed", "closed"), ("synchronize", "synchronized")],
)
def test_gitea_pull_request_other_building_actions(action: str, expected: str) -> None:
    data = load("gitea_pull_request_opened.json")
    data["action"] = action
    assert gitea("pull_request", encode(data)).action == expected


@pytest.mark.parametrize(
    "action", ["edited", "label_updated", "assigned", "reviewed", "milestoned"]
)
def test_gitea_pull_request_actions_that_start_no_build(action: str) -> None:
    data = load("gitea_pull_request_opened.json")
    data["action"] = action
    with pytest.raises(IgnoredEvent):
        gitea("pull_request", encode(data))


def test_gitea_fork_detection_falls_back_to_the_repositories() -> None:
    data = load("gitea_pull_request_synchronized_fork.json")
    for side in ("head", "base"):
        del data["pull_request"][side]["repo_id"]
    assert gitea("pull_request", encode(data)).fork is True
    data = load("gitea_pull_request_opened.json")
    for side in ("head", "base"):
        del data["pull_request"][side]["repo_id"]
    assert gitea("pull_request", encode(data)).fork is False


def test_gitea_other_events_are_ignored() -> None:
    with pytest.raises(IgnoredEvent, match="'issues' does not start builds"):
        gitea("issues", raw("gitea_create.json"))


# -- GitLab ---------------------------------------------------------------------------------
def test_gitlab_push_branch() -> None:
    event = gitlab("Push Hook", raw("gitlab_push.json"))
    assert event.forge == "gitlab"
    assert event.delivery_id == "13792a34-cac6-4fda-95a8-c58e00a3954e"
    assert (event.event, event.branch, event.ref) == ("push", "main", "refs/heads/main")
    assert (event.repo_owner, event.repo_name, event.repo_forge_id) == (
        "platform/tools",
        "hello-world",
        "4861503",
    )
    assert event.clone_url == "https://gitlab.example.com/platform/tools/hello-world.git"
    assert event.repo_link == "https://gitlab.example.com/platform/tools/hello-world"
    assert (event.before, event.after) == (BEFORE, HEAD)
    # the head commit (matched by checkout_sha) gives message and author; login is the pusher's
    assert event.message == "fixed readme\n"
    assert (event.author_name, event.author_email) == ("GitLab dev user", "gitlabdev@example.com")
    assert (event.author_login, event.sender) == ("jsmith", "jsmith")
    assert event.author_avatar.startswith("https://s.gravatar.com/avatar/")
    assert event.link.endswith(f"/-/commit/{HEAD}")


def test_gitlab_push_without_listed_commits_falls_back_to_the_pusher() -> None:
    data = load("gitlab_push.json")
    data["commits"] = []
    event = gitlab("Push Hook", encode(data))
    assert (event.message, event.link) == ("", "")
    assert (event.author_name, event.author_email) == ("John Smith", "john@example.com")


def test_gitlab_tag_push_builds_checkout_sha() -> None:
    event = gitlab("Tag Push Hook", raw("gitlab_tag_push.json"))
    assert (event.event, event.tag, event.branch) == ("tag", "v1.0.0", "")
    assert event.after == HEAD  # checkout_sha: "after" names the annotated tag object
    assert event.message == "Release 1.0.0"  # no commits listed: the tag's own message


def test_gitlab_deletions_are_ignored() -> None:
    with pytest.raises(IgnoredEvent, match="deleted refs/heads/old"):
        gitlab("Push Hook", raw("gitlab_push_delete.json"))
    data = load("gitlab_tag_push.json")
    data["after"] = "0" * 40
    with pytest.raises(IgnoredEvent, match=r"deleted refs/tags/v1\.0\.0"):
        gitlab("Tag Push Hook", encode(data))


def test_gitlab_hook_type_must_match_the_ref() -> None:
    with pytest.raises(WebhookError) as caught:
        gitlab("Tag Push Hook", raw("gitlab_push.json"))
    assert caught.value.status_code == 400


def test_gitlab_merge_request_open() -> None:
    event = gitlab("Merge Request Hook", raw("gitlab_merge_request_open.json"))
    assert (event.event, event.action, event.pull_request) == ("pull_request", "opened", 3)
    assert event.ref == "refs/merge-requests/3/head"
    assert event.after == PR_HEAD
    assert (event.branch, event.source_branch) == ("main", "ms-viewport")
    assert (event.source_repo, event.fork) == ("platform/tools/hello-world", False)
    assert event.title == event.message == "MS-Viewport"
    assert (event.author_login, event.author_name, event.author_email) == (
        "root",
        "Administrator",
        "",
    )
    assert event.sender == "root"
    assert event.link == "https://gitlab.example.com/platform/tools/hello-world/-/merge_requests/3"


def test_gitlab_merge_request_update_with_new_commits_from_a_fork() -> None:
    event = gitlab("Merge Request Hook", raw("gitlab_merge_request_update_fork.json"))
    assert (event.action, event.fork, event.source_repo) == (
        "synchronized",
        True,
        "contrib/hello-world",
    )
    assert event.pull_request == 4


def test_gitlab_merge_request_update_without_new_commits_is_ignored() -> None:
    data = load("gitlab_merge_request_update_fork.json")
    del data["object_attributes"]["oldrev"]
    with pytest.raises(IgnoredEvent, match="without new commits"):
        gitlab("Merge Request Hook", encode(data))


@pytest.mark.parametrize(
    ("action", "expected"),
    [("reopen", "reopened"), ("close", "closed"), ("merge", "closed"), (None, "opened")],
)
def test_gitlab_merge_request_other_actions(action: str | None, expected: str) -> None:
    data = load("gitlab_merge_request_open.json")
    if action is None:
        del data["object_attributes"]["action"]  # very old GitLab: go-scm reads it as open
    else:
        data["object_attributes"]["action"] = action
    assert gitlab("Merge Request Hook", encode(data)).action == expected


@pytest.mark.parametrize("action", ["approved", "unapproved", "approval", "unapproval"])
def test_gitlab_merge_request_actions_that_start_no_build(action: str) -> None:
    data = load("gitlab_merge_request_open.json")
    data["object_attributes"]["action"] = action
    with pytest.raises(IgnoredEvent):
        gitlab("Merge Request Hook", encode(data))


def test_gitlab_merge_request_with_unknown_source_project_is_a_fork() -> None:
    data = load("gitlab_merge_request_open.json")
    del data["object_attributes"]["source_project_id"]
    data["object_attributes"]["source"] = None
    event = gitlab("Merge Request Hook", encode(data))
    assert (event.fork, event.source_repo) == (True, "")


@pytest.mark.parametrize("event_name", ["Note Hook", "Issue Hook", "Pipeline Hook", "System Hook"])
def test_gitlab_other_events_are_ignored(event_name: str) -> None:
    with pytest.raises(IgnoredEvent, match="does not start builds"):
        gitlab(event_name, raw("gitlab_note.json"))


# -- malformed deliveries -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[]", "JSON array, expected an object"),
        (b'"push"', "JSON string, expected an object"),
        (b"null", "JSON null, expected an object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
@pytest.mark.parametrize("forge", ["github", "gitea", "gitlab"])
def test_malformed_json_is_400(forge: str, body: bytes, problem: str) -> None:
    event_name = "Push Hook" if forge == "gitlab" else "push"
    header = {"github": "X-GitHub-Event", "gitea": "X-Gitea-Event", "gitlab": "X-Gitlab-Event"}
    with pytest.raises(WebhookError) as caught:
        parse_webhook(forge, {header[forge]: event_name}, body)
    assert caught.value.status_code == 400
    assert problem in caught.value.message


def test_oversized_body_is_413() -> None:
    body = b'{"pad": "' + b"x" * 10_000_001 + b'"}'
    with pytest.raises(WebhookError) as caught:
        parse_webhook("github", {"X-GitHub-Event": "push"}, body)
    assert caught.value.status_code == 413


def test_missing_event_header_is_400() -> None:
    with pytest.raises(WebhookError) as caught:
        parse_webhook("github", {"X-GitHub-Delivery": "x"}, raw("github_push.json"))
    assert caught.value.status_code == 400
    assert "no event header" in caught.value.message


def _without(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    del node[last]
    return data


@pytest.mark.parametrize(
    ("forge", "event_name", "payload", "field"),
    [
        ("github", "push", "github_push.json", "ref"),
        ("github", "push", "github_push.json", "repository"),
        ("github", "pull_request", "github_pull_request_opened.json", "pull_request.head.sha"),
        ("github", "pull_request", "github_pull_request_opened.json", "pull_request.base.ref"),
        ("github", "pull_request", "github_pull_request_opened.json", "action"),
        ("gitea", "push", "gitea_push.json", "ref"),
        ("gitea", "pull_request", "gitea_pull_request_opened.json", "pull_request.head"),
        ("gitlab", "Push Hook", "gitlab_push.json", "project.path_with_namespace"),
        ("gitlab", "Merge Request Hook", "gitlab_merge_request_open.json", "object_attributes.iid"),
        (
            "gitlab",
            "Merge Request Hook",
            "gitlab_merge_request_open.json",
            "object_attributes.last_commit",
        ),
    ],
)
def test_missing_field_is_400_naming_it(
    forge: str, event_name: str, payload: str, field: str
) -> None:
    body = encode(_without(load(payload), field))
    header = {"github": "X-GitHub-Event", "gitea": "X-Gitea-Event", "gitlab": "X-Gitlab-Event"}
    with pytest.raises(WebhookError) as caught:
        parse_webhook(forge, {header[forge]: event_name}, body)
    assert caught.value.status_code == 400
    assert f"{field} is missing" in caught.value.message


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: d.update(after="HEAD~1"), "after is not a full commit id"),
        (
            lambda d: (d.update(ref="refs/tags/v1"), d["head_commit"].update(id="12345")),
            "after is not a full commit id",
        ),
        (lambda d: d.update(ref="refs/heads/a..b"), "not a valid git ref"),
        (lambda d: d.update(ref="refs/heads/x y"), "not a valid git ref"),
        (lambda d: d.update(ref="refs/heads/-\x00"), "not a valid git ref"),
        (lambda d: d.update(ref=["refs/heads/main"]), "ref is an array, expected a string"),
        (lambda d: d["repository"].update(id=True), "repository.id is a boolean"),
        (lambda d: d.update(head_commit="abc"), "head_commit is a string, expected an object"),
    ],
)
def test_wrongly_shaped_values_are_400(
    mutate: Callable[[dict[str, Any]], None], problem: str
) -> None:
    data = load("github_push.json")
    mutate(data)
    with pytest.raises(WebhookError) as caught:
        parse_webhook("github", {"X-GitHub-Event": "push"}, encode(data))
    assert caught.value.status_code == 400
    assert problem in caught.value.message


def test_pull_request_branch_names_are_checked() -> None:
    data = load("github_pull_request_opened.json")
    data["pull_request"]["head"]["ref"] = "feature/../../etc"
    with pytest.raises(WebhookError, match=r"pull_request\.head\.ref is not a valid git ref"):
        parse_webhook("github", {"X-GitHub-Event": "pull_request"}, encode(data))


def test_delivery_id_falls_back_to_the_body_digest() -> None:
    body = raw("github_push.json")
    event = parse_webhook("github", {"X-GitHub-Event": "push"}, body)
    assert event.delivery_id == hashlib.sha256(body).hexdigest()
    event = parse_webhook(
        "gitlab", {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "k-1"}, raw("gitlab_push.json")
    )
    assert event.delivery_id == "k-1"


def test_hook_event_is_immutable() -> None:
    event = github("push", raw("github_push.json"))
    with pytest.raises(AttributeError):
        event.after = "0" * 40  # type: ignore[misc]


# -- skip_ci --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "skip"),
    [
        ("fix typo [ci skip]", True),
        ("[SKIP CI] docs only", True),
        ("Docs [Ci Skip]\n\nbody", True),
        ("first line\n\n[skip ci]", True),
        ("***NO_CI*** generated", True),
        ("ci skip", False),
        ("[skip-ci]", False),
        ("[ci  skip]", False),
        ("", False),
    ],
)
def test_skip_ci(message: str, skip: bool) -> None:
    assert skip_ci(message) is skip
