"""``/api/stream`` sends build events only of repositories the subscriber may read, and ends
the stream of a user who is blocked while listening."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
from tests.integration.server._support import PIPELINE, FakeRunner, Harness, wait_for

from bastion.client.sse import iter_events
from bastion.rpc.messages import StepState


class Listener:
    def __init__(self, client: httpx.Client) -> None:
        self.events: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self.thread.start()

    def _run(self, client: httpx.Client) -> None:
        try:
            with client.stream("GET", "/api/stream", timeout=30) as response:
                assert response.status_code == 200
                for event in iter_events(response.iter_lines()):
                    self.events.append(json.loads(event.data))
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()


def test_events_only_of_readable_repositories(server: Harness) -> None:
    checkout = server.local_repo()  # private
    nemo = Listener(server.client(server.user_token("nemo")))
    reader = server.client(server.user_token("alice"))
    server.grant("alice", "acme/web", "read")
    alice = Listener(reader)
    admin = Listener(server.admin)
    wait_for(lambda: server.ctx.events.active)
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.run(lease)
    wait_for(lambda: any(e["build"]["status"] == "success" for e in admin.events), 20)
    wait_for(lambda: any(e["build"]["status"] == "success" for e in alice.events), 20)
    assert nemo.events == []
    assert {e["slug"] for e in alice.events} == {"acme/web"}


def test_a_blocked_users_stream_ends(server: Harness) -> None:
    server.local_repo()
    listener = Listener(server.client(server.user_token("alice")))
    wait_for(lambda: server.ctx.events.active)
    assert not listener.ended.is_set()
    server.admin.patch("/api/users/alice", json={"active": False}).raise_for_status()
    assert listener.ended.wait(15)


def test_a_log_stream_ends_when_its_reader_loses_access(server: Harness) -> None:
    checkout = server.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    wait_for(server.builds)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.step(lease, 1, StepState.RUNNING)
    reader = server.client(server.user_token("alice"))
    server.grant("alice", "acme/web", "read")
    ended = threading.Event()

    def follow() -> None:
        with reader.stream("GET", "/api/stream/acme/web/1/1/1", timeout=30) as response:
            assert response.status_code == 200
            for _ in iter_events(response.iter_lines()):
                pass
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    assert not ended.wait(1)  # the step runs: the stream follows it
    server.admin.delete("/api/repos/acme/web/permissions/alice").raise_for_status()
    assert ended.wait(15)
