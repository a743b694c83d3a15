"""Forge API calls about commits beyond reading a file: a branch's head (cron builds) and
commit statuses (the build's state shown on the commit and the pull request).

``CommitAPI`` is what the server asks; ``GitHubCommits``, ``GiteaCommits`` and
``GitLabCommits`` extend the file-reading clients of ``forges`` (same base URLs, same token
headers, same mapping of failures to ``ForgeError``), so one client per forge serves both.

* Branch head: GitHub ``GET /repos/{o}/{n}/branches/{b}`` (``commit.sha``), Gitea ``GET
  /api/v1/repos/{o}/{n}/branches/{b}`` (``commit.id``), GitLab ``GET /api/v4/projects/
  {o%2Fn}/repository/branches/{b}`` (``commit.id``). ``None`` when the forge says 404.
* Status: GitHub ``POST /repos/{o}/{n}/statuses/{sha}`` and Gitea ``POST /api/v1/repos/{o}/
  {n}/statuses/{sha}`` with ``state`` (pending, success, failure, error), ``context``,
  ``description``, ``target_url``; GitLab ``POST /api/v4/projects/{o%2Fn}/statuses/{sha}`` with
  ``state`` (pending, running, success, failed, canceled) and the context as ``name``; its
  400 for a state the status is already in counts as done.

Tokens stay in headers; messages name the repository and the call, never a token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from bastion.scm._refs import is_hex_sha
from bastion.scm.errors import ForgeError
from bastion.scm.forges import GiteaClient, GitHubClient, GitLabClient

__all__ = [
    "STATES",
    "BranchHead",
    "CommitAPI",
    "CommitStatus",
    "GitHubCommits",
    "GitLabCommits",
    "GiteaCommits",
]

STATES = frozenset({"pending", "success", "failure", "error"})
_DESCRIPTION_MAX = 140  # GitHub refuses longer descriptions
_CONTEXT_MAX = 255
_ANSWER_LIMIT = 256 * 1024
_GITLAB_STATE = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}
_BAD_NAME = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


@dataclass(frozen=True)
class BranchHead:
    """The commit at the tip of a branch, with what the forge says about it."""

    sha: str
    message: str = ""
    author_name: str = ""
    author_email: str = ""


@dataclass(frozen=True)
class CommitStatus:
    """One status of a commit, in GitHub's terms (``state`` is one of ``STATES``)."""

    state: str
    context: str
    description: str
    target_url: str

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"commit status state {self.state!r} is not one of {sorted(STATES)}")
        if not self.context or len(self.context) > _CONTEXT_MAX:
            raise ValueError(f"commit status context must be 1 to {_CONTEXT_MAX} characters")


class CommitAPI(Protocol):
    def branch_head(self, owner: str, name: str, branch: str) -> BranchHead | None: ...

    def post_status(self, owner: str, name: str, sha: str, status: CommitStatus) -> None: ...

    def close(self) -> None: ...


def _check(owner: str, name: str) -> None:
    for label, value in (("owner", owner), ("name", name)):
        if not value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError(f"invalid repository {label} {value!r}")
        if any(part in ("", ".", "..") for part in value.split("/")):
            raise ValueError(f"invalid repository {label} {value!r}")


def _check_branch(branch: str) -> None:
    if (
        not branch
        or len(branch) > 255
        or _BAD_NAME.search(branch)
        or ".." in branch
        or branch.startswith(("/", "-", "."))
        or branch.endswith(("/", ".", ".lock"))
    ):
        raise ValueError(f"invalid branch name {branch[:100]!r}")


def _check_sha(sha: str) -> None:
    if not is_hex_sha(sha):
        raise ValueError(f"invalid commit id {sha[:80]!r}: expected 40 or 64 lower-case hex digits")


