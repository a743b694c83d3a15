"""Secret files on the host's tmpfs, for the Docker backend (``ContainerSpec.secret_files``).

When secrets are delivered as files (``BASTION_SECRET_FILES``), each value must reach the
step's container without ever touching a disk: not the host's, not the engine's image layers,
not a volume. So the backend writes them under a directory on a tmpfs of the host (``/dev/shm``,
else ``$XDG_RUNTIME_DIR``; checked to *be* a tmpfs in ``/proc/self/mountinfo``, refused
otherwise) and bind-mounts a per-step directory read-only at ``/run/secrets`` of that step's
container only. Layout and modes::

    /dev/shm/bastion-secrets-<run id>/        0700, the runner's user: no other host user
        labels.json                           0400, the run's labels (owner host and pid)
        <container name>/                     0755 (the container's user may be any uid)
            <NAME>                            0444, the value, exactly

The run directory is made under a temporary name and renamed once ``labels.json`` is in, so
a directory with the final name always says whose it is. ``remove_step`` deletes a step's
directory with its container, ``remove_run`` the whole run's at ``destroy``; after a crash,
``cleanup_stale`` removes the directories of runs whose owner process is gone (the same rule
as for containers, :func:`bastion.backends._common.is_stale`, from ``labels.json``).
The engine must see the host's filesystem at the same path (a local Docker engine); with a
remote ``DOCKER_HOST`` the mount fails and the step's start reports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from bastion.backends._common import is_stale, process_is_alive
from bastion.engine.backend import BackendError
from bastion.engine.plan import ContainerSpec, Plan

PREFIX = "bastion-secrets-"
_PARTIAL = ".bastion-secrets-partial-"
_LABELS = "labels.json"
_MOUNTINFO = Path("/proc/self/mountinfo")


def tmpfs_mounts(mountinfo: Path = _MOUNTINFO) -> dict[str, str]:
    """Mount point -> file system type, the last mount on a point winning (it hides the
    ones below)."""
    mounts: dict[str, str] = {}
    try:
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return mounts
    for line in lines:
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        fstype = line.split(" - ", 1)[1].split(" ", 1)[0]
        mounts[point] = fstype
    return mounts


def is_tmpfs(path: Path, mountinfo: Path = _MOUNTINFO) -> bool:
    """Whether ``path`` lies on a tmpfs (the file system of its longest mount point)."""
    resolved = str(path.resolve())
    best, fstype = "", ""
    for point, kind in tmpfs_mounts(mountinfo).items():
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype == "tmpfs"


def default_bases(environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    environ = os.environ if environ is None else environ
    # Per-run directories made with mkdtemp, 0700, renamed into place: S108 does not apply.
    bases = [Path("/dev/shm")]  # noqa: S108
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime:
        bases.append(Path(runtime))
    return tuple(bases)


class SecretFiles:
    """The secret-file directories of the runs of one backend; thread-safe.

    ``bases``: where to look for a tmpfs, in order (see the module docstring); the first
    that exists and is a tmpfs is used. ``hostname``: for ``cleanup_stale``.
    """

    def __init__(
        self,
        hostname: str,
        bases: tuple[Path, ...] | None = None,
        *,
        mountinfo: Path = _MOUNTINFO,
    ) -> None:
        self.hostname = hostname
        self._bases = bases
        self._mountinfo = mountinfo
        self._lock = threading.Lock()

    def base(self) -> Path:
        """The tmpfs directory runs are made in; ``BackendError`` when there is none."""
        candidates = self._bases if self._bases is not None else default_bases()
        for base in candidates:
            if base.is_dir() and is_tmpfs(base, self._mountinfo):
                return base
        tried = ", ".join(str(base) for base in candidates)
        raise BackendError(
            f"secrets are to be delivered as files (BASTION_SECRET_FILES) but no tmpfs was "
            f"found to hold them (tried {tried}); secrets are never written to a disk: mount "
            "a tmpfs on /dev/shm, or turn BASTION_SECRET_FILES off"
        )

    def write(self, plan: Plan, spec: ContainerSpec) -> Path:
        """Write the secret files of a step's container (again: the container may be made
        twice); return the directory to mount at ``/run/secrets``."""
        files = spec.secret_files
        with self._lock:
            run = self._run_dir(plan)
            directory = run / spec.name
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(directory)
            directory.mkdir(mode=0o700)
            for name, value in files.items():
                path = directory / name
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(value.encode("utf-8", errors="surrogatepass"))
                path.chmod(0o444)
            # Readable (not writable) by the container's user, whatever its uid: the run
            # directory above keeps other host users out.
            directory.chmod(0o755)
            return directory

    def remove_step(self, plan: Plan, container: str) -> None:
        """Remove the secret files of one container of the run, if it had any."""
        directory = self._existing_run(plan)
        if directory is not None:
            with self._lock:
                shutil.rmtree(directory / container, ignore_errors=True)

    def remove_run(self, plan: Plan) -> None:
        directory = self._existing_run(plan)
        if directory is not None:
            with self._lock:
                shutil.rmtree(directory, ignore_errors=True)
                if directory.exists():
                    raise BackendError(f"cannot remove the secret files of run {plan.run_id}")

    def cleanup_stale(self, *, include_live: bool = False) -> int:
        """Remove the directories of stale runs (see the module docstring); how many."""
        removed = 0
        candidates = self._bases if self._bases is not None else default_bases()
        for base in candidates:
            try:
                entries = list(base.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(_PARTIAL):
                    # A run that crashed while its directory was made: no value is in it
                    # yet, but it is clutter (never another run's: those have been renamed).
                    stale = include_live or not _owner_alive(entry.name.removeprefix(_PARTIAL))
                elif entry.name.startswith(PREFIX):
                    stale = is_stale(_labels_of(entry), self.hostname, include_live=include_live)
                else:
                    continue
                if stale:
                    with self._lock:
                        shutil.rmtree(entry, ignore_errors=True)
                    removed += not entry.exists()
        return removed

    def _run_dir(self, plan: Plan) -> Path:
        """The run's directory, made if needed (lock held)."""
        base = self.base()
        final = base / f"{PREFIX}{plan.run_id}"
        if final.is_dir():
            return final
        partial = Path(tempfile.mkdtemp(prefix=f"{_PARTIAL}{os.getpid()}-", dir=base))
        try:
            partial.chmod(0o700)
            labels = partial / _LABELS
            descriptor = os.open(labels, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(dict(plan.labels), handle)
            partial.rename(final)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise BackendError(f"cannot make the secret files of run {plan.run_id}: {exc}") from exc
        return final

    def _existing_run(self, plan: Plan) -> Path | None:
        candidates = self._bases if self._bases is not None else default_bases()
        for base in candidates:
            directory = base / f"{PREFIX}{plan.run_id}"
            if directory.is_dir():
                return directory
        return None


def _labels_of(directory: Path) -> dict[str, str]:
    try:
        labels = json.loads((directory / _LABELS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(labels, dict):
        return {}
    return {str(key): str(value) for key, value in labels.items()}


def _owner_alive(rest: str) -> bool:
    try:
        return process_is_alive(int(rest.split("-", 1)[0]))
    except ValueError:
        return False
