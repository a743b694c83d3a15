"""A server restart mid-build loses nothing; start-up chores are idempotent."""

from __future__ import annotations

import secrets
import stat
import time
from pathlib import Path

from tests.integration.server._support import PIPELINE, FakeRunner, start_server, wait_for

from bastion.rpc.messages import StepState

SECRETS = {"rpc_secret": secrets.token_hex(32), "database_secret": secrets.token_hex(32)}


def test_a_build_survives_a_server_restart_without_losing_a_log_line(tmp_path: Path) -> None:
    # A short lease, and the server down for longer than it: the restart must extend the
    # leases, or the reaper would end the stage as soon as the server is back.
    short = {"lease_seconds": 2, "heartbeat_interval": 0.5, **SECRETS}
    first = start_server(tmp_path, **short)
    server = next(first)
    checkout = server.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    wait_for(server.builds)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.step(lease, 1, StepState.RUNNING)
    runner.logs(lease, 1, [(0, "zero"), (1, "one"), (2, "two")])
    admin_token = server.admin_token
    tokens_before = server.ctx.store.list_tokens(1)
    next(first, None)  # the server stops
    time.sleep(3)

    second = start_server(tmp_path, **short)
    server = next(second)
    try:
        assert server.admin_token == admin_token
        assert server.ctx.store.list_tokens(1) == tokens_before  # nothing regenerated
        runner.http = server.client(runner.token)
        assert runner.heartbeat(lease).status_code == 200  # the lease survived
        # The runner resends what it had not had acknowledged, and more.
        runner.logs(lease, 1, [(2, "two"), (3, "three")])
        runner.run(lease)
        build = server.build(1)
        assert build["status"] == "success"
        logs = server.admin.get("/api/repos/acme/web/builds/1/logs/1/1").json()
        assert [line["out"] for line in logs] == ["zero\n", "one\n", "two\n", "three\n"]
    finally:
        next(second, None)


def test_the_embedded_runner_gets_a_fresh_token_on_every_start(tmp_path: Path) -> None:
    tokens = []
    for _ in range(2):
        for server in start_server(tmp_path, embedded_runner=True, **SECRETS):
            path = server.live.settings.data_dir / "embedded-runner.token"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            token = path.read_text().strip()
            tokens.append(token)
            poll = server.client(token).post("/rpc/v1/request", json={"wait": 0})
            assert poll.status_code == 204
            runners = server.admin.get("/api/runners").json()
            assert [r["revoked"] for r in runners if r["name"] == "embedded"][-1] is False
    assert tokens[0] != tokens[1]
    for server in start_server(tmp_path, **SECRETS):
        assert server.client(tokens[0]).post("/rpc/v1/request", json={}).status_code == 401


def test_the_admin_token_file_is_private_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    for server in start_server(tmp_path, **SECRETS):
        path = server.live.settings.data_dir / "admin.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        database = (server.live.settings.data_dir / "bastion.db").read_bytes()
        assert server.admin_token.encode() not in database
