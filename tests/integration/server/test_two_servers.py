"""Two server processes (here: two servers in one process, sharing nothing but the database
and the data directory) on one PostgreSQL database: a runner polling one server gets work
created through the other, and no stage is ever leased twice."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest
from tests.integration.server._support import PIPELINE, FakeRunner, start_server, wait_for
from tests.integration.store.conftest import postgres_admin_url, postgres_url

__all__ = ["postgres_admin_url", "postgres_url"]  # fixtures, used by name

pytestmark = pytest.mark.postgres


def test_work_created_on_one_server_is_leased_through_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    shared = {
        "database_url": postgres_url,
        "rpc_secret": secrets.token_hex(32),
        "database_secret": secrets.token_hex(32),
        "requery_interval": 1.0,
    }
    first = start_server(tmp_path, **shared)
    second = start_server(tmp_path, **shared)
    a = next(first)
    b = next(second)
    try:
        checkout = a.local_repo()
        runner_b = FakeRunner(b, "on-b")
        got: list[object] = []
        poller = threading.Thread(target=lambda: got.append(runner_b.poll(wait=10)))
        poller.start()
        time.sleep(0.3)  # the poll is waiting on server b
        checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
        started = time.monotonic()
        checkout.push()  # the hook goes to server a
        poller.join(timeout=15)
        assert got and got[0] is not None, "server b never saw the stage"
        assert time.monotonic() - started < 5

        for _ in range(9):
            a.admin.post("/api/repos/acme/web/builds").raise_for_status()
        runner_a = FakeRunner(a, "on-a")
        leases: list[int] = []
        lock = threading.Lock()

        def drain(runner: FakeRunner) -> None:
            while (lease := runner.poll(wait=1.5)) is not None:
                with lock:
                    leases.append(lease.stage_id)

        threads = [threading.Thread(target=drain, args=(r,)) for r in (runner_a, runner_b) * 3]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(leases) == 9
        assert len(set(leases)) == 9
        wait_for(lambda: all(x["status"] == "running" for x in b.builds()[:9]))
    finally:
        next(second, None)
        next(first, None)
