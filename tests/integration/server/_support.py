"""A real Bastion server in a thread, and what the server tests do with it.

``LiveServer`` runs ``create_app(settings)`` under uvicorn on a socket bound before the thread
starts (so the port in the settings is the port served), with the real store on SQLite in the
test's temporary directory. Tests talk to it with httpx over TCP, so the long-polls, the SSE
streams and the local forge's git hook behave as in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bastion.crypto import hash_token
from bastion.rpc.messages import (
    LEASE_HEADER,
    PATH_COMPLETE,
    PATH_HEARTBEAT,
    PATH_LOGS,
    PATH_REQUEST,
    PATH_STAGE,
    PATH_STEPS,
    Lease,
    LogBatch,
    LogLine,
    RunnerPoll,
    StageResult,
    StepState,
    StepUpdate,
)
from bastion.server import ServerSettings, create_app
from bastion.server.context import ServerContext
from bastion.server.forges import FileSource
from bastion.store.types import Scope

PAYLOADS = Path(__file__).with_name("payloads")

PIPELINE = b"""\
kind: pipeline
type: docker
name: build
steps:
- name: test
  image: busybox
  commands: [echo hello]
"""


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def make_settings(data_dir: Path, port: int, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "port": port,
        "rpc_secret": secrets.token_hex(32),
        "database_secret": secrets.token_hex(32),
        "poll_timeout": 5.0,
        "reaper_interval": 0.2,
        "requery_interval": 0.2,
    }
    values.update(overrides)
    return ServerSettings(**values)


class FakeForge:
    """An API client of a forge that knows some files (``fetch_file`` of the ForgeClient)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str, str], bytes] = {}
        self.calls: list[tuple[str, str, str, str]] = []

    def fetch_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None:
        self.calls.append((owner, name, sha, path))
        return self.files.get((owner, name, sha, path))


class LiveServer:
    def __init__(
        self,
        settings: ServerSettings,
        sock: socket.socket,
        forge_clients: Mapping[str, FileSource] | None = None,
    ) -> None:
        self.settings = settings
        self.app = create_app(settings, forge_clients=forge_clients)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            # As serve() does: X-Forwarded-For is the server's to judge (trusted_proxies).
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.app.state.should_stop = lambda: self.server.should_exit  # as serve() does
        self.sock = sock
        self.url = f"http://127.0.0.1:{settings.port}"
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()

    @property
    def ctx(self) -> ServerContext:
        ctx = self.app.state.ctx
        assert isinstance(ctx, ServerContext)
        return ctx


def git_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "BASTION_"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Ada Lovelace",
        GIT_AUTHOR_EMAIL="ada@example.com",
        GIT_COMMITTER_NAME="Ada Lovelace",
        GIT_COMMITTER_EMAIL="ada@example.com",
    )
    return env


@dataclass
class Checkout:
    """A clone of a local-forge repository to commit and push from."""

    path: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout + done.stderr

    def commit(self, files: Mapping[str, bytes], message: str) -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            self.git("add", "--", name)
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def push(self, branch: str = "main") -> str:
        return self.git("push", "origin", f"HEAD:refs/heads/{branch}")


