"""The runner's settings: which server, which credentials, how much work, on which backend.

The ``bastion runner`` command fills them from its options and ``BASTION_RUNNER_*``
variables (Drone's ``DRONE_RUNNER_NAME`` / ``_CAPACITY`` / ``_LABELS`` are accepted as
aliases, their meaning is the same); ``bastion server --with-runner`` builds them directly.
The container hardening is not here: the engine reads it (``BASTION_CAP_ADD``,
``BASTION_MEMORY_LIMIT``, ... see ``bastion.engine.hardening``) so that a runner and
``bastion exec`` harden alike.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bastion.engine.hardening import Hardening

_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class RunnerSettingsError(ValueError):
    """A runner setting cannot be used; the message names it and says what is expected."""


def parse_labels(values: Iterable[str]) -> dict[str, str]:
    """``k=v`` items (also Drone's ``k:v``), each value possibly a comma-separated list."""
    labels: dict[str, str] = {}
    for value in values:
        for raw in value.split(","):
            item = raw.strip()
            if not item:
                continue
            sep = "=" if "=" in item else ":"
            key, found, val = item.partition(sep)
            key, val = key.strip(), val.strip()
            if not found or not _LABEL_KEY.match(key):
                raise RunnerSettingsError(
                    f"label {item!r}: write KEY=VALUE (letters, digits, _ . / - in the key)"
                )
            labels[key] = val
    return labels


def default_name() -> str:
    """The host name, as Drone's runners call themselves by default."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).lstrip("-_.")
    return name[:100] or "runner"


@dataclass(frozen=True)
class RunnerSettings:
    """Everything ``run_runner`` needs. ``server`` and ``token`` are required."""

    server: str
    token: str = field(repr=False)
    name: str = field(default_factory=default_name)
    capacity: int = 2
    labels: Mapping[str, str] = field(default_factory=dict)
    backend: str = "docker"
    ca_cert: str = ""  # a private CA's certificate, to verify the server's TLS certificate
    insecure: bool = False  # allow plain HTTP to a server that is not on this machine
    hardening: Hardening | None = None  # None: read from BASTION_* like `bastion exec`
    poll_wait: float = 10.0  # how long the server may hold a poll without work
    cleanup_interval: float = 60.0  # how often to ask which leases were lost
    shutdown_grace: float = 30.0  # on stop: time to report the cancelled stages
    workdir: str = ""  # where stages keep their source while they run; "" = system temp

    def __post_init__(self) -> None:
        if not self.token.strip():
            raise RunnerSettingsError(
                "no runner token: create one with `bastion runner add NAME` and pass it with "
                "--token-file FILE (or BASTION_RUNNER_TOKEN)"
            )
        if not _NAME.match(self.name):
            raise RunnerSettingsError(
                f"runner name {self.name!r}: use letters, digits, _ . - (at most 100)"
            )
        if not 1 <= self.capacity <= 256:
            raise RunnerSettingsError(
                f"capacity {self.capacity}: a runner runs 1 to 256 stages at a time"
            )
        if self.poll_wait < 0 or self.cleanup_interval <= 0 or self.shutdown_grace < 0:
            raise RunnerSettingsError("poll_wait, cleanup_interval and shutdown_grace must be >= 0")
