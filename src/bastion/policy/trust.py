"""Admission of a pipeline according to the repository's trust level.

Two rule sets, applied before any container starts (and applied again by the runner just
before running, as defence in depth):

- For everyone, trusted or not: no mount of a container runtime socket or of a directory
  that contains one (``/``, ``/var/run``, ...) or of the runtime's storage; no mount over the
  workspace or over the runner's reserved paths; no memory limit above the runner maximum.
  These protect the host and the run itself, and no repository setting lifts them.
- For untrusted repositories (the default for every repository): no privileged mode, host
  volumes, devices, network_mode, dns / dns_search / extra_hosts, shm_size or in-memory temp
  volumes. Each of these reaches outside the container sandbox or into the host's resources.
  ``trusted`` lifts them; only an administrator can grant it (``bastion exec --trusted``
  locally).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from bastion.spec.loader import YamlPath
from bastion.spec.model import Pipeline, Step

# Paths whose mount gives a container control of the host's container runtime.
RUNTIME_SOCKETS: tuple[str, ...] = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
)
RUNTIME_STATE_DIRS: tuple[str, ...] = ("/var/lib/docker", "/var/lib/containerd", "/run/containerd")

TRUST_HINT = (
    "an administrator can mark the repository trusted (bastion exec --trusted for a local run)"
)


@dataclass(frozen=True)
class Refusal:
    """One thing the pipeline asks for and may not have."""

    pipeline: str
    path: YamlPath  # inside the pipeline's document
    step: str  # "" for pipeline-level fields
    field: str
    message: str  # says what, why, and what would allow it (if anything)
    trusted_allows: bool  # True if marking the repository trusted would lift it


def _is_runtime_path(host_path: str) -> bool:
    path = posixpath.normpath(host_path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    for sock in RUNTIME_SOCKETS:
        if path in {sock, "/"} or sock.startswith(path.rstrip("/") + "/"):
            return True
    return any(path == d or path.startswith(d + "/") for d in RUNTIME_STATE_DIRS)


def _covers(mount_path: str, protected: str) -> bool:
    """True if mounting at ``mount_path`` hides ``protected`` (same path or an ancestor)."""
    mount = posixpath.normpath(mount_path)
    prot = posixpath.normpath(protected)
    return mount in {prot, "/"} or prot.startswith(mount.rstrip("/") + "/")


def _under(mount_path: str, reserved: str) -> bool:
    mount = posixpath.normpath(mount_path)
    res = posixpath.normpath(reserved)
    return mount == res or mount.startswith(res + "/") or _covers(mount, res)


def review_pipeline(
    pipeline: Pipeline,
    *,
    trusted: bool,
    max_mem_limit: int,
    reserved_paths: Iterable[str] = ("/bastion",),
) -> list[Refusal]:
    """Every refusal for ``pipeline``; an empty list means it may run."""
    refusals: list[Refusal] = []
    reserved = tuple(reserved_paths)
    workspace = pipeline.workspace.full_path

    def refuse(path: YamlPath, step: str, field: str, message: str, *, by_trust: bool) -> None:
        refusals.append(Refusal(pipeline.name, path, step, field, message, by_trust))

    def untrusted(path: YamlPath, step: str, field: str, what: str, why: str) -> None:
        if trusted:
            return
        who = f"step {step!r}" if step else f"pipeline {pipeline.name!r}"
        refuse(
            path,
            step,
            field,
            f"{who} uses {what}, which an untrusted repository may not use ({why}); "
            f"to allow it, {TRUST_HINT}",
            by_trust=True,
        )

    users: dict[str, list[str]] = {}
    for step in (*pipeline.services, *pipeline.steps):
        for mount in step.volumes:
            users.setdefault(mount.name, []).append(step.name)
    host_volumes: dict[str, str] = {}
    memory_volumes: set[str] = set()
    for i, volume in enumerate(pipeline.volumes):
        where: YamlPath = ("volumes", i)
        if volume.host is not None:
            host_volumes[volume.name] = volume.host.path
            if _is_runtime_path(volume.host.path):
                refuse(
                    (*where, "host", "path"),
                    "",
                    "volumes",
                    f"volume {volume.name!r} mounts {volume.host.path}"
                    + (
                        f" (used by step {', '.join(repr(u) for u in users[volume.name])})"
                        if volume.name in users
                        else ""
                    )
                    + ", which exposes the container runtime (its socket or storage); that is "
                    "control of the host and is refused for every repository, trusted or not",
                    by_trust=False,
                )
            untrusted(
                (*where, "host"),
                "",
                "volumes",
                f"host volume {volume.name!r} ({volume.host.path})",
                "it shares the runner host's filesystem with the build",
            )
        elif volume.temp is not None and volume.temp.medium == "memory":
            memory_volumes.add(volume.name)
            untrusted(
                (*where, "temp", "medium"),
                "",
                "volumes",
                f"in-memory temp volume {volume.name!r} (medium: memory)",
                "it consumes the runner host's memory outside the container's limit",
            )

    sections: list[tuple[str, int, Step]] = [
        ("services", i, s) for i, s in enumerate(pipeline.services)
    ] + [("steps", i, s) for i, s in enumerate(pipeline.steps)]
    for section, index, step in sections:
        where = (section, index)
        name = step.name
        if step.privileged:
            untrusted(
                (*where, "privileged"),
                name,
                "privileged",
                "privileged: true",
                "a privileged container can take over the host",
            )
        if step.devices:
            untrusted(
                (*where, "devices"),
                name,
                "devices",
                "devices",
                "it gives the build direct access to host devices",
            )
        if step.network_mode:
            untrusted(
                (*where, "network_mode"),
                name,
                "network_mode",
                f"network_mode: {step.network_mode}",
                "it leaves the run's isolated network",
            )
        for field in ("dns", "dns_search", "extra_hosts"):
            if getattr(step, field):
                untrusted(
                    (*where, field),
                    name,
                    field,
                    field,
                    "it redirects name resolution, which can impersonate internal services",
                )
        if step.shm_size is not None:
            untrusted(
                (*where, "shm_size"),
                name,
                "shm_size",
                "shm_size",
                "shared memory is taken from the runner host outside the memory limit",
            )
        if step.mem_limit is not None and step.mem_limit > max_mem_limit:
            refuse(
                (*where, "mem_limit"),
                name,
                "mem_limit",
                f"step {name!r} asks for mem_limit {step.mem_limit} bytes, more than this "
                f"runner allows ({max_mem_limit} bytes); lower it, or raise "
                "BASTION_MAX_MEMORY_LIMIT on the runner",
                by_trust=False,
            )
        for m, mount in enumerate(step.volumes):
            mpath: YamlPath = (*where, "volumes", m)
            if _covers(mount.path, workspace):
                refuse(
                    (*mpath, "path"),
                    name,
                    "volumes",
                    f"step {name!r} mounts volume {mount.name!r} at {mount.path}, over the "
                    f"workspace {workspace}; mount it elsewhere (a path inside the workspace "
                    "is fine)",
                    by_trust=False,
                )
            for res in reserved:
                if _under(mount.path, res):
                    refuse(
                        (*mpath, "path"),
                        name,
                        "volumes",
                        f"step {name!r} mounts volume {mount.name!r} at {mount.path}, which "
                        f"is reserved for the runner ({res}); choose another path",
                        by_trust=False,
                    )
            if mount.name in host_volumes:
                untrusted(
                    mpath,
                    name,
                    "volumes",
                    f"host volume {mount.name!r} ({host_volumes[mount.name]})",
                    "it shares the runner host's filesystem with the build",
                )
            elif mount.name in memory_volumes:
                untrusted(
                    mpath,
                    name,
                    "volumes",
                    f"in-memory temp volume {mount.name!r}",
                    "it consumes the runner host's memory outside the container's limit",
                )
    return refusals
