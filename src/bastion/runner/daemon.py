"""The runner daemon: ask for stages, run up to ``capacity`` at once, stop cleanly.

Threads::

    run_runner (caller's thread)   waits for ``stop``; then cancels the stages and waits
    ├── poller                     cleanup on start and every ``cleanup_interval``;
    │                              long-polls while a slot is free; starts a stage thread
    └── stage-<id> (≤ capacity)    StageRun: heartbeat and upload threads of its own

Start-up: ``Backend.cleanup_stale`` removes what crashed runner processes left on this host
(a backend that cannot do even that, e.g. no Docker engine, stops the runner at once); then
the server's ``cleanup`` lists the stages whose leases this runner lost while it was away,
and their resources are found by label and removed (see ``bastion.runner.cleanup``). The
server not answering yet is normal (``bastion server --with-runner`` starts both at once):
the poller retries with backoff, and says so in the log once per outage.

Stopping (``stop`` set, e.g. SIGINT / SIGTERM): no new work is taken; running stages are
cancelled, their containers removed by the executor, and they are completed as ``error``
saying the runner stopped. A lease that arrives while stopping is completed the same way
rather than left to lapse. A refused runner token (401) stops the runner: it was revoked.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import OrderedDict

from bastion import __version__
from bastion.backends import create_backend
from bastion.client import (
    Backoff,
    ClientError,
    RunnerClient,
    UnauthorizedError,
)
from bastion.engine.backend import Backend, BackendError
from bastion.engine.hardening import SettingsError, load_hardening
from bastion.rpc.messages import Lease, RunnerPoll
from bastion.runner.cleanup import LABEL_RUNNER, LABEL_STAGE, destroy_run, runs_labelled
from bastion.runner.settings import RunnerSettings
from bastion.runner.stage import StageEnv, StageRun, refused

log = logging.getLogger("bastion.runner")

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
_RECENT_RUNS = 512  # stage → run id of finished stages, to clean up if reported lost later


class RunnerError(Exception):
    """The runner cannot work at all (bad settings, backend missing, token refused)."""


class Runner:
    """One runner process's work. Use ``run_runner`` unless you need the object (tests)."""

    def __init__(
        self,
        settings: RunnerSettings,
        stop: threading.Event,
        *,
        backend: Backend | None = None,
        rpc: RunnerClient | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        try:
            hardening = settings.hardening or load_hardening()
        except SettingsError as exc:
            raise RunnerError(f"invalid setting: {exc}") from None
        try:
            self.backend = backend or create_backend(settings.backend)
        except (ValueError, BackendError) as exc:
            raise RunnerError(str(exc)) from None
        try:
            self.rpc = rpc or RunnerClient(
                settings.server,
                settings.token,
                verify=settings.ca_cert or True,
                insecure=settings.insecure,
            )
        except ClientError as exc:
            raise RunnerError(exc.message) from None
        self.env = StageEnv(
            rpc=self.rpc,
            backend=self.backend,
            hardening=hardening,
            runner_name=settings.name,
            insecure=settings.insecure,
            workdir=settings.workdir,
        )
        self.fatal: str = ""  # why the runner stopped by itself, if it did
        self._active: dict[int, StageRun] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._recent: OrderedDict[int, str] = OrderedDict()
        self._slots = threading.Condition()
        self._halt = threading.Event()  # stop, or a fatal error
        self._poller = threading.Thread(target=self._poll_loop, name="runner-poller", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self) -> None:
        log.info(
            "runner %s: server %s, backend %s, capacity %d",
            self.settings.name,
            self.rpc.server,
            self.backend.name,
            self.settings.capacity,
        )
        self._clean_host()
        self._poller.start()
        while not self.stop.wait(0.2):
            if self._halt.is_set():
                break
        self._halt.set()
        self._shutdown()
        if self.fatal:
            raise RunnerError(self.fatal)

    def _shutdown(self) -> None:
        with self._slots:
            active = list(self._active.values())
            self._slots.notify_all()
        reason = f"the runner {self.settings.name} was stopped while the stage ran"
        if self.fatal:
            reason = f"the runner {self.settings.name} stopped: {self.fatal}"
        for stage in active:
            stage.stop(reason)
        deadline = time.monotonic() + self.settings.shutdown_grace + 20.0
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        # The poller may be in a long-poll; it refuses any lease it still gets (see _poll_loop).
        self._poller.join(0.5)
        log.info("runner %s: stopped", self.settings.name)

    # -- polling -------------------------------------------------------------------------------

    def _free(self) -> int:
        with self._slots:
            return self.settings.capacity - len(self._active)

    def _poll_loop(self) -> None:
        try:
            self._startup_cleanup()
            last_cleanup = time.monotonic()
            delays = Backoff(initial=0.5, maximum=15.0).delays()
            outage = False
            while not self._halt.is_set():
                with self._slots:
                    while len(self._active) >= self.settings.capacity and not self._halt.is_set():
                        self._slots.wait(0.5)
                if self._halt.is_set():
                    return
                if time.monotonic() - last_cleanup >= self.settings.cleanup_interval:
                    self._cleanup_lost(retry_for=0.0)
                    last_cleanup = time.monotonic()
                try:
                    lease = self.rpc.poll(self._poll_request())
                except UnauthorizedError as exc:
                    self._fail(exc.message)
                    return
                except ClientError as exc:
                    if not outage:
                        log.warning(
                            "runner %s: cannot reach the server: %s", self.settings.name, exc
                        )
                    outage = True
                    self._halt.wait(next(delays))
                    continue
                if outage:
                    log.info("runner %s: the server answers again", self.settings.name)
                    outage = False
                    delays = Backoff(initial=0.5, maximum=15.0).delays()
                if lease is not None:
                    self._accept(lease)
        except Exception:  # the poller must not die silently: stop the runner, say why
            log.exception("runner %s: internal error in the poll loop", self.settings.name)
            self._fail("internal error in the poll loop (see the log)")

    def _poll_request(self) -> RunnerPoll:
        machine = platform.machine()
        return RunnerPoll(
            os=platform.system().lower() or "linux",
            arch=_ARCH.get(machine, machine),
            labels=dict(self.settings.labels),
            capacity=max(1, self._free()),
            version=__version__,
            wait=self.settings.poll_wait,
        )

    def _accept(self, lease: Lease) -> None:
        if self._halt.is_set():
            # Taken while stopping: say so now rather than let the lease lapse in minutes.
            log.info("stage %d: refused, the runner is stopping", lease.stage_id)
            try:
                self.rpc.complete(
                    lease.stage_id,
                    lease.lease_id,
                    refused(f"the runner {self.settings.name} was stopping when it got the stage"),
                    retry_for=5.0,
                )
            except ClientError as exc:
                log.warning("stage %d: could not hand it back: %s", lease.stage_id, exc)
            return
        stage = StageRun(self.env, lease)
        thread = threading.Thread(
            target=self._run_stage, args=(stage,), name=f"stage-{lease.stage_id}", daemon=True
        )
        with self._slots:
            self._active[lease.stage_id] = stage
            self._threads[lease.stage_id] = thread
        log.info("stage %d: leased (run %s)", lease.stage_id, stage.run_id)
        thread.start()

    def _run_stage(self, stage: StageRun) -> None:
        try:
            stage.run()
        finally:
            with self._slots:
                self._active.pop(stage.stage_id, None)
                self._threads.pop(stage.stage_id, None)
                self._recent[stage.stage_id] = stage.run_id
                while len(self._recent) > _RECENT_RUNS:
                    self._recent.popitem(last=False)
                self._slots.notify_all()

    def _fail(self, why: str) -> None:
        log.error("runner %s: %s", self.settings.name, why)
        self.fatal = why
        self._halt.set()

    # -- cleanup -------------------------------------------------------------------------------

    def _clean_host(self) -> None:
        """Remove what crashed runs left on this host; this also proves the backend works,
        which is worth knowing before leasing stages that could only fail."""
        try:
            report = self.backend.cleanup_stale()
        except BackendError as exc:
            raise RunnerError(f"the {self.backend.name} backend cannot be used: {exc}") from None
        if report.total:
            log.info(
                "removed %d containers, %d networks and %d volumes of crashed runs",
                report.containers,
                report.networks,
                report.volumes,
            )

    def _startup_cleanup(self) -> None:
        delays = Backoff(initial=0.5, maximum=10.0).delays()
        warned = False
        while not self._halt.is_set():
            try:
                self._cleanup_lost(retry_for=0.0, raise_errors=True)
                return
            except UnauthorizedError as exc:
                self._fail(exc.message)
                return
            except ClientError as exc:
                if not warned:
                    log.warning(
                        "runner %s: waiting for the server (%s)", self.settings.name, exc.message
                    )
                    warned = True
                self._halt.wait(next(delays))

    def _cleanup_lost(self, *, retry_for: float, raise_errors: bool = False) -> None:
        """Ask which leases were lost; stop those stages and remove their resources."""
        try:
            reply = self.rpc.cleanup(retry_for=retry_for, stop=self._halt)
        except ClientError:
            if raise_errors:
                raise
            return
        for stage_id in reply.lost_stages:
            with self._slots:
                active = self._active.get(stage_id)
                runs = {self._recent[stage_id]} if stage_id in self._recent else set()
            if active is not None:
                active.stop("the server says this runner's lease on the stage lapsed")
                continue  # its executor removes what it created
            try:
                runs |= runs_labelled(
                    self.backend, {LABEL_RUNNER: self.settings.name, LABEL_STAGE: str(stage_id)}
                )
                for run_id in runs:
                    destroy_run(self.backend, run_id)
                    log.info("stage %d: removed the resources of lost run %s", stage_id, run_id)
            except BackendError as exc:
                log.warning("stage %d: cannot remove its resources: %s", stage_id, exc)


def run_runner(
    settings: RunnerSettings,
    stop: threading.Event,
    *,
    backend: Backend | None = None,
) -> None:
    """Run a runner until ``stop`` is set; then cancel its stages, clean up and return.

    Blocks the calling thread (any thread: no signal handlers are installed here; the
    ``bastion runner`` command sets ``stop`` on SIGINT / SIGTERM). ``backend``: use this
    backend instead of creating ``settings.backend``. Raises ``RunnerError`` when the runner
    cannot work at all: invalid hardening settings, unknown backend, unusable server URL or
    CA file, or a runner token the server refuses (then after stopping its stages).
    """
    Runner(settings, stop, backend=backend).run()
