"""The forge commit API clients (branch heads, commit statuses) against a fake forge on
127.0.0.1: the URL and body each forge expects, its token header, and failures as
``ForgeError`` without the token in the message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.commit_forge import TOKEN, CommitForge

from bastion.scm.commit_api import (
    CommitStatus,
    GiteaCommits,
    GitHubCommits,
    GitLabCommits,
)
from bastion.scm.errors import ForgeError

SHA = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"
STATUS = CommitStatus(
    state="failure",
    context="continuous-integration/bastion/push",
    description="the build failed",
    target_url="https://ci.example.com/acme/web/7",
)


@pytest.fixture
def forge() -> Iterator[CommitForge]:
    forge = CommitForge()
    try:
        yield forge
    finally:
        forge.close()


def clients(
    forge: CommitForge, token: str = TOKEN
) -> dict[str, GitHubCommits | GiteaCommits | GitLabCommits]:
    return {
        "github": GitHubCommits(f"{forge.url}/api/v3", token),
        "gitea": GiteaCommits(forge.url, token),
        "gitlab": GitLabCommits(forge.url, token),
    }


@pytest.mark.parametrize("kind", ["github", "gitea", "gitlab"])
def test_a_status_reaches_the_forge_with_its_token(forge: CommitForge, kind: str) -> None:
    with clients(forge)[kind] as client:
        client.post_status("acme", "web", SHA, STATUS)
    [posted] = forge.posted()
    assert (posted.forge, posted.owner, posted.name, posted.sha) == (kind, "acme", "web", SHA)
    assert posted.body["target_url"] == STATUS.target_url
    assert posted.body["description"] == "the build failed"
    if kind == "gitlab":
        assert posted.body["state"] == "failed"
        assert posted.body["name"] == STATUS.context
        assert posted.authorization == f"Bearer {TOKEN}"
    else:
        assert posted.body["state"] == "failure"
        assert posted.body["context"] == STATUS.context
        expected = f"Bearer {TOKEN}" if kind == "github" else f"token {TOKEN}"
        assert posted.authorization == expected


@pytest.mark.parametrize("kind", ["github", "gitea", "gitlab"])
def test_branch_heads_and_missing_branches(forge: CommitForge, kind: str) -> None:
    forge.branches[("acme", "web", "release/2.0")] = SHA
    with clients(forge)[kind] as client:
        head = client.branch_head("acme", "web", "release/2.0")
        assert head is not None
        assert head.sha == SHA
        assert head.message == "nightly fix"
        assert (head.author_name, head.author_email) == ("Ada", "ada@example.com")
        assert client.branch_head("acme", "web", "nope") is None


@pytest.mark.parametrize("kind", ["github", "gitea", "gitlab"])
def test_a_refused_token_is_a_forge_error_without_the_token(forge: CommitForge, kind: str) -> None:
    wrong = "wrong-token-abcdef0123456789"
    with clients(forge, wrong)[kind] as client, pytest.raises(ForgeError) as caught:
        client.post_status("acme", "web", SHA, STATUS)
    assert "401" in str(caught.value)
    assert wrong not in str(caught.value)
    assert forge.posted() == []


def test_server_errors_and_unreachable_forges_are_forge_errors(forge: CommitForge) -> None:
    forge.fail_next = 1
    with clients(forge)["github"] as client, pytest.raises(ForgeError, match="HTTP 500"):
        client.post_status("acme", "web", SHA, STATUS)
    url = forge.url
    forge.close()
    with (
        GitHubCommits(url, TOKEN, timeout=2) as client,
        pytest.raises(ForgeError, match="unreachable"),
    ):
        client.post_status("acme", "web", SHA, STATUS)


@pytest.mark.parametrize(
    ("owner", "name", "branch", "sha"),
    [
        ("acme", "web", "../../admin", SHA),
        ("acme", "web", "-x", SHA),
        ("..", "web", "main", SHA),
        ("acme", "web\n", "main", SHA),
        ("acme", "web", "main", "HEAD"),
    ],
)
def test_malformed_names_never_reach_the_forge(
    forge: CommitForge, owner: str, name: str, branch: str, sha: str
) -> None:
    with clients(forge)["gitea"] as client:
        call = (
            (lambda: client.branch_head(owner, name, branch))
            if sha == SHA
            else (lambda: client.post_status(owner, name, sha, STATUS))
        )
        with pytest.raises(ValueError, match="invalid"):
            call()
    assert forge.requests == []


def test_status_fields_are_checked_and_long_descriptions_cut(forge: CommitForge) -> None:
    with pytest.raises(ValueError, match="state"):
        CommitStatus(state="running", context="c", description="", target_url="")
    with pytest.raises(ValueError, match="context"):
        CommitStatus(state="pending", context="", description="", target_url="")
    long = CommitStatus(state="pending", context="c", description="x " * 200, target_url="u")
    with clients(forge)["github"] as client:
        client.post_status("acme", "web", SHA, long)
    assert len(forge.posted()[0].body["description"]) == 140


def test_gitlabs_refusal_of_the_state_it_already_has_counts_as_done(forge: CommitForge) -> None:
    pending = CommitStatus(state="pending", context="c", description="pending", target_url="u")
    running = CommitStatus(state="pending", context="c", description="running", target_url="u")
    with clients(forge)["gitlab"] as client:
        client.post_status("acme", "web", SHA, pending)
        client.post_status("acme", "web", SHA, running)  # GitLab answers 400; not an error
        client.post_status("acme", "web", SHA, STATUS)
    assert [p.body["state"] for p in forge.posted()] == ["pending", "failed"]
    assert len(forge.requests) == 3
    forge.fail_next = 1  # other refusals stay errors
    with clients(forge)["gitlab"] as client, pytest.raises(ForgeError, match="HTTP 500"):
        client.post_status("acme", "web", SHA, pending)
