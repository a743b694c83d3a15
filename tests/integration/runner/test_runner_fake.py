"""The runner daemon against the fake RPC server (real HTTP on 127.0.0.1), on the fake backend.

What a server relies on: the order and numbering of what the runner sends, that a cancel
stops the containers within seconds, that a server restart loses no log line, that a
refused pipeline never reaches the backend, that a lost lease ends everything about the
stage, and that the runner cleans up after stages it lost.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from tests.integration.runner.conftest import StartRunner
from tests.integration.runner.fakerpc import FakeRpc, FakeRpcServer
from tests.unit.runner.factories import make_bundle, make_repo, stage_details

from bastion.backends.fake import FakeBackend
from bastion.engine.plan import LABEL_MANAGED, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_RUN, Plan
from bastion.rpc.messages import CloneInfo, StepState
from bastion.runner.cleanup import LABEL_RUNNER, LABEL_STAGE

SECRET = "hunter2-but-longer-0123"

STEPS_CONFIG = """\
kind: pipeline
type: docker
name: default
steps:
  - name: show
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_CAT: README.md
  - name: leak
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_OUTPUT:
        from_secret: token
  - name: fail
    image: bastion/busybox:latest
    failure: ignore
    environment:
      BASTION_FAKE_OUTPUT: about to fail
      BASTION_FAKE_EXIT: "3"
"""


def wait_until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_stage_from_lease_to_complete(
    tmp_path: Path, rpc: FakeRpc, start_runner: StartRunner
) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"README.md": "line one\nline two\n", ".drone.yml": STEPS_CONFIG})
    bundle = make_bundle(repo, tmp_path / "b.bundle")
    details = stage_details(
        STEPS_CONFIG,
        stage_id=11,
        secrets={"token": SECRET},
        clone=CloneInfo(kind="bundle"),
        sha=sha,
    )
    rpc.add(details, bundle)
    backend = FakeBackend()
    start_runner(backend)
    result = rpc.wait_complete(11)

    assert result.state is StepState.SUCCESS, result.error
    assert rpc.kinds(0)[0] == "cleanup"  # lost leases are asked for before any work
    kinds = [k for k in rpc.kinds(11) if k != "heartbeat"]
    assert kinds[:2] == ["lease", "details"]
    assert kinds[-1] == "complete"
    assert "source" in kinds
    assert kinds.index("source") < kinds.index("logs")

    events = rpc.step_events(11)
    # Step updates wait up to half a second for a newer state of their step, and those still
    # waiting when the stage ends are dropped: `complete` carries the final states. These
    # steps end at once, so what was sent of them (if anything) is in order, and every line
    # arrived before `complete`.
    order = ["pending", "running", "success", "failure"]
    for step in (1, 2, 3):
        states = [e[2] for e in events if e[:2] == ("steps", step)]
        assert states == sorted(states, key=order.index)
        assert len(states) == len(set(states))
        assert any(e[:2] == ("logs", step) for e in events)

    # The checkout reached the workspace, lines are numbered from 0 per step.
    assert rpc.texts(11, 1) == ["line one", "line two"]
    assert sorted(rpc.lines[(11, 1)]) == [0, 1]
    # The secret was masked on the runner, before it left the host.
    assert rpc.texts(11, 2) == ["********"]
    assert SECRET not in str(rpc.events)
    assert rpc.texts(11, 3) == ["about to fail"]

    assert [(s.number, s.name, s.state) for s in result.steps] == [
        (1, "show", StepState.SUCCESS),
        (2, "leak", StepState.SUCCESS),
        (3, "fail", StepState.FAILURE),
    ]
    assert result.steps[2].exit_code == 3
    assert all(s.started and s.finished for s in result.steps)
    assert backend.live_resources == []
    # Containers carry the labels that let the runner find them again.
    labels = backend.started[0].labels
    assert labels[LABEL_RUNNER] == "test-runner"
    assert labels[LABEL_STAGE] == "11"
    assert labels[LABEL_RUN].startswith("s11-")
    assert rpc.leases[11] not in labels[LABEL_RUN]


def test_the_poll_describes_the_runner(rpc: FakeRpc, start_runner: StartRunner) -> None:
    start_runner(capacity=3)
    assert rpc.wait_for(lambda: len(rpc.polls) > 0)
    poll = rpc.polls[0]
    assert (poll.capacity, poll.os, poll.wait) == (3, "linux", 0.5)
    assert poll.version


def test_cancel_through_the_heartbeat_stops_the_stage_within_seconds(
    rpc: FakeRpc, start_runner: StartRunner
) -> None:
    config = STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", "BASTION_FAKE_SLEEP: forever")
    rpc.add(stage_details(config, stage_id=12, secrets={"token": SECRET}))
    backend = FakeBackend()
    start_runner(backend)
    assert rpc.wait_for(lambda: ("steps", 1, "running") in rpc.step_events(12))
    cancelled_at = time.monotonic()
    with rpc.cond:
        rpc.cancel.add(12)
    result = rpc.wait_complete(12)
    assert time.monotonic() - cancelled_at < 5
    assert result.state is StepState.KILLED
    assert [s.state for s in result.steps] == [
        StepState.KILLED,
        StepState.SKIPPED,
        StepState.SKIPPED,
    ]
    assert backend.live_resources == []


def test_a_server_restart_mid_stage_loses_no_log_line(
    rpc: FakeRpc, server: FakeRpcServer, start_runner: StartRunner
) -> None:
    steps = "\n".join(
        f"""  - name: s{i}
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_LOG_BYTES: "{64 * 150}"
      BASTION_FAKE_SLEEP: "0.4\""""
        for i in range(1, 7)
    )
    config = f"kind: pipeline\ntype: docker\nname: default\nsteps:\n{steps}\n"
    rpc.add(stage_details(config, stage_id=13))
    start_runner()
    assert rpc.wait_for(lambda: ("steps", 2, "running") in rpc.step_events(13))
    server.stop()  # connections refused from now on
    time.sleep(2.0)
    server.start()
    result = rpc.wait_complete(13, timeout=30)
    assert result.state is StepState.SUCCESS, result.error
    for step in range(1, 7):
        assert sorted(rpc.lines[(13, step)]) == list(range(150)), f"step {step}"
    assert rpc.problems == []  # no line was ever sent twice with a different text


