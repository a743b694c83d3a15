"""The runner on the real Docker engine, against the fake RPC server: a busybox stage end to
end from a git bundle, and a cancel that removes the containers within seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from tests.integration.runner.conftest import StartRunner
from tests.integration.runner.fakerpc import FakeRpc
from tests.support.plans import BUSYBOX
from tests.unit.runner.factories import make_bundle, make_repo, stage_details

from bastion.backends.docker import DockerBackend
from bastion.engine.plan import LABEL_RUN
from bastion.rpc.messages import CloneInfo, StepState
from bastion.runner.cleanup import LABEL_RUNNER, destroy_run

pytestmark = pytest.mark.docker

RUNNER = "docker-test-runner"
SECRET = "docker-secret-value-0123456789"

CONFIG = f"""\
kind: pipeline
type: docker
name: default
steps:
  - name: show
    image: {BUSYBOX}
    pull: never
    commands:
      - cat README.md
      - test -d .git && echo "a git checkout"
      - echo "token=$TOKEN"
    environment:
      TOKEN:
        from_secret: token
  - name: wait
    image: {BUSYBOX}
    pull: never
    commands:
      - sleep "${{NAP:-0}}"
"""


def leftovers(client: docker.DockerClient) -> list[str]:
    """Containers, networks and volumes this runner created that still exist."""
    filters = {"label": f"{LABEL_RUNNER}={RUNNER}"}
    names = [c.name or "" for c in client.containers.list(all=True, filters=filters)]
    names += [n.name or "" for n in client.networks.list(filters=filters)]
    names += [v.name or "" for v in client.volumes.list(filters=filters)]
    return names


@pytest.fixture
def docker_runner(
    docker_client: docker.DockerClient, start_runner: StartRunner
) -> Iterator[StartRunner]:
    backend = DockerBackend(client=docker_client)

    def start() -> object:
        return start_runner(backend, name=RUNNER)

    yield start  # type: ignore[misc]
    # Whatever a failing test left behind is removed by its labels.
    labels = [
        c.labels.get(LABEL_RUN, "")
        for c in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_RUNNER}={RUNNER}"}
        )
    ]
    for run_id in {r for r in labels if r}:
        destroy_run(backend, run_id)


def test_a_busybox_stage_end_to_end(
    tmp_path: Path,
    rpc: FakeRpc,
    docker_client: docker.DockerClient,
    docker_runner: StartRunner,
) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"README.md": "hello from the repository\n", ".drone.yml": CONFIG})
    bundle = make_bundle(repo, tmp_path / "b.bundle")
    rpc.add(
        stage_details(
            CONFIG,
            stage_id=61,
            secrets={"token": SECRET},
            clone=CloneInfo(kind="bundle"),
            sha=sha,
        ),
        bundle,
    )
    docker_runner()
    result = rpc.wait_complete(61, timeout=120)
    assert result.state is StepState.SUCCESS, result.error
    texts = rpc.texts(61, 1)
    assert "hello from the repository" in texts
    assert "a git checkout" in texts
    assert "token=********" in texts
    assert SECRET not in str(rpc.events)
    assert [s.state for s in result.steps] == [StepState.SUCCESS, StepState.SUCCESS]
    assert leftovers(docker_client) == []


def test_cancel_removes_the_containers_within_seconds(
    rpc: FakeRpc, docker_client: docker.DockerClient, docker_runner: StartRunner
) -> None:
    config = CONFIG.replace('sleep "${NAP:-0}"', "sleep 300").replace(
        '      - cat README.md\n      - test -d .git && echo "a git checkout"\n', ""
    )
    assert "README" not in config  # kind none: an empty workspace
    rpc.add(stage_details(config, stage_id=62, secrets={"token": SECRET}))
    docker_runner()
    assert rpc.wait_for(lambda: ("steps", 2, "running") in rpc.step_events(62), timeout=60)
    time.sleep(0.5)
    assert leftovers(docker_client)  # the step's container, network and volume exist
    cancelled_at = time.monotonic()
    with rpc.cond:
        rpc.cancel.add(62)
    result = rpc.wait_complete(62, timeout=30)
    assert result.state is StepState.KILLED
    deadline = cancelled_at + 10
    while leftovers(docker_client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(docker_client) == []
    assert time.monotonic() - cancelled_at < 10
