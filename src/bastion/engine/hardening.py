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

from dataclasses import dataclass, field

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    seccomp_profile: str = ""  # "" = Docker's default profile; "unconfined" is never used
    max_mem_limit: int = 8 * GIB  # the largest mem_limit a (trusted) step may ask for
    runner_paths: tuple[str, ...] = field(default=("/bastion",))  # reserved in containers

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
            ("seccomp", self.seccomp_profile or "Docker default profile", "BASTION_SECCOMP"),
            ("pids limit", str(self.pids_limit), "BASTION_PIDS_LIMIT"),
            ("memory limit", _size(self.mem_limit) + " (no swap)", "BASTION_MEMORY_LIMIT"),
            ("max step mem_limit", _size(self.max_mem_limit), "BASTION_MAX_MEMORY_LIMIT"),
            ("cpus", f"{self.cpus:g}", "BASTION_CPUS"),
            (
                "read-only root filesystem",
                f"on, tmpfs /tmp {_size(self.tmp_size)}" if self.read_only_rootfs else "off",
                "BASTION_READ_ONLY_ROOTFS",
            ),
            ("host namespaces", "none (own pid, ipc, uts, network)", "-"),
            ("docker socket", "never mounted", "-"),
            ("network", "a bridge network of the run's own", "-"),
        ]


def _size(n: int) -> str:
    if n % GIB == 0:
        return f"{n // GIB} GiB"
    return f"{n // MIB} MiB"


class HardeningSettings(BaseSettings):
    """``BASTION_*`` variables (with Drone's runner names as aliases) → ``Hardening``."""

    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    cap_add: str = Field(default=",".join(DEFAULT_CAPABILITIES))
    no_new_privileges: bool = True
    seccomp: str = ""
    pids_limit: int = Field(default=1024, ge=16)
    memory_limit: int = Field(
        default=2 * GIB,
        ge=16 * MIB,
        validation_alias=AliasChoices("BASTION_MEMORY_LIMIT", "DRONE_MEMORY_LIMIT"),
    )
    max_memory_limit: int = Field(default=8 * GIB, ge=16 * MIB)
    cpus: float = Field(default=2.0, gt=0)
    read_only_rootfs: bool = False
    tmp_size: int = Field(default=512 * MIB, ge=MIB)

    def to_hardening(self) -> Hardening:
        caps = tuple(c.strip().upper() for c in self.cap_add.split(",") if c.strip())
        return Hardening(
            cap_add=caps,
            no_new_privileges=self.no_new_privileges,
            seccomp_profile=self.seccomp,
            pids_limit=self.pids_limit,
            mem_limit=self.memory_limit,
            max_mem_limit=max(self.max_memory_limit, self.memory_limit),
            cpus=self.cpus,
            read_only_rootfs=self.read_only_rootfs,
            tmp_size=self.tmp_size,
        )
