"""The upload queue: order, batching, resending after failures, giving up on a lost lease."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from bastion.client import Backoff, RunnerClient
from bastion.rpc.messages import LogBatch, LogLine, StepState, StepUpdate
from bastion.runner.uploader import Uploader

LEASE = "lease-" + "cd" * 16


class Server:
    """Stores log lines by (step, n) as the real server does; can fail on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.lines: dict[tuple[int, int], str] = {}
        self.fail_next = 0
        self.status = 503
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                if self.status == 0:
                    raise httpx.ConnectError("connection refused", request=request)
                return httpx.Response(self.status, json={"message": "no"})
            body = json.loads(request.content)
            kind = request.url.path.rsplit("/", 1)[-1]
            self.calls.append((kind, body))
            if kind == "logs":
                for line in body["lines"]:
                    self.lines.setdefault((body["step"], line["n"]), line["text"])
            return httpx.Response(204)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]


def make(server: Server, **kwargs: float) -> tuple[Uploader, threading.Event]:
    rpc = RunnerClient(
        "http://127.0.0.1:1",
        "t" * 20,
        backoff=Backoff(initial=0.01, maximum=0.05),
        transport=httpx.MockTransport(server),
    )
    give_up = threading.Event()
    uploader = Uploader(rpc, 5, LEASE, give_up=give_up, **kwargs)  # type: ignore[arg-type]
    uploader.start()
    return uploader, give_up


def line(n: int) -> LogLine:
    return LogLine(n=n, t=n / 100, text=f"line {n}")


def update(number: int, state: StepState) -> StepUpdate:
    return StepUpdate(number=number, name=f"step{number}", state=state)


def test_updates_and_lines_arrive_in_the_order_they_happened() -> None:
    server = Server()
    uploader, _ = make(server, flush_interval=0.05)
    uploader.add_step(update(1, StepState.RUNNING))
    for n in range(3):
        uploader.add_line(1, line(n))
    uploader.add_step(update(1, StepState.SUCCESS))
    uploader.add_step(update(2, StepState.RUNNING))
    uploader.add_line(2, line(0))
    assert uploader.close(5)
    assert server.kinds() == ["steps", "logs", "steps", "steps", "logs"]
    first_logs = server.calls[1][1]
    assert isinstance(first_logs, dict)
    assert [ln["n"] for ln in first_logs["lines"]] == [0, 1, 2]


