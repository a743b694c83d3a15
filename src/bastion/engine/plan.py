"""The backend-neutral plan a pipeline compiles to, and which a backend executes.

A ``Plan`` is everything a backend needs to run one pipeline (a stage): the containers to
start, with every hardening value already decided, the network and volumes to create, the
order and failure rules of the steps. Backends never read ``.drone.yml`` types or settings:
whatever they need is spelled out here, so that each backend stays a thin translation.

Secret values live only inside ``ContainerSpec.env`` of the steps entitled to them, or, when
the hardening says so (``BASTION_SECRET_FILES``), inside ``ContainerSpec.secret_files``: then
the step's environment has no secret value, only ``<NAME>_FILE=/run/secrets/<NAME>``, and the
backend writes each value to that file, on a tmpfs, visible to that step's container only
(see :func:`secrets_as_files`). The fields holding values are excluded from ``repr`` so that
a plan printed in a traceback or a log never shows a value.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from bastion.spec.model import Conditions

# Labels put on every container, network and volume a run creates, so that leftovers of a
# crashed run can be found and removed (``bastion exec --cleanup``).
LABEL_MANAGED = "io.bastion.managed"
LABEL_RUN = "io.bastion.run"
LABEL_OWNER_PID = "io.bastion.owner-pid"
LABEL_OWNER_HOST = "io.bastion.owner-host"
LABEL_STEP = "io.bastion.step"

# Where a step finds its secrets delivered as files (read-only, a tmpfs on the host).
SECRET_FILES_DIR = "/run/secrets"  # noqa: S105 - a path, not a password
SECRET_FILE_SUFFIX = "_FILE"  # noqa: S105 - a suffix, not a password
# A secret file is named after its variable: only names that are safe as a file name.
_SECRET_FILE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PullPolicy(StrEnum):
    """When a backend fetches an image from its registry."""

    ALWAYS = "always"
    NEVER = "never"
    IF_NOT_EXISTS = "if-not-exists"


class MountKind(StrEnum):
    VOLUME = "volume"  # a named volume the plan creates (workspace, temp volumes)
    TMPFS = "tmpfs"  # an in-memory filesystem (temp volumes with medium: memory)
    BIND = "bind"  # a host path; only ever present for trusted repositories


class StepKind(StrEnum):
    STEP = "step"
    SERVICE = "service"


class FailurePolicy(StrEnum):
    """What a failing step does to the pipeline."""

    FAIL = "fail"  # the pipeline fails; steps not yet started are skipped unless when.status
    IGNORE = "ignore"  # failure: ignore, the pipeline continues as if it had passed
    FAST = "fast"  # failure: fast, like FAIL and also stops the steps running in parallel


@dataclass(frozen=True)
class Mount:
    kind: MountKind
    target: str
    source: str = ""  # volume name or host path; empty for tmpfs
    read_only: bool = False
    tmpfs_size: int = 0  # bytes, tmpfs only; 0 means the backend's default


@dataclass(frozen=True)
class ContainerSpec:
    """One container, with every security-relevant value decided by the compiler."""

    name: str  # unique container name, derived from the run id
    alias: str  # network alias: the step or service name, so others reach it by name
    image: str
    pull: PullPolicy
    entrypoint: tuple[str, ...] | None
    command: tuple[str, ...] | None
    env: Mapping[str, str] = field(repr=False)
    working_dir: str
    user: str
    labels: Mapping[str, str]
    privileged: bool
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    security_opt: tuple[str, ...]
    pids_limit: int
    mem_limit: int  # bytes
    memswap_limit: int  # bytes; equal to mem_limit means no swap
    nano_cpus: int  # 1e9 = one CPU
    read_only_rootfs: bool
    tmpfs: Mapping[str, str]  # path -> mount options, for the read-only root's scratch space
    mounts: tuple[Mount, ...]
    devices: tuple[str, ...] = ()  # "host:container" pairs; trusted only
    network_mode: str = ""  # "" = the plan's network; anything else is trusted only
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # "host:ip"
    shm_size: int = 0  # bytes; 0 = engine default
    pull_auth: Mapping[str, str] | None = field(default=None, repr=False)
    # Variable name -> secret value, delivered as the file SECRET_FILES_DIR/<name> (empty:
    # secrets are in ``env``). The backend mounts them into this container only.
    secret_files: Mapping[str, str] = field(default_factory=dict, repr=False)

    def redacted_env(self, secret_names: frozenset[str]) -> dict[str, str]:
        """The environment with the values of variables fed from secrets replaced."""
        return {k: ("********" if k in secret_names else v) for k, v in self.env.items()}


@dataclass(frozen=True)
class StepPlan:
    """A step or a service of the pipeline, as the executor schedules it."""

    name: str
    number: int  # 1-based, in file order; services first as in Drone's UI
    kind: StepKind
    container: ContainerSpec
    depends_on: tuple[str, ...]  # names of steps that must be done before this one starts
    detach: bool
    failure: FailurePolicy
    when: Conditions
    secret_env: frozenset[str] = frozenset()  # env names whose values come from secrets
    secrets: tuple[str, ...] = ()  # names of the secrets this step was given
    # Why the step may not run (a secret refused to it, with the rule): the executor fails
    # it with this detail without creating its container; "" for a step that may run.
    refused: str = ""


@dataclass(frozen=True)
class Plan:
    """One pipeline, compiled: what to create, what to run, in which order."""

    run_id: str
    pipeline: str
    labels: Mapping[str, str]
    network: str  # name of the per-run network
    workspace_volume: str
    workspace_path: str
    volumes: tuple[str, ...]  # named temp volumes to create (besides the workspace)
    services: tuple[StepPlan, ...]
    steps: tuple[StepPlan, ...]
    timeout: float  # seconds for the whole pipeline

    def all_steps(self) -> tuple[StepPlan, ...]:
        return self.services + self.steps

    def step(self, name: str) -> StepPlan:
        for s in self.all_steps():
            if s.name == name:
                return s
        raise KeyError(name)


def secrets_as_files(
    env: Mapping[str, str], secret_env: Collection[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Move the secret variables of ``env`` to files: ``(environment, secret_files)``.

    Each variable ``NAME`` in ``secret_env`` leaves the environment; its value becomes the
    file ``/run/secrets/NAME`` and the environment gets ``NAME_FILE`` with that path (which
    wins over a ``NAME_FILE`` the step set itself: it is where the value is). Raises
    ``ValueError`` naming a variable whose name cannot be a file name (only letters, digits
    and ``_``, not starting with a digit: no ``/``, no ``..``).
    """
    bad = sorted(name for name in secret_env if not _SECRET_FILE_NAME.fullmatch(name))
    if bad:
        raise ValueError(
            f"variable{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))} from secrets "
            "cannot be delivered as files: a name of letters, digits and _ is needed"
        )
    files = {name: env[name] for name in secret_env if name in env}
    out = {key: value for key, value in env.items() if key not in files}
    for name in files:
        out[name + SECRET_FILE_SUFFIX] = f"{SECRET_FILES_DIR}/{name}"
    return out, files
