"""``Recorder``: an executor ``Reporter`` that remembers everything it is told, in order."""

from __future__ import annotations

import threading

from bastion.engine.backend import OutputStream
from bastion.engine.executor import StepResult
from bastion.engine.plan import StepPlan


class Recorder:
    """Remembers what the executor reports. Thread-safe (steps report from their threads).

    ``events``: ("start" | "end", step) in order; ``output``: each step's text of both
    streams as it arrived; ``text(step, stream)``: one stream's text; ``results``: the
    result each step ended with.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.output: dict[str, str] = {}
        self.streams: dict[tuple[str, OutputStream], str] = {}
        self.results: dict[str, StepResult] = {}
        self._lock = threading.Lock()

    def step_started(self, step: StepPlan) -> None:
        with self._lock:
            self.events.append(("start", step.name))

    def step_output(self, step: StepPlan, text: str, stream: OutputStream = "stdout") -> None:
        with self._lock:
            self.output[step.name] = self.output.get(step.name, "") + text
            key = (step.name, stream)
            self.streams[key] = self.streams.get(key, "") + text

    def step_finished(self, step: StepPlan, result: StepResult) -> None:
        with self._lock:
            self.events.append(("end", step.name))
            self.results[step.name] = result

    def text(self, step: str, stream: OutputStream) -> str:
        with self._lock:
            return self.streams.get((step, stream), "")
