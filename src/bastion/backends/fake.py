"""A scriptable backend that runs no containers: fast engine and scheduler tests, and demos.

It is product code, not a test double hidden in ``tests/``: the runner can use it
(``--backend fake``) to exercise a server end to end on a machine without Docker. It keeps
the promises of the ``Backend`` protocol exactly as the Docker backend does (same errors,
same idempotency, same exit codes); the contract suite in ``tests/contract`` runs the same
cases against both, so the fake cannot quietly drift.

What a step "does" comes from its environment, so a ``.drone.yml`` can script it:

=========================  ===================================================================
``BASTION_FAKE_CAT``       print this file from the populated workspace (a path relative to
                           the working directory, or absolute); missing: a message on stderr,
                           exit 1
``BASTION_FAKE_OUTPUT``    then print this text and a newline; a literal ``\\n`` starts a new
                           line, a literal ``\\|`` hands over to stderr (see below)
``BASTION_FAKE_STDERR``    the same, printed on stderr
``BASTION_FAKE_LOG_BYTES`` then print exactly that many bytes of filler lines (log volume)
``BASTION_FAKE_SLEEP``     then run that many seconds (a float) before exiting; ``forever``
                           runs until ``stop`` (services, detached steps); ``stop`` always
                           interrupts the sleep at once
``BASTION_FAKE_EXIT``      the exit code (default 0)
``BASTION_FAKE_OOM=1``     instead of exiting, be killed for memory: exit 137, ``oom_killed``
``BASTION_FAKE_CRASH``     ``start``: ``start`` creates the container, then raises
                           ``BackendError`` (as Docker does when the entrypoint is missing)
=========================  ===================================================================

The two texts are written in turns, cut at each literal ``\\|``: the first part of
``BASTION_FAKE_OUTPUT`` on stdout, the first part of ``BASTION_FAKE_STDERR`` on stderr, the
second part of the output, and so on (empty parts are skipped; the newline ends the last
part). ``OUTPUT='split=abc\\|def'`` with ``STDERR='warn'`` writes ``split=abc`` (no line end
yet), then ``warn`` and a newline on stderr, then ``def`` and a newline: a stderr line in
the middle of an unfinished stdout line, as a real process can write it.

``SHELL_SCRIPT`` is the same behaviour (all but OOM and CRASH) as a POSIX shell script: give
a step the variables above and ``("/bin/sh", "-c", SHELL_SCRIPT)`` as its entrypoint and it
behaves alike on this backend and on a real one.

Everything is recorded for tests to inspect: ``calls`` (every method call, in order),
``started`` (every ``ContainerSpec`` passed to ``start``; ``prepare`` does not count),
``archives`` (the workspace tars), ``helper_images`` (the image each ``populate_workspace``
chose, as Docker's would for its throwaway container), ``pulled``, and ``live_resources``
(the containers, networks and volumes that exist right now, prepared containers included),
so a test can assert that ``destroy`` left nothing behind.
Image availability is modelled too (``local_images``, ``registry_images``) so pull policies
fail the way they would for real. So are secrets delivered as files
(``ContainerSpec.secret_files``): a step can ``BASTION_FAKE_CAT`` its own
``/run/secrets/NAME``, no other step can, and the files are a live resource (``secret-files``,
one per container that has some) from the container's creation to its removal, ``destroy``
or ``cleanup_stale``, as the Docker backend's directory on the host's tmpfs is.
"""

from __future__ import annotations

import io
import posixpath
import socket
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Literal

from bastion.backends._common import (
    EXIT_KILLED,
    exit_detail,
    is_stale,
    missing_image_message,
    not_started_message,
    pull_failed_message,
    run_of,
    workspace_helper_image,
)
from bastion.engine.backend import (
    BackendError,
    CleanupReport,
    OutputChunk,
    OutputStream,
    StepExit,
)
from bastion.engine.plan import (
    LABEL_RUN,
    SECRET_FILES_DIR,
    ContainerSpec,
    MountKind,
    Plan,
    PullPolicy,
    StepPlan,
)

