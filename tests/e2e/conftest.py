"""Fixtures of the end-to-end tests: a :class:`Stack` of real processes per test, PostgreSQL.

``stack`` starts nothing by itself; the test starts servers and runners through it, and
whatever it started is stopped at teardown, by pid (runners first, then servers), and the
Docker resources of its runners are removed by label. ``docker_stack`` is the same with the
Docker engine checked (the test is skipped without an engine or the local images).

On a failure the logs of every process are printed (pytest shows them with the report). A
Python traceback in any process's output fails the test at teardown (errors must reach users
as one-line messages), and so does a token or secret in it (``Stack.leaks``).

``postgres_admin_url`` / ``postgres_url`` are the store tests' fixtures
(``tests/integration/store/conftest.py``), duplicated here as that file suggests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import docker
import pytest
from tests.e2e._support import Stack
from tests.support.throwaway_db import throwaway_database

REPO_ROOT = Path(__file__).resolve().parents[2]

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


def _stack(
    request: pytest.FixtureRequest, tmp_path: Path, client: docker.DockerClient | None
) -> Iterator[Stack]:
    stack = Stack(tmp_path, docker_client=client)
    try:
        yield stack
    finally:
        if request.node.stash.get(_FAILED, False):
            print(stack.describe())
        stack.close()
    tracebacks = stack.tracebacks()
    assert not tracebacks, "a process printed a traceback:\n" + "\n".join(tracebacks)
    leaks = stack.leaks()
    assert not leaks, "\n".join(leaks)


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """Real processes without Docker (runners with the fake backend)."""
    yield from _stack(request, tmp_path, None)


@pytest.fixture
def docker_stack(
    request: pytest.FixtureRequest, tmp_path: Path, docker_client: docker.DockerClient
) -> Iterator[Stack]:
    """Real processes; runners on the real Docker engine."""
    yield from _stack(request, tmp_path, docker_client)


# -- PostgreSQL (as in tests/integration/store/conftest.py) ------------------------------------


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The URL of a PostgreSQL role that may create databases: $BASTION_TEST_POSTGRES_URL, or
    the throwaway cluster of scripts/postgres.sh (started when needed). Without PostgreSQL the
    tests are skipped with the reason, except in CI (``CI`` set), where they fail."""
    url = os.environ.get("BASTION_TEST_POSTGRES_URL", "").strip()
    if url:
        return url
    script = REPO_ROOT / "scripts" / "postgres.sh"
    try:
        done = subprocess.run(
            [str(script)], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"scripts/postgres.sh could not run: {exc}"
    else:
        lines = done.stdout.strip().splitlines()
        if done.returncode == 0 and lines and lines[-1].startswith("postgresql"):
            return lines[-1]
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        reason = f"scripts/postgres.sh failed (exit {done.returncode}):\n{tail}"
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty database for this test alone (dropped afterwards, open connections too)."""
    with throwaway_database(postgres_admin_url, "bastion_e2e_") as url:
        yield url
