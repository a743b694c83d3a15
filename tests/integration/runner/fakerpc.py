"""A small, strict stand-in for the server's side of the runner protocol, on 127.0.0.1.

It implements ``bastion.rpc.messages`` over real HTTP (``http.server`` in a thread), so the
runner is exercised with real sockets, timeouts and reconnects: the server can be stopped
and started again on the same port mid-stage, or made to answer 503. It checks the protocol
as the real server must: the runner token on every call, the lease header on stage calls
(409 otherwise), message shapes (400 for anything pydantic refuses). Everything received
is recorded in arrival order (``events``); log lines are stored idempotently by
(stage, step, n), as the real server does, and a resent line must repeat the same text.
"""

from __future__ import annotations

import http.server
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bastion.rpc.messages import (
    LEASE_HEADER,
    CleanupReply,
    HeartbeatReply,
    Lease,
    LogBatch,
    LogLine,
    RunnerPoll,
    StageDetails,
    StageResult,
    StepUpdate,
)

TOKEN = "runner-token-" + "9f" * 16


@dataclass
class Job:
    details: StageDetails
    bundle: bytes | None = None


@dataclass
class Event:
    kind: str  # poll, details, source, heartbeat, steps, logs, complete, cleanup
    stage: int
    body: Any = None
    at: float = field(default_factory=time.monotonic)


class FakeRpc:
    """The protocol's state; thread-safe. Tests read it and change its behaviour."""

    def __init__(self, *, expires_in: float = 30.0, heartbeat_interval: float = 0.2) -> None:
        self.token = TOKEN
        self.expires_in = expires_in
        self.heartbeat_interval = heartbeat_interval
        self.jobs: list[Job] = []
        self.details: dict[int, Job] = {}
        self.leases: dict[int, str] = {}
        self.cancel: set[int] = set()
        self.lost: list[int] = []
        self.events: list[Event] = []
        self.lines: dict[tuple[int, int], dict[int, LogLine]] = {}
        self.line_receipts = 0
        self.results: dict[int, StageResult] = {}
        self.polls: list[RunnerPoll] = []
        self.fail_status = 0  # answer every call with this status while set
        self.revoked = False  # the runner token was revoked: 401 everywhere
        self.problems: list[str] = []  # protocol violations seen (a test asserts none)
        self.cond = threading.Condition()

    # -- for tests -----------------------------------------------------------------------------

    def add(self, details: StageDetails, bundle: bytes | None = None) -> None:
        with self.cond:
            self.jobs.append(Job(details, bundle))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_complete(self, stage: int, timeout: float = 15.0) -> StageResult:
        if not self.wait_for(lambda: stage in self.results, timeout):
            raise AssertionError(f"stage {stage} was not completed within {timeout} s")
        return self.results[stage]

    def kinds(self, stage: int) -> list[str]:
        with self.cond:
            return [e.kind for e in self.events if e.stage == stage]

    def step_events(self, stage: int) -> list[tuple[str, int, str]]:
        """(kind, step number, state or line numbers) for steps and logs, in order."""
        out: list[tuple[str, int, str]] = []
        with self.cond:
            for e in self.events:
                if e.stage != stage:
                    continue
                if e.kind == "steps":
                    out.append(("steps", e.body.number, e.body.state.value))
                elif e.kind == "logs":
                    out.append(("logs", e.body.step, ",".join(str(x.n) for x in e.body.lines)))
        return out

    def texts(self, stage: int, step: int) -> list[str]:
        with self.cond:
            stored = self.lines.get((stage, step), {})
            return [stored[n].text for n in sorted(stored)]

    # -- the protocol --------------------------------------------------------------------------

    def _record(self, kind: str, stage: int, body: Any = None) -> None:
        self.events.append(Event(kind, stage, body))
        self.cond.notify_all()

    def poll(self, body: RunnerPoll) -> tuple[int, Any]:
        deadline = time.monotonic() + min(body.wait, 1.0)
        with self.cond:
            self.polls.append(body)
            self.cond.notify_all()
            while not self.jobs:
                left = deadline - time.monotonic()
                if left <= 0:
                    return 204, None
                self.cond.wait(left)
            job = self.jobs.pop(0)
            stage = job.details.stage_id
            self.details[stage] = job
            self.leases[stage] = secrets.token_hex(16)
            self._record("lease", stage)
            lease = Lease(
                stage_id=stage,
                lease_id=self.leases[stage],
                expires_in=self.expires_in,
                heartbeat_interval=self.heartbeat_interval,
            )
            return 200, lease.model_dump(mode="json")

    def stage_call(self, kind: str, stage: int, lease: str, raw: bytes) -> tuple[int, Any]:
        with self.cond:
            if self.leases.get(stage) != lease or stage in self.results:
                return 409, {"message": f"stage {stage} is not leased to this runner"}
            if kind == "details":
                self._record(kind, stage)
                return 200, self.details[stage].details.model_dump(mode="json")
            if kind == "source":
                self._record(kind, stage)
                return 200, self.details[stage].bundle or b""
            if kind == "heartbeat":
                self._record(kind, stage)
                reply = HeartbeatReply(cancel=stage in self.cancel, expires_in=self.expires_in)
                return 200, reply.model_dump(mode="json")
            try:
                if kind == "steps":
                    update = StepUpdate.model_validate_json(raw)
                    self._record(kind, stage, update)
                elif kind == "logs":
                    batch = LogBatch.model_validate_json(raw)
                    self._store(stage, batch)
                    self._record(kind, stage, batch)
                elif kind == "complete":
                    result = StageResult.model_validate_json(raw)
                    self.results[stage] = result
                    self._record(kind, stage, result)
                else:
                    return 404, {"message": "no such call"}
            except ValidationError as exc:
                self.problems.append(f"{kind}: {exc}")
                return 400, {"message": str(exc)}
            return 204, None

    def _store(self, stage: int, batch: LogBatch) -> None:
        stored = self.lines.setdefault((stage, batch.step), {})
        for line in batch.lines:
            self.line_receipts += 1
            previous = stored.setdefault(line.n, line)
            if previous.text != line.text:
                self.problems.append(
                    f"stage {stage} step {batch.step} line {line.n} sent twice with different text"
                )

    def cleanup(self) -> tuple[int, Any]:
        with self.cond:
            self._record("cleanup", 0)
            lost, self.lost = self.lost, []
            return 200, CleanupReply(lost_stages=lost).model_dump(mode="json")


