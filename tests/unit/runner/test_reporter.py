"""The runner's reporter: output chunks become numbered lines, states become step updates."""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.backends.fake import FakeBackend
from bastion.engine.compiler import CompileOptions, compile_pipeline
from bastion.engine.executor import Executor, RunResult, StepResult
from bastion.engine.masking import SecretMasker
from bastion.engine.plan import Plan, StepKind
from bastion.engine.status import State
from bastion.rpc.messages import LogLine, StepState, StepUpdate
from bastion.runner.reporter import MAX_LINE, StageReporter
from bastion.spec.conditions import MatchContext
from bastion.spec.context import BuildContext
from bastion.spec.parse import parse

CONFIG = """\
kind: pipeline
type: docker
name: default
services:
  - name: db
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_SLEEP: forever
steps:
  - name: build
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_OUTPUT: one\\ntwo
  - name: deploy
    image: bastion/busybox:latest
    when:
      branch: [release]
"""


@dataclass
class Sink:
    """Stands in for the Uploader: records what the reporter queued."""

    items: list[tuple[int, LogLine] | StepUpdate] = field(default_factory=list)

    def add_line(self, step: int, line: LogLine) -> None:
        self.items.append((step, line))

    def add_step(self, update: StepUpdate) -> None:
        self.items.append(update)

    def lines(self, step: int) -> list[LogLine]:
        return [i[1] for i in self.items if isinstance(i, tuple) and i[0] == step]

    def updates(self, step: int) -> list[StepUpdate]:
        return [i for i in self.items if isinstance(i, StepUpdate) and i.number == step]


def plan() -> Plan:
    manifest = parse(CONFIG).manifest
    return compile_pipeline(
        manifest, 0, BuildContext(), {}, CompileOptions(run_id="r1", host_arch="amd64")
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_chunks_become_numbered_lines_with_times() -> None:
    sink, clock = Sink(), Clock()
    reporter = StageReporter(sink, clock=clock, wall=lambda: 1_700_000_000.0)  # type: ignore[arg-type]
    step = plan().step("build")
    reporter.step_started(step)
    reporter.step_output(step, "fir")
    clock.now = 101.5
    reporter.step_output(step, "st\r\nsec")
    reporter.step_output(step, "ond\n\nthird (no newline)")
    clock.now = 102.0
    reporter.step_finished(step, StepResult("build", StepKind.STEP, State.SUCCESS, exit_code=0))
    assert [(x.n, x.t, x.text) for x in sink.lines(2)] == [
        (0, 1.5, "first"),
        (1, 1.5, "second"),
        (2, 1.5, ""),
        (3, 2.0, "third (no newline)"),
    ]
    running, done = sink.updates(2)
    assert (running.state, running.started, running.name) == (
        StepState.RUNNING,
        1_700_000_000.0,
        "build",
    )
    assert (done.state, done.exit_code, done.finished) == (StepState.SUCCESS, 0, 1_700_000_000.0)
    # The final update comes after the last line.
    assert sink.items[-1] == done


def test_numbering_is_per_step() -> None:
    sink = Sink()
    reporter = StageReporter(sink)  # type: ignore[arg-type]
    p = plan()
    for name in ("build", "deploy"):
        reporter.step_started(p.step(name))
        reporter.step_output(p.step(name), "a\nb\n")
    assert [x.n for x in sink.lines(2)] == [0, 1]
    assert [x.n for x in sink.lines(3)] == [0, 1]


def test_a_runaway_line_is_cut() -> None:
    sink = Sink()
    reporter = StageReporter(sink)  # type: ignore[arg-type]
    step = plan().step("build")
    reporter.step_started(step)
    reporter.step_output(step, "x" * (MAX_LINE * 2 + 10))
    reporter.step_output(step, "\n")
    assert [len(x.text) for x in sink.lines(2)] == [MAX_LINE, MAX_LINE, 10]


def test_announce_lists_every_step_pending_services_first() -> None:
    sink = Sink()
    StageReporter(sink).announce(plan())  # type: ignore[arg-type]
    updates = [i for i in sink.items if isinstance(i, StepUpdate)]
    assert [(u.number, u.name, u.state, u.service) for u in updates] == [
        (1, "db", StepState.PENDING, True),
        (2, "build", StepState.PENDING, False),
        (3, "deploy", StepState.PENDING, False),
    ]


def test_a_real_run_on_the_fake_backend() -> None:
    sink = Sink()
    reporter = StageReporter(sink)  # type: ignore[arg-type]
    p = plan()
    result = Executor(FakeBackend(), SecretMasker(()), reporter).run(
        p, MatchContext.from_build(BuildContext())
    )
    assert result.state is State.SUCCESS
    assert [x.text for x in sink.lines(2)] == ["one", "two"]
    final = reporter.final_steps(p, result)
    assert [(u.name, u.state) for u in final] == [
        ("db", StepState.SUCCESS),  # a service stopped at the end of the pipeline
        ("build", StepState.SUCCESS),
        ("deploy", StepState.SKIPPED),
    ]
    assert final[1].started is not None
    assert final[1].finished is not None
    assert final[2].started is None
    assert "branch" in final[2].detail


def test_steps_that_never_ran_are_reported_skipped_with_the_reason() -> None:
    reporter = StageReporter(Sink())  # type: ignore[arg-type]
    p = plan()
    failed = RunResult("default", State.ERROR, steps=[], reason="engine unreachable")
    final = reporter.final_steps(p, failed, reason="engine unreachable")
    assert {(u.state, u.detail) for u in final} == {(StepState.SKIPPED, "engine unreachable")}


def test_stdout_and_stderr_keep_their_own_unfinished_lines() -> None:
    sink = Sink()
    reporter = StageReporter(sink)  # type: ignore[arg-type]
    step = plan().step("build")
    reporter.step_started(step)
    reporter.step_output(step, "compil", stream="stdout")
    reporter.step_output(step, "warning: old\n", stream="stderr")
    reporter.step_output(step, "ing\ntail", stream="stdout")
    reporter.step_output(step, "err tail", stream="stderr")
    reporter.step_finished(step, StepResult("build", StepKind.STEP, State.SUCCESS, exit_code=0))
    assert [(x.n, x.text) for x in sink.lines(2)] == [
        (0, "warning: old"),
        (1, "compiling"),
        (2, "err tail"),
        (3, "tail"),
    ]
