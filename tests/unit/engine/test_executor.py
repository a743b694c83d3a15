"""The executor on the fake backend: ordering, parallelism, conditions, failure rules,
timeouts, cancellation, masking and cleanup. The same behaviour on Docker is covered by
tests/integration/test_exec_docker.py."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest
from tests.support.plans import workspace_tar
from tests.support.reporters import Recorder

from bastion.backends.fake import FakeBackend
from bastion.engine.backend import BackendError, OutputChunk, OutputStream, StepExit
from bastion.engine.compiler import CompileOptions, compile_pipeline
from bastion.engine.executor import Executor, RunResult, StepResult
from bastion.engine.masking import REPLACEMENT, SecretMasker
from bastion.engine.plan import Plan, StepPlan
from bastion.engine.status import State
from bastion.spec.conditions import MatchContext
from bastion.spec.context import BuildContext, Commit
from bastion.spec.parse import parse


def plan_of(text: str, secrets: dict[str, str] | None = None, timeout: float = 60) -> Plan:
    result = parse(text)
    assert result.ok, [d.format() for d in result.diagnostics]
    return compile_pipeline(
        result.manifest,
        0,
        BuildContext(),
        secrets or {},
        CompileOptions(run_id="t" + str(time.monotonic_ns())[-8:], timeout=timeout),
    )


def run(
    text: str,
    *,
    secrets: dict[str, str] | None = None,
    timeout: float = 60,
    match: MatchContext | None = None,
    cancel: threading.Event | None = None,
    backend: FakeBackend | None = None,
    workspace: dict[str, str] | None = None,
) -> tuple[RunResult, Recorder, FakeBackend]:
    backend = backend or FakeBackend()
    recorder = Recorder()
    plan = plan_of(text, secrets, timeout)
    masker = SecretMasker((secrets or {}).values())
    executor = Executor(backend, masker, recorder, poll_interval=0.01)
    result = executor.run(
        plan,
        match or MatchContext.from_build(BuildContext()),
        workspace=workspace_tar(workspace) if workspace is not None else None,
        cancel=cancel,
    )
    assert backend.resources_of(plan.run_id) == [], "the run left resources behind"
    return result, recorder, backend


def step(name: str, *, sleep: float = 0, exit: int = 0, output: str = "", extra: str = "") -> str:
    env = f"BASTION_FAKE_SLEEP: '{sleep}', BASTION_FAKE_EXIT: '{exit}'"
    if output:
        env += f", BASTION_FAKE_OUTPUT: '{output}'"
    return f"- {{name: {name}, image: x, environment: {{{env}}}{extra}}}\n"


def states(result: RunResult) -> dict[str, State]:
    return {s.name: s.state for s in result.steps}


def test_sequential_steps_run_in_order() -> None:
    text = "kind: pipeline\nsteps:\n" + step("a", sleep=0.05) + step("b") + step("c")
    result, rec, _ = run(text)
    assert result.state is State.SUCCESS
    assert [e for e in rec.events if e[0] == "start"] == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]
    assert rec.events.index(("end", "a")) < rec.events.index(("start", "b"))


def test_dag_steps_run_in_parallel_and_wait_for_dependencies() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        + step("a", sleep=0.3)
        + step("b", sleep=0.3)
        + step("c", extra=", depends_on: [a, b]")
    )
    result, rec, _ = run(text)
    assert result.state is State.SUCCESS
    a, b, c = (result.step(n) for n in "abc")
    assert a.started is not None and b.started is not None and c.started is not None
    # a and b overlap; c starts only after both ended
    assert b.started < (a.finished or 0) and a.started < (b.finished or 0)
    assert c.started >= max(a.finished or 0, b.finished or 0)


def test_failure_skips_later_steps_but_runs_failure_handlers() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        + step("a", exit=2)
        + step("b")
        + step("on-failure", extra=", when: {status: [failure]}")
        + step("always", extra=", when: {status: [success, failure]}")
        + step("on-success", extra=", when: {status: [success]}")
    )
    result, _, _ = run(text)
    assert result.state is State.FAILURE
    assert states(result) == {
        "a": State.FAILURE,
        "b": State.SKIPPED,
        "on-failure": State.SUCCESS,
        "always": State.SUCCESS,
        "on-success": State.SKIPPED,
    }
    assert result.step("a").exit_code == 2


def test_failure_ignore_keeps_the_pipeline_green() -> None:
    text = "kind: pipeline\nsteps:\n" + step("a", exit=1, extra=", failure: ignore") + step("b")
    result, _, _ = run(text)
    assert result.state is State.SUCCESS
    assert states(result) == {"a": State.FAILURE, "b": State.SUCCESS}


def test_failure_fast_stops_parallel_steps() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        + step("root")
        + step("slow", sleep=30, extra=", depends_on: [root]")
        + step("bad", exit=1, extra=", failure: fast, depends_on: [root]")
    )
    started = time.monotonic()
    result, _, _ = run(text)
    assert time.monotonic() - started < 20  # generous: the slow step was not waited for
    assert states(result) == {"root": State.SUCCESS, "slow": State.KILLED, "bad": State.FAILURE}


def test_steps_after_a_failure_see_the_failure_in_their_environment() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        + step("a", exit=1)
        + step("report", extra=", when: {status: [failure]}")
    )
    result, _, backend = run(text)
    env = next(c.env for c in backend.started if c.alias == "report")
    assert env["DRONE_BUILD_STATUS"] == "failure"
    assert env["DRONE_FAILED_STEPS"] == "a"


def test_when_conditions_use_the_build() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        + step("main-only", extra=", when: {branch: main}")
        + step("dev-only", extra=", when: {branch: dev}")
        + step("not-push", extra=", when: {event: {exclude: [push]}}")
    )
    result, _, _ = run(text)
    assert states(result) == {
        "main-only": State.SUCCESS,
        "dev-only": State.SKIPPED,
        "not-push": State.SKIPPED,
    }
    assert "branch" in result.step("dev-only").detail
    ctx = BuildContext(commit=Commit(branch="dev", ref="refs/heads/dev"))
    result, _, _ = run(text, match=MatchContext.from_build(ctx))
    assert states(result)["dev-only"] is State.SUCCESS
    assert states(result)["main-only"] is State.SKIPPED


def test_timeout_kills_running_steps_and_skips_the_rest() -> None:
    text = "kind: pipeline\nsteps:\n" + step("forever", sleep=60) + step("next")
    result, _, _ = run(text, timeout=0.5)
    assert result.state is State.FAILURE
    assert "timed out" in result.reason
    assert states(result) == {"forever": State.KILLED, "next": State.SKIPPED}


def test_cancel_stops_everything_and_cleans_up() -> None:
    cancel = threading.Event()
    text = "kind: pipeline\nsteps:\n" + step("forever", sleep=60) + step("next")
    threading.Timer(0.3, cancel.set).start()
    result, _, _ = run(text, cancel=cancel)
    assert result.state is State.KILLED
    assert states(result) == {"forever": State.KILLED, "next": State.SKIPPED}


def test_services_start_first_and_stop_at_the_end_without_failing() -> None:
    text = (
        "kind: pipeline\nservices:\n- {name: db, image: x, environment: "
        "{BASTION_FAKE_SLEEP: forever}}\nsteps:\n" + step("a")
    )
    result, rec, _ = run(text)
    assert rec.events[0] == ("start", "db")
    assert result.state is State.SUCCESS
    assert result.step("db").state is State.SUCCESS
    assert "stopped at the end" in result.step("db").detail


def test_detached_step_does_not_block_or_fail_the_pipeline() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        "- {name: bg, image: x, detach: true, environment: {BASTION_FAKE_SLEEP: forever}}\n"
        + step("a")
    )
    result, _, _ = run(text)
    assert result.state is State.SUCCESS
    assert states(result) == {"bg": State.SUCCESS, "a": State.SUCCESS}


def test_secret_output_is_masked_before_the_reporter_sees_it() -> None:
    secret = "s3cr3t-value-42"
    text = (
        "kind: pipeline\nsteps:\n- name: leak\n  image: x\n  environment:\n"
        "    TOKEN: {from_secret: token}\n    BASTION_FAKE_OUTPUT: 'token=s3cr3t-value-42 end'\n"
    )
    result, rec, backend = run(text, secrets={"token": secret})
    assert result.state is State.SUCCESS
    assert secret not in rec.output["leak"]
    assert "token=******** end" in rec.output["leak"]
    assert backend.started[0].env["TOKEN"] == secret


def test_a_backend_s_exit_detail_is_masked_too() -> None:
    secret = "s3cr3t-value-42"

    class Quoting(FakeBackend):
        # An engine whose error message quotes the container's environment.
        def wait(self, plan: Plan, step: StepPlan) -> StepExit:
            exit_ = super().wait(plan, step)
            return dataclasses.replace(exit_, detail=f"died with TOKEN={secret}")

    text = (
        "kind: pipeline\nsteps:\n- name: leak\n  image: x\n  environment:\n"
        "    TOKEN: {from_secret: token}\n    BASTION_FAKE_EXIT: '3'\n"
    )
    result, _, _ = run(text, secrets={"token": secret}, backend=Quoting())
    assert result.step("leak").detail == "died with TOKEN=********"


def test_start_failure_is_an_error_and_still_cleans_up() -> None:
    text = (
        "kind: pipeline\nsteps:\n- {name: a, image: x, environment: {BASTION_FAKE_CRASH: start}}\n"
        + step("b")
    )
    result, _, backend = run(text)
    assert result.state is State.FAILURE
    assert states(result) == {"a": State.ERROR, "b": State.SKIPPED}
    assert result.step("a").detail


def test_missing_image_with_pull_never_is_an_error_with_a_message() -> None:
    backend = FakeBackend(local_images=[], registry_images=[])
    text = "kind: pipeline\nsteps:\n- {name: a, image: nothere:1, pull: never}\n"
    result, _, _ = run(text, backend=backend)
    assert result.step("a").state is State.ERROR
    assert "nothere:1" in result.step("a").detail


def test_oom_is_reported() -> None:
    text = "kind: pipeline\nsteps:\n- {name: hog, image: x, environment: {BASTION_FAKE_OOM: '1'}}\n"
    result, _, _ = run(text)
    hog = result.step("hog")
    assert hog.state is State.FAILURE
    assert hog.exit_code == 137
    assert "memory" in hog.detail


@pytest.mark.parametrize("n", [1, 5])
def test_large_output_is_streamed_completely(n: int) -> None:
    text = (
        "kind: pipeline\nsteps:\n- {name: a, image: x, environment: "
        f"{{BASTION_FAKE_LOG_BYTES: '{n * 100_000}'}}}}\n"
    )
    _, rec, _ = run(text)
    assert len(rec.output["a"].encode()) >= n * 100_000


# -- stdout and stderr -----------------------------------------------------------------------


TOKEN = "Zq9xKvB7wtLmP4Yr"


def test_stderr_reaches_the_reporter_tagged_stderr() -> None:
    text = (
        "kind: pipeline\nsteps:\n- {name: a, image: x, environment: "
        "{BASTION_FAKE_OUTPUT: out, BASTION_FAKE_STDERR: err}}\n"
    )
    _, rec, _ = run(text)
    assert rec.text("a", "stdout") == "out\n"
    assert rec.text("a", "stderr") == "err\n"


def test_a_stderr_write_inside_a_half_printed_secret_does_not_unmask_it() -> None:
    # The leak: stdout prints `split=` and the first 9 characters of the secret, stderr
    # writes a line, stdout prints the rest. Masked as one stream, the text reads
    # `split=Zq9xKvB7wwarn` + `tLmP4Yr`: neither piece is the secret, both are printed.
    text = (
        "kind: pipeline\nsteps:\n- name: shell\n  image: x\n  environment:\n"
        "    TOKEN: {from_secret: token}\n"
        f"    BASTION_FAKE_OUTPUT: 'split={TOKEN[:9]}\\|{TOKEN[9:]}'\n"
        "    BASTION_FAKE_STDERR: warn\n"
    )
    result, rec, _ = run(text, secrets={"token": TOKEN})

    assert result.state is State.SUCCESS
    assert rec.text("shell", "stdout") == f"split={REPLACEMENT}\n"
    assert rec.text("shell", "stderr") == "warn\n"
    printed = "".join(rec.output.values())
    assert TOKEN[:9] not in printed
    assert TOKEN[9:] not in printed


class _ChunkedBackend(FakeBackend):
    """Every step writes exactly these chunks."""

    def __init__(self, chunks: list[tuple[OutputStream, bytes]]) -> None:
        super().__init__()
        self.chunks = [OutputChunk(stream, data) for stream, data in chunks]

    def output(self, plan: Plan, step: StepPlan) -> Iterator[OutputChunk]:
        for _ in super().output(plan, step):  # until the pretend process exits
            pass
        yield from self.chunks


def test_each_stream_is_decoded_on_its_own() -> None:
    # A UTF-8 character cut between two stdout chunks, with stderr text in between, still
    # decodes whole: stderr bytes never land inside a stdout character.
    euro = "€".encode()
    backend = _ChunkedBackend(
        [("stdout", b"price: " + euro[:1]), ("stderr", b"note\n"), ("stdout", euro[1:] + b"\n")]
    )
    text = "kind: pipeline\nsteps:\n" + step("a")
    _, rec, _ = run(text, backend=backend)
    assert rec.text("a", "stdout") == "price: €\n"
    assert rec.text("a", "stderr") == "note\n"


def test_a_reporter_without_the_stream_argument_still_gets_everything_masked() -> None:
    # Reporters written against `step_output(step, text)` keep working (transitional).
    class Streamless:
        def __init__(self) -> None:
            self.text = ""
            self.finished: list[str] = []

        def step_started(self, step: StepPlan) -> None:
            pass

        def step_output(self, step: StepPlan, text: str) -> None:
            self.text += text

        def step_finished(self, step: StepPlan, result: StepResult) -> None:
            self.finished.append(step.name)

    text = (
        "kind: pipeline\nsteps:\n- name: a\n  image: x\n  environment:\n"
        "    TOKEN: {from_secret: token}\n"
        f"    BASTION_FAKE_OUTPUT: 'split={TOKEN[:9]}\\|{TOKEN[9:]}'\n"
        "    BASTION_FAKE_STDERR: warn\n"
    )
    reporter = Streamless()
    plan = plan_of(text, {"token": TOKEN})
    result = Executor(FakeBackend(), SecretMasker([TOKEN]), reporter, poll_interval=0.01).run(
        plan, MatchContext.from_build(BuildContext())
    )
    assert result.state is State.SUCCESS
    assert sorted(reporter.text.splitlines()) == ["split=" + REPLACEMENT, "warn"]
    assert reporter.finished == ["a"]


# -- a run that cannot begin -----------------------------------------------------------------


def test_a_missing_image_in_the_first_step_fails_that_step_and_failure_handlers_run() -> None:
    backend = FakeBackend(local_images=["x"], registry_images=[])
    text = (
        "kind: pipeline\nsteps:\n- {name: first, image: bastion/nonexistent:1, pull: never}\n"
        + step("second")
        + step("on-failure", extra=", when: {status: [failure]}")
    )
    result, rec, _ = run(text, backend=backend, workspace={"f": "x"})
    assert result.state is State.FAILURE
    assert states(result) == {
        "first": State.ERROR,
        "second": State.SKIPPED,
        "on-failure": State.SUCCESS,
    }
    assert "bastion/nonexistent:1" in result.step("first").detail
    assert backend.helper_images == ["x"]


@pytest.mark.parametrize("where", ["setup", "populate_workspace"])
def test_when_the_run_cannot_begin_every_step_is_reported_skipped(where: str) -> None:
    class Failing(FakeBackend):
        def setup(self, plan: Plan) -> None:
            if where == "setup":
                raise BackendError("the engine said no")
            super().setup(plan)

    backend = Failing(local_images=[], registry_images=[])
    text = (
        "kind: pipeline\nservices:\n- {name: db, image: x}\nsteps:\n"
        + step("a")
        + step("b", extra=", when: {status: [failure]}")
    )
    result, rec, _ = run(text, backend=backend, workspace={"f": "x"})

    assert result.state is State.ERROR
    assert result.reason
    assert states(result) == {"db": State.SKIPPED, "a": State.SKIPPED, "b": State.SKIPPED}
    for r in result.steps:
        assert r.detail == "not run: the run could not begin"
    assert sorted(rec.results) == ["a", "b", "db"]  # each one reported
    assert not [e for e in rec.events if e[0] == "start"]
    if where == "setup":
        assert "the engine said no" in result.reason
    else:
        assert "no image of run" in result.reason


# -- ahead of time: ready and prepare (optional backend methods) ------------------------------


def test_ready_is_called_once_setup_and_the_workspace_copy_are_done() -> None:
    text = "kind: pipeline\nsteps:\n" + step("a")
    _, _, backend = run(text, workspace={"f": "x"})
    methods = [c.method for c in backend.calls if c.method != "prepare"]
    assert methods[:4] == ["setup", "populate_workspace", "ready", "start"]


def test_a_failing_ready_means_the_run_could_not_begin() -> None:
    class NotReady(FakeBackend):
        def ready(self, plan: Plan) -> None:
            raise BackendError("no address pool left for the network")

    result, rec, _ = run("kind: pipeline\nsteps:\n" + step("a"), backend=NotReady())
    assert result.state is State.ERROR
    assert "no address pool" in result.reason
    assert states(result) == {"a": State.SKIPPED}
    assert not [e for e in rec.events if e[0] == "start"]


def test_each_step_is_prepared_once_the_first_during_setup_the_next_while_one_runs() -> None:
    text = "kind: pipeline\nsteps:\n" + step("a", sleep=0.1) + step("b", sleep=0.1) + step("c")
    result, _, backend = run(text, workspace={"f": "x"})
    assert result.state is State.SUCCESS
    assert [c.step for c in backend.calls_of("prepare")] == ["a", "b", "c"]
    methods = [c.method for c in backend.calls]
    assert methods.index("prepare") < methods.index("populate_workspace")  # "a", meanwhile
    order = [(c.method, c.step) for c in backend.calls if c.method in ("prepare", "start")]
    assert order.index(("prepare", "b")) < order.index(("start", "b"))
    assert [s.alias for s in backend.started] == ["a", "b", "c"]


def test_a_step_whose_when_does_not_match_is_not_prepared() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        + step("a", sleep=0.1)
        + step("on-failure", extra=", when: {status: [failure]}")
    )
    result, _, backend = run(text)
    assert states(result) == {"a": State.SUCCESS, "on-failure": State.SKIPPED}
    assert [c.step for c in backend.calls_of("prepare")] == ["a"]


def test_a_prepare_that_raises_changes_nothing() -> None:
    class Broken(FakeBackend):
        def prepare(self, plan: Plan, step: StepPlan) -> None:
            raise RuntimeError("a bug in prepare")

    text = "kind: pipeline\nsteps:\n" + step("a", sleep=0.05) + step("b", output="b ran")
    result, rec, _ = run(text, backend=Broken())
    assert states(result) == {"a": State.SUCCESS, "b": State.SUCCESS}
    assert rec.text("b", "stdout") == "b ran\n"


def test_a_backend_without_the_optional_methods_still_runs_everything() -> None:
    class Plain(FakeBackend):
        def __getattribute__(self, name: str) -> object:
            if name in ("ready", "prepare"):
                raise AttributeError(name)
            return super().__getattribute__(name)

    text = "kind: pipeline\nsteps:\n" + step("a", sleep=0.05) + step("b")
    result, _, _ = run(text, backend=Plain(), workspace={"f": "x"})
    assert states(result) == {"a": State.SUCCESS, "b": State.SUCCESS}


def test_a_step_prepared_before_a_failure_starts_with_the_failure_environment() -> None:
    text = (
        "kind: pipeline\nsteps:\n"
        + step("fails", sleep=0.1, exit=1)
        + step("slow", sleep=0.4)
        + step("after", extra=", depends_on: [slow], when: {status: [success, failure]}")
    )
    result, _, backend = run(text)
    assert states(result) == {"fails": State.FAILURE, "slow": State.SUCCESS, "after": State.SUCCESS}
    assert sorted(c.step for c in backend.calls_of("prepare")) == ["after", "fails", "slow"]
    after = next(s for s in backend.started if s.alias == "after")
    assert after.env["DRONE_BUILD_STATUS"] == "failure"
    assert after.env["DRONE_FAILED_STEPS"] == "fails"
