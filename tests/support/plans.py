"""Build ``Plan``, ``StepPlan`` and ``ContainerSpec`` objects by hand, hardened by default.

Tests of backends, the executor or the CLI need plans without going through the compiler.
Every security value comes from ``Hardening()`` (or the one you pass), so a test that does
not mention hardening runs exactly what an untrusted pipeline would get.

Steps are built before the run they belong to: ``make_container`` and ``make_step`` leave
out what depends on the run, and ``make_plan`` fills it in for each step (see ``bind``):

* the container name becomes ``<prefix>-<name>``, with ``<prefix>`` = ``bastion-<run id>``;
* the run's labels (managed, run, owner pid and host) join the container's labels;
* volume mounts name volumes by short name: ``WORKSPACE`` ("workspace") becomes the run's
  workspace volume, and a name given in ``make_plan(volumes=...)`` becomes ``<prefix>-<name>``.

Example::

    plan = make_plan(
        [make_step("test", script="pytest -q", image=PYTHON, depends_on=("db",))],
        services=[make_service("db", script="exec httpd -f -p 80")],
    )

``scripted_step`` makes a step that behaves the same on the fake backend (through its
``BASTION_FAKE_*`` variables) and on a real one (through ``SHELL_SCRIPT``, the same
behaviour written in shell).
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bastion.backends.fake import (
    ENV_CAT,
    ENV_EXIT,
    ENV_LOG_BYTES,
    ENV_OUTPUT,
    ENV_SLEEP,
    ENV_STDERR,
    SHELL_SCRIPT,
)
from bastion.engine.hardening import Hardening
from bastion.engine.plan import (
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_RUN,
    LABEL_STEP,
    ContainerSpec,
    FailurePolicy,
    Mount,
    MountKind,
    Plan,
    PullPolicy,
    StepKind,
    StepPlan,
)
from bastion.spec.model import Conditions

BUSYBOX = "bastion/busybox:latest"
PYTHON = "bastion/python:3.11"
WORKSPACE_PATH = "/drone/src"  # Drone's default workspace
WORKSPACE = "workspace"  # the short name of the workspace volume in mounts


def new_run_id() -> str:
    """A run id no other test uses: resources of parallel tests never collide."""
    return "test-" + uuid.uuid4().hex[:12]


def run_prefix(run_id: str) -> str:
    return f"bastion-{run_id}"


def run_labels(
    run_id: str, *, owner_pid: int | None = None, owner_host: str | None = None
) -> dict[str, str]:
    """The labels of every resource of a run (owned by this process on this host)."""
    return {
        LABEL_MANAGED: "true",
        LABEL_RUN: run_id,
        LABEL_OWNER_PID: str(os.getpid() if owner_pid is None else owner_pid),
        LABEL_OWNER_HOST: owner_host or socket.gethostname(),
    }


def workspace_mount(path: str = WORKSPACE_PATH) -> Mount:
    return Mount(kind=MountKind.VOLUME, target=path, source=WORKSPACE)


def make_container(
    name: str = "step",
    *,
    image: str = BUSYBOX,
    script: str | None = None,
    entrypoint: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    pull: PullPolicy = PullPolicy.IF_NOT_EXISTS,
    hardening: Hardening | None = None,
    working_dir: str = WORKSPACE_PATH,
    user: str = "",
    labels: Mapping[str, str] | None = None,
    mounts: Iterable[Mount] | None = None,
    alias: str | None = None,
    **overrides: Any,
) -> ContainerSpec:
    """A container with the hardened defaults; ``name`` is the step name (made unique per
    run by ``make_plan``).

    ``script``: shell code run as ``/bin/sh -c script`` (instead of ``entrypoint`` and
    ``command``). ``mounts``: by default the workspace volume at ``WORKSPACE_PATH``.
    ``overrides``: any other ``ContainerSpec`` field, e.g. ``read_only_rootfs=True`` or
    ``pids_limit=64``.
    """
    h = hardening or Hardening()
    if script is not None:
        if entrypoint is not None or command is not None:
            raise ValueError("give either script or entrypoint/command, not both")
        entrypoint, command = ("/bin/sh", "-c"), (script,)
    fields: dict[str, Any] = {
        "name": name,
        "alias": alias or name,
        "image": image,
        "pull": pull,
        "entrypoint": tuple(entrypoint) if entrypoint is not None else None,
        "command": tuple(command) if command is not None else None,
        "env": dict(env or {}),
        "working_dir": working_dir,
        "user": user,
        "labels": {LABEL_STEP: name, **(labels or {})},
        "privileged": False,
        "cap_drop": ("ALL",),
        "cap_add": h.cap_add,
        "security_opt": h.security_opt(),
        "pids_limit": h.pids_limit,
        "mem_limit": h.mem_limit,
        "memswap_limit": h.mem_limit,  # equal to the memory limit: no swap
        "nano_cpus": int(h.cpus * 1e9),
        "read_only_rootfs": h.read_only_rootfs,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={h.tmp_size}"} if h.read_only_rootfs else {},
        "mounts": tuple(mounts) if mounts is not None else (workspace_mount(),),
    }
    fields.update(overrides)
    return ContainerSpec(**fields)


def make_step(
    name: str,
    *,
    kind: StepKind = StepKind.STEP,
    container: ContainerSpec | None = None,
    depends_on: Sequence[str] = (),
    detach: bool = False,
    failure: FailurePolicy = FailurePolicy.FAIL,
    when: Conditions | None = None,
    secret_env: Iterable[str] = (),
    secrets: Sequence[str] = (),
    number: int = 0,
    **container_args: Any,
) -> StepPlan:
    """A step (or a service, with ``kind``); ``container_args`` go to ``make_container``.
    ``number`` 0 lets ``make_plan`` number the steps in order, services first."""
    if container is None:
        container = make_container(name, **container_args)
    elif container_args:
        raise ValueError("give either container or make_container arguments, not both")
    return StepPlan(
        name=name,
        number=number,
        kind=kind,
        container=container,
        depends_on=tuple(depends_on),
        detach=detach,
        failure=failure,
        when=when or Conditions(),
        secret_env=frozenset(secret_env),
        secrets=tuple(secrets),
    )


def make_service(name: str, **step_args: Any) -> StepPlan:
    return make_step(name, kind=StepKind.SERVICE, **step_args)


def scripted_step(
    name: str,
    *,
    output: str | None = None,
    stderr: str | None = None,
    exit_code: int | None = None,
    sleep: float | str | None = None,
    log_bytes: int | None = None,
    cat: str | None = None,
    env: Mapping[str, str] | None = None,
    **step_args: Any,
) -> StepPlan:
    """A step that does the same on the fake backend and on a real one: the
    ``BASTION_FAKE_*`` variables script the fake, and ``SHELL_SCRIPT`` does what they say
    in a real shell. ``sleep="forever"`` runs until stopped; ``output`` and ``stderr`` take
    turns at each literal ``\\|`` (see ``bastion.backends.fake``)."""
    scripted: dict[str, str] = dict(env or {})
    for key, value in (
        (ENV_OUTPUT, output),
        (ENV_STDERR, stderr),
        (ENV_EXIT, exit_code),
        (ENV_SLEEP, sleep),
        (ENV_LOG_BYTES, log_bytes),
        (ENV_CAT, cat),
    ):
        if value is not None:
            scripted[key] = str(value)
    return make_step(name, script=SHELL_SCRIPT, env=scripted, **step_args)


def bind(step: StepPlan, plan: Plan, number: int) -> StepPlan:
    """The step, placed in the run: unique container name, run labels, volume names."""
    prefix = run_prefix(plan.run_id)
    volumes = {v.removeprefix(prefix + "-"): v for v in plan.volumes}
    volumes[WORKSPACE] = plan.workspace_volume

    def place(mount: Mount) -> Mount:
        if mount.kind is MountKind.VOLUME and mount.source in volumes:
            return replace(mount, source=volumes[mount.source])
        return mount

    container = replace(
        step.container,
        name=f"{prefix}-{step.container.name}",
        labels={**plan.labels, **step.container.labels},
        mounts=tuple(place(m) for m in step.container.mounts),
    )
    return replace(step, container=container, number=step.number or number)


def make_plan(
    steps: Sequence[StepPlan],
    services: Sequence[StepPlan] = (),
    *,
    run_id: str | None = None,
    volumes: Sequence[str] = (),
    pipeline: str = "default",
    workspace_path: str = WORKSPACE_PATH,
    timeout: float = 600.0,
    labels: Mapping[str, str] | None = None,
) -> Plan:
    """A plan of these steps and services, each bound to the run (see ``bind``).
    ``labels`` replace the run labels, e.g. ``run_labels(run_id, owner_pid=dead_pid)``."""
    run_id = run_id or new_run_id()
    prefix = run_prefix(run_id)
    unbound = Plan(
        run_id=run_id,
        pipeline=pipeline,
        labels=dict(labels) if labels is not None else run_labels(run_id),
        network=prefix,
        workspace_volume=f"{prefix}-workspace",
        workspace_path=workspace_path,
        volumes=tuple(f"{prefix}-{v}" for v in volumes),
        services=(),
        steps=(),
        timeout=timeout,
    )
    ordered = [*services, *steps]
    bound = [bind(s, unbound, i) for i, s in enumerate(ordered, start=1)]
    return replace(
        unbound, services=tuple(bound[: len(services)]), steps=tuple(bound[len(services) :])
    )


def workspace_tar(files: Mapping[str, bytes | str]) -> io.BytesIO:
    """A tar archive of these files (path -> content), as ``populate_workspace`` takes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer
