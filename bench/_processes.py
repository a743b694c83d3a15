"""What the benchmarks that start Bastion processes share: a child process stopped by its
PID, the clean environment every child gets, a free loopback port, and git.

Imported as ``_processes`` by scripts run as ``python bench/<name>.py`` (the script's folder
is first on ``sys.path``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Child:
    """A process this script started; stopped by its PID."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def wait(self, grace: float = 30.0) -> int:
        """Its exit code; killed when it has not ended within ``grace`` seconds."""
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        return self.process.returncode

    def stop(self, grace: float = 30.0) -> int:
        self.terminate()
        return self.wait(grace)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def clean_env(home: Path) -> dict[str, str]:
    """The environment of every child: no BASTION_*, DRONE_* or GIT_* settings of the caller,
    no proxies (everything goes to 127.0.0.1), a private HOME for git."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BASTION_", "DRONE_", "GIT_"))
        and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="Bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
    )
    return env


def start(name: str, argv: list[str], env: dict[str, str], log: Path) -> Child:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    return Child(name, process, log)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr
