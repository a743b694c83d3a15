"""Rules every backend applies the same way, so that ``fake`` and ``docker`` cannot drift.

* ``is_stale``: which leftovers ``cleanup_stale`` may remove (decided from labels alone).
* ``exit_detail``: the human text next to a step's status ("killed: out of memory ...").
* ``run_of``: the run a resource belongs to, from its labels.
* ``workspace_helper_image``: which image ``populate_workspace`` copies the workspace with.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from bastion.engine.backend import BackendError
from bastion.engine.plan import (
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_RUN,
    ContainerSpec,
    Plan,
    PullPolicy,
)

_MIB = 1 << 20
_GIB = 1 << 30

# The exit code of a process killed by SIGKILL (128 + 9), as a shell and Docker report it.
EXIT_KILLED = 137


def format_size(n: int) -> str:
    """``268435456`` → ``256 MiB``; sizes are shown the way the settings spell them."""
    if n >= _GIB and n % _GIB == 0:
        return f"{n // _GIB} GiB"
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MiB"
    return f"{n} bytes"


def process_is_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 checks, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists but belongs to another user: still alive, so not ours to clean.
        return True
    except OverflowError:
        return False
    return True


def is_stale(labels: Mapping[str, str], hostname: str, *, include_live: bool) -> bool:
    """Whether ``cleanup_stale`` may remove a resource carrying these labels.

    Only resources Bastion manages and that were created on this host qualify: another host
    sharing the engine (a remote ``DOCKER_HOST``) may have live runs whose pids mean nothing
    here. Among those, a resource is stale when its owner process is gone, or always with
    ``include_live``. An owner pid that is missing or not a number cannot belong to a live
    run, so it counts as gone. (A pid reused by an unrelated process keeps a leftover alive
    until ``include_live``; the reverse, removing a live run's resources, cannot happen.)
    """
    if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_OWNER_HOST) != hostname:
        return False
    if include_live:
        return True
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return True
    return not process_is_alive(pid)


def run_of(labels: Mapping[str, str]) -> str:
    return labels.get(LABEL_RUN, "")


def workspace_helper_image(
    plan: Plan,
    *,
    is_local: Callable[[str], bool],
    pull: Callable[[ContainerSpec], None],
) -> str:
    """The image of the throwaway container through which ``populate_workspace`` copies
    the workspace into its volume.

    The container never runs, so any image of the plan will do, and a step whose image is
    missing must not stop the whole run here: it fails when it starts, with its own error,
    and the steps that handle failures still run. So the images of the plan are considered
    in order (services, then steps): the first one present on this host, whatever its pull
    policy; if none is, the first one that its pull policy allows to pull and that pulls
    (``pull`` raises ``BackendError`` when it cannot). Only when no image is usable does
    this raise, with the reason for each.
    """
    specs = [s.container for s in plan.all_steps()]
    if not specs:
        raise BackendError(f"run {plan.run_id}: the plan has no step whose image to use")
    for spec in specs:
        if is_local(spec.image):
            return spec.image
    failures: dict[str, str] = {}  # image -> why it cannot be used (the first reason)
    tried: list[tuple[str, Mapping[str, str] | None]] = []
    for spec in specs:
        if spec.pull is PullPolicy.NEVER:
            failures.setdefault(spec.image, missing_image_message(spec.image))
            continue
        if (spec.image, spec.pull_auth) in tried:
            continue
        tried.append((spec.image, spec.pull_auth))
        try:
            pull(spec)
        except BackendError as exc:
            failures.setdefault(spec.image, str(exc))
            continue
        return spec.image
    raise BackendError(
        f"cannot copy the workspace in: no image of run {plan.run_id} is present or pulls: "
        + "; ".join(failures.values())
    )


def exit_detail(
    *,
    oom_killed: bool,
    mem_limit: int,
    pids_events: int,
    pids_limit: int,
    killed: bool,
    extra: str = "",
) -> str:
    """The text shown next to a step's status, one clause per thing the backend learnt."""
    parts: list[str] = []
    if oom_killed:
        parts.append(f"killed: out of memory (limit {format_size(mem_limit)})")
    if pids_events > 0:
        times = "once" if pids_events == 1 else f"{pids_events} times"
        parts.append(f"fork failed {times}: pids limit {pids_limit} reached")
    if killed and not oom_killed:
        parts.append("killed: stopped by Bastion (cancel, timeout or a failing step)")
    if extra:
        parts.append(extra)
    return "; ".join(parts)


# -- messages both backends use, so that a test (or a user) sees the same words on either ---


def missing_image_message(image: str) -> str:
    return (
        f"image {image!r} is not present on this host and its pull policy is 'never': "
        "build or load it first (scripts/images.sh builds the local bastion/* images)"
    )


def pull_failed_message(image: str, reason: str) -> str:
    return (
        f"cannot pull image {image!r}: {reason}. No registry may be reachable from this host; "
        "the local images (bastion/busybox, bastion/python) are built by scripts/images.sh, "
        "and a step using them should say 'pull: if-not-exists' or 'pull: never'"
    )


def not_started_message(step: str) -> str:
    return f"step {step!r} has no container: start() was not called or failed"
