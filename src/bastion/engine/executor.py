"""Run a compiled ``Plan`` on a ``Backend``: services, the step DAG, logs, limits, cleanup.

Scheduling: services start first (detached); then a step starts as soon as every step it
depends on is done (a detached dependency counts once it has started). Just before a step
starts its ``when`` is evaluated against the pipeline status at that moment, which is how
``when: {status: [failure]}`` steps run after a failure and ordinary steps are skipped.
Each running step has a thread that streams its output through a ``MaskingStream`` (so no
secret reaches the reporter) and waits for its exit. stdout and stderr are decoded and
masked apart, each with its own decoder and ``MaskingStream``: a write on one stream can
land in the middle of an unfinished line of the other, and masking them as one text would
let it cut a secret in two unmasked pieces.

Ahead of time: right after ``setup`` the services and the steps that depend on nothing,
and later, while steps run, each step that waits only for running steps (in both cases only
if its ``when`` matches as things stand) is handed once to the backend's optional
``prepare``, which creates its container with the environment the step would get if it
started now. If the step's spec differs when it does start (``DRONE_BUILD_STATUS`` after a
failure), the backend discards that container and creates another; if it never starts,
``destroy`` removes it. After ``setup`` (and ``populate_workspace``) the executor calls the
optional ``ready``, so that work ``setup`` left in the background still fails the run
before it begins.

Stopping: a deadline (the plan's timeout) and a cancel event (Ctrl-C) are checked by the
scheduling loop; either stops every running container and skips what has not started.
Whatever happens (success, failure, timeout, cancel, a backend error, an exception in a
reporter), ``Backend.destroy`` runs last and removes every container, network and volume of
the run. If the run cannot even begin (``setup`` or ``populate_workspace`` fails), the
result is ``error`` with the backend's message as its reason, and every step is reported
skipped ("not run: the run could not begin"): none is left ``pending``.
"""

from __future__ import annotations

import codecs
import inspect
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import IO, Protocol, cast

from bastion.engine.backend import Backend, BackendError, OutputStream, StepExit
from bastion.engine.masking import MaskingStream, SecretMasker
from bastion.engine.plan import FailurePolicy, Plan, StepKind, StepPlan
from bastion.engine.status import State
from bastion.spec.conditions import MatchContext, explain_mismatch, when_matches
from bastion.spec.environ import failure_environ


@dataclass
class StepResult:
    name: str
    kind: StepKind
    state: State = State.PENDING
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    detail: str = ""

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass
class RunResult:
    pipeline: str
    state: State
    steps: list[StepResult] = field(default_factory=list)
    reason: str = ""  # why the pipeline ended as it did, when not obvious from the steps
    duration: float = 0.0

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)


class Reporter(Protocol):
    """Receives what happens, already masked. Called from several threads.

    ``step_output`` gets text of one stream at a time (``stream``: "stdout" or "stderr"),
    in pieces that may end anywhere; the pieces of the two streams of a step interleave as
    the output arrived, so a reporter that assembles lines keeps one partial line per
    (step, stream).
    """

    def step_started(self, step: StepPlan) -> None: ...

    def step_output(self, step: StepPlan, text: str, stream: OutputStream = "stdout") -> None: ...

    def step_finished(self, step: StepPlan, result: StepResult) -> None: ...


class StreamlessReporter(Protocol):
    """A reporter whose ``step_output`` does not take ``stream`` yet (transitional).

    It still works: it receives the text of both streams, each masked on its own as for any
    reporter, without knowing which is which. Add ``stream: OutputStream = "stdout"`` to its
    ``step_output`` to tell them apart (and keep one partial line per stream).
    """

    def step_started(self, step: StepPlan) -> None: ...

    def step_output(self, step: StepPlan, text: str) -> None: ...

    def step_finished(self, step: StepPlan, result: StepResult) -> None: ...


class NullReporter:
    def step_started(self, step: StepPlan) -> None:
        pass

    def step_output(self, step: StepPlan, text: str, stream: OutputStream = "stdout") -> None:
        pass

    def step_finished(self, step: StepPlan, result: StepResult) -> None:
        pass


OutputCallback = Callable[[StepPlan, str, OutputStream], None]


def _output_callback(reporter: Reporter | StreamlessReporter) -> OutputCallback:
    """How to hand a reporter a piece of output: with ``stream=`` if it takes it."""
    if _takes_stream(reporter.step_output):
        current = cast(Reporter, reporter).step_output
        return lambda step, text, stream: current(step, text, stream=stream)
    streamless = reporter.step_output
    return lambda step, text, stream: streamless(step, text)


