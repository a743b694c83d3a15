"""``RunnerClient``: the runner's side of the server↔runner channel (``bastion.rpc.messages``).

Each call maps to one endpoint of the protocol. What makes it more than a thin wrapper is
what happens when the server is briefly gone (a restart mid-build):

* ``heartbeat``, ``steps``, ``logs``, ``complete`` (and ``stage``, ``source``,
  ``cleanup``) retry connection errors and 408 / 429 / 5xx answers with exponential backoff
  and jitter, until they succeed, their ``retry_for`` seconds are over, or the caller's
  ``stop`` event is set (then ``RetriesExhaustedError``). Uploads are idempotent on the
  server (log lines by step and line number), so resending a batch whose answer was lost is
  harmless; the runner keeps what was not acknowledged and sends it again (see
  ``bastion.runner.uploader``).
* Answers that retrying cannot fix are raised at once: 401 ``UnauthorizedError`` (token
  revoked), 403 / 404 / 409 / 410 on a stage call ``LeaseLostError`` (the stage is not ours
  any more), other 4xx ``ClientError``.

``poll`` does not retry: the daemon's loop decides how long to wait before asking again.
The lease id travels only in the ``X-Bastion-Lease`` header, never in a URL or a message.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bastion.client._http import (
    USER_AGENT,
    check_server_url,
    error_message,
    raise_for_status,
    tls_verify,
    unreachable,
)
from bastion.client.errors import (
    ClientError,
    LeaseLostError,
    RetriesExhaustedError,
    UnauthorizedError,
    UnreachableError,
)
from bastion.rpc.messages import (
    LEASE_HEADER,
    PATH_COMPLETE,
    PATH_HEARTBEAT,
    PATH_LOGS,
    PATH_REQUEST,
    PATH_RUNNER_CLEANUP,
    PATH_SOURCE,
    PATH_STAGE,
    PATH_STEPS,
    CleanupReply,
    HeartbeatReply,
    Lease,
    LogBatch,
    RunnerPoll,
    StageDetails,
    StageResult,
    StepUpdate,
)

log = logging.getLogger("bastion.client.runner")

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_LEASE_LOST_STATUS = frozenset({403, 404, 409, 410})
# Longer than any long-poll the runner asks for: a lease must never be handed to a request
# the runner already gave up on.
_POLL_EXTRA_TIMEOUT = 30.0
DEFAULT_MAX_SOURCE_BYTES = 4 << 30
# Retrying "until stopped" still needs an end when nobody will ever set ``stop``.
_DEFAULT_RETRY_FOR = 600.0


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``initial`` × ``factor``ⁿ, at most ``maximum``, ±20 %."""

    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 5.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            # Jitter spreads out the runners that all lost the same server at once.
            yield delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
            delay = min(delay * self.factor, self.maximum)


