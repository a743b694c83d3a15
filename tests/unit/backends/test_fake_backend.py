"""What the fake backend does beyond the shared contract (``tests/contract``): the knobs
only it has (OOM, crash, invalid scripts) and what it records for tests to inspect."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest
from tests.support.plans import make_plan, make_service, make_step, scripted_step, workspace_tar
from tests.support.resources import dead_pid
from tests.support.running import run_step

from bastion.backends.fake import (
    ENV_CRASH,
    ENV_OOM,
    ENV_OUTPUT,
    ENV_STDERR,
    SHELL_SCRIPT,
    FakeBackend,
    FakeCall,
    FakeScript,
)
from bastion.engine.backend import Backend, BackendError, OutputChunk, StepExit
from bastion.engine.hardening import MIB
from bastion.engine.plan import LABEL_MANAGED, LABEL_OWNER_HOST, LABEL_OWNER_PID, PullPolicy


def test_is_a_backend() -> None:
    assert isinstance(FakeBackend(), Backend)


def test_records_calls_and_container_specs_in_order() -> None:
    backend = FakeBackend()
    plan = make_plan([scripted_step("a", output="hi")])
    backend.setup(plan)
    backend.populate_workspace(plan, workspace_tar({"f": "x"}))
    run_step(backend, plan, plan.step("a"))
    backend.destroy(plan)

    assert [c.method for c in backend.calls] == [
        "setup",
        "populate_workspace",
        "start",
        "output",
        "wait",
        "remove",
        "destroy",
    ]
    assert backend.calls[2] == FakeCall("start", plan.run_id, "a")
    assert backend.started == [plan.step("a").container]
    assert backend.archives[plan.workspace_volume] == workspace_tar({"f": "x"}).getvalue()
    assert backend.live_resources == []


def test_oom_is_reported_like_docker_does() -> None:
    backend = FakeBackend()
    plan = make_plan([scripted_step("hog", env={ENV_OOM: "1"}, mem_limit=256 * MIB)])
    backend.setup(plan)

    _, exit = run_step(backend, plan, plan.step("hog"))

    assert exit == StepExit(
        exit_code=137, oom_killed=True, detail="killed: out of memory (limit 256 MiB)"
    )


def test_crash_at_start_leaves_a_container_for_destroy() -> None:
    backend = FakeBackend()
    plan = make_plan([scripted_step("c", env={ENV_CRASH: "start"})])
    backend.setup(plan)

    with pytest.raises(BackendError, match="BASTION_FAKE_CRASH"):
        backend.start(plan, plan.step("c"))

    assert [r.kind for r in backend.resources_of(plan.run_id)].count("container") == 1
    backend.destroy(plan)
    assert backend.resources_of(plan.run_id) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BASTION_FAKE_EXIT": "three"}, "not an int"),
        ({"BASTION_FAKE_SLEEP": "soon"}, "not a float"),
        ({"BASTION_FAKE_SLEEP": "-1"}, "must not be negative"),
        ({"BASTION_FAKE_LOG_BYTES": "1.5"}, "not a int"),
        ({"BASTION_FAKE_CRASH": "wait"}, "the only value is 'start'"),
    ],
)
def test_a_bad_script_fails_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(BackendError, match=message):
        FakeScript.from_env(env, "s")


def test_a_service_sleeping_forever_runs_until_stopped() -> None:
    backend = FakeBackend()
    plan = make_plan([], services=[make_service("db", env={"BASTION_FAKE_SLEEP": "forever"})])
    service = plan.step("db")
    backend.setup(plan)
    backend.start(plan, service)
    results: list[StepExit] = []
    waiter = threading.Thread(target=lambda: results.append(backend.wait(plan, service)))
    waiter.start()

    waiter.join(0.2)
    assert not results  # still running

    backend.stop(plan, service)
    waiter.join(5)
    assert results[0].killed


@pytest.mark.parametrize(
    ("pull", "local", "registry", "outcome"),
    [
        (PullPolicy.NEVER, {"img"}, set(), "runs"),
        (PullPolicy.NEVER, set(), {"img"}, "missing"),
        (PullPolicy.IF_NOT_EXISTS, {"img"}, set(), "runs"),
        (PullPolicy.IF_NOT_EXISTS, set(), {"img"}, "pulled"),
        (PullPolicy.IF_NOT_EXISTS, set(), set(), "pull fails"),
        (PullPolicy.ALWAYS, {"img"}, set(), "pull fails"),
        (PullPolicy.ALWAYS, {"img"}, {"img"}, "pulled"),
    ],
)
def test_pull_policies_against_the_modelled_images(
    pull: PullPolicy, local: set[str], registry: set[str], outcome: str
) -> None:
    backend = FakeBackend(local_images=local, registry_images=registry)
    plan = make_plan([scripted_step("a", image="img", pull=pull)])
    backend.setup(plan)
    if outcome == "missing":
        with pytest.raises(BackendError, match="pull policy is 'never'"):
            backend.start(plan, plan.step("a"))
    elif outcome == "pull fails":
        with pytest.raises(BackendError, match="cannot pull image 'img'"):
            backend.start(plan, plan.step("a"))
    else:
        run_step(backend, plan, plan.step("a"))
        assert backend.pulled == (["img"] if outcome == "pulled" else [])


def test_populate_needs_setup_and_a_valid_tar() -> None:
    backend = FakeBackend()
    plan = make_plan([make_step("a")])
    with pytest.raises(BackendError, match="setup"):
        backend.populate_workspace(plan, workspace_tar({}))
    backend.setup(plan)
    with pytest.raises(BackendError, match="cannot extract"):
        backend.populate_workspace(plan, workspace_tar({}).__class__(b"not a tar at all" * 64))


def test_cleanup_stale_of_added_leftovers() -> None:
    backend = FakeBackend(hostname="here")
    dead = {LABEL_MANAGED: "true", LABEL_OWNER_HOST: "here", LABEL_OWNER_PID: str(dead_pid())}
    backend.add_resource("volume", "old", dead)
    backend.add_resource("volume", "not-managed", {})
    backend.add_resource("network", "elsewhere", {**dead, LABEL_OWNER_HOST: "there"})

    assert backend.cleanup_stale().volumes == 1
    assert sorted(r.name for r in backend.live_resources) == ["elsewhere", "not-managed"]


# -- stdout and stderr ---------------------------------------------------------------------------


def test_output_and_stderr_take_turns_at_each_marker() -> None:
    backend = FakeBackend()
    step = scripted_step("s", output="split=abc\\|def\\nmore", stderr="warn\\|late")
    plan = make_plan([step])
    backend.setup(plan)

    output, _ = run_step(backend, plan, plan.step("s"))

    assert output.chunks == (
        OutputChunk("stdout", b"split=abc"),
        OutputChunk("stderr", b"warn"),
        OutputChunk("stdout", b"def\nmore\n"),
        OutputChunk("stderr", b"late\n"),
    )


@pytest.mark.parametrize(
    ("out", "err"),
    [
        ("hello", ""),
        ("", "only on stderr"),
        ("a\\nb", "c\\nd"),
        ("split=abc\\|def", "warn"),
        ("\\|after stderr", "first"),
        ("a\\|\\|b\\|", "x\\|y"),
        ("ends with a backslash\\", "tab\\t stays"),
    ],
)
def test_shell_script_prints_what_the_fake_prints(out: str, err: str) -> None:
    # SHELL_SCRIPT is the fake's twin on a real backend: run it in this host's shell.
    sh = shutil.which("sh")
    if sh is None or shutil.which("sed") is None:
        pytest.skip("no POSIX shell with sed on this host")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), ENV_OUTPUT: out, ENV_STDERR: err}
    shell = subprocess.run([sh, "-c", SHELL_SCRIPT], env=env, capture_output=True, check=True)

    backend = FakeBackend()
    plan = make_plan([scripted_step("s", output=out or None, stderr=err or None)])
    backend.setup(plan)
    fake, _ = run_step(backend, plan, plan.step("s"))

    assert (shell.stdout, shell.stderr) == (fake.stdout, fake.stderr)


def test_a_missing_file_to_cat_is_a_message_on_stderr() -> None:
    backend = FakeBackend()
    plan = make_plan([scripted_step("c", cat="absent.txt", output="not printed")])
    backend.setup(plan)

    output, exit = run_step(backend, plan, plan.step("c"))

    assert exit.exit_code == 1
    assert output.stdout == b""
    assert output.stderr == b"cat: absent.txt: No such file or directory\n"


# -- the image of the workspace helper ------------------------------------------------------------


def test_the_workspace_is_copied_with_the_first_image_present() -> None:
    backend = FakeBackend(local_images={"b", "c"}, registry_images={"a"})
    plan = make_plan(
        [
            scripted_step("x", image="a", pull=PullPolicy.IF_NOT_EXISTS),
            scripted_step("y", image="b", pull=PullPolicy.ALWAYS),
            scripted_step("z", image="c"),
        ]
    )
    backend.setup(plan)

    backend.populate_workspace(plan, workspace_tar({"f": "x"}))

    assert backend.helper_images == ["b"]  # present, so nothing is pulled for the helper
    assert backend.pulled == []


def test_the_workspace_is_copied_with_the_first_image_that_pulls_when_none_is_present() -> None:
    backend = FakeBackend(local_images=set(), registry_images={"c"})
    plan = make_plan(
        [
            scripted_step("x", image="a", pull=PullPolicy.NEVER),
            scripted_step("y", image="b", pull=PullPolicy.IF_NOT_EXISTS),
            scripted_step("z", image="c", pull=PullPolicy.IF_NOT_EXISTS),
        ],
        services=[make_service("s", image="a", pull=PullPolicy.NEVER)],
    )
    backend.setup(plan)

    backend.populate_workspace(plan, workspace_tar({"f": "x"}))

    assert backend.helper_images == ["c"]
    assert backend.pulled == ["c"]


def test_no_usable_image_for_the_workspace_names_each_reason_once() -> None:
    backend = FakeBackend(local_images=set(), registry_images=set())
    plan = make_plan(
        [
            scripted_step("x", image="a", pull=PullPolicy.NEVER),
            scripted_step("y", image="b", pull=PullPolicy.ALWAYS),
            scripted_step("z", image="a", pull=PullPolicy.NEVER),
        ]
    )
    backend.setup(plan)

    with pytest.raises(BackendError) as info:
        backend.populate_workspace(plan, workspace_tar({"f": "x"}))

    message = str(info.value)
    assert message.count("'a'") == 1
    assert "pull policy is 'never'" in message
    assert "cannot pull image 'b'" in message
    assert backend.helper_images == []