def _takes_stream(method: Callable[..., object]) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the current protocol
        return True
    return any(p.name == "stream" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class _StreamDecoder:
    """One output stream of a step: bytes → text (UTF-8, incremental) → masked text."""

    def __init__(self, masker: SecretMasker) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._masking: MaskingStream = masker.stream()

    def feed(self, data: bytes) -> str:
        return self._masking.feed(self._decoder.decode(data))

    def finish(self) -> str:
        return self._masking.feed(self._decoder.decode(b"", final=True)) + self._masking.flush()


class Executor:
    """Runs one plan. Not reusable: create one per run."""

    def __init__(
        self,
        backend: Backend,
        masker: SecretMasker,
        reporter: Reporter | StreamlessReporter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 0.1,
        stop_grace: float = 15.0,
    ) -> None:
        self.backend = backend
        self.masker = masker
        self.reporter: Reporter | StreamlessReporter = reporter or NullReporter()
        self._output = _output_callback(self.reporter)
        self.clock = clock
        self.poll_interval = poll_interval
        self.stop_grace = stop_grace
        self._lock = threading.Condition()
        self._results: dict[str, StepResult] = {}
        self._started: set[str] = set()  # steps whose container has started (or failed to)
        self._threads: list[threading.Thread] = []
        # Set by each step's thread once the step is reported finished; its container is
        # removed after that, while the next steps (or destroy) go on.
        self._reported: list[threading.Event] = []
        self._stopping = False
        self._finishing = False  # the pipeline is over: detached steps are being stopped
        self._stopped_steps: set[str] = set()
        self._prepared: set[str] = set()  # steps handed to the backend's prepare()
        self._prepare_threads: list[threading.Thread] = []

    # -- public ----------------------------------------------------------------------------

    def run(
        self,
        plan: Plan,
        match: MatchContext,
        *,
        workspace: IO[bytes] | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        cancel = cancel or threading.Event()
        begin = self.clock()
        deadline = begin + plan.timeout
        result = RunResult(plan.pipeline, State.RUNNING)
        for step in plan.all_steps():
            self._results[step.name] = StepResult(step.name, step.kind)
        try:
            self.backend.setup(plan)
            with self._lock:  # their containers are made while the workspace is copied
                first = replace(match, status="success")
                steps = [s for s in plan.steps if not s.depends_on and when_matches(s.when, first)]
                self._prepare(plan, [*plan.services, *steps])
            if workspace is not None:
                self.backend.populate_workspace(plan, workspace)
            ready: Callable[[Plan], None] | None = getattr(self.backend, "ready", None)
            if ready is not None:  # optional: setup may finish its work in the background
                ready(plan)
            for service in plan.services:
                self._launch(plan, service)
            reason = self._schedule(plan, match, deadline, cancel)
            result.reason = reason
        except BackendError as exc:
            result.reason = self.masker.mask(str(exc))
            result.state = State.ERROR
            # The reason is the pipeline's (``RunResult.reason``), shown once, not per step.
            self._skip_unstarted(plan, "not run: the run could not begin")
        finally:
            self._teardown(plan)
            result.duration = self.clock() - begin
        result.steps = [self._results[s.name] for s in plan.all_steps()]
        if result.state is not State.ERROR:
            result.state = self._pipeline_state(plan, result.reason, cancel)
        return result

    # -- scheduling ------------------------------------------------------------------------

    def _pipeline_failing(self, plan: Plan) -> bool:
        for step in plan.steps:
            r = self._results[step.name]
            if r.state.failed and step.failure is not FailurePolicy.IGNORE and not step.detach:
                return True
        return any(self._results[s.name].state is State.ERROR for s in plan.services)

    def _ready(self, step: StepPlan, plan: Plan) -> bool:
        for dep in step.depends_on:
            dep_step = plan.step(dep)
            if dep_step.detach:
                if dep not in self._started:
                    return False
            elif not self._results[dep].state.done:
                return False
        return True

    def _schedule(
        self, plan: Plan, match: MatchContext, deadline: float, cancel: threading.Event
    ) -> str:
        pending = list(plan.steps)
        with self._lock:
            while True:
                if cancel.is_set():
                    self._stop_all(plan, "cancelled")
                    self._skip(pending, "the run was cancelled")
                    return "cancelled"
                if self.clock() >= deadline:
                    self._stop_all(plan, "timed out")
                    self._skip(pending, "the pipeline timed out")
                    return f"timed out after {plan.timeout:g} s"
                failing = self._pipeline_failing(plan)
                for step in list(pending):
                    if not self._ready(step, plan):
                        continue
                    pending.remove(step)
                    ctx = replace(match, status="failure" if failing else "success")
                    if not when_matches(step.when, ctx):
                        r = self._results[step.name]
                        r.state = State.SKIPPED
                        r.detail = explain_mismatch(step.when, ctx, for_step=True) or ""
                        self._lock.notify_all()
                        self.reporter.step_finished(step, r)
                        continue
                    self._launch(plan, self._with_failure_env(plan, step) if failing else step)
                self._prepare_upcoming(plan, pending, match, failing)
                if not pending and all(
                    self._results[s.name].state.done or s.detach for s in plan.steps
                ):
                    return ""
                self._lock.wait(self.poll_interval)

    def _upcoming(self, step: StepPlan, plan: Plan) -> bool:
        """Whether ``step`` waits only for steps whose containers run now (lock held)."""
        waiting = False
        for dep in step.depends_on:
            state = self._results[dep].state
            if state is State.RUNNING and dep in self._started:
                waiting = True
            elif not (state.done or (plan.step(dep).detach and dep in self._started)):
                return False
        return waiting

    def _prepare_upcoming(
        self, plan: Plan, pending: list[StepPlan], match: MatchContext, failing: bool
    ) -> None:
        """Hand the steps that can start as soon as the running ones end to the backend's
        optional ``prepare``, each once, in a thread of its own (lock held)."""
        ctx = replace(match, status="failure" if failing else "success")
        upcoming = [s for s in pending if s.name not in self._prepared and self._upcoming(s, plan)]
        self._prepared.update(s.name for s in upcoming)
        # (a step whose when does not match as things stand would be skipped)
        upcoming = [s for s in upcoming if when_matches(s.when, ctx)]
        self._prepare(plan, [self._with_failure_env(plan, s) if failing else s for s in upcoming])

    def _prepare(self, plan: Plan, steps: list[StepPlan]) -> None:
        """Hand ``steps`` to the backend's optional ``prepare``, each in a thread of its own."""
        prepare: Callable[[Plan, StepPlan], None] | None = getattr(self.backend, "prepare", None)
        if prepare is None or self._stopping:
            return
        for target in steps:
            self._prepared.add(target.name)
            if target.refused:
                continue  # never to run: no container for it
            thread = threading.Thread(
                target=_best_effort,
                args=(prepare, plan, target),
                name=f"prepare-{target.name}",
                daemon=True,
            )
            self._prepare_threads.append(thread)
            thread.start()

    def _with_failure_env(self, plan: Plan, step: StepPlan) -> StepPlan:
        """Steps that run after a failure see it in DRONE_BUILD_STATUS, as in Drone."""
        failed = [s.name for s in plan.steps if self._results[s.name].state.failed]
        env = {**step.container.env, **failure_environ(failed)}
        return replace(step, container=replace(step.container, env=env))

    def _skip(self, steps: list[StepPlan], why: str) -> None:
        for step in steps:
            r = self._results[step.name]
            r.state = State.SKIPPED
            r.detail = why
            self.reporter.step_finished(step, r)
        steps.clear()

    def _skip_unstarted(self, plan: Plan, why: str) -> None:
        """Report every step and service that never started as skipped, with ``why``:
        when the run cannot begin, none is left ``pending``."""
        with self._lock:
            unstarted = [
                s for s in plan.all_steps() if self._results[s.name].state is State.PENDING
            ]
            self._skip(unstarted, why)

    def _launch(self, plan: Plan, step: StepPlan) -> None:
        r = self._results[step.name]
        r.state = State.RUNNING
        r.started = self.clock()
        reported = threading.Event()
        thread = threading.Thread(
            target=self._run_step,
            args=(plan, step, reported),
            name=f"step-{step.name}",
            daemon=True,
        )
        self._threads.append(thread)
        self._reported.append(reported)
        thread.start()

    def _run_step(self, plan: Plan, step: StepPlan, reported: threading.Event) -> None:
        r = self._results[step.name]
        self.reporter.step_started(step)
        if step.refused:
            self._refuse(plan, step, r, reported)
            return
        exit_: StepExit | None = None
        try:
            self.backend.start(plan, step)
            with self._lock:
                self._started.add(step.name)
                self._lock.notify_all()
            # One decoder and one masking stream per output stream, never shared: see the
            # module docstring.
            streams: dict[OutputStream, _StreamDecoder] = {}
            for name, data in self.backend.output(plan, step):
                decoder = streams.get(name)
                if decoder is None:
                    decoder = streams[name] = _StreamDecoder(self.masker)
                text = decoder.feed(data)
                if text:
                    self._output(step, text, name)
            for name, decoder in streams.items():
                tail = decoder.finish()
                if tail:
                    self._output(step, tail, name)
            exit_ = self.backend.wait(plan, step)
        except BackendError as exc:
            with self._lock:
                self._started.add(step.name)
                r.state = State.ERROR
                r.detail = self.masker.mask(str(exc))
        except Exception as exc:  # a bug must not leave the run hanging: end the step
            with self._lock:
                self._started.add(step.name)
                r.state = State.ERROR
                r.detail = self.masker.mask(f"internal error: {exc!r}")
        with self._lock:
            r.finished = self.clock()
            if exit_ is not None:
                r.exit_code = exit_.exit_code
                # The backend's words (an engine error may quote the container's settings).
                r.detail = self.masker.mask(exit_.detail) if exit_.detail else ""
                if step.detach and self._finishing and not self._stopping:
                    # Services and detached steps end with the pipeline; that is their
                    # normal end, not a failure.
                    r.state = State.SUCCESS
                    r.exit_code = None
                    r.detail = "stopped at the end of the pipeline"
                elif exit_.killed or step.name in self._stopped_steps:
                    r.state = State.KILLED
                elif exit_.exit_code == 0:
                    r.state = State.SUCCESS
                else:
                    r.state = State.FAILURE
                if exit_.oom_killed and not r.detail:
                    r.detail = "killed: out of memory"
            if (
                r.state.failed
                and step.failure is FailurePolicy.FAST
                and step.kind is StepKind.STEP
                and not self._stopping
            ):
                self._stop_all(plan, f"failure: fast after {step.name!r} failed")
            self._lock.notify_all()
        try:
            self.reporter.step_finished(step, r)
        finally:
            reported.set()
        # destroy() at the end removes anything left behind (it may already run: the
        # teardown does not wait for this removal, and both are safe to race)
        with suppress(BackendError):
            self.backend.remove(plan, step)

    def _refuse(self, plan: Plan, step: StepPlan, r: StepResult, reported: threading.Event) -> None:
        """A step the compiler refused (a secret it may not have): it fails with the reason,
        and no container of it ever exists."""
        with self._lock:
            self._started.add(step.name)
            r.finished = self.clock()
            # A service that cannot start fails the pipeline, as a service error does.
            r.state = State.ERROR if step.kind is StepKind.SERVICE else State.FAILURE
            r.detail = self.masker.mask(step.refused)
            fast = step.failure is FailurePolicy.FAST and step.kind is StepKind.STEP
            if fast and not self._stopping:
                self._stop_all(plan, f"failure: fast after {step.name!r} failed")
            self._lock.notify_all()
        try:
            self.reporter.step_finished(step, r)
        finally:
            reported.set()

    def _stop_all(self, plan: Plan, why: str) -> None:
        """Stop every running step (called with the lock held)."""
        self._stopping = True
        for step in plan.all_steps():
            if self._results[step.name].state is State.RUNNING:
                self._stopped_steps.add(step.name)
                self._stop(plan, step)

    def _stop(self, plan: Plan, step: StepPlan) -> None:
        with suppress(BackendError):
            self.backend.stop(plan, step)

    # -- teardown --------------------------------------------------------------------------

    def _teardown(self, plan: Plan) -> None:
        with self._lock:
            self._finishing = True
            detached = [
                s
                for s in plan.all_steps()
                if s.detach and self._results[s.name].state is State.RUNNING
            ]
        for step in detached:
            self._stop(plan, step)
        deadline = time.monotonic() + self.stop_grace
        for reported in self._reported:
            reported.wait(max(0.0, deadline - time.monotonic()))
        for thread in self._prepare_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for step in detached:
                r = self._results[step.name]
                if r.state is State.RUNNING:  # did not end within the grace period
                    r.state = State.KILLED
                    r.detail = "did not stop in time; removed with the run"
        # Leftovers are labelled; the next run and `bastion exec --cleanup` remove them.
        with suppress(BackendError):
            self.backend.destroy(plan)
        for thread in self._threads:  # the last removals, which raced destroy()
            thread.join(max(0.0, deadline - time.monotonic()))

    def _pipeline_state(self, plan: Plan, reason: str, cancel: threading.Event) -> State:
        if reason == "cancelled" or cancel.is_set():
            return State.KILLED
        if reason.startswith("timed out"):
            return State.FAILURE
        return State.FAILURE if self._pipeline_failing(plan) else State.SUCCESS


def _best_effort(prepare: Callable[[Plan, StepPlan], None], plan: Plan, step: StepPlan) -> None:
    """Call a backend's ``prepare``: it should never raise, and if it does anyway, ``start``
    does the work again and reports what fails."""
    with suppress(Exception):
        prepare(plan, step)