class _RetryableError(Exception):
    """An attempt failed in a way that a later attempt may not."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(error.message)
        self.error = error


class RunnerClient:
    """One runner's authenticated channel to its server. Thread-safe: stage workers,
    heartbeat and upload threads share one instance (and its connection pool)."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        verify: bool | str = True,
        insecure: bool = False,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = check_server_url(server, insecure=insecure)
        self.backoff = backoff or Backoff()
        self._http = httpx.Client(
            base_url=self.server,
            headers={
                "User-Agent": USER_AGENT,
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
            },
            verify=tls_verify(verify),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the protocol --------------------------------------------------------------------------

    def poll(self, request: RunnerPoll) -> Lease | None:
        """Ask for a stage; the server may hold the request up to ``request.wait`` seconds.
        None when there is no work for this runner now."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=request.wait + _POLL_EXTRA_TIMEOUT)
        try:
            response = self._http.post(
                PATH_REQUEST, json=request.model_dump(mode="json"), timeout=timeout
            )
        except httpx.TransportError as exc:
            raise unreachable(self.server, exc) from exc
        if response.status_code == 204:
            return None
        try:
            self._check(response, stage_call=False)
        except _RetryableError as failure:
            raise failure.error from None  # the daemon's loop decides when to ask again
        return self._parse(response, Lease)

    def cleanup(
        self, *, retry_for: float | None = 0.0, stop: threading.Event | None = None
    ) -> CleanupReply:
        """The stages this runner held whose leases lapsed while it was away."""
        return self._retrying(
            "cleanup",
            lambda: self._parse(self._call("POST", PATH_RUNNER_CLEANUP), CleanupReply),
            retry_for,
            stop,
        )

    def stage(
        self,
        stage_id: int,
        lease_id: str,
        *,
        retry_for: float | None = 30.0,
        stop: threading.Event | None = None,
    ) -> StageDetails:
        path = PATH_STAGE.format(stage_id=int(stage_id))
        return self._retrying(
            f"stage {stage_id}: details",
            lambda: self._parse(self._call("GET", path, lease_id=lease_id), StageDetails),
            retry_for,
            stop,
        )

    def source(
        self,
        stage_id: int,
        lease_id: str,
        dest: Path,
        *,
        max_bytes: int = DEFAULT_MAX_SOURCE_BYTES,
        retry_for: float | None = 60.0,
        stop: threading.Event | None = None,
    ) -> int:
        """Download the stage's source (a git bundle) into ``dest``; the number of bytes."""
        path = PATH_SOURCE.format(stage_id=int(stage_id))

        def attempt() -> int:
            try:
                with self._http.stream("GET", path, headers={LEASE_HEADER: lease_id}) as response:
                    if response.status_code >= 400:
                        response.read()
                        self._check(response, stage_call=True)
                    size = 0
                    with dest.open("wb") as fh:
                        for chunk in response.iter_bytes():
                            size += len(chunk)
                            if size > max_bytes:
                                raise ClientError(
                                    0,
                                    f"stage {stage_id}: the source is larger than "
                                    f"{max_bytes >> 20} MiB; refusing to download more",
                                )
                            fh.write(chunk)
                    return size
            except httpx.TransportError as exc:
                raise _RetryableError(unreachable(self.server, exc)) from exc

        return self._retrying(f"stage {stage_id}: source", attempt, retry_for, stop)

    def heartbeat(
        self,
        stage_id: int,
        lease_id: str,
        *,
        retry_for: float | None = 5.0,
        stop: threading.Event | None = None,
    ) -> HeartbeatReply:
        path = PATH_HEARTBEAT.format(stage_id=int(stage_id))
        return self._retrying(
            f"stage {stage_id}: heartbeat",
            lambda: self._parse(self._call("POST", path, lease_id=lease_id), HeartbeatReply),
            retry_for,
            stop,
        )

    def steps(
        self,
        stage_id: int,
        lease_id: str,
        update: StepUpdate,
        *,
        retry_for: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        path = PATH_STEPS.format(stage_id=int(stage_id))
        body = update.model_dump(mode="json")
        self._retrying(
            f"stage {stage_id}: step {update.number}",
            lambda: self._call("POST", path, lease_id=lease_id, json=body),
            retry_for,
            stop,
        )

    def logs(
        self,
        stage_id: int,
        lease_id: str,
        batch: LogBatch,
        *,
        retry_for: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        path = PATH_LOGS.format(stage_id=int(stage_id))
        body = batch.model_dump(mode="json")
        self._retrying(
            f"stage {stage_id}: logs of step {batch.step}",
            lambda: self._call("POST", path, lease_id=lease_id, json=body),
            retry_for,
            stop,
        )

    def complete(
        self,
        stage_id: int,
        lease_id: str,
        result: StageResult,
        *,
        retry_for: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        path = PATH_COMPLETE.format(stage_id=int(stage_id))
        body = result.model_dump(mode="json")
        self._retrying(
            f"stage {stage_id}: complete",
            lambda: self._call("POST", path, lease_id=lease_id, json=body),
            retry_for,
            stop,
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, lease_id: str | None = None, json: Any = None
    ) -> httpx.Response:
        headers = {LEASE_HEADER: lease_id} if lease_id is not None else None
        try:
            response = self._http.request(method, path, json=json, headers=headers)
        except httpx.TransportError as exc:
            raise _RetryableError(unreachable(self.server, exc)) from exc
        self._check(response, stage_call=lease_id is not None)
        return response

    def _check(self, response: httpx.Response, *, stage_call: bool) -> None:
        status = response.status_code
        if status < 300:
            return
        if status < 400:
            raise_for_status(response)  # a redirect: refused, with where it pointed
        message = error_message(response)
        if status in _RETRY_STATUS:
            raise _RetryableError(UnreachableError(f"server {self.server}: {message}", status))
        if status == 401:
            raise UnauthorizedError(
                401,
                f"server {self.server} refused the runner token ({message}); it is wrong or "
                "was revoked: an admin creates a new one with `bastion runner add NAME`",
            )
        if stage_call and status in _LEASE_LOST_STATUS:
            raise LeaseLostError(status, message)
        raise ClientError(status, message)

    def _parse(self, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ClientError(
                response.status_code,
                f"server {self.server} sent a {model.__name__} this runner cannot read "
                f"({exc.error_count()} problems); are server and runner of compatible versions?",
            ) from None

    def _retrying(
        self,
        what: str,
        attempt: Callable[[], T],
        retry_for: float | None,
        stop: threading.Event | None,
    ) -> T:
        """Run ``attempt`` until it succeeds or raises something final. ``retry_for`` None:
        until ``stop`` is set (or a long default when there is no ``stop``); 0: once."""
        if retry_for is None and stop is None:
            retry_for = _DEFAULT_RETRY_FOR
        deadline = None if retry_for is None else time.monotonic() + retry_for
        delays = self.backoff.delays()
        attempts = 0
        while True:
            attempts += 1
            try:
                return attempt()
            except _RetryableError as failure:
                error = failure.error
            delay = next(delays)
            now = time.monotonic()
            out_of_time = deadline is not None and now + delay > deadline
            if out_of_time or (stop is not None and stop.is_set()):
                raise RetriesExhaustedError(
                    f"{what}: gave up after {attempts} attempts: {error.message}", error.status
                ) from None
            log.debug(
                "%s: attempt %d failed (%s); retrying in %.1f s", what, attempts, error, delay
            )
            if stop is not None:
                if stop.wait(delay):
                    raise RetriesExhaustedError(
                        f"{what}: stopped after {attempts} attempts: {error.message}",
                        error.status,
                    ) from None
            else:
                time.sleep(delay)
