"""A fake forge on 127.0.0.1: it stands in for GitHub and Gitea, which cannot be reached from
the test machines.

It serves, for bare repositories it keeps under ``root/<owner>/<name>.git``:

* GitHub's ``GET /api/v3/repos/{owner}/{name}/contents/{path}?ref={sha}`` (JSON, the file
  base64-encoded) — the server's ``BASTION_GITHUB_API_URL`` is ``{url}/api/v3``, as for
  GitHub Enterprise;
* Gitea's ``GET /api/v1/repos/{owner}/{name}/raw/{path}?ref={sha}`` (raw bytes) — the
  server's ``BASTION_GITEA_URL`` is ``{url}``;
* the repositories over git's "dumb" HTTP protocol at ``{url}/git/{owner}/{name}.git`` (static
  files after ``git update-server-info``), which is what the runner clones.

The file content is read from the repository at the commit asked for, as the forges do.
API calls must carry the forge's token the way the forge expects it (``Bearer`` / ``token``),
and git requests HTTP Basic credentials when ``git_credentials`` is set (a private
repository): a missing or wrong one is answered 401 with a challenge, as a forge does. Every
request is recorded (method, path, whether it was authorised).
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorised: bool


class FakeForge:
    def __init__(self, root: Path, *, api_tokens: dict[str, str] | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # forge ("github" / "gitea") → the token its API accepts
        self.api_tokens = dict(api_tokens or {})
        # (owner, name) → (username, password) git must present
        self.git_credentials: dict[tuple[str, str], tuple[str, str]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(10)

    def git_url(self, owner: str, name: str) -> str:
        return f"{self.url}/git/{owner}/{name}.git"

    def bare(self, owner: str, name: str) -> Path:
        return self.root / owner / f"{name}.git"

    def publish(self, checkout: Path, owner: str, name: str, branch: str = "main") -> None:
        """Push ``branch`` of ``checkout`` to the forge's repository (created when new)."""
        bare = self.bare(owner, name)
        if not bare.exists():
            _git(None, "init", "--bare", "--quiet", "--initial-branch=main", str(bare))
        _git(checkout, "push", "--quiet", str(bare), f"{branch}:refs/heads/{branch}")
        _git(None, f"--git-dir={bare}", "update-server-info")

    def api_calls(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/api/")]

    def git_calls(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/git/")]

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    # -- answers ---------------------------------------------------------------------------------

    def file_at(self, owner: str, name: str, sha: str, path: str) -> bytes | None:
        bare = self.bare(owner, name)
        if not bare.is_dir():
            return None
        done = subprocess.run(
            ["git", f"--git-dir={bare}", "cat-file", "blob", f"{sha}:{path}"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.stdout if done.returncode == 0 else None

    def static(self, owner: str, name: str, rest: str) -> bytes | None:
        bare = self.bare(owner, name).resolve()
        target = (bare / rest).resolve()
        if not target.is_relative_to(bare) or not target.is_file():
            return None
        return target.read_bytes()


def _git(cwd: Path | None, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60, check=True)


def _handler(forge: FakeForge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return  # quiet: the recorded requests are what tests look at

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = parse_qs(parts.query)
            segments = path.strip("/").split("/")
            auth = self.headers.get("Authorization", "")
            if (
                path.startswith("/api/v3/repos/")
                and len(segments) >= 7
                and segments[5] == "contents"
            ):
                self._github(segments, query, auth)
            elif path.startswith("/api/v1/repos/") and len(segments) >= 7 and segments[5] == "raw":
                self._gitea(segments, query, auth)
            elif path.startswith("/git/") and len(segments) >= 4 and segments[2].endswith(".git"):
                self._git(segments, auth, path)
            else:
                forge.record(Request("GET", path, False))
                self._send(404, b'{"message": "Not Found"}', "application/json")

        def _github(self, segments: list[str], query: dict[str, list[str]], auth: str) -> None:
            owner, name, file_path = segments[3], segments[4], "/".join(segments[6:])
            ok = auth == f"Bearer {forge.api_tokens.get('github', '')}"
            forge.record(Request("GET", self.path.split("?")[0], ok))
            if not ok:
                self._send(401, b'{"message": "Bad credentials"}', "application/json")
                return
            content = forge.file_at(owner, name, query.get("ref", [""])[0], file_path)
            if content is None:
                self._send(404, b'{"message": "Not Found"}', "application/json")
                return
            document = {
                "type": "file",
                "encoding": "base64",
                "size": len(content),
                "name": file_path.rsplit("/", 1)[-1],
                "path": file_path,
                "content": base64.encodebytes(content).decode("ascii"),
            }
            self._send(200, json.dumps(document).encode(), "application/json")

        def _gitea(self, segments: list[str], query: dict[str, list[str]], auth: str) -> None:
            owner, name, file_path = segments[3], segments[4], "/".join(segments[6:])
            ok = auth == f"token {forge.api_tokens.get('gitea', '')}"
            forge.record(Request("GET", self.path.split("?")[0], ok))
            if not ok:
                self._send(401, b'{"message": "token is required"}', "application/json")
                return
            content = forge.file_at(owner, name, query.get("ref", [""])[0], file_path)
            if content is None:
                self._send(404, b'{"message": "Not Found"}', "application/json")
                return
            self._send(200, content, "application/octet-stream")

        def _git(self, segments: list[str], auth: str, path: str) -> None:
            owner, name = segments[1], segments[2].removesuffix(".git")
            wanted = forge.git_credentials.get((owner, name))
            ok = True
            if wanted is not None:
                expected = base64.b64encode(f"{wanted[0]}:{wanted[1]}".encode()).decode()
                ok = auth == f"Basic {expected}"
            forge.record(Request("GET", path, ok))
            if not ok:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fake forge"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            content = forge.static(owner, name, "/".join(segments[3:]))
            if content is None:
                self._send(404, b"not found", "text/plain")
                return
            self._send(200, content, "application/octet-stream")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
