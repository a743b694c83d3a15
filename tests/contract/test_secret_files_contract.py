"""Secrets delivered as files (``ContainerSpec.secret_files``), on every backend.

The step that was given them reads ``/run/secrets/NAME``; another step of the same run
cannot; nothing of them is left once the step is removed, the run destroyed, or (after its
owner died) cleaned up as stale. On Docker the files live on the host's tmpfs
(``bastion.backends._secret_files``), which these cases look at directly.
"""

from __future__ import annotations

import pytest
from tests.contract.harness import Harness
from tests.support.plans import scripted_step
from tests.support.resources import dead_pid
from tests.support.running import run_step

from bastion.backends._secret_files import PREFIX, SecretFiles
from bastion.backends.docker import DockerBackend
from bastion.backends.fake import FakeBackend
from bastion.engine.plan import SECRET_FILES_DIR, Plan, StepPlan

pytestmark = pytest.mark.timeout(120)

VALUE = "file-secret-Zq9xKvB7wtLmP4Yr\nwith a second line"
OTHER = "other-secret-value-8Hd2"


def secret_step(name: str, files: dict[str, str], **args: object) -> StepPlan:
    env = {f"{key}_FILE": f"{SECRET_FILES_DIR}/{key}" for key in files}
    return scripted_step(name, env=env, secret_files=files, secret_env=(), **args)


def secret_files_left(harness: Harness, plan: Plan) -> list[str]:
    """What exists of the run's secret files."""
    if isinstance(harness.backend, FakeBackend):
        return sorted(
            resource.name
            for resource in harness.backend.live_resources
            if resource.kind == "secret-files" and resource.run_id == plan.run_id
        )
    assert isinstance(harness.backend, DockerBackend)
    base = SecretFiles(harness.hostname).base()
    directory = base / f"{PREFIX}{plan.run_id}"
    if not directory.exists():
        return []
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def test_a_step_reads_each_of_its_secret_files(harness: Harness) -> None:
    for name, value in (("TOKEN", VALUE), ("OTHER", OTHER)):
        plan = harness.plan(
            [secret_step("a", {"TOKEN": VALUE, "OTHER": OTHER}, cat=f"{SECRET_FILES_DIR}/{name}")]
        )
        harness.backend.setup(plan)
        output, exit_ = run_step(harness.backend, plan, plan.step("a"))
        assert (output.stdout, exit_.exit_code) == (value.encode(), 0)
        harness.backend.destroy(plan)


def test_another_step_of_the_run_cannot_read_them(harness: Harness) -> None:
    owner = secret_step("owner", {"TOKEN": VALUE}, sleep="forever")
    other = scripted_step("other", cat=f"{SECRET_FILES_DIR}/TOKEN")
    plan = harness.plan([owner, other])
    harness.backend.setup(plan)
    harness.backend.start(plan, plan.step("owner"))
    try:
        output, exit_ = run_step(harness.backend, plan, plan.step("other"))
    finally:
        harness.backend.stop(plan, plan.step("owner"))
    assert exit_.exit_code == 1
    assert VALUE.encode() not in output.both
    assert b"No such file or directory" in output.stderr


def test_nothing_is_left_after_remove_and_destroy(harness: Harness) -> None:
    plan = harness.plan(
        [
            secret_step("a", {"TOKEN": VALUE}, cat=f"{SECRET_FILES_DIR}/TOKEN"),
            secret_step("b", {"OTHER": OTHER}, sleep="forever"),
        ]
    )
    harness.backend.setup(plan)
    harness.backend.start(plan, plan.step("b"))
    assert secret_files_left(harness, plan)  # b's, while it runs
    run_step(harness.backend, plan, plan.step("a"))  # ends with remove()
    left = secret_files_left(harness, plan)
    assert not any(plan.step("a").container.name in entry for entry in left)
    harness.backend.destroy(plan)
    assert secret_files_left(harness, plan) == []
    assert harness.leftovers(plan) == []


def test_cleanup_stale_removes_the_secret_files_of_a_dead_owner(harness: Harness) -> None:
    dead = harness.plan([secret_step("a", {"TOKEN": VALUE}, sleep="forever")], owner_pid=dead_pid())
    live = harness.plan([secret_step("a", {"TOKEN": VALUE}, sleep="forever")])
    for plan in (dead, live):
        harness.backend.setup(plan)
        harness.backend.start(plan, plan.step("a"))
    harness.backend.cleanup_stale()
    assert secret_files_left(harness, dead) == []
    assert secret_files_left(harness, live) != []
    harness.backend.cleanup_stale(include_live=True)
    assert secret_files_left(harness, live) == []


def test_a_step_without_secret_files_gets_no_secrets_directory(harness: Harness) -> None:
    plan = harness.plan([scripted_step("a", cat=f"{SECRET_FILES_DIR}/TOKEN")])
    harness.backend.setup(plan)
    _output, exit_ = run_step(harness.backend, plan, plan.step("a"))
    assert exit_.exit_code == 1
    assert secret_files_left(harness, plan) == []