ENV_CAT = "BASTION_FAKE_CAT"
ENV_OUTPUT = "BASTION_FAKE_OUTPUT"
ENV_STDERR = "BASTION_FAKE_STDERR"
ENV_LOG_BYTES = "BASTION_FAKE_LOG_BYTES"
ENV_SLEEP = "BASTION_FAKE_SLEEP"
ENV_EXIT = "BASTION_FAKE_EXIT"
ENV_OOM = "BASTION_FAKE_OOM"
ENV_CRASH = "BASTION_FAKE_CRASH"

# One filler line: 63 characters and a newline, what `yes <63 x>` prints in SHELL_SCRIPT.
FILLER_LINE = b"x" * 63 + b"\n"

# In BASTION_FAKE_OUTPUT and BASTION_FAKE_STDERR: a new line, and the hand-over to the
# other stream (both literal, two characters each).
NEWLINE_ESCAPE = "\\n"
TURN = "\\|"

SHELL_SCRIPT = (
    'if [ -n "$BASTION_FAKE_CAT" ]; then cat "$BASTION_FAKE_CAT" || exit 1; fi\n'
    # The two texts, each ending with a newline, written in turns (cut at each literal \|).
    r"""o="$BASTION_FAKE_OUTPUT"; e="$BASTION_FAKE_STDERR"
if [ -n "$o" ]; then o="$o\\n"; fi
if [ -n "$e" ]; then e="$e\\n"; fi
while [ -n "$o$e" ]; do
  case "$o" in *'\|'*) p="${o%%\\|*}"; o="${o#*\\|}";; *) p="$o"; o="";; esac
  if [ -n "$p" ]; then printf '%s' "$p" | sed 's/\\n/\n/g'; fi
  case "$e" in *'\|'*) p="${e%%\\|*}"; e="${e#*\\|}";; *) p="$e"; e="";; esac
  if [ -n "$p" ]; then printf '%s' "$p" | sed 's/\\n/\n/g' >&2; fi
done
"""
    'if [ -n "$BASTION_FAKE_LOG_BYTES" ]; then\n'
    f'  yes {"x" * 63} | head -c "$BASTION_FAKE_LOG_BYTES"\n'
    "fi\n"
    's="${BASTION_FAKE_SLEEP:-0}"\n'
    'if [ "$s" = forever ]; then s=2147483647; fi\n'
    'sleep "$s"\n'
    'exit "${BASTION_FAKE_EXIT:-0}"\n'
)

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FakeCall:
    """One call the engine made: the method, the run, and the step ("" for run-wide calls)."""

    method: str
    run_id: str
    step: str = ""


ResourceKind = Literal["container", "network", "volume", "secret-files"]


@dataclass(frozen=True)
class FakeResource:
    """A container, network or volume that the fake backend considers to exist."""

    kind: ResourceKind
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def run_id(self) -> str:
        return run_of(self.labels)