@dataclass
class Harness:
    live: LiveServer
    tmp: Path
    admin_token: str
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def ctx(self) -> ServerContext:
        return self.live.ctx

    @property
    def url(self) -> str:
        return self.live.url

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)
        self.clients.append(client)
        return client

    @property
    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def close(self) -> None:
        for client in self.clients:
            client.close()

    # -- objects -------------------------------------------------------------------------------

    def user_token(self, login: str, *, admin: bool = False) -> str:
        api = self.admin
        api.post("/api/users", json={"login": login, "admin": admin}).raise_for_status()
        response = api.post(f"/api/users/{login}/token")
        response.raise_for_status()
        return str(response.json()["token"])

    def grant(self, login: str, slug: str, *scopes: str) -> None:
        """Give ``login`` scopes on a repository, as an administrator's grant (local forge)
        or as if mirrored from the forge (the user has no forge account to refresh it)."""
        store = self.ctx.store
        user = store.find_user(login)
        owner, name = slug.split("/")
        repo = store.get_repo(owner, name)
        assert user is not None and repo is not None
        source = "grant" if repo.forge == "local" else "forge"
        store.set_repo_permission(user.id, repo.id, [Scope(s) for s in scopes], source=source)

    def runner_token(self, name: str) -> str:
        response = self.admin.post("/api/runners", json={"name": name})
        response.raise_for_status()
        return str(response.json()["token"])

    def local_repo(self, owner: str = "acme", name: str = "web") -> Checkout:
        response = self.admin.post("/api/repos", json={"owner": owner, "name": name})
        response.raise_for_status()
        bare = response.json()["git_push_url"]
        env = git_env(self.tmp / "home")
        clone = self.tmp / f"clone-{owner}-{name}"
        subprocess.run(
            ["git", "clone", "--quiet", bare, str(clone)],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        checkout = Checkout(clone, env)
        checkout.git("checkout", "--quiet", "-B", "main")
        return checkout

    def forge_repo(
        self, forge: str, owner: str, name: str, *, forge_id: str = ""
    ) -> tuple[dict[str, Any], str]:
        response = self.admin.post(
            "/api/repos",
            json={
                "owner": owner,
                "name": name,
                "forge": forge,
                "forge_id": forge_id,
                "http_url": f"https://{forge}.example.com/{owner}/{name}.git",
            },
        )
        response.raise_for_status()
        data = response.json()
        return data, str(data["webhook_secret"])

    def builds(self, slug: str = "acme/web") -> list[dict[str, Any]]:
        response = self.admin.get(f"/api/repos/{slug}/builds")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def build(self, number: int, slug: str = "acme/web") -> dict[str, Any]:
        response = self.admin.get(f"/api/repos/{slug}/builds/{number}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# -- webhooks ----------------------------------------------------------------------------------


def payload(name: str, **changes: Any) -> bytes:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    data.update(changes)
    return json.dumps(data).encode()


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(event: str, body: bytes, secret: str, delivery: str = "") -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or secrets.token_hex(8),
        "X-Hub-Signature-256": "sha256=" + sign(secret, body),
        "Content-Type": "application/json",
    }


def gitea_headers(event: str, body: bytes, secret: str, delivery: str = "") -> dict[str, str]:
    delivery = delivery or secrets.token_hex(8)
    return {
        "X-Gitea-Event": event,
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Signature": sign(secret, body),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }


# -- the runner's side ---------------------------------------------------------------------------


class FakeRunner:
    """The runner's calls, made by hand: poll, details, heartbeat, steps, logs, complete."""

    def __init__(self, harness: Harness, name: str, labels: dict[str, str] | None = None) -> None:
        self.name = name
        self.token = harness.runner_token(name)
        self.http = harness.client(self.token)
        self.labels = labels or {}

    def poll(self, wait: float = 2.0) -> Lease | None:
        body = RunnerPoll(labels=self.labels, wait=wait).model_dump(mode="json")
        response = self.http.post(PATH_REQUEST, json=body, timeout=wait + 30)
        if response.status_code == 204:
            return None
        response.raise_for_status()
        return Lease.model_validate_json(response.content)

    def call(
        self, method: str, path: str, lease: Lease | str, json_body: Any = None
    ) -> httpx.Response:
        lease_id = lease if isinstance(lease, str) else lease.lease_id
        return self.http.request(method, path, headers={LEASE_HEADER: lease_id}, json=json_body)

    def details(self, stage_id: int, lease: Lease | str) -> httpx.Response:
        return self.call("GET", PATH_STAGE.format(stage_id=stage_id), lease)

    def heartbeat(self, lease: Lease) -> httpx.Response:
        return self.call("POST", PATH_HEARTBEAT.format(stage_id=lease.stage_id), lease)

    def step(self, lease: Lease, number: int, state: StepState, **extra: Any) -> httpx.Response:
        update = StepUpdate(number=number, name=f"step{number}", state=state, **extra)
        return self.call(
            "POST",
            PATH_STEPS.format(stage_id=lease.stage_id),
            lease,
            update.model_dump(mode="json"),
        )

    def logs(self, lease: Lease, step: int, lines: list[tuple[int, str]]) -> httpx.Response:
        batch = LogBatch(step=step, lines=[LogLine(n=n, t=float(n), text=t) for n, t in lines])
        return self.call(
            "POST", PATH_LOGS.format(stage_id=lease.stage_id), lease, batch.model_dump(mode="json")
        )

    def complete(self, lease: Lease, state: StepState, error: str = "") -> httpx.Response:
        result = StageResult(state=state, error=error)
        return self.call(
            "POST",
            PATH_COMPLETE.format(stage_id=lease.stage_id),
            lease,
            result.model_dump(mode="json"),
        )

    def run(self, lease: Lease, state: StepState = StepState.SUCCESS) -> None:
        """Run the stage to ``state`` with one step."""
        assert self.step(lease, 1, StepState.RUNNING).status_code == 204
        assert (
            self.step(lease, 1, state, exit_code=0 if state == StepState.SUCCESS else 1).status_code
            == 204
        )
        assert self.complete(lease, state).status_code == 204


def lease_hash_of(lease: Lease) -> str:
    return hash_token(lease.lease_id)


def start_server(
    tmp_path: Path,
    forge_clients: Mapping[str, FileSource] | None = None,
    **overrides: Any,
) -> Iterator[Harness]:
    """Start a server (a generator for fixtures: yields the harness, stops it after)."""
    sock = free_socket()
    try:
        settings = make_settings(tmp_path / "data", sock.getsockname()[1], **overrides)
        live = LiveServer(settings, sock, forge_clients)
        live.start()
    except BaseException:
        sock.close()
        raise
    token = (settings.data_dir / "admin.token").read_text().strip()
    harness = Harness(live, tmp_path, token)
    try:
        yield harness
    finally:
        harness.close()
        live.stop()
