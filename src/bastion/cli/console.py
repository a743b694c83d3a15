"""Live, readable output of a run: each step's lines prefixed with its name in its colour.

Output reaches this reporter already masked. Build output is untrusted text, so it is never
interpreted as Rich markup; ANSI colour codes in it are kept (``Text.from_ansi``), other
control sequences are dropped. Lines are assembled per step and per stream, so that neither
parallel steps nor a step's stdout and stderr ever interleave within a line; a stderr line
is printed like a stdout line, its prefix in red.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bastion.engine.backend import OutputStream
from bastion.engine.executor import RunResult, StepResult
from bastion.engine.plan import Plan, StepKind, StepPlan
from bastion.engine.status import State

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta")
_STATE_STYLE = {
    State.SUCCESS: ("✔", "green"),
    State.FAILURE: ("✘", "red"),
    State.ERROR: ("✘", "red"),
    State.KILLED: ("■", "red"),
    State.SKIPPED: ("–", "dim"),
    State.RUNNING: ("…", "yellow"),
    State.PENDING: ("…", "dim"),
}


class ConsoleReporter:
    def __init__(self, console: Console, plan: Plan | None = None) -> None:
        self.console = console
        self._partial: dict[tuple[str, OutputStream], str] = {}  # unfinished lines
        self._lock = threading.Lock()
        # One width for the whole run, so that the output of every step lines up.
        names = [s.name for s in plan.all_steps()] if plan is not None else []
        self._width = max([8, *map(len, names)])

    def _colour(self, step: StepPlan) -> str:
        return _COLOURS[(step.number - 1) % len(_COLOURS)]

    def _prefix(self, step: StepPlan, stream: OutputStream = "stdout") -> Text:
        self._width = max(self._width, len(step.name))
        style = "dim red" if stream == "stderr" else self._colour(step)
        return Text(f"{step.name:<{self._width}} │ ", style=style)

    def step_started(self, step: StepPlan) -> None:
        what = "service" if step.kind is StepKind.SERVICE else "step"
        with self._lock:
            self.console.print(
                Text.assemble(
                    ("▶ ", self._colour(step)),
                    (f"{what} ", "dim"),
                    (step.name, f"bold {self._colour(step)}"),
                    (f"  {step.container.image}", "dim"),
                )
            )

    def step_output(self, step: StepPlan, text: str, stream: OutputStream = "stdout") -> None:
        with self._lock:
            key = (step.name, stream)
            buffered = self._partial.get(key, "") + text
            *lines, rest = buffered.split("\n")
            self._partial[key] = rest
            for line in lines:
                self._line(step, line, stream)

    def _line(self, step: StepPlan, line: str, stream: OutputStream) -> None:
        body = Text.from_ansi(line.rstrip("\r"))
        self.console.print(Text.assemble(self._prefix(step, stream), body), soft_wrap=True)

    def step_finished(self, step: StepPlan, result: StepResult) -> None:
        with self._lock:
            for stream in ("stdout", "stderr"):
                rest = self._partial.pop((step.name, stream), "")
                if rest:
                    self._line(step, rest, stream)
            mark, style = _STATE_STYLE[result.state]
            parts: list[tuple[str, str] | str] = [
                (f"{mark} ", style),
                (step.name, f"bold {self._colour(step)}"),
                (f"  {result.state.value}", style),
            ]
            if result.exit_code not in (None, 0):
                parts.append((f" (exit code {result.exit_code})", style))
            if result.duration is not None:
                parts.append((f"  {result.duration:.1f}s", "dim"))
            if result.detail:
                parts.append((f"  {result.detail}", "dim" if result.state.done else ""))
            self.console.print(Text.assemble(*parts))

    def summary(self, result: RunResult) -> None:
        table = Table(
            title=f"pipeline {result.pipeline}: {result.state.value}", title_justify="left"
        )
        table.add_column("step")
        table.add_column("status")
        table.add_column("exit", justify="right")
        table.add_column("time", justify="right")
        table.add_column("note", overflow="fold")
        for step in result.steps:
            mark, style = _STATE_STYLE[step.state]
            table.add_row(
                Text(step.name),
                Text(f"{mark} {step.state.value}", style=style),
                "" if step.exit_code is None else str(step.exit_code),
                "" if step.duration is None else f"{step.duration:.1f}s",
                Text(step.detail),
            )
        self.console.print(table)
        if result.reason:
            self.console.print(Text(f"pipeline {result.pipeline}: {result.reason}", style="bold"))