def test_a_server_answering_503_for_a_while_loses_nothing(
    rpc: FakeRpc, start_runner: StartRunner
) -> None:
    config = STEPS_CONFIG.replace(
        "BASTION_FAKE_CAT: README.md",
        'BASTION_FAKE_LOG_BYTES: "6400"\n      BASTION_FAKE_SLEEP: "1"',
    )
    rpc.add(stage_details(config, stage_id=14, secrets={"token": SECRET}))
    start_runner()
    assert rpc.wait_for(lambda: ("steps", 1, "running") in rpc.step_events(14))
    rpc.fail_status = 503
    time.sleep(1.5)
    rpc.fail_status = 0
    result = rpc.wait_complete(14)
    assert result.state is StepState.SUCCESS
    assert sorted(rpc.lines[(14, 1)]) == list(range(100))


def test_a_refused_pipeline_never_reaches_the_backend(
    rpc: FakeRpc, start_runner: StartRunner
) -> None:
    config = STEPS_CONFIG.replace("  - name: leak\n", "  - name: leak\n    privileged: true\n", 1)
    rpc.add(stage_details(config, stage_id=15, secrets={"token": SECRET}, trusted=False))
    backend = FakeBackend()
    start_runner(backend)
    result = rpc.wait_complete(15)
    assert result.state is StepState.ERROR
    assert "privileged" in result.error
    assert "no container was started" in result.error
    assert {c.method for c in backend.calls} == {"cleanup_stale"}
    assert "source" not in rpc.kinds(15)