@dataclass(frozen=True)
class FakeScript:
    """What a step does, read from its ``BASTION_FAKE_*`` environment."""

    cat: str = ""
    output: str = ""
    stderr: str = ""
    log_bytes: int = 0
    sleep: float | None = 0.0  # None: until stopped
    exit_code: int = 0
    oom: bool = False
    crash: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], step: str) -> FakeScript:
        def number(key: str, kind: type[int] | type[float], default: float) -> float:
            raw = env.get(key, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise BackendError(
                    f"step {step!r}: {key}={raw!r} is not a {kind.__name__}"
                ) from None
            if value < 0:
                raise BackendError(f"step {step!r}: {key}={raw!r} must not be negative")
            return value

        raw_sleep = env.get(ENV_SLEEP, "").strip()
        sleep = None if raw_sleep == "forever" else number(ENV_SLEEP, float, 0.0)
        crash = env.get(ENV_CRASH, "").strip()
        if crash not in ("", "start"):
            raise BackendError(f"step {step!r}: {ENV_CRASH}={crash!r}: the only value is 'start'")
        raw_exit = env.get(ENV_EXIT, "").strip() or "0"
        try:
            exit_code = int(raw_exit)
        except ValueError:
            raise BackendError(f"step {step!r}: {ENV_EXIT}={raw_exit!r} is not an int") from None
        return cls(
            cat=env.get(ENV_CAT, ""),
            output=env.get(ENV_OUTPUT, ""),
            stderr=env.get(ENV_STDERR, ""),
            log_bytes=int(number(ENV_LOG_BYTES, int, 0)),
            sleep=sleep,
            exit_code=exit_code,
            oom=env.get(ENV_OOM, "").strip() in ("1", "true"),
            crash=crash,
        )


class _FakeProcess:
    """The pretend process of one started step."""

    def __init__(
        self,
        spec: ContainerSpec,
        script: FakeScript,
        output: list[OutputChunk],
        exit_code: int,
        sleep: float | None,
    ) -> None:
        self.spec = spec
        self.script = script
        self.output = output
        self.exit_code = exit_code
        self.sleep = sleep  # seconds the process runs after printing; None: until stopped
        self.started_at = time.monotonic()
        # Set by stop / remove / destroy: ends the sleep at once.
        self.interrupted = threading.Event()
        self.killed = False
        self.output_claimed = False

    def is_running(self) -> bool:
        if self.interrupted.is_set():
            return False
        return self.sleep is None or time.monotonic() - self.started_at < self.sleep

    def wait_for_exit(self) -> None:
        if self.sleep is None:
            self.interrupted.wait()
        else:
            self.interrupted.wait(max(0.0, self.started_at + self.sleep - time.monotonic()))


class FakeBackend:
    """The ``Backend`` protocol without containers. See the module docstring.

    ``local_images``: images present "on the host"; ``None`` means every image is.
    ``registry_images``: images a pull can fetch; ``None`` means every pull succeeds. Give
    both to model a host with no registry, as the contract suite does.
    ``hostname``: the host name ``cleanup_stale`` compares with ``io.bastion.owner-host``.
    """

    name = "fake"

    def __init__(
        self,
        *,
        local_images: Iterable[str] | None = None,
        registry_images: Iterable[str] | None = None,
        hostname: str | None = None,
    ) -> None:
        self.local_images: set[str] | None = None if local_images is None else set(local_images)
        self.registry_images: frozenset[str] | None = (
            None if registry_images is None else frozenset(registry_images)
        )
        self.hostname = hostname or socket.gethostname()
        self.calls: list[FakeCall] = []
        self.started: list[ContainerSpec] = []
        self.archives: dict[str, bytes] = {}  # workspace volume -> the tar it was given
        self.pulled: list[str] = []
        self.helper_images: list[str] = []  # the image each populate_workspace copied with
        self._lock = threading.Lock()
        self._resources: dict[tuple[ResourceKind, str], FakeResource] = {}
        self._volume_files: dict[str, dict[str, bytes]] = {}  # volume -> path -> content
        self._processes: dict[str, _FakeProcess] = {}  # container name -> process
        self._stop_requested: set[str] = set()  # container names stopped before they started
        self._prepared: dict[str, ContainerSpec] = {}  # container name -> the spec prepare() used
        self._closed_runs: set[str] = set()  # destroyed and not set up again

    # -- inspection helpers for tests ---------------------------------------------------------

    @property
    def live_resources(self) -> list[FakeResource]:
        """Every container, network and volume that exists now, of every run."""
        with self._lock:
            return list(self._resources.values())

    def resources_of(self, run_id: str) -> list[FakeResource]:
        """The live resources labelled with this run."""
        return [r for r in self.live_resources if r.run_id == run_id]

    def calls_of(self, method: str) -> list[FakeCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def add_resource(self, kind: ResourceKind, name: str, labels: Mapping[str, str]) -> None:
        """Pretend a resource exists, e.g. a leftover of a crashed run for ``cleanup_stale``."""
        with self._lock:
            self._resources[(kind, name)] = FakeResource(kind, name, dict(labels))

    # -- the protocol --------------------------------------------------------------------------

    def setup(self, plan: Plan) -> None:
        self._record("setup", plan)
        with self._lock:
            self._closed_runs.discard(plan.run_id)
            self._create(plan, "network", plan.network)
            for volume in (plan.workspace_volume, *plan.volumes):
                self._create(plan, "volume", volume)

    def populate_workspace(self, plan: Plan, archive: IO[bytes]) -> None:
        self._record("populate_workspace", plan)
        data = archive.read()
        with self._lock:
            image = workspace_helper_image(plan, is_local=self._is_local, pull=self._ensure_image)
            self.helper_images.append(image)
            if ("volume", plan.workspace_volume) not in self._resources:
                raise BackendError(
                    f"workspace volume {plan.workspace_volume!r} does not exist: "
                    "setup() must run before populate_workspace()"
                )
            self.archives[plan.workspace_volume] = data
            files = self._volume_files.setdefault(plan.workspace_volume, {})
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    for member in tar.getmembers():
                        extracted = tar.extractfile(member) if member.isfile() else None
                        if extracted is not None:
                            files[posixpath.normpath(member.name).lstrip("/")] = extracted.read()
            except tarfile.TarError as exc:
                raise BackendError(f"cannot extract the workspace archive: {exc}") from exc

    def ready(self, plan: Plan) -> None:
        """Nothing is left in progress by ``setup`` here (the optional protocol method)."""
        self._record("ready", plan)

    def prepare(self, plan: Plan, step: StepPlan) -> None:
        """Create the step's container ahead of ``start``, as the Docker backend does (the
        optional protocol method): best effort, only for an image present and not to be
        pulled again, never raises."""
        self._record("prepare", plan, step)
        spec = step.container
        with self._lock:
            if (
                spec.pull is PullPolicy.ALWAYS
                or not self._is_local(spec.image)
                or plan.run_id in self._closed_runs
                or spec.name in self._stop_requested
                or ("container", spec.name) in self._resources
                or (not spec.network_mode and ("network", plan.network) not in self._resources)
            ):
                return
            self._create_container(spec)
            self._prepared[spec.name] = spec

    def start(self, plan: Plan, step: StepPlan) -> None:
        self._record("start", plan, step)
        spec = step.container
        script = FakeScript.from_env(spec.env, step.name)
        with self._lock:
            self.started.append(spec)
            prepared = self._prepared.pop(spec.name, None)
            if spec.name in self._stop_requested:
                # Stopped before it started (cancel during a pull): it never runs.
                return
            if prepared is not None and prepared != spec:
                # Prepared for another environment (a failure happened since): made again.
                self._resources.pop(("container", spec.name), None)
                self._resources.pop(("secret-files", spec.name), None)
                prepared = None
            if prepared is None:
                self._ensure_image(spec)
            if plan.run_id in self._closed_runs:
                raise BackendError(f"run {plan.run_id} was destroyed while the step started")
            if prepared is None:
                if not spec.network_mode and ("network", plan.network) not in self._resources:
                    raise BackendError(
                        f"cannot create the container of step {step.name!r}: network "
                        f"{plan.network!r} not found (setup() must run before start())"
                    )
                if ("container", spec.name) in self._resources:
                    raise BackendError(
                        f"cannot create the container of step {step.name!r}: the name "
                        f"{spec.name!r} is already in use"
                    )
                self._create_container(spec)
            if script.crash == "start":
                raise BackendError(
                    f"cannot start the container of step {step.name!r}: "
                    f"{ENV_CRASH}=start asked the fake backend to fail"
                )
            self._processes[spec.name] = self._run_script(spec, script)

    def output(self, plan: Plan, step: StepPlan) -> Iterator[OutputChunk]:
        self._record("output", plan, step)
        process = self._process(step)
        if process is None:
            return
        with self._lock:
            if process.output_claimed:
                return
            process.output_claimed = True
        for stream, data in process.output:
            for i in range(0, len(data), _CHUNK):
                yield OutputChunk(stream, data[i : i + _CHUNK])
        # The stream ends when the process ends, as an attached stream does.
        process.wait_for_exit()

    def wait(self, plan: Plan, step: StepPlan) -> StepExit:
        self._record("wait", plan, step)
        process = self._process(step)
        if process is None:
            return StepExit(exit_code=EXIT_KILLED, killed=True, detail="stopped before it started")
        process.wait_for_exit()
        spec = process.spec
        with self._lock:
            killed = process.killed
        oom = process.script.oom and not killed
        exit_code = EXIT_KILLED if (killed or oom) else process.exit_code
        return StepExit(
            exit_code=exit_code,
            oom_killed=oom,
            killed=killed,
            detail=exit_detail(
                oom_killed=oom,
                mem_limit=spec.mem_limit,
                pids_events=0,
                pids_limit=spec.pids_limit,
                killed=killed,
            ),
        )

    def stop(self, plan: Plan, step: StepPlan) -> None:
        self._record("stop", plan, step)
        name = step.container.name
        with self._lock:
            process = self._processes.get(name)
            if process is None:
                if ("container", name) not in self._resources or name in self._prepared:
                    self._stop_requested.add(name)  # not started (at most prepared)
                return
            if process.is_running():
                process.killed = True
            process.interrupted.set()

    def remove(self, plan: Plan, step: StepPlan) -> None:
        self._record("remove", plan, step)
        name = step.container.name
        with self._lock:
            process = self._processes.pop(name, None)
            if process is not None:
                process.interrupted.set()  # a forced removal kills what still runs
            self._resources.pop(("container", name), None)
            self._resources.pop(("secret-files", name), None)
            self._prepared.pop(name, None)

    def destroy(self, plan: Plan) -> None:
        self._record("destroy", plan)
        names = {s.container.name for s in plan.all_steps()}
        with self._lock:
            self._closed_runs.add(plan.run_id)
            for key, resource in list(self._resources.items()):
                if resource.run_id == plan.run_id or (
                    resource.kind in ("container", "secret-files") and resource.name in names
                ):
                    del self._resources[key]
            for name in names:
                process = self._processes.pop(name, None)
                if process is not None:
                    process.interrupted.set()
                self._stop_requested.discard(name)
                self._prepared.pop(name, None)
            run_keys: list[tuple[ResourceKind, str]] = [("network", plan.network)]
            run_keys += [("volume", v) for v in (plan.workspace_volume, *plan.volumes)]
            for key in run_keys:
                self._resources.pop(key, None)
            for volume in (plan.workspace_volume, *plan.volumes):
                self._volume_files.pop(volume, None)

    def cleanup_stale(self, *, include_live: bool = False) -> CleanupReport:
        with self._lock:
            self.calls.append(FakeCall("cleanup_stale", ""))
            counts: dict[ResourceKind, int] = {
                "container": 0,
                "network": 0,
                "volume": 0,
                "secret-files": 0,
            }
            for key, resource in list(self._resources.items()):
                if is_stale(resource.labels, self.hostname, include_live=include_live):
                    del self._resources[key]
                    counts[resource.kind] += 1
                    if resource.kind == "container":
                        self._prepared.pop(resource.name, None)
                        process = self._processes.pop(resource.name, None)
                        if process is not None:
                            process.interrupted.set()
                    elif resource.kind == "volume":
                        self._volume_files.pop(resource.name, None)
        return CleanupReport(
            containers=counts["container"], networks=counts["network"], volumes=counts["volume"]
        )

    # -- internals -----------------------------------------------------------------------------

    def _record(self, method: str, plan: Plan, step: StepPlan | None = None) -> None:
        with self._lock:
            self.calls.append(FakeCall(method, plan.run_id, step.name if step else ""))

    def _process(self, step: StepPlan) -> _FakeProcess | None:
        """The step's process; None if it was stopped before it started; else an error."""
        name = step.container.name
        with self._lock:
            process = self._processes.get(name)
            if process is None and name not in self._stop_requested:
                raise BackendError(not_started_message(step.name))
            return process

    def _create_container(self, spec: ContainerSpec) -> None:
        """The container and, if it has any, its secret files (lock held)."""
        self._resources[("container", spec.name)] = FakeResource(
            "container", spec.name, dict(spec.labels)
        )
        if spec.secret_files:
            self._resources[("secret-files", spec.name)] = FakeResource(
                "secret-files", spec.name, dict(spec.labels)
            )

    def _create(self, plan: Plan, kind: ResourceKind, name: str) -> None:
        """Create a run's network or volume; a second call finds it (idempotent setup)."""
        existing = self._resources.get((kind, name))
        if existing is not None:
            if existing.run_id != plan.run_id:
                raise BackendError(
                    f"a {kind} called {name!r} already exists and does not belong to run "
                    f"{plan.run_id} (its {LABEL_RUN} label is {existing.run_id!r})"
                )
            return
        self._resources[(kind, name)] = FakeResource(kind, name, dict(plan.labels))

    def _is_local(self, image: str) -> bool:
        return self.local_images is None or image in self.local_images

    def _ensure_image(self, spec: ContainerSpec) -> None:
        """Apply the pull policy against the modelled image store (lock held)."""
        image = spec.image
        local = self._is_local(image)
        if spec.pull is PullPolicy.NEVER:
            if not local:
                raise BackendError(missing_image_message(image))
            return
        if spec.pull is PullPolicy.IF_NOT_EXISTS and local:
            return
        if self.registry_images is not None and image not in self.registry_images:
            raise BackendError(pull_failed_message(image, "the fake registry does not have it"))
        self.pulled.append(image)
        if self.local_images is not None:
            self.local_images.add(image)

    def _run_script(self, spec: ContainerSpec, script: FakeScript) -> _FakeProcess:
        """Decide what the step prints, how long it runs and its exit code (lock held)."""
        out: list[OutputChunk] = []
        if script.cat:
            content = self._read_file(spec, script.cat)
            if content is None:
                # As `cat ... || exit 1` in SHELL_SCRIPT: the step ends here, at once.
                message = f"cat: {script.cat}: No such file or directory\n".encode()
                return _FakeProcess(spec, script, [OutputChunk("stderr", message)], 1, 0.0)
            out.append(OutputChunk("stdout", content))
        out += _turns(script.output, script.stderr)
        if script.log_bytes:
            repeats = script.log_bytes // len(FILLER_LINE) + 1
            out.append(OutputChunk("stdout", (FILLER_LINE * repeats)[: script.log_bytes]))
        out = [chunk for chunk in out if chunk.data]
        return _FakeProcess(spec, script, out, script.exit_code, script.sleep)

    def _read_file(self, spec: ContainerSpec, path: str) -> bytes | None:
        full = posixpath.normpath(posixpath.join(spec.working_dir or "/", path))
        directory, name = posixpath.split(full)
        if directory == SECRET_FILES_DIR:
            value = spec.secret_files.get(name)
            return None if value is None else value.encode()
        for mount in spec.mounts:
            if mount.kind is not MountKind.VOLUME:
                continue
            target = mount.target.rstrip("/") or "/"
            if full == target or full.startswith(target.rstrip("/") + "/"):
                relative = full[len(target) :].lstrip("/")
                return self._volume_files.get(mount.source, {}).get(relative)
        return None


def _turns(stdout: str, stderr: str) -> list[OutputChunk]:
    """``BASTION_FAKE_OUTPUT`` and ``BASTION_FAKE_STDERR`` as written, in turns (see the
    module docstring); the same steps as ``SHELL_SCRIPT``: add the newline, cut, convert."""
    outs = (stdout + NEWLINE_ESCAPE).split(TURN) if stdout else []
    errs = (stderr + NEWLINE_ESCAPE).split(TURN) if stderr else []
    streams: tuple[tuple[OutputStream, list[str]], ...] = (("stdout", outs), ("stderr", errs))
    chunks: list[OutputChunk] = []
    for i in range(max(len(outs), len(errs))):
        for stream, parts in streams:
            if i < len(parts) and parts[i]:
                chunks.append(OutputChunk(stream, parts[i].replace(NEWLINE_ESCAPE, "\n").encode()))
    return chunks
