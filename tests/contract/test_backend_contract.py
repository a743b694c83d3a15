"""The ``Backend`` contract, run against every backend (``harness`` is parametrized).

Each case must behave the same on the fake and on Docker. The steps are made with
``scripted_step``: their ``BASTION_FAKE_*`` variables script the fake, and their command
(``SHELL_SCRIPT``) does the same in a real shell, so one plan means one behaviour.
Where a case needs real work (a service answering over the network), the fake's variables
say what the real command will print. A few cases run the executor on the backend, where a
backend promise shows its purpose (stderr kept apart so secrets stay masked; a missing image
failing its own step, not the run).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from tests.contract.harness import Harness
from tests.support.plans import (
    BUSYBOX,
    make_service,
    make_step,
    scripted_step,
    workspace_tar,
)
from tests.support.reporters import Recorder
from tests.support.resources import dead_pid
from tests.support.running import OutputReader, run_step

from bastion.backends.docker import DockerBackend
from bastion.backends.fake import ENV_CRASH, ENV_OUTPUT, ENV_SLEEP, FILLER_LINE, FakeBackend
from bastion.engine.backend import Backend, BackendError, OutputChunk, StepExit
from bastion.engine.executor import Executor
from bastion.engine.masking import REPLACEMENT, SecretMasker
from bastion.engine.plan import Plan, PullPolicy, StepPlan
from bastion.engine.status import State
from bastion.spec.conditions import MatchContext
from bastion.spec.context import BuildContext
from bastion.spec.model import Conditions

# A broken backend hangs rather than fails: keep each case short.
pytestmark = pytest.mark.timeout(120)

# Generous bounds: they only keep a broken backend from hanging the suite.
PROMPTLY = 10.0
EVENTUALLY = 60.0

TOKEN = "Zq9xKvB7wtLmP4Yr"  # a secret, printed in two halves by some cases
MISSING = "bastion/nonexistent:1"  # an image no host has
ON_FAILURE = Conditions.model_validate({"status": ["failure"]})


def test_implements_the_protocol(harness: Harness) -> None:
    assert isinstance(harness.backend, Backend)
    assert harness.backend.name == harness.kind


def test_output_is_complete_and_in_order(harness: Harness) -> None:
    step = scripted_step("talk", output="hello\\nworld", log_bytes=100_000)
    plan = harness.plan([step])
    harness.backend.setup(plan)

    output, exit = run_step(harness.backend, plan, plan.step("talk"))

    filler = (FILLER_LINE * (100_000 // len(FILLER_LINE) + 1))[:100_000]
    assert output.stdout == b"hello\nworld\n" + filler
    assert output.stderr == b""
    assert exit == StepExit(exit_code=0)


def test_stderr_arrives_tagged_stderr(harness: Harness) -> None:
    step = scripted_step("both", output="to stdout\\nagain", stderr="to stderr")
    plan = harness.plan([step])
    harness.backend.setup(plan)

    output, exit = run_step(harness.backend, plan, plan.step("both"))

    assert output.stdout == b"to stdout\nagain\n"
    assert output.stderr == b"to stderr\n"
    assert all(chunk.data for chunk in output.chunks), output.chunks  # no empty chunk
    assert {chunk.stream for chunk in output.chunks} == {"stdout", "stderr"}
    assert all(isinstance(chunk, OutputChunk) for chunk in output.chunks)
    assert exit == StepExit(exit_code=0)


def test_a_stderr_write_inside_an_unfinished_stdout_line_stays_out_of_it(
    harness: Harness,
) -> None:
    # The process writes `split=<first half>` (no line end), then a stderr line, then the
    # rest of the stdout line: each stream must come out whole, the other's bytes apart.
    step = scripted_step("split", output=f"split={TOKEN[:9]}\\|{TOKEN[9:]}", stderr="warn")
    plan = harness.plan([step])
    harness.backend.setup(plan)

    output, exit = run_step(harness.backend, plan, plan.step("split"))

    assert output.stdout == f"split={TOKEN}\n".encode()
    assert output.stderr == b"warn\n"
    assert exit == StepExit(exit_code=0)


def test_the_executor_masks_a_secret_cut_by_a_stderr_write(harness: Harness) -> None:
    # The leak this protects against: stdout and stderr masked as one text read
    # `split=Zq9xKvB7wwarn` and `tLmP4Yr`, and neither piece is the secret.
    step = scripted_step("split", output=f"split={TOKEN[:9]}\\|{TOKEN[9:]}", stderr="warn")
    plan = harness.plan([step])
    reporter = Recorder()

    result = Executor(harness.backend, SecretMasker([TOKEN]), reporter, poll_interval=0.01).run(
        plan, MatchContext.from_build(BuildContext())
    )

    assert result.state is State.SUCCESS, result
    assert reporter.text("split", "stdout") == f"split={REPLACEMENT}\n"
    assert reporter.text("split", "stderr") == "warn\n"
    everything = "".join(reporter.output.values())
    assert TOKEN[:9] not in everything
    assert TOKEN[9:] not in everything
    assert harness.leftovers(plan) == []


def test_output_is_streamed_while_the_step_runs(harness: Harness) -> None:
    plan = harness.plan([scripted_step("slow", output="ready", sleep="forever")])
    step = plan.step("slow")
    harness.backend.setup(plan)
    harness.backend.start(plan, step)

    reader = OutputReader(harness.backend, plan, step)
    # The step never exits by itself: seeing its output proves it arrives while it runs.
    assert reader.wait_for("ready", timeout=EVENTUALLY), reader.text()

    harness.backend.stop(plan, step)
    assert reader.join(PROMPTLY)
    harness.backend.wait(plan, step)
    harness.backend.remove(plan, step)


@pytest.mark.parametrize("code", [0, 1, 3, 42])
def test_exit_codes_pass_through(harness: Harness, code: int) -> None:
    plan = harness.plan([scripted_step("exit", exit_code=code)])
    harness.backend.setup(plan)

    _, exit = run_step(harness.backend, plan, plan.step("exit"))

    assert exit.exit_code == code
    assert not exit.killed
    assert not exit.oom_killed
    assert not exit.pids_limit_hit


def test_stop_kills_a_sleeping_step_promptly(harness: Harness) -> None:
    plan = harness.plan([scripted_step("sleeper", output="zzz", sleep="forever")])
    step = plan.step("sleeper")
    backend = harness.backend
    backend.setup(plan)
    backend.start(plan, step)
    reader = OutputReader(backend, plan, step)
    assert reader.wait_for("zzz", timeout=EVENTUALLY)

    results: list[StepExit] = []
    waiter = threading.Thread(target=lambda: results.append(backend.wait(plan, step)))
    waiter.start()
    backend.stop(plan, step)
    waiter.join(PROMPTLY)

    assert results, f"wait() did not return within {PROMPTLY} s of stop()"
    assert results[0].killed
    assert results[0].exit_code == 137
    assert "stopped" in results[0].detail
    assert reader.join(PROMPTLY)
    backend.stop(plan, step)  # again: harmless
    backend.remove(plan, step)


def test_stop_after_the_step_exited_is_not_a_kill(harness: Harness) -> None:
    plan = harness.plan([scripted_step("quick", exit_code=5)])
    step = plan.step("quick")
    harness.backend.setup(plan)
    harness.backend.start(plan, step)
    list(harness.backend.output(plan, step))  # until the process exits

    harness.backend.stop(plan, step)
    exit = harness.backend.wait(plan, step)

    assert exit.exit_code == 5
    assert not exit.killed
    harness.backend.remove(plan, step)


def test_stop_before_start_means_the_step_never_runs(harness: Harness) -> None:
    plan = harness.plan([scripted_step("never", output="ran anyway", sleep="forever")])
    step = plan.step("never")
    harness.backend.setup(plan)

    harness.backend.stop(plan, step)
    harness.backend.start(plan, step)

    assert list(harness.backend.output(plan, step)) == []
    exit = harness.backend.wait(plan, step)
    assert exit.killed
    assert not any(r.startswith("container") for r in harness.leftovers(plan))
    harness.backend.remove(plan, step)


def test_two_steps_run_in_parallel(harness: Harness) -> None:
    plan = harness.plan(
        [
            scripted_step("left", output="from the left", sleep=0.5, exit_code=0),
            scripted_step("right", output="from the right", sleep=0.5, exit_code=7),
        ]
    )
    harness.backend.setup(plan)
    results: dict[str, tuple[bytes, StepExit]] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            output, exit = run_step(harness.backend, plan, plan.step(name))
            results[name] = (output.stdout, exit)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(EVENTUALLY)

    assert not errors
    assert results["left"] == (b"from the left\n", StepExit(exit_code=0))
    assert results["right"] == (b"from the right\n", StepExit(exit_code=7))


def test_populate_workspace_makes_files_visible_to_steps(harness: Harness) -> None:
    plan = harness.plan(
        [
            scripted_step("relative", cat="hello.txt"),
            scripted_step("nested", cat="/drone/src/sub/dir/data.txt"),
            scripted_step("missing", cat="absent.txt", output="not printed"),
        ]
    )
    harness.backend.setup(plan)
    files = {"hello.txt": "hi from the workspace\n", "sub/dir/data.txt": "nested\n"}
    harness.backend.populate_workspace(plan, workspace_tar(files))

    relative = run_step(harness.backend, plan, plan.step("relative"))[0]
    assert relative.stdout == files["hello.txt"].encode()
    assert run_step(harness.backend, plan, plan.step("nested"))[0].stdout == b"nested\n"
    output, exit = run_step(harness.backend, plan, plan.step("missing"))
    assert exit.exit_code == 1
    assert b"not printed" not in output.both
    assert output.stdout == b""
    assert b"absent.txt" in output.stderr  # cat's complaint, on stderr


def test_a_service_is_reachable_by_its_alias(harness: Harness) -> None:
    web = make_service(
        "web",
        script="mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www",
        env={ENV_SLEEP: "forever"},
    )
    probe = make_step(
        "probe",
        script=(
            "for i in $(seq 1 100); do "
            "wget -q -O - http://web:8080/index.html 2>/dev/null && exit 0; sleep 0.1; "
            "done; echo unreachable; exit 1"
        ),
        env={ENV_OUTPUT: "pong"},  # what the fake prints; Docker prints the service's reply
    )
    plan = harness.plan([probe], services=[web])
    backend = harness.backend
    backend.setup(plan)
    service = plan.step("web")
    backend.start(plan, service)
    service_output = OutputReader(backend, plan, service)

    output, exit = run_step(backend, plan, plan.step("probe"))

    assert (output.stdout, exit) == (b"pong\n", StepExit(exit_code=0))
    backend.stop(plan, service)
    assert service_output.join(PROMPTLY)
    assert backend.wait(plan, service).killed
    backend.remove(plan, service)


# -- images -----------------------------------------------------------------------------------


def test_start_of_a_missing_image_with_pull_never_fails_clearly(harness: Harness) -> None:
    image = "bastion/does-not-exist:never"
    plan = harness.plan([scripted_step("x", image=image, pull=PullPolicy.NEVER)])
    harness.backend.setup(plan)

    with pytest.raises(BackendError, match="does-not-exist") as info:
        harness.backend.start(plan, plan.step("x"))

    assert "never" in str(info.value)
    harness.backend.remove(plan, plan.step("x"))


@pytest.mark.parametrize("pull", [PullPolicy.IF_NOT_EXISTS, PullPolicy.ALWAYS])
def test_a_failed_pull_names_the_image_and_the_way_out(harness: Harness, pull: PullPolicy) -> None:
    # A registry on a closed loopback port: the pull fails at once, and no traffic leaves.
    image = "127.0.0.1:1/bastion/missing:latest"
    plan = harness.plan([scripted_step("x", image=image, pull=pull)])
    harness.backend.setup(plan)

    with pytest.raises(BackendError) as info:
        harness.backend.start(plan, plan.step("x"))

    message = str(info.value)
    assert image in message
    assert "no registry may be reachable" in message.lower()
    assert "scripts/images.sh" in message


def test_present_image_with_pull_never_runs(harness: Harness) -> None:
    plan = harness.plan([scripted_step("x", image=BUSYBOX, pull=PullPolicy.NEVER, output="ok")])
    harness.backend.setup(plan)
    output, exit = run_step(harness.backend, plan, plan.step("x"))
    assert (output.stdout, exit) == (b"ok\n", StepExit(exit_code=0))


@pytest.mark.parametrize("pull", [PullPolicy.NEVER, PullPolicy.IF_NOT_EXISTS])
def test_a_missing_image_in_the_first_step_does_not_stop_the_workspace(
    harness: Harness, pull: PullPolicy
) -> None:
    # The workspace is copied through another image of the plan; the first step then fails
    # at its own start, with its own error.
    image = MISSING if pull is PullPolicy.NEVER else "127.0.0.1:1/bastion/missing:latest"
    plan = harness.plan(
        [scripted_step("first", image=image, pull=pull), scripted_step("second", cat="hi.txt")]
    )
    harness.backend.setup(plan)

    harness.backend.populate_workspace(plan, workspace_tar({"hi.txt": "copied\n"}))

    with pytest.raises(BackendError) as info:
        harness.backend.start(plan, plan.step("first"))
    assert image in str(info.value)
    harness.backend.remove(plan, plan.step("first"))
    output, exit = run_step(harness.backend, plan, plan.step("second"))
    assert (output.stdout, exit) == (b"copied\n", StepExit(exit_code=0))


def test_populate_workspace_fails_clearly_when_no_image_is_usable(harness: Harness) -> None:
    unpullable = "127.0.0.1:1/bastion/missing:latest"
    plan = harness.plan(
        [
            scripted_step("a", image=MISSING, pull=PullPolicy.NEVER),
            scripted_step("b", image=unpullable, pull=PullPolicy.IF_NOT_EXISTS),
        ]
    )
    harness.backend.setup(plan)

    with pytest.raises(BackendError) as info:
        harness.backend.populate_workspace(plan, workspace_tar({"f": "x"}))

    message = str(info.value)
    assert MISSING in message
    assert unpullable in message
    harness.backend.destroy(plan)
    assert harness.leftovers(plan) == []


def test_a_missing_first_image_fails_its_step_and_failure_handlers_run(harness: Harness) -> None:
    plan = harness.plan(
        [
            scripted_step("first", image=MISSING, pull=PullPolicy.NEVER),
            scripted_step("second", output="second ran", depends_on=("first",)),
            scripted_step("handler", cat="hi.txt", when=ON_FAILURE, depends_on=("second",)),
        ]
    )
    reporter = Recorder()

    result = Executor(harness.backend, SecretMasker([]), reporter, poll_interval=0.01).run(
        plan,
        MatchContext.from_build(BuildContext()),
        workspace=workspace_tar({"hi.txt": "handled\n"}),
    )

    assert result.state is State.FAILURE, result
    assert {s.name: s.state for s in result.steps} == {
        "first": State.ERROR,
        "second": State.SKIPPED,
        "handler": State.SUCCESS,
    }
    assert MISSING in result.step("first").detail
    assert reporter.text("handler", "stdout") == "handled\n"
    assert harness.leftovers(plan) == []


# -- prepare and ready (optional methods, both backends have them) ----------------------------


def _preparing(harness: Harness) -> FakeBackend | DockerBackend:
    backend = harness.backend
    assert isinstance(backend, FakeBackend | DockerBackend)
    return backend


def _with_output(step: StepPlan, text: str) -> StepPlan:
    """The same step (same container name) with another environment."""
    env = {**step.container.env, ENV_OUTPUT: text}
    return replace(step, container=replace(step.container, env=env))


def _containers(harness: Harness, plan: Plan) -> list[str]:
    return [r for r in harness.leftovers(plan) if r.startswith("container")]


def test_ready_after_setup_and_twice_is_fine(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a", output="a ran")])
    backend = _preparing(harness)
    backend.setup(plan)
    backend.ready(plan)
    backend.ready(plan)
    assert any(r.startswith("network") for r in harness.leftovers(plan))
    assert run_step(backend, plan, plan.step("a"))[0].stdout == b"a ran\n"


def test_prepare_then_start_runs_the_step_in_the_prepared_container(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a", output="prepared")])
    step = plan.step("a")
    backend = _preparing(harness)
    backend.setup(plan)

    backend.prepare(plan, step)
    assert _containers(harness, plan) == [f"container {step.container.name}"]
    output, exit = run_step(backend, plan, step)

    assert (output.stdout, exit) == (b"prepared\n", StepExit(exit_code=0))
    assert _containers(harness, plan) == []


def test_prepare_twice_is_fine(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a", output="once")])
    step = plan.step("a")
    backend = _preparing(harness)
    backend.setup(plan)

    backend.prepare(plan, step)
    backend.prepare(plan, step)

    assert _containers(harness, plan) == [f"container {step.container.name}"]
    assert run_step(backend, plan, step)[0].stdout == b"once\n"


def test_a_step_prepared_with_another_spec_runs_with_its_own(harness: Harness) -> None:
    # As a step started after a failure does: its environment says DRONE_BUILD_STATUS=failure.
    plan = harness.plan([scripted_step("a", output="prepared")])
    backend = _preparing(harness)
    backend.setup(plan)

    backend.prepare(plan, plan.step("a"))
    output, exit = run_step(backend, plan, _with_output(plan.step("a"), "started"))

    assert (output.stdout, exit.exit_code) == (b"started\n", 0)
    assert _containers(harness, plan) == []


def test_prepare_then_destroy_leaves_nothing(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a"), scripted_step("b")], volumes=("cache",))
    backend = _preparing(harness)
    backend.setup(plan)
    for step in plan.steps:
        backend.prepare(plan, step)
    assert len(_containers(harness, plan)) == 2

    backend.destroy(plan)

    assert harness.leftovers(plan) == []


def test_prepare_then_remove_without_start_leaves_no_container(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a")])
    backend = _preparing(harness)
    backend.setup(plan)
    backend.prepare(plan, plan.step("a"))

    backend.remove(plan, plan.step("a"))

    assert _containers(harness, plan) == []


def test_stop_after_prepare_means_the_step_never_runs(harness: Harness) -> None:
    plan = harness.plan([scripted_step("never", output="ran anyway", sleep="forever")])
    step = plan.step("never")
    backend = _preparing(harness)
    backend.setup(plan)
    backend.prepare(plan, step)

    backend.stop(plan, step)
    backend.start(plan, step)

    assert list(backend.output(plan, step)) == []
    assert backend.wait(plan, step).killed
    backend.remove(plan, step)
    assert _containers(harness, plan) == []


def test_prepare_of_a_missing_image_is_quiet_and_start_reports_it(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a", image=MISSING, pull=PullPolicy.NEVER)])
    backend = _preparing(harness)
    backend.setup(plan)

    backend.prepare(plan, plan.step("a"))  # does nothing, raises nothing

    assert _containers(harness, plan) == []
    with pytest.raises(BackendError, match="pull policy is 'never'"):
        backend.start(plan, plan.step("a"))


def test_prepare_after_destroy_creates_nothing(harness: Harness) -> None:
    plan = harness.plan([scripted_step("late")])
    backend = _preparing(harness)
    backend.setup(plan)
    backend.destroy(plan)

    backend.prepare(plan, plan.step("late"))

    assert harness.leftovers(plan) == []


def test_the_executor_prepares_the_next_step_and_uses_the_failure_environment(
    harness: Harness,
) -> None:
    # "after" is prepared while "slow" runs, before "fails" has failed; it starts after the
    # failure, so with DRONE_BUILD_STATUS=failure, which its output shows.
    plan = harness.plan(
        [
            scripted_step("fails", exit_code=1, sleep=0.2),
            scripted_step("slow", sleep=1.5),
            make_step(
                "after",
                script="echo status=$DRONE_BUILD_STATUS",
                env={ENV_OUTPUT: "status=failure"},
                depends_on=("slow",),
                when=Conditions.model_validate({"status": ["success", "failure"]}),
            ),
            scripted_step("next", output="next ran", depends_on=("after",)),
        ]
    )
    reporter = Recorder()

    result = Executor(harness.backend, SecretMasker([]), reporter, poll_interval=0.01).run(
        plan, MatchContext.from_build(BuildContext())
    )

    assert {s.name: s.state for s in result.steps} == {
        "fails": State.FAILURE,
        "slow": State.SUCCESS,
        "after": State.SUCCESS,
        "next": State.SKIPPED,
    }
    assert reporter.text("after", "stdout") == "status=failure\n"
    assert harness.leftovers(plan) == []
    if isinstance(harness.backend, FakeBackend):
        prepared = {c.step for c in harness.backend.calls_of("prepare")}
        # not "next": its when did not match once "fails" had failed
        assert prepared == {"fails", "slow", "after"}
        started = {s.name: s for s in harness.backend.started}
        assert started[plan.step("after").container.name].env["DRONE_BUILD_STATUS"] == "failure"


# -- idempotency and cleanup ------------------------------------------------------------------


def test_setup_twice_is_fine(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a")], volumes=("cache",))
    harness.backend.setup(plan)
    harness.backend.setup(plan)
    assert run_step(harness.backend, plan, plan.step("a"))[1].exit_code == 0


def test_start_without_setup_fails_clearly(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a")])
    with pytest.raises(BackendError, match=plan.network):
        harness.backend.start(plan, plan.step("a"))
    harness.backend.destroy(plan)
    assert harness.leftovers(plan) == []


def test_remove_before_start_and_twice_is_fine(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a")])
    step = plan.step("a")
    harness.backend.setup(plan)
    harness.backend.remove(plan, step)
    run_step(harness.backend, plan, step)
    harness.backend.remove(plan, step)
    assert not any(r.startswith("container") for r in harness.leftovers(plan))


def test_output_and_wait_of_a_step_never_started_fail_clearly(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a")])
    harness.backend.setup(plan)
    with pytest.raises(BackendError, match="'a'"):
        harness.backend.wait(plan, plan.step("a"))
    with pytest.raises(BackendError, match="'a'"):
        list(harness.backend.output(plan, plan.step("a")))


def test_destroy_after_success_leaves_nothing(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a", output="done")], volumes=("cache",))
    harness.backend.setup(plan)
    harness.backend.populate_workspace(plan, workspace_tar({"f": "x"}))
    harness.backend.start(plan, plan.step("a"))
    list(harness.backend.output(plan, plan.step("a")))
    harness.backend.wait(plan, plan.step("a"))
    assert harness.leftovers(plan)  # the container is still there: remove() was not called

    harness.backend.destroy(plan)

    assert harness.leftovers(plan) == []


def test_destroy_after_a_failed_start_leaves_nothing(harness: Harness) -> None:
    # The fake crashes on its variable; Docker cannot exec the entrypoint. Both have created
    # the container before failing.
    crash = make_step("crash", env={ENV_CRASH: "start"}, entrypoint=("/no/such/binary",))
    plan = harness.plan([crash])
    harness.backend.setup(plan)
    with pytest.raises(BackendError, match="'crash'"):
        harness.backend.start(plan, plan.step("crash"))

    harness.backend.destroy(plan)

    assert harness.leftovers(plan) == []


def test_destroy_while_a_step_runs_leaves_nothing(harness: Harness) -> None:
    plan = harness.plan([scripted_step("busy", sleep="forever")], [])
    harness.backend.setup(plan)
    harness.backend.start(plan, plan.step("busy"))

    harness.backend.destroy(plan)

    assert harness.leftovers(plan) == []


def test_a_start_after_destroy_creates_nothing(harness: Harness) -> None:
    # network_mode "none" (trusted only) needs no run network: only destroy() stands in the
    # way, as it does for a start() that was pulling an image when the run was cancelled.
    plan = harness.plan([scripted_step("late", network_mode="none")])
    harness.backend.setup(plan)
    harness.backend.destroy(plan)

    with pytest.raises(BackendError, match="destroyed"):
        harness.backend.start(plan, plan.step("late"))

    assert harness.leftovers(plan) == []


def test_destroy_without_setup_and_twice_is_fine(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a")])
    harness.backend.destroy(plan)
    harness.backend.setup(plan)
    harness.backend.destroy(plan)
    harness.backend.destroy(plan)
    assert harness.leftovers(plan) == []


def test_cleanup_stale_removes_runs_whose_owner_is_gone(harness: Harness) -> None:
    dead = harness.plan([scripted_step("a", sleep="forever")], owner_pid=dead_pid())
    live = harness.plan([scripted_step("a", sleep="forever")])
    for plan in (dead, live):
        harness.backend.setup(plan)
        harness.backend.start(plan, plan.step("a"))

    report = harness.backend.cleanup_stale()

    assert (report.containers, report.networks, report.volumes) == (1, 1, 1)
    assert harness.leftovers(dead) == []
    assert len(harness.leftovers(live)) == 3

    report = harness.backend.cleanup_stale(include_live=True)

    assert report.total == 3
    assert harness.leftovers(live) == []