def test_a_trusted_repository_may_run_it(rpc: FakeRpc, start_runner: StartRunner) -> None:
    config = STEPS_CONFIG.replace(
        "  - name: leak\n", "  - name: leak\n    privileged: true\n", 1
    ).replace("BASTION_FAKE_CAT: README.md", "BASTION_FAKE_OUTPUT: hi")
    rpc.add(stage_details(config, stage_id=16, secrets={"token": SECRET}, trusted=True))
    backend = FakeBackend()
    start_runner(backend)
    assert rpc.wait_complete(16).state is StepState.SUCCESS
    assert backend.started[1].privileged


@pytest.mark.parametrize(
    ("config", "pipeline", "needle"),
    [
        ("kind: pipeline\nsteps: [", "default", "has errors"),
        (STEPS_CONFIG, "other", "no pipeline named 'other'"),
        (STEPS_CONFIG.replace("from_secret: token", "from_secret: missing"), "default", "missing"),
    ],
)
def test_a_bad_stage_becomes_a_stage_error(
    rpc: FakeRpc, start_runner: StartRunner, config: str, pipeline: str, needle: str
) -> None:
    rpc.add(stage_details(config, stage_id=17, pipeline=pipeline, secrets={"token": SECRET}))
    rpc.add(
        stage_details(
            STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", "X: y"),
            stage_id=18,
            secrets={"token": SECRET},
        )
    )
    start_runner()
    result = rpc.wait_complete(17)
    assert result.state is StepState.ERROR
    assert needle in result.error
    # ... and the runner goes on with the next stage.
    assert rpc.wait_complete(18).state is StepState.SUCCESS


def test_a_short_secret_is_refused_before_anything_runs(
    rpc: FakeRpc, start_runner: StartRunner
) -> None:
    rpc.add(stage_details(STEPS_CONFIG, stage_id=19, secrets={"token": "abc"}))
    backend = FakeBackend()
    start_runner(backend)
    result = rpc.wait_complete(19)
    assert result.state is StepState.ERROR
    assert "'token'" in result.error
    assert "abc" not in result.error.replace("'token'", "")
    assert {c.method for c in backend.calls} == {"cleanup_stale"}


def test_a_lost_lease_stops_the_stage_and_says_nothing_more(
    rpc: FakeRpc, start_runner: StartRunner
) -> None:
    config = STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", "BASTION_FAKE_SLEEP: forever")
    rpc.add(stage_details(config, stage_id=20, secrets={"token": SECRET}))
    backend = FakeBackend()
    start_runner(backend)
    assert rpc.wait_for(lambda: ("steps", 1, "running") in rpc.step_events(20))
    with rpc.cond:
        rpc.leases[20] = "given-to-someone-else"
    assert wait_until(lambda: backend.live_resources == [] and backend.calls_of("destroy"))
    time.sleep(0.5)
    assert 20 not in rpc.results


def test_a_lease_that_lapses_while_the_server_is_away(
    rpc: FakeRpc, server: FakeRpcServer, start_runner: StartRunner
) -> None:
    rpc.expires_in = 1.0
    config = STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", "BASTION_FAKE_SLEEP: forever")
    rpc.add(stage_details(config, stage_id=21, secrets={"token": SECRET}))
    backend = FakeBackend()
    start_runner(backend)
    assert rpc.wait_for(lambda: ("steps", 1, "running") in rpc.step_events(21))
    server.stop()
    # The runner stops the stage itself once the lease would have lapsed.
    assert wait_until(lambda: backend.calls_of("destroy"), timeout=10)
    assert backend.live_resources == []
    server.start()


def test_capacity_limits_the_stages_run_at_once(rpc: FakeRpc, start_runner: StartRunner) -> None:
    config = STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", 'BASTION_FAKE_SLEEP: "0.5"')
    for stage in (31, 32, 33):
        rpc.add(stage_details(config, stage_id=stage, secrets={"token": SECRET}))
    start_runner(capacity=2)
    for stage in (31, 32, 33):
        assert rpc.wait_complete(stage).state is StepState.SUCCESS
    leased = {e.stage: e.at for e in rpc.events if e.kind == "lease"}
    completed = {e.stage: e.at for e in rpc.events if e.kind == "complete"}
    # The third stage was only taken once one of the first two had finished.
    assert leased[33] >= min(completed[31], completed[32])
    assert max(p.capacity for p in rpc.polls) == 2


