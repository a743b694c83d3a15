"""The Docker backend: runs a plan's containers on a Docker Engine through docker-py.

It is a thin translation of ``bastion.engine.plan`` into Engine API calls; every hardening
value was decided by the compiler and is passed through as is (``_create_container`` names
every ``ContainerSpec`` field, so a new field that is not translated stands out in review).

Choices worth knowing:

* **No logs on disk.** Containers use the ``none`` log driver, so step output (which may
  contain secrets before masking) never lands in dockerd's json files. Output is read by
  *attaching* to the container before it is started, so nothing printed early is lost.
  Attaching applies back-pressure (dockerd blocks the process when nobody reads), so ``wait``
  drains whatever ``output`` did not consume.
* **Everything is labelled** with ``plan.labels`` (run id, owner pid and host), the throwaway
  container of ``populate_workspace`` included: ``destroy`` and ``cleanup_stale`` find what
  to remove by label, and fall back to the plan's names for what Docker created unlabelled
  (a volume a mount referenced before ``setup``).
* **The workspace helper's image** is the first image of the plan that is present on the
  host, or else that pulls (``_common.workspace_helper_image``): a missing image fails its
  own step when it starts, not the whole run before any step.
* **stdout and stderr stay apart**: the attach stream is demultiplexed (``demux=True``) and
  ``output`` tags each chunk with its stream, so that the executor masks them separately.
* **pids limit hits** are read from the container's cgroup (``pids.events``) by a small
  watcher thread, as Docker does not report them. A process that exits right after its first
  failed fork leaves a window of about 10 ms before the cgroup is gone, so the watcher starts
  before the container does, polls every 2 ms during a step's first second and while the
  pids count is near its limit, and every 0.2 s otherwise; each output chunk also triggers
  a read, because a failed fork is usually followed by an error message. It remains best
  effort: no cgroup path, no report.
* **Less waiting.** ``setup`` creates the volumes and starts creating the network in a
  thread: the workspace copy (through a container on no network) runs meanwhile, and
  ``ready``, ``start`` and ``prepare`` wait for the network. ``prepare`` creates (and
  attaches to) a step's container while the steps before it run; ``start`` takes it if the
  spec is still the same. Containers are created with docker-py's low-level call (the
  high-level one inspects the new container again), and without inspecting the image first:
  only a create that fails with "no such image" consults the pull policy. ``destroy``
  removes the network (≈ 0.2 s) in a thread, at once unless a container of the run still
  runs, while it removes the containers and volumes.
* **stop() at any time.** A stop that arrives before or during ``start`` is remembered: the
  container is then never started (or killed as soon as it is), and ``wait`` reports a
  kill. A ``start`` racing ``destroy`` (a cancel during a pull) removes what it created.
* **Errors** from docker-py are translated into ``BackendError`` with a message that says
  what failed and what to do; an unreachable engine says so and names the script that
  starts one.

Thread-safety: docker-py's client may be shared between threads; the per-step state (the
container, its attach stream, its watcher) lives in a dict guarded by a lock, and no Engine
call is made while holding it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import (  # type: ignore[attr-defined]  # not in the stubs
    Container,
    _create_container_args,
)
from docker.types import LogConfig
from docker.types import Mount as DockerMount
from docker.types.daemon import CancellableStream

from bastion.backends._common import (
    EXIT_KILLED,
    exit_detail,
    is_stale,
    missing_image_message,
    not_started_message,
    pull_failed_message,
    workspace_helper_image,
)
from bastion.backends._secret_files import SecretFiles
from bastion.engine.backend import BackendError, CleanupReport, OutputChunk, StepExit
from bastion.engine.plan import (
    LABEL_MANAGED,
    LABEL_RUN,
    SECRET_FILES_DIR,
    ContainerSpec,
    Mount,
    MountKind,
    Plan,
    PullPolicy,
    StepPlan,
)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

_HTTP_NOT_FOUND = 404
_HTTP_CONFLICT = 409

# Container states in which a container may still hold an endpoint on the run's network.
_ACTIVE_STATES = frozenset({"running", "paused", "restarting"})

# What a demultiplexed attach stream yields: (stdout, None) or (None, stderr).
_Frame = tuple[bytes | None, bytes | None]


# -- the pids watcher ------------------------------------------------------------------------


class PidsWatcher:
    """Counts the failed forks of one container from its cgroup's ``pids.events``.

    ``pids.events`` holds ``max N``: how many times fork() failed because of the limit.
    cgroup v1 puts it under ``pids/docker/<id>`` (cgroupfs driver) or
    ``pids/system.slice/docker-<id>.scope`` (systemd driver); cgroup v2 under
    ``system.slice/docker-<id>.scope`` or ``docker/<id>``.
    """

    SLOW_INTERVAL = 0.2
    FAST_INTERVAL = 0.002
    FAST_PERIOD = 1.0  # seconds after the start during which the watcher polls fast
    # The watcher starts before the container does; the cgroup appears when it starts. Give
    # up after this long (a runner inside a container may not see the host's cgroups).
    FIND_TIMEOUT = 10.0

    def __init__(self, cgroup_root: Path, container_id: str) -> None:
        self.candidates = (
            cgroup_root / "pids" / "docker" / container_id,
            cgroup_root / "pids" / "system.slice" / f"docker-{container_id}.scope",
            cgroup_root / "system.slice" / f"docker-{container_id}.scope",
            cgroup_root / "docker" / container_id,
        )
        self.failed_forks = 0
        self.found: Path | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._events_fd: int | None = None
        self._current_fd: int | None = None
        self._limit: int | None = None
        self._last_sample = 0.0
        self._last_events = b""
        self._gone = False
        self._thread = threading.Thread(
            target=self._run, name=f"bastion-pids-{container_id[:12]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """Stop watching and return how many forks failed."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        with self._lock:
            self._close()
            return self.failed_forks

    def sample(self) -> None:
        """Read the counters now (rate-limited): called for each output chunk."""
        now = time.monotonic()
        if now - self._last_sample < self.FAST_INTERVAL:
            return
        self._last_sample = now
        with self._lock:
            self._read()

    def _run(self) -> None:
        started = time.monotonic()
        fast_until = started + self.FAST_PERIOD
        while not self._stopped.is_set():
            now = time.monotonic()
            fast = now < fast_until
            with self._lock:
                if self._gone:
                    return
                if self._events_fd is None and not self._open():
                    if now - started > self.FIND_TIMEOUT:
                        return  # no cgroup we know how to read: report nothing
                    near_limit = False
                else:
                    # (the pids count only matters once the first second is over)
                    near_limit = self._read(count=not fast)
            if fast or near_limit:
                # A plain sleep: cheaper than Event.wait at this rate, and stop() waits at
                # most this long.
                time.sleep(self.FAST_INTERVAL)
            else:
                self._stopped.wait(self.SLOW_INTERVAL)

    def _open(self) -> bool:
        for directory in self.candidates:
            try:
                self._events_fd = os.open(directory / "pids.events", os.O_RDONLY)
            except OSError:
                continue
            self.found = directory
            with contextlib.suppress(OSError):
                self._current_fd = os.open(directory / "pids.current", os.O_RDONLY)
            with contextlib.suppress(OSError, ValueError):
                self._limit = int((directory / "pids.max").read_text().strip())
            return True
        return False

    def _read(self, *, count: bool = True) -> bool:
        """Update ``failed_forks``; return whether the pids count is near its limit (read
        only with ``count``; False without)."""
        if self._events_fd is None:
            return False
        try:
            events = os.pread(self._events_fd, 4096, 0)
            current = (
                int(os.pread(self._current_fd, 64, 0))
                if count and self._current_fd is not None
                else 0
            )
        except (OSError, ValueError):
            # ENODEV: the cgroup was removed (the container exited); keep what we saw.
            self._gone = True
            self._close()
            return False
        if events != self._last_events:  # (the same bytes most of the time: nothing to parse)
            self._last_events = events
            for line in events.decode().splitlines():
                key, _, value = line.partition(" ")
                if key == "max" and value.strip().isdigit():
                    self.failed_forks = max(self.failed_forks, int(value))
        return self._limit is not None and current * 4 >= self._limit * 3

    def _close(self) -> None:
        for fd in (self._events_fd, self._current_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._events_fd = self._current_fd = None


# -- per-step state --------------------------------------------------------------------------


@dataclass
class _StepState:
    run_id: str
    step: str
    container: Container | None = None
    # The spec a container made by prepare() was created with; None once start() took it.
    prepared_spec: ContainerSpec | None = None
    claimed: bool = False  # start() was called (prepare() then leaves the step alone)
    stream: CancellableStream[_Frame] | None = None
    stream_claimed: bool = False
    started: bool = False  # the process ran (container.start() succeeded)
    stop_requested: bool = False
    kill_hit: bool = False  # stop() killed a running process
    watcher: PidsWatcher | None = None
    # Held while a kill request is in flight: the process may be dead, and wait() return,
    # before the engine answers the kill; wait() takes it to learn whether it was a kill.
    kill_lock: threading.Lock = field(default_factory=threading.Lock)
    # Held while the container is being created, by prepare() or start(): start() waits
    # for a prepare() in flight instead of racing it for the name.
    create_lock: threading.Lock = field(default_factory=threading.Lock)

    def stop_was_requested(self) -> bool:
        # A method, not the attribute: another thread sets it between two reads.
        return self.stop_requested

    def release(self) -> None:
        """Close the attach stream and stop the watcher (the container is left alone)."""
        if self.stream is not None:
            _close_stream(self.stream)
        if self.watcher is not None:
            self.watcher.stop()


class _Background:
    """A piece of work run in a thread now, whose outcome is collected later."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # handed to whoever collects the outcome
            self._error = exc
        finally:
            self._done.set()

    def failed(self) -> bool:
        return self._done.is_set() and self._error is not None

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the work to end, whatever its outcome."""
        self._done.wait(timeout)

    def result(self) -> None:
        """Wait for the work to end; raise its failure as a ``BackendError``."""
        self._done.wait()
        if self._error is not None:
            raise BackendError(str(self._error)) from self._error


@dataclass
class _RunState:
    """What the backend keeps per run between setup() and destroy()."""

    network: _Background | None = None  # the network's creation, in flight or done


# -- the backend -----------------------------------------------------------------------------


class DockerBackend:
    """Runs plans on a Docker Engine. See the module docstring.

    ``client``: a docker-py client to use; by default one is made from the environment
    (``DOCKER_HOST`` ...) or from ``base_url``, on first use, so that constructing the
    backend never fails. ``hostname``: what ``cleanup_stale`` compares with the
    ``io.bastion.owner-host`` label (this host's name by default). ``cgroup_root``: where
    the pids watcher looks for cgroups. ``in_use_timeout``: how long ``destroy`` retries
    removing a network or volume that the engine still reports in use.
    """

    name = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        base_url: str | None = None,
        hostname: str | None = None,
        cgroup_root: Path | str = "/sys/fs/cgroup",
        in_use_timeout: float = 10.0,
    ) -> None:
        self._client = client
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self._explicit_base_url = base_url
        self.hostname = hostname or socket.gethostname()
        self.cgroup_root = Path(cgroup_root)
        self.in_use_timeout = in_use_timeout
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._steps: dict[str, _StepState] = {}  # container name -> state
        self._runs: dict[str, _RunState] = {}  # run id -> what setup() started
        # Containers that remove() removed: destroy() need not look them up by name again.
        self._removed: set[str] = set()
        # Runs being (or already) destroyed: a start() racing a destroy() (a cancel while an
        # image is pulled) must not leave a container that destroy() listed too early.
        self._closed_runs: set[str] = set()
        # Secrets delivered as files: per-run directories on the host's tmpfs.
        self._secret_files = SecretFiles(self.hostname)

    @property
    def client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                with self._errors("cannot connect to the Docker engine"):
                    if self._explicit_base_url:
                        self._client = docker.DockerClient(base_url=self._explicit_base_url)
                    else:
                        self._client = docker.from_env()
            return self._client

    # -- the protocol --------------------------------------------------------------------------

    def setup(self, plan: Plan) -> None:
        """Create the volumes now and the network in the background (see ``ready``): the
        network is the slowest thing to create, and ``populate_workspace`` does not need it.
        A network of that name that belongs to another run is refused here."""
        with self._lock:
            self._closed_runs.discard(plan.run_id)
            run = self._runs.setdefault(plan.run_id, _RunState())
        with self._errors(f"cannot set up run {plan.run_id}"):
            existing = self._network_named(plan.network)
            if existing is not None:
                _check_owner("network", plan.network, existing.get("Labels") or {}, plan.run_id)
            with self._lock:
                pending = run.network
                if existing is None and (pending is None or pending.failed()):
                    run.network = _Background(
                        f"bastion-setup-{plan.run_id}",
                        lambda: self._setup_in_background(plan, known_absent=True),
                    )
            for volume in (plan.workspace_volume, *plan.volumes):
                self._ensure_volume(plan, volume)

    def ready(self, plan: Plan) -> None:
        """Wait for what ``setup`` left in progress (the network); raise its failure."""
        with self._lock:
            run = self._runs.get(plan.run_id)
            pending = run.network if run is not None else None
        if pending is not None:
            pending.result()

    def populate_workspace(self, plan: Plan, archive: IO[bytes]) -> None:
        what = f"cannot copy the workspace into volume {plan.workspace_volume!r}"
        with self._errors(what):
            image = workspace_helper_image(plan, is_local=self._is_local, pull=self._ensure_image)
            # Mounting a missing volume would make Docker create it, unlabelled.
            try:
                self.client.api.inspect_volume(plan.workspace_volume)
            except docker.errors.NotFound:
                raise BackendError(
                    f"{what}: it does not exist (setup() must run before populate_workspace())"
                ) from None
            helper = self._new_container(
                image=image,
                # Never started: Docker only refuses to create a container without a command.
                command=["/bin/true"],
                labels=dict(plan.labels),
                mounts=[
                    DockerMount(
                        target=plan.workspace_path,
                        source=plan.workspace_volume,
                        type="volume",
                        no_copy=True,  # the image's files at that path are not the workspace
                    )
                ],
                network_mode="none",
                log_config=LogConfig(type=LogConfig.types.NONE),
            )
            try:
                if not helper.put_archive(plan.workspace_path, archive):
                    raise BackendError(f"{what}: the engine refused the archive")
            finally:
                self._remove_container(helper.id or "")

    def prepare(self, plan: Plan, step: StepPlan) -> None:
        """Create the step's container ahead of ``start`` (best effort, never raises).

        Only when no pull is needed: an image that is missing, or that must be pulled
        (``pull: always``), is left to ``start``, which reports its failure. ``start`` uses
        the prepared container only if it was created from the same spec (a step started
        after a failure gets another environment); ``remove`` and ``destroy`` remove it
        like any other container of the run.
        """
        spec = step.container
        if spec.pull is PullPolicy.ALWAYS:
            return
        with self._lock:
            if plan.run_id in self._closed_runs:
                return
            state = self._steps.get(spec.name)
            if state is None:
                state = self._steps[spec.name] = _StepState(plan.run_id, step.name)
            elif state.claimed or state.container is not None or state.stop_requested:
                return
        if not state.create_lock.acquire(blocking=False):
            return  # another prepare(), or start(), is creating it
        try:
            self.ready(plan)
            with self._lock:
                if state.claimed or state.container is not None or state.stop_requested:
                    return
            try:
                container = self._create_container(plan, spec)
            except docker.errors.ImageNotFound:
                return  # start() applies the pull policy
            with self._lock:
                state.container = container
                state.prepared_spec = spec
                self._removed.discard(spec.name)
                closed = plan.run_id in self._closed_runs
            if closed:  # destroy() may have listed the run's containers before this one
                self._remove_container(container.id or "")
                return
            # Attached as start() would be, before the container starts.
            stream: CancellableStream[_Frame] | None = _attach(container)
            with self._lock:
                mine = self._steps.get(spec.name) is state and state.container is container
                if mine and state.stream is None:
                    state.stream, stream = stream, None
            if stream is not None:  # start() or remove() came meanwhile: not needed
                _close_stream(stream)
        except (
            BackendError,
            docker.errors.DockerException,
            requests.exceptions.RequestException,
            OSError,
        ):
            return  # start() does it all again, and reports what fails
        finally:
            state.create_lock.release()

    def start(self, plan: Plan, step: StepPlan) -> None:
        spec = step.container
        with self._lock:
            state = self._steps.get(spec.name)
            if state is not None and state.claimed and state.container is not None:
                raise BackendError(f"step {step.name!r} was already started")
            if state is None:
                state = self._steps[spec.name] = _StepState(plan.run_id, step.name)
            state.claimed = True
            if state.stop_requested:
                return  # stopped before it started: it never runs; wait() says so
        with self._errors(f"cannot start step {step.name!r}"), state.create_lock:
            # (the lock: a prepare() in flight finishes first)
            with self._lock:
                prepared, prepared_spec = state.container, state.prepared_spec
                stream = state.stream
                state.prepared_spec = None
                if prepared is not None and prepared_spec != spec:
                    state.container = state.stream = None
            if prepared is not None and prepared_spec == spec:
                container = prepared
            else:
                if stream is not None:
                    _close_stream(stream)
                    stream = None
                if prepared is not None:  # made for another spec (environment): made again
                    self._remove_container(prepared.id or "")
                self.ready(plan)
                self._check_open(plan)
                container = self._create_pulling(plan, spec)
            with self._lock:
                state.container = container
                self._removed.discard(spec.name)
                closed = plan.run_id in self._closed_runs
                if state.stop_was_requested() and not closed:  # by stop(), in another thread
                    return
            if closed:
                # destroy() ran while we created the container (and maybe made Docker create
                # a volume it mounts): clean up again, all of it.
                with contextlib.suppress(BackendError):
                    self.destroy(plan)
                self._check_open(plan)
            if stream is None:  # (prepare() attached to the container it made)
                stream = _attach(container)
                with self._lock:
                    state.stream = stream
            # Watch before starting: the cgroup appears before the process runs, and a fork
            # bomb that gives up at once is over within milliseconds.
            watcher = PidsWatcher(self.cgroup_root, container.id or "")
            watcher.start()
            try:
                container.start()
            except Exception:
                watcher.stop()
                _close_stream(stream)
                raise
            with self._lock:
                state.watcher = watcher
                state.started = True
                kill_now = state.stop_was_requested()
        if kill_now:  # stop() came while we were starting: it found nothing to kill
            self._kill(state, container)

    def output(self, plan: Plan, step: StepPlan) -> Iterator[OutputChunk]:
        state = self._state(step)
        with self._lock:
            # (not started: stopped first; a stream prepare() attached would never end)
            stream = None if state.stream_claimed or not state.started else state.stream
            state.stream_claimed = True
            watcher = state.watcher
        if stream is None:
            return
        try:
            for stdout, stderr in stream:
                if watcher is not None:
                    watcher.sample()
                if stdout:
                    yield OutputChunk("stdout", stdout)
                if stderr:
                    yield OutputChunk("stderr", stderr)
        except (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
            OSError,
            ValueError,  # poll() of a socket that remove() closed meanwhile; a bad frame
        ):
            # The container was removed under us (destroy during a cancel): the stream ends.
            pass
        finally:
            _close_stream(stream)

    def wait(self, plan: Plan, step: StepPlan) -> StepExit:
        state = self._state(step)
        with self._lock:
            container = state.container if state.started else None
            unread = None if state.stream_claimed else state.stream
            state.stream_claimed = True
        if container is None:
            return StepExit(exit_code=EXIT_KILLED, killed=True, detail="stopped before it started")
        if unread is not None:
            threading.Thread(
                target=_drain, args=(unread,), name=f"bastion-drain-{step.name}", daemon=True
            ).start()
        spec = step.container
        with self._errors(f"cannot wait for step {step.name!r}"):
            try:
                result: Mapping[str, Any] = container.wait()
            except docker.errors.NotFound:
                result = {}
            oom = False
            with contextlib.suppress(docker.errors.NotFound):
                container.reload()
                oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        failed_forks = state.watcher.stop() if state.watcher is not None else 0
        with state.kill_lock, self._lock:
            killed = state.kill_hit
        if "StatusCode" not in result and not killed:
            raise BackendError(f"the container of step {step.name!r} disappeared before it exited")
        error = (result.get("Error") or {}).get("Message", "")
        return StepExit(
            exit_code=int(result.get("StatusCode", EXIT_KILLED)),
            oom_killed=oom,
            pids_limit_hit=failed_forks > 0,
            killed=killed,
            detail=exit_detail(
                oom_killed=oom,
                mem_limit=spec.mem_limit,
                pids_events=failed_forks,
                pids_limit=spec.pids_limit,
                killed=killed,
                extra=error,
            ),
        )

    def stop(self, plan: Plan, step: StepPlan) -> None:
        with self._lock:
            state = self._steps.setdefault(step.container.name, _StepState(plan.run_id, step.name))
            state.stop_requested = True
            container = state.container if state.started else None
        if container is not None:
            self._kill(state, container)

    def remove(self, plan: Plan, step: StepPlan) -> None:
        name = step.container.name
        with self._lock:
            state = self._steps.pop(name, None)
        if state is not None:
            state.release()
        with self._errors(f"cannot remove the container of step {step.name!r}"):
            self._remove_container(name)
        self._secret_files.remove_step(plan, name)
        with self._lock:
            if plan.run_id not in self._closed_runs:
                self._removed.add(name)

    def destroy(self, plan: Plan) -> None:
        names = {s.container.name for s in plan.all_steps()}
        with self._lock:
            self._closed_runs.add(plan.run_id)
            run = self._runs.pop(plan.run_id, None)
            mine = [n for n, s in self._steps.items() if s.run_id == plan.run_id or n in names]
            states = [self._steps.pop(n) for n in mine]
            removed = names & self._removed
            self._removed -= names
        if run is not None and run.network is not None:
            run.network.wait()  # so that the listing below sees the network
        for state in states:
            state.release()
        failures: list[str] = []
        api = self.client.api
        run_filter = {"label": f"{LABEL_RUN}={plan.run_id}"}

        # The network is the slowest to remove (≈ 0.2 s): it goes in a thread of its own,
        # at once unless a container of the run still runs (its endpoint would be active).
        def remove_networks() -> None:
            with self._errors(f"cannot destroy run {plan.run_id}"):
                for net in api.networks(filters=run_filter):
                    what = f"network {net['Name']}"
                    self._attempt(failures, what, self._remove_network, net["Id"])

        networks: _Background | None = None
        try:
            with self._errors(f"cannot destroy run {plan.run_id}"):
                listed = api.containers(all=True, filters=run_filter)
                if not any(c.get("State") in _ACTIVE_STATES for c in listed):
                    networks = _Background(f"bastion-destroy-{plan.run_id}", remove_networks)
                containers = {c["Id"] for c in listed}
                for name in names - removed:
                    labels = self._labels_of_container(name)
                    if labels is not None and _belongs_to(labels, plan.run_id):
                        containers.add(name)
                for container_id in containers:
                    what = f"container {container_id[:12]}"
                    self._attempt(failures, what, self._remove_container, container_id)
                if networks is None:
                    networks = _Background(f"bastion-destroy-{plan.run_id}", remove_networks)
                volumes = {v["Name"] for v in api.volumes(filters=run_filter).get("Volumes") or []}
                for name in (plan.workspace_volume, *plan.volumes):
                    labels = self._labels_of_volume(name)
                    if labels is not None and _belongs_to(labels, plan.run_id):
                        volumes.add(name)
                for volume in volumes:
                    self._attempt(failures, f"volume {volume}", self._remove_volume, volume)
            # After the containers that mounted them.
            try:
                self._secret_files.remove_run(plan)
            except BackendError as exc:
                failures.append(str(exc))
        finally:
            if networks is not None:
                networks.wait()
        if networks is not None:
            networks.result()
        if failures:
            raise BackendError(f"run {plan.run_id} left resources behind: " + "; ".join(failures))

    def cleanup_stale(self, *, include_live: bool = False) -> CleanupReport:
        api = self.client.api
        managed = {"label": f"{LABEL_MANAGED}=true"}
        failures: list[str] = []

        def stale(labels: Mapping[str, str] | None) -> bool:
            return is_stale(labels or {}, self.hostname, include_live=include_live)

        with self._errors("cannot clean up stale resources"):
            containers = [
                c["Id"] for c in api.containers(all=True, filters=managed) if stale(c["Labels"])
            ]
            removed_containers = sum(
                self._attempt(failures, f"container {c[:12]}", self._remove_container, c)
                for c in containers
            )
            networks = [n for n in api.networks(filters=managed) if stale(n.get("Labels"))]
            removed_networks = sum(
                self._attempt(failures, f"network {n['Name']}", self._remove_network, n["Id"])
                for n in networks
            )
            volumes = [
                v["Name"]
                for v in api.volumes(filters=managed).get("Volumes") or []
                if stale(v.get("Labels"))
            ]
            removed_volumes = sum(
                self._attempt(failures, f"volume {v}", self._remove_volume, v) for v in volumes
            )
        # Secret files of crashed runs (their containers, which mounted them, are gone now).
        self._secret_files.cleanup_stale(include_live=include_live)
        if failures:
            raise BackendError("stale resources could not be removed: " + "; ".join(failures))
        return CleanupReport(
            containers=removed_containers, networks=removed_networks, volumes=removed_volumes
        )

    # -- images ----------------------------------------------------------------------------------

    def _is_local(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.APIError:  # ImageNotFound, or an invalid reference (which a
            return False  # pull, where the policy allows one, then explains)
        return True

    def _ensure_image(self, spec: ContainerSpec) -> None:
        if spec.pull is not PullPolicy.ALWAYS:
            try:
                self.client.images.get(spec.image)
            except docker.errors.ImageNotFound:
                if spec.pull is PullPolicy.NEVER:
                    raise BackendError(missing_image_message(spec.image)) from None
            else:
                return
        # The low-level pull, because the high-level one drops the errors the engine reports
        # in the progress stream (after the request itself succeeded): a denied manifest
        # would only surface as a confusing "no such image" afterwards.
        auth = dict(spec.pull_auth) if spec.pull_auth else None
        failure = ""
        try:
            for event in self.client.api.pull(
                spec.image, stream=True, decode=True, auth_config=auth
            ):
                if isinstance(event, dict) and event.get("error"):
                    failure = str(event["error"])
        except docker.errors.APIError as exc:
            failure = _explain(exc)
        if failure:
            raise BackendError(pull_failed_message(spec.image, failure))

    def _create_pulling(self, plan: Plan, spec: ContainerSpec) -> Container:
        """Create the step's container, pulling its image as the pull policy says.

        The image is not inspected first: the create request fails with "no such image"
        when it is missing, and only then does the policy decide (pull, or fail), which
        saves a request per step in the usual case, an image that is present.
        """
        if spec.pull is PullPolicy.ALWAYS:
            self._ensure_image(spec)
            self._check_open(plan)
        try:
            return self._create_container(plan, spec)
        except docker.errors.ImageNotFound:
            if spec.pull is PullPolicy.NEVER:
                raise BackendError(missing_image_message(spec.image)) from None
        self._ensure_image(spec)
        self._check_open(plan)  # a cancel while pulling
        return self._create_container(plan, spec)

    # -- containers ------------------------------------------------------------------------------

    def _create_container(self, plan: Plan, spec: ContainerSpec) -> Container:
        """Create (not start) the container with every value of the spec."""
        if spec.network_mode:
            network: dict[str, Any] = {"network_mode": spec.network_mode}
        else:
            endpoint = self.client.api.create_endpoint_config(aliases=[spec.alias])
            network = {
                "network": plan.network,
                "networking_config": {plan.network: endpoint},
                # Only on the run's own network: Docker refuses a hostname with host/container
                # network modes.
                "hostname": spec.alias,
            }
        return self._new_container(
            image=spec.image,
            command=list(spec.command) if spec.command is not None else None,
            entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
            environment=dict(spec.env),
            working_dir=spec.working_dir or None,
            user=spec.user or None,
            labels=dict(spec.labels),
            name=spec.name,
            privileged=spec.privileged,
            cap_drop=list(spec.cap_drop),
            cap_add=list(spec.cap_add),
            security_opt=list(spec.security_opt),
            pids_limit=spec.pids_limit,
            mem_limit=spec.mem_limit,
            memswap_limit=spec.memswap_limit,
            nano_cpus=spec.nano_cpus,
            read_only=spec.read_only_rootfs,
            tmpfs=dict(spec.tmpfs),
            mounts=self._mounts(plan, spec),
            devices=list(spec.devices),
            dns=list(spec.dns),
            dns_search=list(spec.dns_search),
            extra_hosts=_extra_hosts(spec.extra_hosts),
            shm_size=spec.shm_size or None,
            # Secrets may be printed before masking: nothing is written to dockerd's disk.
            log_config=LogConfig(type=LogConfig.types.NONE),
            stdin_open=False,
            tty=False,
            **network,
        )

    def _mounts(self, plan: Plan, spec: ContainerSpec) -> list[DockerMount]:
        mounts = [_docker_mount(m) for m in spec.mounts]
        if spec.secret_files:
            # Written now, on the host's tmpfs, for this container only (read-only).
            directory = self._secret_files.write(plan, spec)
            mounts.append(
                DockerMount(
                    target=SECRET_FILES_DIR, source=str(directory), type="bind", read_only=True
                )
            )
        return mounts

    def _new_container(self, **kwargs: Any) -> Container:
        """``client.containers.create`` (same arguments, same translation into the Engine's
        create request) without the inspect of the new container that it adds."""
        kwargs["version"] = self.client.api.api_version  # as containers.create does
        created = self.client.api.create_container(**_create_container_args(kwargs))
        return self.client.containers.prepare_model({"Id": created["Id"]})

    def _kill(self, state: _StepState, container: Container) -> None:
        with state.kill_lock, self._errors(f"cannot stop step {state.step!r}"):
            try:
                container.kill()
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code == _HTTP_CONFLICT:  # not running: it had already exited
                    return
                raise
            with self._lock:
                state.kill_hit = True

    def _remove_container(self, container: str) -> None:
        try:
            # v=True: anonymous volumes (an image's VOLUME) go with it, unlabelled as they are.
            self.client.api.remove_container(container, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # "removal of container ... is already in progress": another call is doing it.
            if exc.status_code != _HTTP_CONFLICT or "in progress" not in _explain(exc):
                raise

    def _labels_of_container(self, name: str) -> Mapping[str, str] | None:
        try:
            attrs = self.client.api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        labels: Mapping[str, str] = (attrs.get("Config") or {}).get("Labels") or {}
        return labels

    # -- networks and volumes --------------------------------------------------------------------

    def _setup_in_background(self, plan: Plan, *, known_absent: bool) -> None:
        """What ``setup`` leaves to a thread: the network."""
        with self._errors(f"cannot set up run {plan.run_id}"):
            self._ensure_network(plan, known_absent=known_absent)

    def _ensure_network(self, plan: Plan, *, known_absent: bool = False) -> None:
        existing = None if known_absent else self._network_named(plan.network)
        if existing is None:
            try:
                # The low-level call: the high-level one inspects the new network again.
                self.client.api.create_network(
                    plan.network, driver="bridge", labels=dict(plan.labels), check_duplicate=True
                )
                return
            except docker.errors.APIError as exc:
                if exc.status_code != _HTTP_CONFLICT:
                    raise
            existing = self._network_named(plan.network)  # another thread made it meanwhile
        labels = (existing or {}).get("Labels") or {}
        _check_owner("network", plan.network, labels, plan.run_id)

    def _network_named(self, name: str) -> dict[str, Any] | None:
        # The name filter matches substrings: keep the exact match.
        for network in self.client.api.networks(filters={"name": name}):
            if network["Name"] == name:
                found: dict[str, Any] = network
                return found
        return None

    def _ensure_volume(self, plan: Plan, name: str) -> None:
        # Creating a local volume that exists is not an error: the engine answers with the
        # existing volume, whose labels then say whose it is (one request, and no race).
        created = self.client.api.create_volume(name, labels=dict(plan.labels))
        _check_owner("volume", name, created.get("Labels") or {}, plan.run_id)

    def _labels_of_volume(self, name: str) -> Mapping[str, str] | None:
        try:
            attrs = self.client.api.inspect_volume(name)
        except docker.errors.NotFound:
            return None
        labels: Mapping[str, str] = attrs.get("Labels") or {}
        return labels

    def _remove_network(self, network_id: str) -> None:
        self._retry_in_use(lambda: self.client.api.remove_network(network_id))

    def _remove_volume(self, name: str) -> None:
        self._retry_in_use(lambda: self.client.api.remove_volume(name))

    def _retry_in_use(self, remove: Callable[[], None]) -> None:
        """Remove, retrying for a while if the engine says the resource is still in use
        (a container being removed by another thread still holds it)."""
        deadline = time.monotonic() + self.in_use_timeout
        delay = 0.05
        while True:
            try:
                remove()
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                text = _explain(exc)
                in_use = "in use" in text or "active endpoints" in text
                if not in_use or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- helpers ---------------------------------------------------------------------------------

    def _check_open(self, plan: Plan) -> None:
        with self._lock:
            closed = plan.run_id in self._closed_runs
        if closed:
            raise BackendError(f"run {plan.run_id} was destroyed while the step started")

    def _state(self, step: StepPlan) -> _StepState:
        with self._lock:
            state = self._steps.get(step.container.name)
        if state is None or not (state.started or state.stop_requested):
            raise BackendError(not_started_message(step.name))
        return state

    def _attempt(
        self, failures: list[str], what: str, remove: Callable[[str], None], ident: str
    ) -> bool:
        """Run one removal of a cleanup; record a failure instead of stopping the others."""
        try:
            remove(ident)
        except docker.errors.APIError as exc:
            failures.append(f"{what}: {_explain(exc)}")
            return False
        return True

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate docker-py's exceptions into ``BackendError`` with a useful message."""
        try:
            yield
        except BackendError:
            raise
        except docker.errors.APIError as exc:
            raise BackendError(f"{what}: {_explain(exc)}") from exc
        except (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
            OSError,
        ) as exc:
            if _is_timeout(exc):
                raise BackendError(
                    f"{what}: the Docker engine at {self.base_url} did not answer in time"
                ) from exc
            if _is_unreachable(exc):
                raise BackendError(
                    f"cannot reach the Docker engine at {self.base_url}: is dockerd running? "
                    "scripts/docker-engine.sh starts one"
                ) from exc
            raise BackendError(f"{what}: {exc}") from exc


# -- module helpers --------------------------------------------------------------------------


def _docker_mount(mount: Mount) -> DockerMount:
    if mount.kind is MountKind.TMPFS:
        return DockerMount(
            target=mount.target,
            source=None,
            type="tmpfs",
            read_only=mount.read_only,
            tmpfs_size=mount.tmpfs_size or None,
        )
    kind: Literal["bind", "volume"] = "bind" if mount.kind is MountKind.BIND else "volume"
    return DockerMount(
        target=mount.target, source=mount.source, type=kind, read_only=mount.read_only
    )


def _extra_hosts(pairs: tuple[str, ...]) -> dict[str, str] | None:
    """``("db:10.0.0.2",)`` → ``{"db": "10.0.0.2"}`` (the host is before the first colon,
    so IPv6 addresses survive)."""
    hosts: dict[str, str] = {}
    for pair in pairs:
        host, _, address = pair.partition(":")
        hosts[host] = address
    return hosts or None


def _attach(container: Container) -> CancellableStream[_Frame]:
    """Attach before start: output printed at once is not lost, as with ``docker run``.
    demux: stdout and stderr stay apart, each frame tagged by dockerd with its stream, so
    that the executor masks them separately."""
    stream: CancellableStream[_Frame] = container.attach(
        stdout=True, stderr=True, stream=True, logs=False, demux=True
    )
    return stream


def _drain(stream: CancellableStream[_Frame]) -> None:
    """Read and drop a stream nobody consumes, so the process never blocks on writing."""
    with contextlib.suppress(Exception):
        for _ in stream:
            pass
    _close_stream(stream)


def _close_stream(stream: CancellableStream[Any]) -> None:
    """Close an attach stream for good; safe to call twice and from another thread.

    ``CancellableStream.close`` shuts the socket down (which wakes a reader blocked on it)
    but the HTTP response still holds a file object on it, so the descriptor stays open
    until garbage collection (a ResourceWarning): closing the response releases it.
    """
    with contextlib.suppress(Exception):
        stream.close()
    response = getattr(stream, "_response", None)  # not public, stable since docker-py 3
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


def _check_owner(kind: str, name: str, labels: Mapping[str, str], run_id: str) -> None:
    owner = labels.get(LABEL_RUN, "")
    if owner != run_id:
        raise BackendError(
            f"a {kind} called {name!r} already exists and does not belong to run {run_id} "
            f"(its {LABEL_RUN} label is {owner!r}): remove it or use another run id"
        )


def _belongs_to(labels: Mapping[str, str], run_id: str) -> bool:
    """Whether ``destroy`` may remove a resource it found by name: ours, or unlabelled
    (Docker created a volume that a mount referenced before ``setup``)."""
    return labels.get(LABEL_RUN) == run_id or LABEL_MANAGED not in labels


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_timeout(exc: BaseException) -> bool:
    return any(isinstance(e, requests.exceptions.Timeout | TimeoutError) for e in _causes(exc))


def _is_unreachable(exc: BaseException) -> bool:
    return any(
        isinstance(e, requests.exceptions.ConnectionError | ConnectionError | FileNotFoundError)
        or "Error while fetching server API version" in str(e)
        for e in _causes(exc)
    )
