"""Fixtures shared by every test suite.

Helpers live in ``tests/support`` and are imported as ``from tests.support.plans import
make_plan`` (pytest runs with ``pythonpath = ["."]`` and ``--import-mode=importlib``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from tests.support.plans import BUSYBOX, PYTHON
from tests.support.resources import sweep

from bastion.engine.plan import Plan


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the local Docker engine; tests are skipped, with the reason, when there
    is no engine or the local images are missing (no registry is reachable to pull them)."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine ({exc}): scripts/docker-engine.sh starts one")
    for image in (BUSYBOX, PYTHON):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            client.close()
            pytest.skip(f"image {image} is missing: scripts/images.sh builds it")
    yield client
    client.close()


@pytest.fixture
def docker_sweeper(docker_client: docker.DockerClient) -> Iterator[Callable[[Plan], Plan]]:
    """``track(plan)``: at teardown, remove by label whatever the run left, even when the
    test failed before its own cleanup. Returns the plan, for chaining."""
    plans: list[Plan] = []

    def track(plan: Plan) -> Plan:
        plans.append(plan)
        return plan

    yield track
    for plan in plans:
        sweep(docker_client, plan.run_id, (plan.workspace_volume, *plan.volumes))
