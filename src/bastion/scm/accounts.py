"""Forge accounts over the forges' REST APIs: who a token belongs to, its organisations, and its
permission on a repository (GitHub, Gitea, GitLab).

Pure HTTP clients for the server's login and permission mirroring; they import no other
Bastion package. Every call sends the user's OAuth token as a bearer token, follows no
redirect (a token must not be sent to another host), reads at most 1 MiB, and raises
:class:`~bastion.scm.errors.ForgeError` for anything but a usable answer. A repository the
token cannot see (404, or 403 on GitLab) is "no permission", not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from bastion.scm.errors import ForgeError

MAX_REPLY = 1 << 20
TIMEOUT = 10.0
# GitLab access levels: reporter reads, developer writes, maintainer administers.
_GITLAB_READ, _GITLAB_WRITE, _GITLAB_ADMIN = 20, 30, 40


@dataclass(frozen=True)
class ForgeUser:
    id: str
    login: str
    email: str
    created: int  # Unix time the account was made; 0 when the forge does not say


class AccountClient(Protocol):
    def user(self, token: str) -> ForgeUser: ...

    def orgs(self, token: str) -> list[str]: ...

    def permission(self, token: str, owner: str, name: str) -> frozenset[str]:
        """Some of "read", "write", "admin"; empty when the token cannot see the repo."""
        ...


def _unix(text: object) -> int:
    if not isinstance(text, str) or not text:
        return 0
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


class _Api:
    def __init__(self, forge: str, base: str, *, verify: bool | str = True) -> None:
        self.forge = forge
        self.base = base.rstrip("/")
        self.verify = verify

    def get(self, token: str, path: str, *, missing: tuple[int, ...] = (404,)) -> Any:
        """The JSON at ``path``; None when the status is one of ``missing``."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            client = httpx.Client(timeout=TIMEOUT, follow_redirects=False, verify=self.verify)
            with client, client.stream("GET", self.base + path, headers=headers) as response:
                if response.status_code in missing:
                    return None
                if response.status_code != 200:
                    raise ForgeError(self.forge, f"answered {response.status_code} to GET {path}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_REPLY:
                        raise ForgeError(self.forge, f"the reply to GET {path} is too big")
        except httpx.HTTPError as exc:
            raise ForgeError(self.forge, f"could not be reached: {type(exc).__name__}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise ForgeError(self.forge, f"GET {path} did not answer JSON") from None

    def record(self, token: str, path: str) -> dict[str, Any]:
        data = self.get(token, path, missing=())
        if not isinstance(data, dict):
            raise ForgeError(self.forge, f"GET {path} did not answer an object")
        return data

    def records(self, token: str, path: str) -> list[dict[str, Any]]:
        data = self.get(token, path, missing=())
        if not isinstance(data, list):
            raise ForgeError(self.forge, f"GET {path} did not answer a list")
        return [d for d in data if isinstance(d, dict)]


def _flags(perms: object) -> frozenset[str]:
    """GitHub's and Gitea's ``permissions: {pull, push, admin}``; higher implies lower."""
    if not isinstance(perms, dict):
        return frozenset()
    if perms.get("admin") is True:
        return frozenset({"read", "write", "admin"})
    if perms.get("push") is True:
        return frozenset({"read", "write"})
    if perms.get("pull") is True:
        return frozenset({"read"})
    return frozenset()


class GitHubAccounts:
    """GitHub (and GitHub Enterprise): ``api`` is the API root, https://api.github.com."""

    def __init__(self, api: str, *, verify: bool | str = True) -> None:
        self._api = _Api("github", api, verify=verify)

    def user(self, token: str) -> ForgeUser:
        data = self._api.record(token, "/user")
        return ForgeUser(
            str(data.get("id", "")),
            str(data.get("login", "")),
            str(data.get("email") or ""),
            _unix(data.get("created_at")),
        )

    def orgs(self, token: str) -> list[str]:
        return [
            str(o.get("login", "")) for o in self._api.records(token, "/user/orgs?per_page=100")
        ]

    def permission(self, token: str, owner: str, name: str) -> frozenset[str]:
        data = self._api.get(token, f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}")
        return frozenset() if data is None else _flags(data.get("permissions"))


class GiteaAccounts:
    """Gitea: ``url`` is the server's address (the API is under /api/v1)."""

    def __init__(self, url: str, *, verify: bool | str = True) -> None:
        self._api = _Api("gitea", url.rstrip("/") + "/api/v1", verify=verify)

    def user(self, token: str) -> ForgeUser:
        data = self._api.record(token, "/user")
        return ForgeUser(
            str(data.get("id", "")),
            str(data.get("login") or data.get("username") or ""),
            str(data.get("email") or ""),
            _unix(data.get("created")),
        )

    def orgs(self, token: str) -> list[str]:
        return [
            str(o.get("username") or o.get("name") or "")
            for o in self._api.records(token, "/user/orgs?limit=50")
        ]

    def permission(self, token: str, owner: str, name: str) -> frozenset[str]:
        data = self._api.get(token, f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}")
        return frozenset() if data is None else _flags(data.get("permissions"))


class GitLabAccounts:
    """GitLab: ``url`` is the server's address (the API is under /api/v4)."""

    def __init__(self, url: str, *, verify: bool | str = True) -> None:
        self._api = _Api("gitlab", url.rstrip("/") + "/api/v4", verify=verify)

    def user(self, token: str) -> ForgeUser:
        data = self._api.record(token, "/user")
        return ForgeUser(
            str(data.get("id", "")),
            str(data.get("username", "")),
            str(data.get("email") or ""),
            _unix(data.get("created_at")),
        )

    def orgs(self, token: str) -> list[str]:
        groups = self._api.records(token, "/groups?min_access_level=10&per_page=100")
        return [str(g.get("full_path", "")) for g in groups]

    def permission(self, token: str, owner: str, name: str) -> frozenset[str]:
        project = quote(f"{owner}/{name}", safe="")
        data = self._api.get(token, f"/projects/{project}", missing=(403, 404))
        if data is None:
            return frozenset()
        perms = data.get("permissions") if isinstance(data.get("permissions"), dict) else {}
        level = 0
        for key in ("project_access", "group_access"):
            access = perms.get(key) if isinstance(perms, dict) else None
            if isinstance(access, dict) and isinstance(access.get("access_level"), int):
                level = max(level, access["access_level"])
        if level >= _GITLAB_ADMIN:
            return frozenset({"read", "write", "admin"})
        if level >= _GITLAB_WRITE:
            return frozenset({"read", "write"})
        if level >= _GITLAB_READ or data.get("visibility") == "public":
            return frozenset({"read"})
        return frozenset()