_STAGE = re.compile(r"^/rpc/v1/stages/(\d+)(?:/(source|heartbeat|steps|logs|complete))?$")


class _Handler(http.server.BaseHTTPRequestHandler):
    rpc: FakeRpc  # set on the subclass made per server
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped server is gone

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        if isinstance(body, bytes):
            data, kind = body, "application/octet-stream"
        elif body is None:
            data, kind = b"", "application/json"
        else:
            data, kind = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _handle(self, method: str) -> None:
        rpc = self.rpc
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if rpc.fail_status:
            self._answer(rpc.fail_status, {"message": "the fake server is failing on purpose"})
            return
        if rpc.revoked or self.headers.get("Authorization") != f"Bearer {rpc.token}":
            self._answer(401, {"message": "unknown or revoked runner token"})
            return
        path = self.path.split("?", 1)[0]
        if method == "POST" and path == "/rpc/v1/request":
            try:
                body = RunnerPoll.model_validate_json(raw)
            except ValidationError as exc:
                rpc.problems.append(f"poll: {exc}")
                self._answer(400, {"message": str(exc)})
                return
            self._answer(*rpc.poll(body))
            return
        if method == "POST" and path == "/rpc/v1/runners/cleanup":
            self._answer(*rpc.cleanup())
            return
        match = _STAGE.match(path)
        if match is None:
            self._answer(404, {"message": f"no route {path}"})
            return
        stage, sub = int(match.group(1)), match.group(2) or "details"
        expected = "GET" if sub in ("details", "source") else "POST"
        if method != expected:
            self._answer(405, {"message": "method not allowed"})
            return
        lease = self.headers.get(LEASE_HEADER, "")
        self._answer(*rpc.stage_call(sub, stage, lease, raw))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class FakeRpcServer:
    """Serves a ``FakeRpc`` on 127.0.0.1; ``stop`` and ``start`` again keep the same port."""

    def __init__(self, rpc: FakeRpc) -> None:
        self.rpc = rpc
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"rpc": self.rpc})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self.port = server.server_port
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
