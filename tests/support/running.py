"""Drive steps through a backend the way the executor does, for backend-level tests."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from bastion.engine.backend import Backend, OutputChunk, StepExit
from bastion.engine.plan import Plan, StepPlan


@dataclass(frozen=True)
class StepOutput:
    """What a step printed: its chunks in arrival order, and each stream on its own."""

    chunks: tuple[OutputChunk, ...] = ()

    @classmethod
    def of(cls, chunks: Iterable[OutputChunk]) -> StepOutput:
        return cls(tuple(chunks))

    @property
    def stdout(self) -> bytes:
        return b"".join(c.data for c in self.chunks if c.stream == "stdout")

    @property
    def stderr(self) -> bytes:
        return b"".join(c.data for c in self.chunks if c.stream == "stderr")

    @property
    def both(self) -> bytes:
        """stdout and stderr as they arrived, interleaved (like ``2>&1``)."""
        return b"".join(c.data for c in self.chunks)


def run_step(backend: Backend, plan: Plan, step: StepPlan) -> tuple[StepOutput, StepExit]:
    """start → output → wait → remove; the output and how the step ended."""
    backend.start(plan, step)
    try:
        output = StepOutput.of(backend.output(plan, step))
        return output, backend.wait(plan, step)
    finally:
        backend.remove(plan, step)


@dataclass
class OutputReader:
    """Reads a started step's output in a thread, so a test can act while it runs."""

    backend: Backend
    plan: Plan
    step: StepPlan
    chunks: list[OutputChunk] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.backend.output(self.plan, self.step):
                with self._changed:
                    self.chunks.append(chunk)
                    self._changed.notify_all()
        except BaseException as exc:  # reported by text() / join()
            self.error = exc
        finally:
            with self._changed:
                self._changed.notify_all()

    def output(self) -> StepOutput:
        with self._changed:
            return StepOutput.of(self.chunks)

    def text(self) -> str:
        """Both streams so far, as they arrived."""
        return self.output().both.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> bool:
        """Whether ``needle`` appeared in the output (either stream) within ``timeout`` s."""
        with self._changed:
            return (
                self._changed.wait_for(
                    lambda: needle in self.text() or not self._thread.is_alive(),
                    timeout=timeout,
                )
                and needle in self.text()
            )

    def join(self, timeout: float) -> bool:
        """Whether the output ended (the process exited) within ``timeout`` seconds."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return not self._thread.is_alive()
