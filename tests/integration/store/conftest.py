"""Fixtures of the store tests: a PostgreSQL server, a fresh database per test, and a
migrated ``Store`` on SQLite and on PostgreSQL.

``postgres_admin_url`` / ``postgres_url`` are meant to move to ``tests/conftest.py`` for the
end-to-end tests as they are.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.store.helpers import FakeClock
from tests.support.throwaway_db import throwaway_database

from bastion.store import Store

REPO_ROOT = Path(__file__).resolve().parents[3]
SECRET_KEY = bytes.fromhex("8f1e6a2c4b7d9e0f13a5c7e9b2d4f6081a3c5e7f9b1d3f5a7c9e1b3d5f7a9c2e")


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
    with throwaway_database(postgres_admin_url, "bastion_t_") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bastion.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[Store]:
    """A migrated store on each database, with a clock the test moves."""
    with Store(db_url, secret_key=SECRET_KEY, clock=clock) as s:
        s.migrate()
        yield s