def test_lines_are_batched_by_count() -> None:
    server = Server()
    uploader, _ = make(server, flush_interval=10.0, max_lines=100)
    for n in range(250):
        uploader.add_line(1, line(n))
    deadline = time.monotonic() + 5
    while len(server.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Two full batches went out without waiting for the (long) flush interval.
    assert [len(b["lines"]) for _, b in server.calls[:2]] == [100, 100]  # type: ignore[index]
    assert uploader.close(5)
    assert len(server.lines) == 250


def test_lines_of_several_steps_in_one_flush_become_one_batch_per_step() -> None:
    server = Server()
    uploader, _ = make(server, flush_interval=0.2)
    uploader.add_line(1, line(0))
    uploader.add_line(2, line(0))
    uploader.add_line(1, line(1))
    assert uploader.close(5)
    batches = [LogBatch.model_validate(b) for _, b in server.calls]
    assert [(b.step, [x.n for x in b.lines]) for b in batches] == [(1, [0, 1]), (2, [0])]


@pytest.mark.parametrize("status", [503, 0])
def test_a_failed_send_is_retried_and_nothing_is_lost_or_doubled(status: int) -> None:
    server = Server()
    server.status = status
    uploader, _ = make(server, flush_interval=0.01, max_lines=10)
    server.fail_next = 3
    for n in range(95):
        uploader.add_line(1, line(n))
    uploader.add_step(update(1, StepState.SUCCESS))
    assert uploader.close(10)
    assert server.lines == {(1, n): f"line {n}" for n in range(95)}
    sent = [ln["n"] for kind, b in server.calls if kind == "logs" for ln in b["lines"]]  # type: ignore[index]
    assert sent == list(range(95))  # acknowledged once each, in order
    assert server.kinds()[-1] == "steps"


def test_a_lost_lease_stops_the_uploads() -> None:
    server = Server()
    server.status = 409
    server.fail_next = 1
    uploader, give_up = make(server, flush_interval=0.01)
    uploader.add_line(1, line(0))
    deadline = time.monotonic() + 5
    while not give_up.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert uploader.lease_lost
    assert give_up.is_set()
    uploader.add_line(1, line(1))  # ignored: nothing more is said about the stage
    assert not uploader.close(1)
    assert server.calls == []


def test_give_up_ends_a_retry_loop() -> None:
    server = Server()
    server.fail_next = 10**6
    uploader, give_up = make(server, flush_interval=0.01)
    uploader.add_line(1, line(0))
    time.sleep(0.1)
    give_up.set()
    started = time.monotonic()
    assert not uploader.close(5)
    assert time.monotonic() - started < 2
    assert uploader.pending == 1


def test_a_refused_batch_is_dropped_and_the_rest_goes_on() -> None:
    server = Server()
    server.status = 413
    server.fail_next = 1
    uploader, _ = make(server, flush_interval=0.01)
    uploader.add_line(1, line(0))
    time.sleep(0.2)
    uploader.add_line(1, line(1))
    assert uploader.close(5)
    assert uploader.dropped == 1
    assert server.lines == {(1, 1): "line 1"}


def test_a_full_queue_blocks_the_producer_until_the_server_catches_up() -> None:
    server = Server()
    server.fail_next = 10**6  # the server is down
    uploader, _ = make(server, flush_interval=0.01, max_queued_bytes=2000)  # type: ignore[arg-type]
    done = threading.Event()

    def produce() -> None:
        for n in range(200):
            uploader.add_line(1, line(n))
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert not done.wait(0.5)  # blocked: about 2000 bytes queued, not 200 lines
    with server.lock:
        server.fail_next = 0  # the server is back
    assert done.wait(10)
    assert uploader.close(10)
    assert server.lines == {(1, n): f"line {n}" for n in range(200)}


def test_a_send_that_keeps_failing_is_dropped_after_retry_for() -> None:
    server = Server()
    server.fail_next = 10**6
    uploader, give_up = make(server, flush_interval=0.01, retry_for=0.3)
    uploader.add_line(1, line(0))
    time.sleep(0.6)
    with server.lock:
        server.fail_next = 0
    uploader.add_line(1, line(1))
    assert uploader.close(5)
    assert uploader.dropped == 1
    assert not give_up.is_set()
    assert server.lines == {(1, 1): "line 1"}


def test_an_unsent_step_update_is_replaced_by_a_newer_one_of_the_same_step() -> None:
    server = Server()
    server.fail_next = 10**6  # the server is down: everything queues behind the first send
    uploader, _ = make(server, flush_interval=0.01)
    uploader.add_step(update(1, StepState.PENDING))  # taken by the upload thread, in flight
    deadline = time.monotonic() + 5
    while uploader.pending and not uploader._queue[0].taken and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.01)
    uploader.add_step(update(1, StepState.RUNNING))
    uploader.add_step(update(2, StepState.PENDING))
    uploader.add_step(update(1, StepState.SUCCESS))  # replaces the queued RUNNING of step 1
    uploader.add_step(update(2, StepState.RUNNING))  # replaces the queued PENDING of step 2
    uploader.add_line(2, line(0))
    uploader.add_step(update(2, StepState.SUCCESS))  # after a line of step 2: queued as well
    assert uploader.pending == 5
    with server.lock:
        server.fail_next = 0  # the server is back
    assert uploader.close(5)
    sent = [
        (k, b["number"] if k == "steps" else b["step"], b.get("state")) for k, b in server.calls
    ]  # type: ignore[index,union-attr]
    assert sent == [
        ("steps", 1, "pending"),  # the one in flight is sent as it was
        ("steps", 1, "success"),
        ("steps", 2, "running"),
        ("logs", 2, None),
        ("steps", 2, "success"),
    ]


def steps_sent(server: Server) -> list[tuple[int, str]]:
    with server.lock:
        return [(b["number"], b["state"]) for k, b in server.calls if k == "steps"]  # type: ignore[index]


def test_a_step_that_ends_within_the_hold_is_reported_once() -> None:
    server = Server()
    uploader, _ = make(server, flush_interval=0.01, hold=0.3)
    uploader.add_step(update(1, StepState.PENDING))
    uploader.add_step(update(1, StepState.RUNNING))
    uploader.add_step(update(1, StepState.SUCCESS))
    deadline = time.monotonic() + 5
    while not steps_sent(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert uploader.close(5)
    assert steps_sent(server) == [(1, "success")]


def test_a_long_step_shows_running_before_it_ends() -> None:
    server = Server()
    uploader, _ = make(server, flush_interval=0.01, hold=0.05)
    uploader.add_step(update(1, StepState.RUNNING))
    deadline = time.monotonic() + 5
    while not steps_sent(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert steps_sent(server) == [(1, "running")]  # sent while the step still runs
    uploader.add_step(update(1, StepState.SUCCESS))
    assert uploader.close(5)
    assert steps_sent(server) == [(1, "running"), (1, "success")]


def test_due_lines_take_the_update_before_them_along() -> None:
    server = Server()
    uploader, _ = make(server, flush_interval=0.01, hold=60.0)
    uploader.add_step(update(1, StepState.RUNNING))
    uploader.add_line(1, line(0))
    deadline = time.monotonic() + 5
    while len(server.lines) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.kinds()[:2] == ["steps", "logs"]  # the update first, without its hold
    assert uploader.close(5)


def test_close_dropping_updates_still_delivers_every_line() -> None:
    server = Server()
    uploader, _ = make(server, flush_interval=60.0, hold=60.0)
    uploader.add_step(update(1, StepState.RUNNING))
    uploader.add_line(1, line(0))
    uploader.add_step(update(1, StepState.SUCCESS))  # after a line of its step: queued too
    uploader.add_step(update(2, StepState.PENDING))
    assert uploader.close(5, drop_updates=True)
    assert server.kinds() == ["logs"]
    assert server.lines == {(1, 0): "line 0"}
