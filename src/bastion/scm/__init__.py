"""Forge drivers: what GitHub, Gitea, GitLab and the server's own git repositories say, in
Drone's terms.

* ``webhooks``: ``detect_forge`` → ``repo_hint`` → ``verify_signature`` → ``parse_webhook``
  turns a forge delivery into a ``HookEvent`` (or ``WebhookError`` / ``IgnoredEvent``);
  ``skip_ci`` reads ``[ci skip]``.
* ``local``: ``LocalForge`` keeps bare repositories with a post-receive hook that reports
  pushes; ``parse_local_hook`` verifies and reads those reports; ``bundle`` hands a commit
  to a runner.
* ``forges``: ``GitHubClient``, ``GiteaClient``, ``GitLabClient`` read the pipeline config
  at a commit (``ForgeClient.fetch_file``).

This package imports no other Bastion package (an import-linter contract): the server
adapts its results to builds; nothing here knows about builds, users or the database.
The errors are drawn in ``errors``.
"""

from __future__ import annotations

from bastion.scm.errors import ForgeError, IgnoredEvent, ScmError, WebhookError
from bastion.scm.events import HookEvent
from bastion.scm.forges import ForgeClient, GiteaClient, GitHubClient, GitLabClient
from bastion.scm.local import CommitInfo, LocalForge, parse_local_hook
from bastion.scm.webhooks import (
    detect_forge,
    parse_webhook,
    repo_hint,
    skip_ci,
    verify_signature,
)

__all__ = [
    "CommitInfo",
    "ForgeClient",
    "ForgeError",
    "GitHubClient",
    "GitLabClient",
    "GiteaClient",
    "HookEvent",
    "IgnoredEvent",
    "LocalForge",
    "ScmError",
    "WebhookError",
    "detect_forge",
    "parse_local_hook",
    "parse_webhook",
    "repo_hint",
    "skip_ci",
    "verify_signature",
]
