"""The executor's ``Reporter`` for a runner: step output becomes numbered ``LogLine``\\ s.

Output arrives already masked (the executor streams it through the stage's
``SecretMasker``), in chunks that may cut a line anywhere. Each step keeps an unfinished
line per output stream (stdout, stderr: the two interleave as they arrive, and a stderr
write must not land in the middle of a stdout line) until its newline arrives or the step
ends; a complete line becomes
``LogLine(n, t, text)`` with ``n`` counting from 0 per step, ``t`` the seconds since the
step started, and ``text`` without its line ending. A line longer than ``MAX_LINE``
characters is cut into several, so that one runaway line cannot make a batch the server
refuses.

Step states become ``StepUpdate``\\ s: all ``pending`` once the plan is known (the server
and the UI learn the steps up front, as with Drone's runner), ``running`` when a step
starts, its final state when it ends. Times in updates are Unix times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bastion.engine.backend import OutputStream
from bastion.engine.executor import RunResult, StepResult
from bastion.engine.plan import Plan, StepKind, StepPlan
from bastion.engine.status import State
from bastion.rpc.messages import LogLine, StepState, StepUpdate
from bastion.runner.uploader import Uploader

MAX_LINE = 16 * 1024


@dataclass
class _StepLog:
    started: float  # monotonic
    started_wall: float
    next_n: int = 0  # line numbers are per step, whichever stream a line came from
    partial: dict[str, str] = field(default_factory=dict)  # stream -> unfinished line


class StageReporter:
    """Feeds an ``Uploader``. Thread-safe: the executor calls it from every step thread."""

    def __init__(
        self,
        uploader: Uploader,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.uploader = uploader
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._logs: dict[int, _StepLog] = {}
        self._finished_wall: dict[int, float] = {}

    def announce(self, plan: Plan) -> None:
        """Every step and service, ``pending``, before anything runs."""
        for step in plan.all_steps():
            self.uploader.add_step(_update(step, StepState.PENDING))

    # -- the Reporter protocol -----------------------------------------------------------------

    def step_started(self, step: StepPlan) -> None:
        with self._lock:
            log = _StepLog(started=self.clock(), started_wall=self.wall())
            self._logs[step.number] = log
            self.uploader.add_step(_update(step, StepState.RUNNING, started=log.started_wall))

    def step_output(self, step: StepPlan, text: str, stream: OutputStream = "stdout") -> None:
        with self._lock:
            log = self._logs.get(step.number)
            if log is None:  # output before start cannot happen; be robust anyway
                log = self._logs[step.number] = _StepLog(self.clock(), self.wall())
            *lines, rest = (log.partial.get(stream, "") + text).split("\n")
            for line in lines:
                self._emit(step, log, line)
            while len(rest) > MAX_LINE:
                self._emit(step, log, rest[:MAX_LINE])
                rest = rest[MAX_LINE:]
            log.partial[stream] = rest

    def step_finished(self, step: StepPlan, result: StepResult) -> None:
        with self._lock:
            log = self._logs.get(step.number)
            if log is not None:
                for stream in sorted(log.partial):  # stderr before stdout: any fixed order
                    if log.partial[stream]:
                        self._emit(step, log, log.partial[stream])
                log.partial.clear()
            finished = self.wall()
            self._finished_wall[step.number] = finished
            self.uploader.add_step(
                _update(
                    step,
                    StepState(result.state.value),
                    exit_code=result.exit_code,
                    started=log.started_wall if log is not None else None,
                    finished=finished,
                    detail=result.detail,
                )
            )

    def _emit(self, step: StepPlan, log: _StepLog, text: str) -> None:
        text = text.removesuffix("\r")
        for start in range(0, max(len(text), 1), MAX_LINE):
            line = LogLine(
                n=log.next_n,
                t=round(self.clock() - log.started, 3),
                text=text[start : start + MAX_LINE],
            )
            log.next_n += 1
            self.uploader.add_line(step.number, line)

    # -- the end -------------------------------------------------------------------------------

    def final_steps(
        self, plan: Plan, result: RunResult | None, reason: str = ""
    ) -> list[StepUpdate]:
        """The last word on every step, for ``StageResult.steps``. The executor's result is
        the authority on states (a detached step may end after its report); times come from
        what this reporter saw. Steps that never ran are ``skipped`` with ``reason``."""
        results = {r.name: r for r in result.steps} if result is not None else {}
        now = self.wall()
        out: list[StepUpdate] = []
        with self._lock:
            for step in plan.all_steps():
                r = results.get(step.name)
                log = self._logs.get(step.number)
                started = log.started_wall if log is not None else None
                state = r.state if r is not None else State.PENDING
                if state in (State.PENDING, State.RUNNING) and log is None:
                    out.append(_update(step, StepState.SKIPPED, detail=reason or "not run"))
                    continue
                if state in (State.PENDING, State.RUNNING):
                    state = State.KILLED
                out.append(
                    _update(
                        step,
                        StepState(state.value),
                        exit_code=r.exit_code if r is not None else None,
                        started=started,
                        finished=self._finished_wall.get(step.number, now) if started else None,
                        detail=(r.detail if r is not None else "") or "",
                    )
                )
        return out


def _update(
    step: StepPlan,
    state: StepState,
    *,
    exit_code: int | None = None,
    started: float | None = None,
    finished: float | None = None,
    detail: str = "",
) -> StepUpdate:
    return StepUpdate(
        number=step.number,
        name=step.name,
        state=state,
        exit_code=exit_code,
        started=started,
        finished=finished,
        detail=detail,
        detached=step.detach and step.kind is StepKind.STEP,
        service=step.kind is StepKind.SERVICE,
    )
