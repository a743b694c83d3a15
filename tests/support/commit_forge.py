"""A fake forge commit API on 127.0.0.1 for the commit status and cron tests.

It answers, for GitHub (under ``/api/v3``, as GitHub Enterprise), Gitea (``/api/v1``) and
GitLab (``/api/v4``): the branch endpoints (``branches[(owner, name, branch)] = sha``) and the
commit status endpoints, recording every status it accepts (``statuses``) with the
``Authorization`` header it came with. ``fail_next`` makes the next N requests answer 500
(a forge having a bad minute); ``token`` is the one token it accepts (401 otherwise). As
GitLab does, its GitLab endpoint refuses (400) a state the commit's status is already in.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

TOKEN = "forge-token-0123456789abcdef"  # the one token the fake forge accepts


@dataclass(frozen=True)
class Posted:
    forge: str
    owner: str
    name: str
    sha: str
    body: dict[str, Any]
    authorization: str


class CommitForge:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.branches: dict[tuple[str, str, str], str] = {}
        self.statuses: list[Posted] = []
        self.requests: list[tuple[str, str]] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(10)

    def posted(self) -> list[Posted]:
        with self._lock:
            return list(self.statuses)

    def states(self, sha: str | None = None) -> list[str]:
        return [p.body["state"] for p in self.posted() if sha is None or p.sha == sha]

    def _take_failure(self) -> bool:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            return False

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _add(self, posted: Posted) -> None:
        with self._lock:
            self.statuses.append(posted)


def _route(raw_path: str) -> tuple[str, str, str, str, str] | None:
    """(forge, owner, name, kind, rest) of an API path; kind is "branches" or "statuses".
    Each segment is decoded on its own: GitLab's project id is one %2F-encoded segment."""
    parts = [unquote(p) for p in raw_path.strip("/").split("/")]
    if parts[:3] == ["api", "v3", "repos"] and len(parts) >= 7:
        return "github", parts[3], parts[4], parts[5], "/".join(parts[6:])
    if parts[:3] == ["api", "v1", "repos"] and len(parts) >= 7:
        return "gitea", parts[3], parts[4], parts[5], "/".join(parts[6:])
    if parts[:3] == ["api", "v4", "projects"] and len(parts) >= 6:
        owner, _, name = parts[3].rpartition("/")
        if parts[4] == "statuses":
            return "gitlab", owner, name, "statuses", "/".join(parts[5:])
        if parts[4:6] == ["repository", "branches"] and len(parts) >= 7:
            return "gitlab", owner, name, "branches", "/".join(parts[6:])
    return None


def _handler(forge: CommitForge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self, kind: str) -> bool:
            auth = self.headers.get("Authorization", "")
            expected = {
                "github": f"Bearer {forge.token}",
                "gitea": f"token {forge.token}",
                "gitlab": f"Bearer {forge.token}",
            }[kind]
            return auth == expected

        def _common(self, method: str) -> tuple[str, str, str, str, str] | None:
            raw = urlsplit(self.path).path
            forge._record(method, raw)
            length = int(self.headers.get("Content-Length", "0") or 0)
            self._body = self.rfile.read(length) if length else b""
            if forge._take_failure():
                self._send(500, {"message": "internal error"})
                return None
            route = _route(raw)
            if route is None:
                self._send(404, {"message": "Not Found"})
                return None
            if not self._authorised(route[0]):
                self._send(401, {"message": "Bad credentials"})
                return None
            return route

        def do_GET(self) -> None:
            route = self._common("GET")
            if route is None:
                return
            kind, owner, name, what, rest = route
            sha = forge.branches.get((owner, name, rest))
            if what != "branches" or sha is None:
                self._send(404, {"message": "Branch Not Found"})
                return
            if kind == "github":
                commit: dict[str, Any] = {
                    "sha": sha,
                    "commit": {
                        "message": "nightly fix",
                        "author": {"name": "Ada", "email": "ada@example.com"},
                    },
                }
            elif kind == "gitea":
                commit = {
                    "id": sha,
                    "message": "nightly fix",
                    "author": {"name": "Ada", "email": "ada@example.com"},
                }
            else:
                commit = {
                    "id": sha,
                    "message": "nightly fix",
                    "author_name": "Ada",
                    "author_email": "ada@example.com",
                }
            self._send(200, {"name": rest, "commit": commit})

        def do_POST(self) -> None:
            route = self._common("POST")
            if route is None:
                return
            kind, owner, name, what, rest = route
            if what != "statuses":
                self._send(404, {"message": "Not Found"})
                return
            try:
                body = json.loads(self._body)
            except json.JSONDecodeError:
                self._send(400, {"message": "bad JSON"})
                return
            auth = self.headers.get("Authorization", "")
            if kind == "gitlab":
                current = [
                    p.body["state"]
                    for p in forge.posted()
                    if (p.forge, p.sha, p.body.get("name")) == (kind, rest, body.get("name"))
                ]
                if current and current[-1] == body["state"]:
                    message = f"Cannot transition status via :enqueue from :{body['state']}"
                    self._send(400, {"message": message})
                    return
            forge._add(Posted(kind, owner, name, rest, body, auth))
            self._send(201, {"id": len(forge.statuses), **body})

    return Handler