def _description(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _DESCRIPTION_MAX else line[: _DESCRIPTION_MAX - 1] + "…"


class _Calls:
    """The JSON calls shared by the three forges (mixed into their file clients)."""

    forge: str
    _client: httpx.Client

    def _raise_for_status(self, response: httpx.Response, what: str) -> None:
        raise NotImplementedError  # provided by the forge's file client

    def _get(
        self, url: str, *, params: dict[str, str], what: str, limit: int, accept: str
    ) -> bytes | None:
        raise NotImplementedError  # provided by the forge's file client

    def _get_json(self, url: str, what: str) -> dict[str, Any] | None:
        raw = self._get(url, params={}, what=what, limit=_ANSWER_LIMIT, accept="application/json")
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ForgeError(self.forge, f"answer for {what} is not JSON") from exc
        if not isinstance(document, dict):
            raise ForgeError(self.forge, f"answer for {what} is not a JSON object")
        return document

    def _post_json(self, url: str, body: dict[str, str], what: str) -> None:
        try:
            response = self._client.post(url, json=body, headers={"Accept": "application/json"})
        except httpx.TimeoutException as exc:
            raise ForgeError(self.forge, f"timed out sending {what}") from exc
        except httpx.TransportError as exc:
            raise ForgeError(
                self.forge, f"unreachable while sending {what} ({exc.__class__.__name__})"
            ) from exc
        if response.status_code == 404:
            raise ForgeError(self.forge, f"{what}: no such repository or commit (HTTP 404)")
        if self._unchanged(response):
            return
        self._raise_for_status(response, what)

    def _unchanged(self, response: httpx.Response) -> bool:
        """Whether a refusal means the forge already shows this state (GitLab only)."""
        return False


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _head(forge: str, commit: object, sha_key: str, what: str) -> BranchHead:
    if not isinstance(commit, dict):
        raise ForgeError(forge, f"answer for {what} has no commit")
    sha = commit.get(sha_key)
    if not isinstance(sha, str) or not is_hex_sha(sha):
        raise ForgeError(forge, f"answer for {what} has no valid commit id")
    return BranchHead(sha=sha)


class GitHubCommits(GitHubClient, _Calls):
    def branch_head(self, owner: str, name: str, branch: str) -> BranchHead | None:
        _check(owner, name)
        _check_branch(branch)
        what = f"branch {branch} of {owner}/{name}"
        url = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}/branches/{quote(branch)}"
        document = self._get_json(url, what)
        if document is None:
            return None
        commit = document.get("commit")
        head = _head(self.forge, commit, "sha", what)
        assert isinstance(commit, dict)
        detail = commit.get("commit")
        detail = detail if isinstance(detail, dict) else {}
        author = detail.get("author")
        author = author if isinstance(author, dict) else {}
        return BranchHead(
            sha=head.sha,
            message=_text(detail.get("message")),
            author_name=_text(author.get("name")),
            author_email=_text(author.get("email")),
        )

    def post_status(self, owner: str, name: str, sha: str, status: CommitStatus) -> None:
        _check(owner, name)
        _check_sha(sha)
        url = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{sha}"
        self._post_json(url, _github_body(status), f"status of {owner}/{name}@{sha[:12]}")


class GiteaCommits(GiteaClient, _Calls):
    def branch_head(self, owner: str, name: str, branch: str) -> BranchHead | None:
        _check(owner, name)
        _check_branch(branch)
        what = f"branch {branch} of {owner}/{name}"
        base = f"/api/v1/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        document = self._get_json(f"{base}/branches/{quote(branch)}", what)
        if document is None:
            return None
        commit = document.get("commit")
        head = _head(self.forge, commit, "id", what)
        assert isinstance(commit, dict)
        author = commit.get("author")
        author = author if isinstance(author, dict) else {}
        return BranchHead(
            sha=head.sha,
            message=_text(commit.get("message")),
            author_name=_text(author.get("name")),
            author_email=_text(author.get("email")),
        )

    def post_status(self, owner: str, name: str, sha: str, status: CommitStatus) -> None:
        _check(owner, name)
        _check_sha(sha)
        url = f"/api/v1/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{sha}"
        self._post_json(url, _github_body(status), f"status of {owner}/{name}@{sha[:12]}")


class GitLabCommits(GitLabClient, _Calls):
    def _unchanged(self, response: httpx.Response) -> bool:
        # GitLab refuses a state its status is already in ("Cannot transition status via
        # :enqueue from :pending"): the commit shows what we meant to say.
        return response.status_code == 400 and b"Cannot transition status" in response.content

    def branch_head(self, owner: str, name: str, branch: str) -> BranchHead | None:
        _check(owner, name)
        _check_branch(branch)
        what = f"branch {branch} of {owner}/{name}"
        project = quote(f"{owner}/{name}", safe="")
        url = f"/api/v4/projects/{project}/repository/branches/{quote(branch, safe='')}"
        document = self._get_json(url, what)
        if document is None:
            return None
        commit = document.get("commit")
        head = _head(self.forge, commit, "id", what)
        assert isinstance(commit, dict)
        return BranchHead(
            sha=head.sha,
            message=_text(commit.get("message")),
            author_name=_text(commit.get("author_name")),
            author_email=_text(commit.get("author_email")),
        )

    def post_status(self, owner: str, name: str, sha: str, status: CommitStatus) -> None:
        _check(owner, name)
        _check_sha(sha)
        project = quote(f"{owner}/{name}", safe="")
        body = {
            "state": _GITLAB_STATE[status.state],
            "name": status.context,
            "description": _description(status.description),
            "target_url": status.target_url,
        }
        self._post_json(
            f"/api/v4/projects/{project}/statuses/{sha}",
            body,
            f"status of {owner}/{name}@{sha[:12]}",
        )


def _github_body(status: CommitStatus) -> dict[str, str]:
    return {
        "state": status.state,
        "context": status.context,
        "description": _description(status.description),
        "target_url": status.target_url,
    }
