"""Reading a file (the pipeline config) at a commit through a forge's REST API.

``ForgeClient`` is the one call the server needs: ``fetch_file(owner, name, sha, path)``
returns the bytes, ``None`` when the forge says there is no such file (404), and raises
``ForgeError`` when it cannot tell (unreachable, timed out, 5xx, authentication refused,
rate limited, file over 1 MiB). ``LocalForge`` has the same method, so the server can ask
any forge the same way.

* GitHub: ``GET {api}/repos/{owner}/{name}/contents/{path}?ref={sha}``; the JSON answer
  carries the file base64-encoded in ``content`` (files up to 1 MB; a directory answers a
  list, which is "no file"). Token as ``Authorization: Bearer``.
* Gitea: ``GET {server}/api/v1/repos/{owner}/{name}/raw/{path}?ref={sha}``, raw bytes. Token
  as ``Authorization: token``.
* GitLab: ``GET {server}/api/v4/projects/{owner%2Fname}/repository/files/{path}/raw?ref=
  {sha}``, raw bytes; the project path and the file path are each URL-encoded as one
  segment, as GitLab requires. Token as ``Authorization: Bearer`` (OAuth and personal,
  project or group access tokens all accept it).

Tokens travel in headers only, never in URLs, so they cannot reach a log line or an error
message; httpx drops the ``Authorization`` header when a redirect leaves the origin.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from types import TracebackType
from typing import Protocol, Self, runtime_checkable
from urllib.parse import quote

import httpx

from bastion.scm._refs import MAX_FILE_BYTES, is_hex_sha, normalise_repo_path
from bastion.scm.errors import ForgeError

__all__ = [
    "MAX_FILE_BYTES",
    "ForgeClient",
    "ForgeError",
    "GitHubClient",
    "GitLabClient",
    "GiteaClient",
]

DEFAULT_TIMEOUT = 10.0


@runtime_checkable
class ForgeClient(Protocol):
    """What the server asks of a forge to read a pipeline config at a commit."""

    def fetch_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None: ...


def _check_request(owner: str, name: str, sha: str, path: str) -> str:
    """The normalised ``path``; ``ValueError`` for a malformed argument."""
    for label, value in (("owner", owner), ("name", name)):
        if not value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError(f"invalid repository {label} {value!r}")
        if any(part in ("", ".", "..") for part in value.split("/")):
            raise ValueError(f"invalid repository {label} {value!r}")
    if not is_hex_sha(sha):
        raise ValueError(f"invalid commit id {sha[:80]!r}: expected 40 or 64 lower-case hex digits")
    return normalise_repo_path(path)


class _HTTPForgeClient:
    """An httpx client bound to one forge, and the one place that turns HTTP answers and
    transport failures into ``None`` / bytes / ``ForgeError``."""

    forge = "forge"

    def __init__(
        self,
        base_url: str,
        auth_header: tuple[str, str] | None,
        *,
        transport: httpx.BaseTransport | None,
        timeout: float,
        verify: ssl.SSLContext | str | bool,
    ) -> None:
        headers = {"User-Agent": "bastion-ci"}
        if auth_header is not None:
            headers[auth_header[0]] = auth_header[1]
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            transport=transport,
            timeout=timeout,
            verify=verify,
            # GitHub answers a renamed repository with a redirect; httpx removes the
            # Authorization header if a redirect leaves the origin
            follow_redirects=True,
            max_redirects=3,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _get(
        self, url: str, *, params: dict[str, str], what: str, limit: int, accept: str
    ) -> bytes | None:
        """The body of a 2xx answer (at most ``limit`` bytes), ``None`` for 404."""
        try:
            with self._client.stream(
                "GET", url, params=params, headers={"Accept": accept}
            ) as response:
                if response.status_code == 404:
                    return None
                self._raise_for_status(response, what)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise self._too_large(what)
                chunks: list[bytes] = []
                received = 0
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > limit:
                        raise self._too_large(what)
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise ForgeError(self.forge, f"timed out reading {what}") from exc
        except httpx.TooManyRedirects as exc:
            raise ForgeError(self.forge, f"too many redirects reading {what}") from exc
        except httpx.TransportError as exc:
            raise ForgeError(
                self.forge, f"unreachable while reading {what} ({exc.__class__.__name__}: {exc})"
            ) from exc

    def _raise_for_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 401:
            problem = "authentication failed (HTTP 401): check the token"
        elif status == 403 and response.headers.get("x-ratelimit-remaining") == "0":
            problem = "API rate limit exceeded (HTTP 403)"
        elif status == 403:
            problem = "access denied (HTTP 403): the token may lack read access"
        elif status == 429:
            problem = "API rate limit exceeded (HTTP 429)"
        elif status >= 500:
            problem = f"server error (HTTP {status})"
        else:
            problem = f"unexpected answer (HTTP {status})"
        raise ForgeError(self.forge, f"{problem} reading {what}")

    def _too_large(self, what: str) -> ForgeError:
        return ForgeError(self.forge, f"{what} is over the 1 MiB limit")


class GitHubClient(_HTTPForgeClient):
    """GitHub or GitHub Enterprise (``api_url`` ``https://host/api/v3``)."""

    forge = "github"

    def __init__(
        self,
        api_url: str = "https://api.github.com",
        token: str = "",
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(
            api_url,
            ("Authorization", f"Bearer {token}") if token else None,
            transport=transport,
            timeout=timeout,
            verify=verify,
        )
        self._client.headers["X-GitHub-Api-Version"] = "2022-11-28"

    def fetch_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None:
        path = _check_request(owner, name, sha, path)
        what = f"{path} of {owner}/{name} at {sha[:12]}"
        url = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}/contents/{quote(path)}"
        # base64 inflates by 4/3; the JSON around it is small
        raw = self._get(
            url,
            params={"ref": sha},
            what=what,
            limit=MAX_FILE_BYTES * 4 // 3 + 64 * 1024,
            accept="application/vnd.github+json",
        )
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ForgeError(self.forge, f"answer for {what} is not JSON") from exc
        if not isinstance(document, dict) or document.get("type") != "file":
            return None  # a directory (a list), a submodule: not a config file
        size = document.get("size")
        if isinstance(size, int) and size > MAX_FILE_BYTES:
            raise self._too_large(what)
        content = document.get("content")
        if document.get("encoding") != "base64" or not isinstance(content, str):
            # GitHub leaves out the content of files over 1 MB ("encoding": "none")
            raise ForgeError(self.forge, f"{what}: the API sent no content (file too large?)")
        try:
            data = base64.b64decode(content.replace("\n", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ForgeError(self.forge, f"{what}: content is not valid base64") from exc
        if len(data) > MAX_FILE_BYTES:
            raise self._too_large(what)
        return data


class GiteaClient(_HTTPForgeClient):
    """Gitea, Forgejo or Gogs at ``server_url`` (``https://gitea.example.com``)."""

    forge = "gitea"

    def __init__(
        self,
        server_url: str,
        token: str = "",
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(
            server_url,
            ("Authorization", f"token {token}") if token else None,
            transport=transport,
            timeout=timeout,
            verify=verify,
        )

    def fetch_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None:
        path = _check_request(owner, name, sha, path)
        url = f"/api/v1/repos/{quote(owner, safe='')}/{quote(name, safe='')}/raw/{quote(path)}"
        return self._get(
            url,
            params={"ref": sha},
            what=f"{path} of {owner}/{name} at {sha[:12]}",
            limit=MAX_FILE_BYTES,
            accept="*/*",
        )


class GitLabClient(_HTTPForgeClient):
    """GitLab at ``server_url`` (``https://gitlab.com``); ``owner`` may hold subgroups."""

    forge = "gitlab"

    def __init__(
        self,
        server_url: str,
        token: str = "",
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(
            server_url,
            ("Authorization", f"Bearer {token}") if token else None,
            transport=transport,
            timeout=timeout,
            verify=verify,
        )

    def fetch_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None:
        path = _check_request(owner, name, sha, path)
        project = quote(f"{owner}/{name}", safe="")
        url = f"/api/v4/projects/{project}/repository/files/{quote(path, safe='')}/raw"
        return self._get(
            url,
            params={"ref": sha},
            what=f"{path} of {owner}/{name} at {sha[:12]}",
            limit=MAX_FILE_BYTES,
            accept="*/*",
        )
