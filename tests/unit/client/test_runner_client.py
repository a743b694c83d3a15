"""``RunnerClient`` against ``httpx.MockTransport``: the protocol's paths, headers and bodies,
the mapping of answers to errors, and retries with backoff when the server is briefly gone."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.unit.runner.factories import stage_details

from bastion.client import (
    Backoff,
    ClientError,
    LeaseLostError,
    RetriesExhaustedError,
    RunnerClient,
    UnauthorizedError,
    UnreachableError,
)
from bastion.rpc.messages import (
    LEASE_HEADER,
    HeartbeatReply,
    Lease,
    LogBatch,
    LogLine,
    RunnerPoll,
    StageResult,
    StepState,
    StepUpdate,
)

SERVER = "http://127.0.0.1:8080"
TOKEN = "runner-token-abcdefabcdefabcdef"
LEASE = "lease-0123456789abcdef0123456789abcdef"
FAST = Backoff(initial=0.01, factor=2.0, maximum=0.02)

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler) -> RunnerClient:
    return RunnerClient(SERVER, TOKEN, backoff=FAST, transport=httpx.MockTransport(handler))


class Recorder:
    """A handler that answers from a script and records every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise httpx.ConnectError(str(answer), request=request)
        return answer

    def bodies(self) -> list[object]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def test_poll_sends_the_runner_and_returns_a_lease() -> None:
    lease = Lease(stage_id=7, lease_id=LEASE, expires_in=60, heartbeat_interval=10)
    rec = Recorder(httpx.Response(200, json=lease.model_dump()))
    client = make_client(rec)
    got = client.poll(RunnerPoll(labels={"gpu": "yes"}, capacity=2, wait=5))
    assert got == lease
    request = rec.requests[0]
    assert (request.method, request.url.path) == ("POST", "/rpc/v1/request")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert LEASE_HEADER not in request.headers
    body = json.loads(request.content)
    assert (body["labels"], body["capacity"], body["wait"]) == ({"gpu": "yes"}, 2, 5.0)
    # The HTTP timeout outlasts the long-poll the runner asked for.
    assert request.extensions["timeout"]["read"] > 5


def test_poll_without_work() -> None:
    assert make_client(Recorder(httpx.Response(204))).poll(RunnerPoll()) is None


def test_poll_does_not_retry() -> None:
    rec = Recorder(httpx.Response(503, json={"message": "starting"}))
    with pytest.raises(ClientError) as err:
        make_client(rec).poll(RunnerPoll())
    assert err.value.status == 503
    assert len(rec.requests) == 1


def test_poll_with_a_revoked_token() -> None:
    with pytest.raises(UnauthorizedError):
        make_client(Recorder(httpx.Response(401, json={"message": "revoked"}))).poll(RunnerPoll())


def test_stage_details_carry_the_lease_header() -> None:
    details = stage_details()
    rec = Recorder(httpx.Response(200, json=details.model_dump()))
    assert make_client(rec).stage(3, LEASE) == details
    request = rec.requests[0]
    assert (request.method, request.url.path) == ("GET", "/rpc/v1/stages/3")
    assert request.headers[LEASE_HEADER] == LEASE
    assert LEASE not in str(request.url)


@pytest.mark.parametrize("status", [403, 404, 409, 410])
def test_stage_calls_map_lease_errors(status: int) -> None:
    rec = Recorder(httpx.Response(status, json={"message": "not your lease"}))
    with pytest.raises(LeaseLostError) as err:
        make_client(rec).heartbeat(3, LEASE)
    assert (err.value.status, err.value.message) == (status, "not your lease")
    assert len(rec.requests) == 1  # never retried


def test_other_client_errors_are_not_retried() -> None:
    rec = Recorder(httpx.Response(422, json={"message": "lines: too many"}))
    with pytest.raises(ClientError) as err:
        make_client(rec).logs(3, LEASE, LogBatch(step=1, lines=[]))
    assert not isinstance(err.value, LeaseLostError)
    assert err.value.status == 422
    assert len(rec.requests) == 1


def test_heartbeat_retries_a_restarting_server() -> None:
    reply = HeartbeatReply(cancel=True, expires_in=30)
    rec = Recorder(
        RuntimeError("connection refused"),
        httpx.Response(503, json={"message": "starting"}),
        httpx.Response(200, json=reply.model_dump()),
    )
    assert make_client(rec).heartbeat(3, LEASE) == reply
    assert [r.url.path for r in rec.requests] == ["/rpc/v1/stages/3/heartbeat"] * 3


