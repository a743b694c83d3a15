"""Secrets as files on Docker, as a real container and the host see them: the content, the
variable gone from the environment, read-only and readable by any user, and nothing left on
the host's tmpfs after the run, also when the runner was killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from tests.support.plans import make_plan, make_step, new_run_id, run_labels
from tests.support.resources import leftovers, sweep
from tests.support.running import run_step

from bastion.backends._secret_files import PREFIX
from bastion.backends.docker import DockerBackend
from bastion.engine.plan import Plan, secrets_as_files

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

VALUE = "s3cr3t-as-a-file-Zq9xKvB7\nline two"
SHM = Path("/dev/shm")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def hostname() -> str:
    return f"bastion-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def plans(docker_client: docker.DockerClient) -> Iterator[list[Plan]]:
    made: list[Plan] = []
    yield made
    for plan in made:
        sweep(docker_client, plan.run_id)


def run_dirs() -> set[str]:
    return {entry.name for entry in SHM.iterdir() if entry.name.startswith(PREFIX)}


def test_the_file_is_right_the_variable_is_gone_and_the_mount_read_only(
    docker_client: docker.DockerClient, hostname: str, plans: list[Plan]
) -> None:
    env, files = secrets_as_files({"TOKEN": VALUE, "PLAIN": "plain-value"}, {"TOKEN"})
    script = (
        'env; echo ---; cat "$TOKEN_FILE"; echo; echo ---; stat -c %a "$TOKEN_FILE"; '
        "touch /run/secrets/new 2>/dev/null || echo read-only"
    )
    backend = DockerBackend(docker_client, hostname=hostname)
    for user in ("", "1000:1000"):  # root, and a user that owns nothing
        run_id = new_run_id()
        step = make_step("a", script=script, env=env, secret_files=files, user=user)
        plan = make_plan([step], run_id=run_id, labels=run_labels(run_id, owner_host=hostname))
        plans.append(plan)
        backend.setup(plan)
        output, exit_ = run_step(backend, plan, plan.step("a"))
        assert exit_.exit_code == 0, output.both
        environment, content, rest = output.stdout.decode().split("---\n")
        lines = environment.splitlines()
        assert "TOKEN_FILE=/run/secrets/TOKEN" in lines
        assert "PLAIN=plain-value" in lines
        assert not any(line.startswith("TOKEN=") for line in lines)
        assert VALUE not in environment
        assert content == VALUE + "\n"
        assert rest.split() == ["444", "read-only"]
        backend.destroy(plan)
        assert f"{PREFIX}{run_id}" not in run_dirs()


def test_the_run_directory_is_private_to_the_runner_user(
    docker_client: docker.DockerClient, hostname: str, plans: list[Plan]
) -> None:
    run_id = new_run_id()
    step = make_step("a", script="sleep 30", secret_files={"TOKEN": VALUE})
    plan = make_plan([step], run_id=run_id, labels=run_labels(run_id, owner_host=hostname))
    plans.append(plan)
    backend = DockerBackend(docker_client, hostname=hostname)
    backend.setup(plan)
    backend.start(plan, plan.step("a"))
    try:
        directory = SHM / f"{PREFIX}{run_id}"
        assert directory.stat().st_mode & 0o777 == 0o700
        (secret,) = list(directory.glob("*/TOKEN"))
        assert secret.read_text() == VALUE
        assert secret.stat().st_mode & 0o777 == 0o444
    finally:
        backend.destroy(plan)
    assert not directory.exists()


CHILD = """
import sys, time
from tests.support.plans import make_plan, make_step, new_run_id, run_labels
from bastion.backends.docker import DockerBackend
hostname = sys.argv[1]
run_id = new_run_id()
step = make_step("a", script="sleep 300", secret_files={"TOKEN": sys.argv[2]})
plan = make_plan([step], run_id=run_id, labels=run_labels(run_id, owner_host=hostname))
backend = DockerBackend(hostname=hostname)
backend.setup(plan)
backend.start(plan, plan.step("a"))
print(run_id, flush=True)
time.sleep(300)
"""


def test_after_sigkill_the_stale_cleanup_leaves_nothing_on_the_tmpfs(
    docker_client: docker.DockerClient, hostname: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, hostname, VALUE],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    run_id = ""
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().decode().strip()
        assert run_id, "the child did not start its step"
        directory = SHM / f"{PREFIX}{run_id}"
        assert [path.read_text() for path in directory.glob("*/TOKEN")] == [VALUE]
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert directory.exists()  # nobody removed it: the runner is dead
        DockerBackend(docker_client, hostname=hostname).cleanup_stale()
        assert not directory.exists()
        assert leftovers(docker_client, run_id) == []
        assert not any(run_id in name for name in run_dirs())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
        if run_id:
            sweep(docker_client, run_id)
