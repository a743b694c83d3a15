"""What a forge event means for a build, in Drone's vocabulary.

Every driver (``webhooks`` for GitHub, Gitea and GitLab, ``local`` for the server's own git
repositories) turns a verified delivery into ``HookEvent`` values. Field names and meanings
follow Drone's build fields (``DRONE_BUILD_EVENT``, ``DRONE_COMMIT_*``, ``DRONE_SOURCE_BRANCH``
...), so that the server can fill a build without knowing which forge sent it.

Every text field except ``forge``, ``event`` and ``action`` comes from the forge and is
**untrusted** (commit messages, titles and branch names are written by whoever pushed): it is
data for the build context, never something to substitute into YAML or a shell.

Deletions: a push that deletes a branch or tag is never returned as a ``HookEvent``. The
parsers raise ``IgnoredEvent`` (forges) or leave the update out (local forge), so a server
that forgot to look at ``deleted`` still cannot start a build of a ref that no longer exists.
The field stays in the type so that it can carry deletions once the server wants them (to
cancel the running builds of a deleted branch, for example); today it is always ``False``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.scm.errors import IgnoredEvent, WebhookError

__all__ = [
    "EVENT_PULL_REQUEST",
    "EVENT_PUSH",
    "EVENT_TAG",
    "FORGES",
    "PR_ACTIONS",
    "ZERO_SHA",
    "HookEvent",
    "IgnoredEvent",
    "WebhookError",
]

FORGES: tuple[str, ...] = ("local", "github", "gitea", "gitlab")

EVENT_PUSH = "push"
EVENT_PULL_REQUEST = "pull_request"
EVENT_TAG = "tag"

# Drone's spelling of the pull request actions (``DRONE_BUILD_ACTION``).
PR_ACTIONS: tuple[str, ...] = ("opened", "synchronized", "reopened", "closed")

# The "no commit" value git and the forges use for the old side of a created ref and the new
# side of a deleted one (SHA-1 repositories; SHA-256 ones use 64 zeros).
ZERO_SHA = "0" * 40


def is_zero_sha(sha: str) -> bool:
    """True for an all-zero object name of either hash length (a created or deleted ref)."""
    return len(sha) in (40, 64) and set(sha) == {"0"}


@dataclass(frozen=True, kw_only=True, slots=True)
class HookEvent:
    """One event that may start a build. See the module docstring for trust and deletions."""

    forge: str  # local | github | gitea | gitlab
    # X-GitHub-Delivery / X-Gitea-Delivery / X-Gitlab-Event-UUID; local: sha256 of the body.
    # When a forge sends no delivery header, the sha256 of the body stands in for it, so a
    # retried delivery of the same body is still recognised as a duplicate.
    delivery_id: str
    event: str  # push | pull_request | tag
    action: str = ""  # pull requests: opened | synchronized | reopened | closed
    repo_owner: str
    repo_name: str
    repo_forge_id: str = ""  # the forge's numeric repository id as text; "" for local
    clone_url: str = ""  # http(s) clone URL from the payload; "" for local
    repo_link: str = ""
    ref: str = ""  # refs/heads/x, refs/tags/v1, refs/pull/N/head, refs/merge-requests/N/head
    before: str = ""
    after: str = ""  # the commit to build (annotated tags are peeled to their commit)
    branch: str = ""  # pushes: the branch; pull requests: the base branch; tags: ""
    source_branch: str = ""  # pull requests: the head branch; pushes: same as branch
    source_repo: str = ""  # pull requests: the head repository, owner/name
    message: str = ""  # push: the head commit's message; pull request: its title
    title: str = ""  # pull request title
    author_login: str = ""
    author_name: str = ""
    author_email: str = ""
    author_avatar: str = ""
    sender: str = ""  # the forge user whose action sent the event
    pull_request: int = 0
    fork: bool = False  # the pull request comes from another repository
    tag: str = ""  # tag name for tag events
    link: str = ""  # compare / commit / pull request URL
    deleted: bool = False  # see the module docstring: always False today

    @property
    def slug(self) -> str:
        """``owner/name`` of the repository the event belongs to."""
        return f"{self.repo_owner}/{self.repo_name}"
