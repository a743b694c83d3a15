"""The console reporter: lines assembled per step and per stream, never merged."""

from __future__ import annotations

import io

from rich.console import Console
from tests.support.plans import make_plan, make_step

from bastion.cli.console import ConsoleReporter
from bastion.engine.executor import StepResult
from bastion.engine.plan import StepKind
from bastion.engine.status import State


def _reporter() -> tuple[ConsoleReporter, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None, force_terminal=False)
    return ConsoleReporter(console), out


def test_a_stderr_line_never_lands_inside_an_unfinished_stdout_line() -> None:
    plan = make_plan([make_step("build")])
    step = plan.step("build")
    reporter, out = _reporter()

    reporter.step_output(step, "split=abc")
    reporter.step_output(step, "warn\n", stream="stderr")
    reporter.step_output(step, "def\n")

    assert out.getvalue().splitlines() == ["build    │ warn", "build    │ split=abcdef"]


def test_unfinished_lines_of_both_streams_are_printed_when_the_step_ends() -> None:
    plan = make_plan([make_step("build")])
    step = plan.step("build")
    reporter, out = _reporter()

    reporter.step_output(step, "no newline on stdout", stream="stdout")
    reporter.step_output(step, "nor on stderr", stream="stderr")
    reporter.step_finished(step, StepResult("build", StepKind.STEP, State.SUCCESS, exit_code=0))

    lines = out.getvalue().splitlines()
    assert lines[:2] == ["build    │ no newline on stdout", "build    │ nor on stderr"]
    assert "success" in lines[2]


def test_the_default_stream_is_stdout() -> None:
    plan = make_plan([make_step("build")])
    step = plan.step("build")
    reporter, out = _reporter()

    reporter.step_output(step, "half ")  # as a caller that does not name the stream
    reporter.step_output(step, "line\n", stream="stdout")

    assert out.getvalue().splitlines() == ["build    │ half line"]
