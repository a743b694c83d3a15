"""The ``harness`` fixture: each contract case runs once per backend (fake, docker).

At teardown it destroys every plan the case built and sweeps Docker by label, so that a
failing case leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import docker
import pytest
from tests.contract.harness import Harness
from tests.support.plans import BUSYBOX, PYTHON
from tests.support.resources import sweep

from bastion.backends.docker import DockerBackend
from bastion.backends.fake import FakeBackend
from bastion.engine.backend import BackendError


@pytest.fixture(params=["fake", pytest.param("docker", marks=pytest.mark.docker)])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    hostname = f"bastion-test-{uuid.uuid4().hex[:8]}"
    if request.param == "docker":
        client: docker.DockerClient = request.getfixturevalue("docker_client")
        h = Harness("docker", DockerBackend(client, hostname=hostname), hostname, client)
    else:
        fake = FakeBackend(local_images=(BUSYBOX, PYTHON), registry_images=(), hostname=hostname)
        h = Harness("fake", fake, hostname)
    yield h
    for plan in h.plans:
        with contextlib.suppress(BackendError):
            h.backend.destroy(plan)
        if h.client is not None:
            sweep(h.client, plan.run_id, (plan.workspace_volume, *plan.volumes))
