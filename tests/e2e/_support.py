"""Real ``bastion server`` and ``bastion runner`` processes, and what the end-to-end tests do
with them.

Every process is started through the ``bastion`` console script (the one users run), in its
own session, with its output in a file under the test's temporary directory, and an
environment without the caller's ``BASTION_*`` / ``DRONE_*`` / ``GIT_*`` variables. The
:class:`Stack` of a test remembers every process, HTTP client and runner name it made; its
``close`` stops the runners (SIGTERM, then SIGKILL), then the servers, and removes by label
whatever Docker resources those runners left behind (``io.bastion.managed`` and
``io.bastion.runner=<name>``: runner names are unique per test, so other users of the same
Docker engine are never touched). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import docker
import docker.errors
import httpx
from tests.support.plans import BUSYBOX

from bastion.engine.plan import LABEL_MANAGED, LABEL_RUN
from bastion.runner.cleanup import LABEL_RUNNER, LABEL_STAGE

DONE = frozenset({"success", "failure", "error", "killed", "skipped", "declined"})
STOP_TIMEOUT = 20.0

T = TypeVar("T")


def bastion_command() -> list[str]:
    """The ``bastion`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("bastion")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "bastion.cli.app"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Bastion's, Drone's and git's variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BASTION_", "DRONE_", "GIT_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "400"  # Rich tables and messages on one line each
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> T:
    """The first truthy value of ``predicate()``; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"{what}: not within {timeout:g} s{detail}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


class Process:
    """A child process in its own session whose output goes to ``log``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> None:
        self.argv = argv
        self.env = dict(env)
        self.log = log
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    def spawn(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        self._close_output()
        self._out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        code = self.popen.wait(timeout)
        self._close_output()
        return code

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process (by its pid, never by name)."""
        if self.alive():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(10)
        self._close_output()
        return self.popen.returncode

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.popen is not None
        self.popen.wait(10)
        self._close_output()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def _close_output(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class ServerProcess(Process):
    """``bastion server --dev`` on 127.0.0.1 and a port of its own, data in ``data_dir``."""

    def __init__(
        self, data_dir: Path, port: int, env: Mapping[str, str], log: Path, cwd: Path
    ) -> None:
        argv = [
            *bastion_command(),
            "server",
            "--dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ]
        super().__init__(argv, env, log, cwd)
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until ``/healthz`` answers ``ok``."""
        self.spawn()
        self.starts += 1

        def healthy() -> bool:
            if not self.alive():
                raise AssertionError(
                    f"bastion server exited with {self.returncode()}:\n{tail(self.log)}"
                )
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=2)
            except httpx.TransportError:
                return False
            return response.status_code == 200 and response.text == "ok"

        wait_for(healthy, timeout, "the server answering /healthz", describe=self.describe)

    def stop_gracefully(self) -> None:
        """SIGTERM, and check that the server shut down cleanly. uvicorn re-raises the
        signal once it has shut down, so the exit status is "killed by SIGTERM" (or 0)."""
        before = self.output().count("Application shutdown complete")
        code = self.stop()
        assert code in (0, -signal.SIGTERM), f"the server exited with {code}:\n{tail(self.log)}"
        assert self.output().count("Application shutdown complete") == before + 1, tail(self.log)

    def restart(self) -> None:
        self.stop_gracefully()
        self.start()

    def describe(self) -> str:
        return f"--- server log ({self.log}) ---\n{tail(self.log)}"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text(encoding="utf-8").strip()


class RunnerProcess(Process):
    """``bastion runner`` with a token file, against one server."""

    def __init__(
        self,
        name: str,
        server: ServerProcess,
        token_file: Path,
        env: Mapping[str, str],
        log: Path,
        cwd: Path,
        *,
        backend: str = "docker",
        capacity: int = 1,
    ) -> None:
        argv = [
            *bastion_command(),
            "runner",
            "--server",
            server.url,
            "--token-file",
            str(token_file),
            "--name",
            name,
            "--backend",
            backend,
            "--capacity",
            str(capacity),
        ]
        super().__init__(argv, env, log, cwd)
        self.name = name
        self.server = server
        self.token_file = token_file

    @property
    def token(self) -> str:
        return self.token_file.read_text(encoding="utf-8").strip()

    def describe(self) -> str:
        return f"--- runner {self.name} log ({self.log}) ---\n{tail(self.log)}"


@dataclass
class Checkout:
    """A working copy to commit in and push from, with its own git identity and HOME."""

    path: Path
    env: dict[str, str]

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout + done.stderr

    def commit(self, files: Mapping[str, str], message: str) -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            self.git("add", "--", name)
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


def new_checkout(path: Path, home: Path) -> Checkout:
    home.mkdir(parents=True, exist_ok=True)
    env = clean_env(
        {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Ada Lovelace",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada Lovelace",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
        }
    )
    path.mkdir(parents=True)
    checkout = Checkout(path, env)
    checkout.git("init", "--quiet", "--initial-branch=main")
    return checkout


def create_local_repo(stack: Stack, server: ServerProcess, slug: str) -> tuple[Checkout, str]:
    """``bastion repo create SLUG``: a new working copy, and the URL the command printed to
    push to."""
    created = stack.cli(server, "repo", "create", slug)
    match = re.search(r"git remote add bastion (\S+)", created.stdout)
    assert match, created.stdout
    name = slug.replace("/", "-")
    return new_checkout(stack.tmp / f"work-{name}", stack.tmp / "home"), match.group(1)


def push(checkout: Checkout, url: str, config: str, message: str) -> str:
    """Commit ``config`` as .drone.yml and push ``main`` to ``url``; the commit id."""
    sha = checkout.commit({".drone.yml": config}, message)
    assert "build requested" in checkout.git("push", url, "main")
    return sha


@dataclass
class Stack:
    """What one test started; ``close`` ends all of it (see the module docstring)."""

    tmp: Path
    docker_client: docker.DockerClient | None = None
    servers: list[ServerProcess] = field(default_factory=list)
    runners: list[RunnerProcess] = field(default_factory=list)
    runner_names: set[str] = field(default_factory=set)
    clients: list[httpx.Client] = field(default_factory=list)
    commands: list[subprocess.Popen[str]] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: f"e2e{secrets.token_hex(3)}")
    # Values that must never appear in a process's output (see ``leaks``).
    secret_values: set[str] = field(default_factory=set)

    # -- processes -----------------------------------------------------------------------------

    def server(
        self,
        *,
        lease_seconds: int | None = None,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        """Start ``bastion server --dev`` (SQLite in its data directory unless
        ``database_url``) and wait until it answers."""
        index = len(self.servers) + 1
        extra: dict[str, str] = {"BASTION_REAPER_INTERVAL": "1"}
        if lease_seconds is not None:
            extra["BASTION_LEASE_SECONDS"] = str(lease_seconds)
            # The server refuses a heartbeat interval (default 10 s) not shorter than the
            # lease, although it would tell runners lease / 3 anyway.
            extra["BASTION_HEARTBEAT_INTERVAL"] = f"{lease_seconds / 3:g}"
        if database_url is not None:
            extra["BASTION_DATABASE_URL"] = database_url
        extra.update(env or {})
        data_dir = self.tmp / f"server{index}-data"
        for attempt in range(3):
            server = ServerProcess(
                data_dir, free_port(), clean_env(extra), self.tmp / f"server{index}.log", self.tmp
            )
            self.servers.append(server)
            try:
                server.start()
            except AssertionError:
                # The free port was taken by someone else between the probe and the start.
                if attempt == 2 or "address already in use" not in server.output():
                    raise
                continue
            return server
        raise AssertionError("unreachable")

    def runner_name(self, short: str) -> str:
        name = f"{self.prefix}-{short}"
        self.runner_names.add(name)
        return name

    def add_runner(self, server: ServerProcess, short: str) -> tuple[str, Path]:
        """Register a runner with ``bastion runner add NAME --format json``; its name and a
        token file (mode 0600)."""
        name = self.runner_name(short)
        done = self.cli(server, "runner", "add", name, "--format", "json")
        token = str(json.loads(done.stdout)["token"])
        path = self.tmp / f"{name}.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        return name, path

    def runner(
        self,
        server: ServerProcess,
        short: str,
        *,
        backend: str = "docker",
        token_file: Path | None = None,
        wait: bool = True,
        log_name: str = "",
    ) -> RunnerProcess:
        """Register (unless ``token_file`` is given) and start a runner; with ``wait``, until
        the server has seen it poll."""
        if token_file is None:
            name, token_file = self.add_runner(server, short)
        else:
            name = self.runner_name(short)
        log = self.tmp / f"{log_name or name}.log"
        runner = RunnerProcess(
            name, server, token_file, clean_env(), log, self.tmp, backend=backend
        )
        self.runners.append(runner)
        runner.spawn()
        if wait:
            self.wait_polling(server, runner)
        return runner

    def wait_polling(self, server: ServerProcess, runner: RunnerProcess) -> None:
        api = self.api(server)
        started = time.time() - 1

        def polling() -> bool:
            if not runner.alive():
                raise AssertionError(
                    f"runner exited with {runner.returncode()}\n{runner.describe()}"
                )
            found = [r for r in api.get("/api/runners").json() if r["name"] == runner.name]
            return bool(found) and found[0]["last_seen"] >= int(started)

        wait_for(polling, 30, f"runner {runner.name} polling", describe=runner.describe)

    # -- clients -------------------------------------------------------------------------------

    def api(self, server: ServerProcess, token: str | None = "admin") -> httpx.Client:
        """An HTTP client of ``server``: the admin's token by default, ``None`` for none."""
        headers: dict[str, str] = {}
        if token == "admin":
            token = server.admin_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def cli(
        self,
        server: ServerProcess,
        *args: str,
        token: str | None = "admin",
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bastion ARGS`` with BASTION_SERVER and BASTION_TOKEN (the admin's by default)."""
        extra = {"BASTION_SERVER": server.url}
        if token == "admin":
            token = server.admin_token
        if token:
            extra["BASTION_TOKEN"] = token
        done = subprocess.run(
            [*bastion_command(), *args],
            env=clean_env(extra),
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert done.returncode == 0, (
                f"bastion {' '.join(args)} exited with {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done

    def cli_process(
        self, server: ServerProcess, *args: str, token: str | None = "admin"
    ) -> subprocess.Popen[str]:
        """``bastion ARGS`` running in the background (stdout and stderr piped); the test
        reads it with ``communicate``; ``close`` kills it if it is still running."""
        extra = {"BASTION_SERVER": server.url}
        if token == "admin":
            token = server.admin_token
        if token:
            extra["BASTION_TOKEN"] = token
        process = subprocess.Popen(
            [*bastion_command(), *args],
            env=clean_env(extra),
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.commands.append(process)
        return process

    # -- builds --------------------------------------------------------------------------------

    def builds(self, server: ServerProcess, slug: str) -> list[dict[str, Any]]:
        response = self.api(server).get(f"/api/repos/{slug}/builds")
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    def build(self, server: ServerProcess, slug: str, number: int) -> dict[str, Any]:
        response = self.api(server).get(f"/api/repos/{slug}/builds/{number}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_build(
        self,
        server: ServerProcess,
        slug: str,
        number: int,
        *,
        states: Iterable[str] = DONE,
        timeout: float = 90,
    ) -> dict[str, Any]:
        """The build once its status is one of ``states``."""
        wanted = set(states)
        api = self.api(server)

        def reached() -> dict[str, Any] | None:
            response = api.get(f"/api/repos/{slug}/builds/{number}")
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            build: dict[str, Any] = response.json()
            return build if build["status"] in wanted else None

        return wait_for(
            reached,
            timeout,
            f"build #{number} of {slug} reaching {sorted(wanted)}",
            describe=self.describe,
        )

    def logs(
        self, server: ServerProcess, slug: str, number: int, stage: int, step: int
    ) -> list[dict[str, Any]]:
        response = self.api(server).get(f"/api/repos/{slug}/builds/{number}/logs/{stage}/{step}")
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    # -- docker --------------------------------------------------------------------------------

    def containers(self, **labels: str) -> list[dict[str, Any]]:
        """Containers (running or not) of this test's runners with all of ``labels``."""
        assert self.docker_client is not None, "a docker test needs the docker_stack fixture"
        found: list[dict[str, Any]] = []
        for name in sorted(self.runner_names):
            filters = {
                "label": [
                    f"{LABEL_MANAGED}=true",
                    f"{LABEL_RUNNER}={name}",
                    *(f"{k}={v}" for k, v in labels.items()),
                ]
            }
            found += self.docker_client.api.containers(all=True, filters=filters)
        return found

    def resources(self, **labels: str) -> list[str]:
        """Containers, networks and volumes of this test's runners with all of ``labels``."""
        assert self.docker_client is not None
        api = self.docker_client.api
        out: list[str] = []
        for name in sorted(self.runner_names):
            filters = {
                "label": [
                    f"{LABEL_MANAGED}=true",
                    f"{LABEL_RUNNER}={name}",
                    *(f"{k}={v}" for k, v in labels.items()),
                ]
            }
            out += [f"container {c['Names'][0]}" for c in api.containers(all=True, filters=filters)]
            out += [f"network {n['Name']}" for n in api.networks(filters=filters)]
            out += [
                f"volume {v['Name']}" for v in api.volumes(filters=filters).get("Volumes") or []
            ]
        return out

    def _remove_docker_leftovers(self) -> None:
        if self.docker_client is None:
            return
        api = self.docker_client.api
        for name in self.runner_names:
            filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_RUNNER}={name}"]}
            for container in api.containers(all=True, filters=filters):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    api.remove_container(container["Id"], force=True, v=True)
            for network in api.networks(filters=filters):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    api.remove_network(network["Id"])
            for volume in api.volumes(filters=filters).get("Volumes") or []:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    api.remove_volume(volume["Name"], force=True)

    # -- diagnostics and teardown --------------------------------------------------------------

    def describe(self) -> str:
        parts = [s.describe() for s in self.servers]
        parts += [r.describe() for r in self.runners]
        return "\n".join(parts)

    def tracebacks(self) -> list[str]:
        """The logs of this test's processes that show a Python traceback (never expected:
        every failure must be a one-line message)."""
        processes: list[Process] = [*self.servers, *self.runners]
        return [
            f"--- {p.log} ---\n{tail(p.log, 60)}" for p in processes if "Traceback" in p.output()
        ]

    def secret(self, value: str) -> str:
        """Remember ``value`` as a secret that no process may print; returns it."""
        self.secret_values.add(value)
        return value

    def leaks(self) -> list[str]:
        """Which processes printed a secret: the admin's token, a runner's token, or a value
        given to ``secret`` (a forge token, a webhook secret). Tokens and secrets never go to
        a log line."""
        values = set(self.secret_values)
        for server in self.servers:
            with contextlib.suppress(OSError):
                values.add(server.admin_token)
        for runner in self.runners:
            with contextlib.suppress(OSError):
                values.add(runner.token)
        processes: list[Process] = [*self.servers, *self.runners]
        return [
            f"{p.log.name} shows a secret ({value[:6]}...)"
            for p in processes
            for value in values
            if value and value in p.output()
        ]

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        for command in self.commands:
            if command.poll() is None:
                command.kill()
            command.communicate(timeout=10)  # reaps it and closes its pipes
        # Runners first, while their server still answers: they cancel their stages and
        # report them; then the servers.
        for runner in self.runners:
            runner.stop()
        for server in self.servers:
            server.stop()
        self._remove_docker_leftovers()


__all__ = [
    "BUSYBOX",
    "DONE",
    "LABEL_RUN",
    "LABEL_STAGE",
    "Checkout",
    "RunnerProcess",
    "ServerProcess",
    "Stack",
    "create_local_repo",
    "new_checkout",
    "push",
    "tail",
    "wait_for",
]
