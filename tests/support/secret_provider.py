"""A secret provider speaking Drone's secret extension protocol, started by tests on
127.0.0.1 in a thread: it verifies each request with ``RequestVerifier`` (signature, digest,
date, nonce) as a real provider written in Python would, and answers from a dictionary.

``secrets`` maps ``(path, name)`` to the reply object (``{"data": ..., "pull": ...}``);
``delay`` holds every answer back (a provider that hangs), ``status`` forces an error status.
Every request is recorded (``received``: the parsed body; ``refused``: why the verifier
refused one), so tests can check what was sent, and that a fork build sent nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from bastion.crypto.http_signatures import RequestVerifier, SignatureError
from bastion.store.types import Build, Repo, Status

_T = TypeVar("_T")

TOKEN = "b1f0c3d92e7a4856a9d1c0e3f7b2a4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7"


@dataclass
class Provider:
    url: str
    secrets: dict[tuple[str, str], dict[str, Any]]
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    delay: float = 0.0
    status: int = 0
    release: threading.Event = field(default_factory=threading.Event)


@contextmanager
def running_provider(
    secrets: dict[tuple[str, str], dict[str, Any]],
    *,
    token: str = TOKEN,
    verifier: RequestVerifier | None = None,
) -> Iterator[Provider]:
    """Serve ``secrets`` on 127.0.0.1 (a free port) until the block ends."""
    check = verifier or RequestVerifier(token.encode("utf-8"))
    state = Provider(url="", secrets=secrets)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                check.verify(dict(self.headers.items()), body)
            except SignatureError as exc:
                state.refused.append(str(exc))
                self._answer(400, b"Invalid Signature", "text/plain")
                return
            request = json.loads(body)
            state.received.append(request)
            if state.delay:
                # Wait for the test's end (release) or the delay, whichever comes first.
                state.release.wait(state.delay)
            if state.status:
                self._answer(state.status, b"provider error", "text/plain")
                return
            reply = state.secrets.get((request["path"], request["name"]))
            if reply is None:
                self._answer(404, b"secret not found", "text/plain")
                return
            self._answer(200, json.dumps(reply).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            # The client may have given up (a timeout test): then there is no one to tell.
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/secrets"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        thread.join()
        server.server_close()


def make_repo(**overrides: Any) -> Repo:
    """A repository value with every field filled (zero values unless given)."""
    base: dict[str, Any] = {"id": 7, "owner": "acme", "name": "web", "forge": "local"}
    return _make(Repo, {**base, **overrides})


def make_build(**overrides: Any) -> Build:
    """A build value with every field filled (a push to main unless given)."""
    base: dict[str, Any] = {
        "id": 11,
        "repo_id": 7,
        "number": 3,
        "status": Status.RUNNING,
        "event": "push",
        "ref": "refs/heads/main",
        "target": "main",
        "source": "main",
        "after": "a" * 40,
    }
    return _make(Build, {**base, **overrides})


def _make(cls: type[_T], values: dict[str, Any]) -> _T:
    # Zero values by annotation, so that fields added to the store types later need no edit.
    zero = {"str": "", "int": 0, "bool": False, "dict[str, str]": {}, "Status": Status.PENDING}
    kwargs = {
        f.name: values.get(f.name, zero[str(f.type)])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in values or f.default is dataclasses.MISSING
    }
    return cls(**kwargs)
