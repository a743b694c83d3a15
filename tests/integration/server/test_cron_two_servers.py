"""Two servers on one PostgreSQL database, both running the cron loop, fire a due job once:
the claim is a compare-and-set on ``next``. Also hammered directly: many threads of both
servers calling ``run_due`` at once still make one build."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest
from tests.integration.server._support import PIPELINE, start_server, wait_for
from tests.integration.store.conftest import postgres_admin_url, postgres_url

__all__ = ["postgres_admin_url", "postgres_url"]  # fixtures, used by name

pytestmark = pytest.mark.postgres

CRON = "/api/repos/acme/web/cron"


def test_two_servers_fire_a_due_job_once(tmp_path: Path, postgres_url: str) -> None:
    shared = {
        "database_url": postgres_url,
        "rpc_secret": secrets.token_hex(32),
        "database_secret": secrets.token_hex(32),
        "cron_interval": 0.05,
    }
    first = start_server(tmp_path, **shared)
    second = start_server(tmp_path, **shared)
    a = next(first)
    b = next(second)
    try:
        checkout = a.local_repo()
        checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
        checkout.push()
        wait_for(a.builds)
        a.admin.post(CRON, json={"name": "nightly", "expr": "@hourly"}).raise_for_status()
        b.admin.post(CRON, json={"name": "probe", "expr": "@daily"}).raise_for_status()
        repo = a.ctx.store.get_repo("acme", "web")
        assert repo is not None
        nightly = a.ctx.store.get_cron(repo.id, "nightly")
        assert nightly is not None

        # Both loops see the job due from now on; one of them fires it.
        a.ctx.store.update_cron(nightly.id, next=int(time.time()) - 3600)
        wait_for(lambda: [x for x in a.builds() if x["event"] == "cron"], timeout=20)

        # And when everyone runs the loop at once, by hand too, it still fires once.
        probe = a.ctx.store.get_cron(repo.id, "probe")
        assert probe is not None
        a.ctx.store.update_cron(probe.id, next=int(time.time()) - 60)
        fired: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def race(server_index: int) -> None:
            ctx = (a, b)[server_index % 2].ctx
            barrier.wait()
            count = ctx.cron.run_due()
            with lock:
                fired.append(count)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        wait_for(lambda: len([x for x in b.builds() if x["event"] == "cron"]) >= 2, timeout=20)
        cron_builds = [x for x in b.builds() if x["event"] == "cron"]
        assert sorted(x["cron"] for x in cron_builds) == ["nightly", "probe"]
        assert sum(fired) <= 1  # the loops may have won the race; never more than one fire
        for name in ("nightly", "probe"):
            job = b.admin.get(f"{CRON}/{name}").json()
            assert job["next"] > time.time()
            assert job["prev"] > 0
    finally:
        next(second, None)
        next(first, None)
