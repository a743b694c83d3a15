"""Drive steps through a backend the way the executor does, for backend-level tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from bastion.engine.backend import Backend, StepExit
from bastion.engine.plan import Plan, StepPlan


def run_step(backend: Backend, plan: Plan, step: StepPlan) -> tuple[bytes, StepExit]:
    """start → output → wait → remove; the output and how the step ended."""
    backend.start(plan, step)
    try:
        output = b"".join(backend.output(plan, step))
        return output, backend.wait(plan, step)
    finally:
        backend.remove(plan, step)


@dataclass
class OutputReader:
    """Reads a started step's output in a thread, so a test can act while it runs."""

    backend: Backend
    plan: Plan
    step: StepPlan
    chunks: list[bytes] = field(default_factory=list)
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

    def text(self) -> str:
        with self._changed:
            return b"".join(self.chunks).decode(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> bool:
        """Whether ``needle`` appeared in the output within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(
                lambda: (
                    needle in b"".join(self.chunks).decode(errors="replace")
                    or not self._thread.is_alive()
                ),
                timeout=timeout,
            ) and needle in b"".join(self.chunks).decode(errors="replace")

    def join(self, timeout: float) -> bool:
        """Whether the output ended (the process exited) within ``timeout`` seconds."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return not self._thread.is_alive()
