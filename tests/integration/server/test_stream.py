"""Server-sent events: build events, and live log lines that replay, follow and end."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from tests.integration.server._support import PIPELINE, FakeRunner, Harness, wait_for

from bastion.client.sse import SSEEvent, iter_events
from bastion.rpc.messages import Lease, StepState


def running_step(server: Harness) -> tuple[FakeRunner, Lease]:
    checkout = server.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    wait_for(server.builds)
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.step(lease, 1, StepState.RUNNING)
    return runner, lease


def _reader(server: Harness) -> httpx.Client:
    """A user with read access to acme/web (granted; the repository is private)."""
    client = server.client(server.user_token("alice"))
    server.grant("alice", "acme/web", "read")
    return client


def read_stream(client: httpx.Client, url: str, into: list[SSEEvent], stop_at: str) -> None:
    with client.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in iter_events(response.iter_lines()):
            into.append(event)
            if event.event == stop_at:
                return


def test_log_stream_replays_a_finished_step_and_ends(server: Harness) -> None:
    runner, lease = running_step(server)
    runner.logs(lease, 1, [(0, "one"), (1, "two")])
    runner.step(lease, 1, StepState.SUCCESS)
    events: list[SSEEvent] = []
    read_stream(server.admin, "/api/stream/acme/web/1/1/1", events, stop_at="end")
    assert [e.event for e in events] == ["line", "line", "end"]
    assert [json.loads(e.data)["out"] for e in events[:2]] == ["one\n", "two\n"]


def test_log_stream_follows_a_running_step_then_ends(server: Harness) -> None:
    runner, lease = running_step(server)
    runner.logs(lease, 1, [(0, "before")])
    events: list[SSEEvent] = []
    reader = threading.Thread(
        target=read_stream,
        args=(_reader(server), "/api/stream/acme/web/1/1/1", events),
        kwargs={"stop_at": "end"},
    )
    reader.start()
    wait_for(lambda: events)  # the replay arrived
    for n in range(1, 4):
        runner.logs(lease, 1, [(n, f"live {n}")])
        time.sleep(0.05)
    runner.run(lease)
    reader.join(timeout=20)
    assert not reader.is_alive()
    lines = [json.loads(e.data) for e in events if e.event == "line"]
    assert [(line["pos"], line["out"]) for line in lines] == [
        (0, "before\n"),
        (1, "live 1\n"),
        (2, "live 2\n"),
        (3, "live 3\n"),
    ]
    assert events[-1].event == "end"


def test_build_events_reach_subscribers(server: Harness) -> None:
    checkout = server.local_repo()
    events: list[dict[str, Any]] = []
    done = threading.Event()

    def listen() -> None:
        with server.admin.stream("GET", "/api/stream", timeout=30) as response:
            assert response.status_code == 200
            for event in iter_events(response.iter_lines()):
                data = json.loads(event.data)
                events.append(data)
                if data["build"]["status"] == "success":
                    done.set()
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for(lambda: server.ctx.events.active)
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push()
    runner = FakeRunner(server, "r1")
    lease = runner.poll()
    assert lease is not None
    runner.run(lease)
    assert done.wait(20)
    statuses = [e["build"]["status"] for e in events]
    assert statuses[0] == "pending"
    assert "running" in statuses
    assert statuses[-1] == "success"
    assert events[-1]["slug"] == "acme/web"
    assert events[-1]["build"]["stages"][0]["status"] == "success"
