"""The server's access to forges: the local forge's repositories and the forges' APIs.

One object per server (``ForgeAccess``) knows which driver serves a repository (its
``forge``): the local forge (``bastion.scm.local.LocalForge`` under ``<data_dir>/repos``) or
an API client built from the server's settings (GitHub, Gitea, GitLab). Everything returns
plain values or raises ``bastion.scm.errors.ForgeError`` / ``ValueError``; the callers turn
those into a build error or an HTTP answer.

The local forge's hooks sign their deliveries with a key derived from the RPC secret
(:func:`hook_key`), so the secret itself is never written into a repository's hook settings.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from bastion.scm.errors import ForgeError
from bastion.scm.forges import GiteaClient, GitHubClient, GitLabClient
from bastion.scm.local import CommitInfo, LocalForge
from bastion.server.settings import ServerSettings
from bastion.store.types import Repo

LOCAL_HOOK_PATH = "/hook/local"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
CONFIG_CACHE = 128  # config files remembered by (repository, path, commit)
_CACHED_FILE_LIMIT = 256 * 1024  # larger ones are read each time: the cache stays <= 32 MiB


class FileSource(Protocol):
    def fetch_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None: ...


def hook_key(settings: ServerSettings) -> bytes:
    """The local forge's hook key: HMAC-SHA256 of a fixed label under the RPC secret."""
    secret = settings.rpc_secret.get_secret_value().encode("utf-8")
    return hmac.new(secret, b"bastion local-forge hook key v1", hashlib.sha256).digest()


class ForgeAccess:
    """``clients``: ready-made API clients by forge name (tests inject fakes); otherwise one
    client per forge is made from the settings on first use and closed by :meth:`close`."""

    def __init__(
        self, settings: ServerSettings, clients: Mapping[str, FileSource] | None = None
    ) -> None:
        self.settings = settings
        self.local = LocalForge(
            settings.repos_dir,
            hook_url=settings.internal_url + LOCAL_HOOK_PATH,
            hook_key=hook_key(settings),
            ca_cert=settings.local_ca_cert,
        )
        self._given = dict(clients or {})
        self._clients: dict[str, GitHubClient | GiteaClient | GitLabClient] = {}
        self._configs: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def source(self, repo: Repo) -> FileSource:
        """The driver that reads files of ``repo`` (``ForgeError`` when not configured)."""
        if repo.forge == "local":
            return self.local
        if repo.forge in self._given:
            return self._given[repo.forge]
        with self._lock:
            client = self._clients.get(repo.forge)
            if client is None:
                client = self._make(repo.forge)
                self._clients[repo.forge] = client
            return client

    def _make(self, forge: str) -> GitHubClient | GiteaClient | GitLabClient:
        settings = self.settings
        if forge == "github":
            return GitHubClient(settings.github_api_url, settings.github_token.get_secret_value())
        if forge == "gitea":
            if not settings.gitea_url:
                raise ForgeError("gitea", "BASTION_GITEA_URL is not set on the server")
            return GiteaClient(settings.gitea_url, settings.gitea_token.get_secret_value())
        if forge == "gitlab":
            return GitLabClient(settings.gitlab_url, settings.gitlab_token.get_secret_value())
        raise ForgeError(forge, f"unknown forge {forge!r}")

    def fetch_config(self, repo: Repo, sha: str) -> bytes | None:
        """The repository's config file at commit ``sha``; None when there is none.

        Remembered by (repository id, path, commit) for the last ``CONFIG_CACHE`` files: a
        commit's content never changes, and every stage of a build reads the same file (three
        ``git`` processes each on the local forge). Only full commit ids are remembered, and
        only files that exist (up to 256 KiB)."""
        key = (repo.id, repo.config_path, sha)
        cacheable = _SHA.match(sha) is not None
        if cacheable:
            with self._lock:
                cached = self._configs.get(key)
                if cached is not None:
                    self._configs.move_to_end(key)
                    return cached
        content = self.source(repo).fetch_file(repo.owner, repo.name, sha, repo.config_path)
        if cacheable and content is not None and len(content) <= _CACHED_FILE_LIMIT:
            with self._lock:
                self._configs[key] = content
                while len(self._configs) > CONFIG_CACHE:
                    self._configs.popitem(last=False)
        return content

    def commit(self, repo: Repo, sha: str) -> CommitInfo | None:
        """Message and author of ``sha`` where the server can read them (local forge)."""
        if repo.forge != "local":
            return None
        return self.local.commit(repo.owner, repo.name, sha)

    def branch_head(self, repo: Repo, branch: str) -> str | None:
        """The commit at the tip of ``branch`` of a local-forge repository; None if there is
        no such branch (and for other forges: ask their API)."""
        if repo.forge != "local":
            return None
        return self.local.branch_head(repo.owner, repo.name, branch)

    def on_branch(self, repo: Repo, sha: str, branch: str) -> bool:
        """Whether commit ``sha`` is on ``branch`` of a local-forge repository: the branch's
        head or one of its ancestors."""
        if repo.forge != "local" or not _SHA.match(sha):
            return False
        return self.local.on_branch(repo.owner, repo.name, sha, branch)

    def push_url(self, repo: Repo) -> Path:
        return self.local.path(repo.owner, repo.name)