def test_stopping_the_runner_cancels_its_stages(rpc: FakeRpc, start_runner: StartRunner) -> None:
    config = STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", "BASTION_FAKE_SLEEP: forever")
    rpc.add(stage_details(config, stage_id=40, secrets={"token": SECRET}))
    backend = FakeBackend()
    running = start_runner(backend)
    assert rpc.wait_for(lambda: ("steps", 1, "running") in rpc.step_events(40))
    started = time.monotonic()
    running.halt()
    assert time.monotonic() - started < 10
    result = rpc.results[40]
    assert result.state is StepState.ERROR
    assert "test-runner was stopped" in result.error
    assert backend.live_resources == []


def test_lost_stages_are_cleaned_up_at_start(rpc: FakeRpc, start_runner: StartRunner) -> None:
    backend = FakeBackend()
    mine = {
        LABEL_MANAGED: "true",
        LABEL_RUN: "s42-0badc0de",
        LABEL_OWNER_PID: str(os.getpid()),  # alive: cleanup_stale alone would keep it
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_RUNNER: "test-runner",
        LABEL_STAGE: "42",
    }
    other_runner = {**mine, LABEL_RUN: "s43-0badc0de", LABEL_RUNNER: "another", LABEL_STAGE: "43"}
    backend.add_resource("container", "bastion-s42-0badc0de-build-1", mine)
    backend.add_resource("volume", "bastion-s42-0badc0de-workspace", mine)
    backend.add_resource("container", "bastion-s43-0badc0de-build-1", other_runner)
    rpc.lost = [42, 43]
    start_runner(backend)
    assert wait_until(lambda: len(backend.live_resources) == 1)
    assert backend.live_resources[0].name == "bastion-s43-0badc0de-build-1"


def test_a_revoked_token_stops_the_runner(rpc: FakeRpc, start_runner: StartRunner) -> None:
    running = start_runner(token="not-the-runner-token-at-all")
    running.thread.join(10)
    assert not running.thread.is_alive()
    assert running.errors
    assert "refused the runner token" in str(running.errors[0])


def test_the_runner_waits_for_a_server_that_is_not_up_yet(
    rpc: FakeRpc, server: FakeRpcServer, start_runner: StartRunner
) -> None:
    server.stop()
    rpc.add(
        stage_details(
            STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", "X: y"),
            stage_id=50,
            secrets={"token": SECRET},
        )
    )
    start_runner()
    time.sleep(1.0)
    server.start()
    assert rpc.wait_complete(50).state is StepState.SUCCESS


class ExplodingBackend(FakeBackend):
    """A backend with a bug: its first setup raises something that is not a BackendError,
    and the message quotes a secret."""

    def __init__(self) -> None:
        super().__init__()
        self.exploded = False

    def setup(self, plan: Plan) -> None:
        if not self.exploded:
            self.exploded = True
            raise RuntimeError(f"bug while setting up, env had {SECRET}")
        super().setup(plan)


def test_a_bug_becomes_a_stage_error_and_the_runner_goes_on(
    rpc: FakeRpc, start_runner: StartRunner, caplog: pytest.LogCaptureFixture
) -> None:
    quick = STEPS_CONFIG.replace("BASTION_FAKE_CAT: README.md", "X: y")
    rpc.add(stage_details(quick, stage_id=70, secrets={"token": SECRET}))
    rpc.add(stage_details(quick, stage_id=71, secrets={"token": SECRET}))
    backend = ExplodingBackend()
    with caplog.at_level("ERROR", logger="bastion.runner"):
        start_runner(backend, capacity=1)
        first = rpc.wait_complete(70)
        assert rpc.wait_complete(71).state is StepState.SUCCESS
    assert first.state is StepState.ERROR
    assert "internal error in the runner: RuntimeError" in first.error
    assert SECRET not in first.error
    assert "********" in first.error
    assert SECRET not in caplog.text
    assert "RuntimeError" in caplog.text  # the masked traceback is logged for the operator
