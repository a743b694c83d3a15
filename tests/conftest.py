"""Fixtures shared by every test suite.

Helpers live in ``tests/support`` and are imported as ``from tests.support.plans import
make_plan`` (pytest runs with ``pythonpath = ["."]`` and ``--import-mode=importlib``).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import NoReturn

import docker
import docker.errors
import pytest
import requests.exceptions
from tests.support.plans import BUSYBOX, PYTHON
from tests.support.resources import sweep

from bastion.engine.plan import Plan


def _engine_unreachable() -> str:
    """Why the Docker engine's socket does not accept a connection ("" when it does).

    Probed with a plain socket, closed whatever happens, before docker-py is asked: when a
    connection fails, docker-py's unix-socket transport leaks the socket it made (nothing
    closes it, not even ``DockerClient.close``), and the ``ResourceWarning`` at garbage
    collection becomes an error of the session under ``filterwarnings = error``. Hosts that
    are not a unix socket or a TCP address with a port are left to docker-py.
    """
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    url = urllib.parse.urlsplit(host)
    try:
        if url.scheme in ("unix", "http+unix"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(5)
                probe.connect(url.path)
        elif url.scheme in ("tcp", "http", "https") and url.port:
            with socket.create_connection((url.hostname or "localhost", url.port), timeout=5):
                pass
    except OSError as exc:
        return f"{host}: {exc}"
    return ""


def _no_docker(reason: str) -> NoReturn:
    """Skip with the reason on a developer's machine; fail in CI, where scripts/test.sh
    starts the engine and builds the images, so a missing one is a broken run."""
    if os.environ.get("CI"):
        pytest.fail(f"Docker is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the local Docker engine; tests are skipped (failed in CI), with the reason,
    when there is no engine or the local images are missing (no registry is reachable to
    pull them). The client is closed on every path, a skip included."""
    unreachable = _engine_unreachable()
    if unreachable:
        _no_docker(f"no Docker engine ({unreachable}): scripts/docker-engine.sh starts one")
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        _no_docker(f"no Docker engine ({exc}): scripts/docker-engine.sh starts one")
    try:
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        client.close()
        _no_docker(f"no Docker engine ({exc}): scripts/docker-engine.sh starts one")
    for image in (BUSYBOX, PYTHON):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            client.close()
            _no_docker(f"image {image} is missing: scripts/images.sh builds it")
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
