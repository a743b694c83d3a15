"""Hardened container defaults, and the settings that change them.

Every step and service container gets these values unless an operator changes the setting;
a pipeline cannot loosen them (``privileged`` and friends are refused for untrusted
repositories by ``bastion.policy``, and even a trusted pipeline cannot raise a limit above
the runner's maximum). ``Hardening.explain()`` lists the effective values for
``bastion exec --explain``.

Capabilities: Docker's default set is CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW,
SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE. Bastion
drops them all and adds back only what package managers and build tools need to manage files
and switch users inside their own container (see ``DEFAULT_CAPABILITIES``). Gone are NET_RAW
(raw sockets: ARP/DNS spoofing on the build network), MKNOD (device nodes), SYS_CHROOT,
AUDIT_WRITE, SETFCAP (file capabilities, a privilege-escalation path) and SETPCAP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CHOWN",  # chown files in the workspace (npm, pip, apt)
    "DAC_OVERRIDE",  # root may read/write files owned by other users (as on any Linux)
    "FOWNER",  # chmod / utime on files it does not own
    "FSETID",  # keep setgid bits when copying files
    "KILL",  # signal its own child processes
    "SETGID",  # su / gosu / apt's _apt sandbox user
    "SETUID",
    "NET_BIND_SERVICE",  # services listening on ports below 1024 (http on 80)
)

DROPPED_FROM_DOCKER_DEFAULT: tuple[str, ...] = (
    "NET_RAW",
    "MKNOD",
    "SYS_CHROOT",
    "AUDIT_WRITE",
    "SETFCAP",
    "SETPCAP",
)

# Capabilities that amount to root on the host; no setting adds them to every build.
FORBIDDEN_CAPABILITIES = frozenset(
    {
        "SYS_ADMIN",
        "SYS_MODULE",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "DAC_READ_SEARCH",
        "NET_ADMIN",
        "SYS_BOOT",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "BPF",
        "PERFMON",
        "ALL",
    }
)

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Hardening:
    """The effective hardening for the containers of a run."""

    cap_add: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = True
    pids_limit: int = 1024
    mem_limit: int = 2 * GIB
    cpus: float = 2.0
    read_only_rootfs: bool = False
    tmp_size: int = 512 * MIB  # size of the tmpfs on /tmp when the root is read-only
    seccomp_profile: str = ""  # JSON of a custom profile; "" = Docker's default profile
    seccomp_source: str = ""  # where the custom profile came from, for explain()
    max_mem_limit: int = 8 * GIB  # the largest mem_limit a (trusted) step may ask for
    runner_paths: tuple[str, ...] = field(default=("/bastion",))  # reserved in containers
    # Secrets as files on a tmpfs (/run/secrets/NAME, NAME_FILE in the environment) instead
    # of environment variables; see ``bastion.engine.plan.secrets_as_files``.
    secret_files: bool = False

    def security_opt(self) -> tuple[str, ...]:
        opts: list[str] = []
        if self.no_new_privileges:
            opts.append("no-new-privileges:true")
        if self.seccomp_profile:
            opts.append(f"seccomp={self.seccomp_profile}")
        return tuple(opts)

    def explain(self) -> list[tuple[str, str, str]]:
        """Rows of (setting, effective value, environment variable that changes it)."""
        return [
            ("privileged", "never (refused for untrusted repositories)", "-"),
            ("capabilities", "drop ALL, add " + ",".join(self.cap_add), "BASTION_CAP_ADD"),
            (
                "no-new-privileges",
                "on" if self.no_new_privileges else "OFF",
                "BASTION_NO_NEW_PRIVILEGES",
            ),
            (
                "seccomp",
                f"custom profile {self.seccomp_source}"
                if self.seccomp_profile
                else "Docker default profile",
                "BASTION_SECCOMP",
            ),
            ("pids limit", str(self.pids_limit), "BASTION_PIDS_LIMIT"),
            ("memory limit", _size(self.mem_limit) + " (no swap)", "BASTION_MEMORY_LIMIT"),
            ("max step mem_limit", _size(self.max_mem_limit), "BASTION_MAX_MEMORY_LIMIT"),
            ("cpus", f"{self.cpus:g}", "BASTION_CPUS"),
            (
                "read-only root filesystem",
                f"on, tmpfs /tmp {_size(self.tmp_size)}" if self.read_only_rootfs else "off",
                "BASTION_READ_ONLY_ROOTFS",
            ),
            (
                "secrets",
                "files in /run/secrets on a tmpfs, NAME_FILE in the environment"
                if self.secret_files
                else "environment variables",
                "BASTION_SECRET_FILES",
            ),
            ("host namespaces", "none (own pid, ipc, uts, network)", "-"),
            ("docker socket", "never mounted", "-"),
            ("network", "a bridge network of the run's own", "-"),
        ]


def _size(n: int) -> str:
    if n % GIB == 0:
        return f"{n // GIB} GiB"
    return f"{n // MIB} MiB"


class SettingsError(ValueError):
    """A hardening setting has a value Bastion cannot use; the message names the variable."""


def load_hardening(environ: Mapping[str, str] | None = None) -> Hardening:
    """The hardening from the environment (``os.environ`` by default), or ``SettingsError``
    naming each bad variable."""
    sources = HardeningSettings.sources(os.environ if environ is None else environ)
    try:
        settings = HardeningSettings.model_validate(
            {name: value for name, (_, value) in sources.items()}
        )
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field_name = str(error["loc"][0]) if error["loc"] else ""
            variable = sources[field_name][0] if field_name in sources else "BASTION_*"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{variable}: {message}")
        raise SettingsError("; ".join(problems)) from None
    return settings.to_hardening()


class HardeningSettings(BaseModel):
    """``BASTION_*`` variables (with Drone's runner names as aliases) → ``Hardening``.

    A plain pydantic model fed from the environment by ``sources``, as pydantic-settings
    would (names case-insensitive, ``BASTION_`` prefix, unknown variables ignored); not
    ``pydantic_settings.BaseSettings`` itself, whose import (asyncio, argparse, ...) costs
    every ``bastion exec`` about 20 ms of start-up.
    """

    model_config = ConfigDict(extra="ignore")

    cap_add: str = Field(default=",".join(DEFAULT_CAPABILITIES))
    no_new_privileges: bool = True
    seccomp: str = ""
    pids_limit: int = Field(default=1024, ge=16)
    memory_limit: int = Field(default=2 * GIB, ge=16 * MIB)
    max_memory_limit: int = Field(default=8 * GIB, ge=16 * MIB)
    cpus: float = Field(default=2.0, gt=0)
    read_only_rootfs: bool = False
    tmp_size: int = Field(default=512 * MIB, ge=MIB)
    secret_files: bool = False

    # The variables a field is read from, first found wins; by default BASTION_<FIELD>.
    ALIASES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "memory_limit": ("BASTION_MEMORY_LIMIT", "DRONE_MEMORY_LIMIT"),
    }

    @classmethod
    def sources(cls, environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        """field → (the variable it is set by, its value), for the fields that are set.
        Variable names are matched without regard to case, as pydantic-settings does."""
        lowered = {key.lower(): value for key, value in environ.items()}
        found: dict[str, tuple[str, str]] = {}
        for name in cls.model_fields:
            for variable in cls.ALIASES.get(name, (f"BASTION_{name.upper()}",)):
                if variable.lower() in lowered:
                    found[name] = (variable, lowered[variable.lower()])
                    break
        return found

    @field_validator("seccomp")
    @classmethod
    def _never_unconfined(cls, value: str) -> str:
        if value.strip().lower() == "unconfined":
            raise ValueError(
                "unconfined turns the system-call filter off for every build; give the path "
                "of a seccomp profile (JSON) to replace Docker's default, or leave it empty"
            )
        return value.strip()

    @field_validator("cap_add")
    @classmethod
    def _known_capabilities(cls, value: str) -> str:
        caps = [c.strip().upper().removeprefix("CAP_") for c in value.split(",") if c.strip()]
        forbidden = sorted(set(caps) & FORBIDDEN_CAPABILITIES)
        if forbidden:
            raise ValueError(
                f"{', '.join(forbidden)} would let a build escape its container; Bastion never "
                "adds it (use a trusted repository with privileged: true if you really must)"
            )
        return ",".join(caps)

    def to_hardening(self) -> Hardening:
        caps = tuple(c.strip().upper() for c in self.cap_add.split(",") if c.strip())
        profile = ""
        if self.seccomp:
            # Docker's API takes the profile's JSON, not its path (the docker CLI reads it).
            try:
                profile = Path(self.seccomp).read_text(encoding="utf-8")
                json.loads(profile)
            except (OSError, ValueError) as exc:
                raise SettingsError(
                    f"BASTION_SECCOMP: cannot use {self.seccomp} as a seccomp profile ({exc})"
                ) from None
        return Hardening(
            cap_add=caps,
            no_new_privileges=self.no_new_privileges,
            seccomp_profile=profile,
            seccomp_source=self.seccomp,
            pids_limit=self.pids_limit,
            mem_limit=self.memory_limit,
            max_mem_limit=max(self.max_memory_limit, self.memory_limit),
            cpus=self.cpus,
            read_only_rootfs=self.read_only_rootfs,
            tmp_size=self.tmp_size,
            secret_files=self.secret_files,
        )