def test_retries_end_when_time_is_up() -> None:
    rec = Recorder(httpx.Response(502, json={"message": "bad gateway"}))
    started = time.monotonic()
    with pytest.raises(RetriesExhaustedError) as err:
        make_client(rec).heartbeat(3, LEASE, retry_for=0.2)
    assert time.monotonic() - started < 2
    assert err.value.status == 502
    assert "bad gateway" in err.value.message
    assert isinstance(err.value, UnreachableError)
    assert len(rec.requests) >= 2


def test_retries_end_when_stop_is_set() -> None:
    rec = Recorder(RuntimeError("connection refused"))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(RetriesExhaustedError):
        make_client(rec).steps(
            3, LEASE, StepUpdate(number=1, name="a", state=StepState.RUNNING), stop=stop
        )
    assert stop.is_set()


def test_logs_are_resent_after_a_503_with_nothing_lost_or_doubled() -> None:
    """The server stores lines by (step, n); a batch whose answer was a 503 is sent again
    whole, and the stored result holds every line exactly once."""
    stored: dict[tuple[int, int], str] = {}
    received = 0
    failures = {2}  # the second request fails after the server stored nothing

    def server(request: httpx.Request) -> httpx.Response:
        nonlocal received
        received += 1
        if received in failures:
            return httpx.Response(503, json={"message": "restarting"})
        batch = LogBatch.model_validate_json(request.content)
        for line in batch.lines:
            assert stored.setdefault((batch.step, line.n), line.text) == line.text
        return httpx.Response(204)

    client = make_client(server)
    lines = [LogLine(n=i, t=i / 10, text=f"line {i}") for i in range(250)]
    for start in range(0, 250, 100):
        client.logs(3, LEASE, LogBatch(step=1, lines=lines[start : start + 100]))
    assert received == 4
    assert stored == {(1, i): f"line {i}" for i in range(250)}


def test_complete_sends_the_result() -> None:
    rec = Recorder(httpx.Response(204))
    result = StageResult(state=StepState.FAILURE, error="step test failed")
    make_client(rec).complete(3, LEASE, result)
    assert rec.requests[0].url.path == "/rpc/v1/stages/3/complete"
    assert rec.bodies() == [result.model_dump(mode="json")]


def test_cleanup() -> None:
    rec = Recorder(httpx.Response(200, json={"lost_stages": [4, 9]}))
    assert make_client(rec).cleanup().lost_stages == [4, 9]
    assert rec.requests[0].url.path == "/rpc/v1/runners/cleanup"
    assert LEASE_HEADER not in rec.requests[0].headers


def test_source_is_streamed_to_a_file(tmp_path: Path) -> None:
    data = b"bundle" * 10_000
    rec = Recorder(RuntimeError("reset"), httpx.Response(200, content=data))
    dest = tmp_path / "source.bundle"
    assert make_client(rec).source(3, LEASE, dest) == len(data)
    assert dest.read_bytes() == data
    assert rec.requests[-1].headers[LEASE_HEADER] == LEASE


def test_source_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    rec = Recorder(httpx.Response(200, content=b"x" * 5000))
    with pytest.raises(ClientError) as err:
        make_client(rec).source(3, LEASE, tmp_path / "b", max_bytes=1000)
    assert "larger than" in err.value.message


def test_source_lease_lost(tmp_path: Path) -> None:
    rec = Recorder(httpx.Response(409, json={"message": "lease expired"}))
    with pytest.raises(LeaseLostError):
        make_client(rec).source(3, LEASE, tmp_path / "b")


def test_an_unreadable_answer_is_an_error_not_a_crash() -> None:
    rec = Recorder(httpx.Response(200, json={"cancel": "maybe"}))
    with pytest.raises(ClientError) as err:
        make_client(rec).heartbeat(3, LEASE)
    assert "HeartbeatReply" in err.value.message


def test_redirects_are_refused() -> None:
    rec = Recorder(httpx.Response(307, headers={"location": "https://elsewhere/"}))
    with pytest.raises(ClientError) as err:
        make_client(rec).heartbeat(3, LEASE)
    assert "redirects" in err.value.message
    assert len(rec.requests) == 1


def test_backoff_grows_to_its_maximum() -> None:
    delays = Backoff(initial=1, factor=2, maximum=5).delays()
    values = [next(delays) for _ in range(6)]
    assert 0.8 <= values[0] <= 1.2
    assert 1.6 <= values[1] <= 2.4
    assert all(4.0 <= v <= 6.0 for v in values[3:])
