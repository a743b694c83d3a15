"""Keep a stage's lease alive with heartbeats, and stop the stage when it is not ours.

A heartbeat every ``Lease.heartbeat_interval`` seconds (at most ``MAX_INTERVAL``) renews the
lease; its reply may say the build was cancelled, and then the stage's cancel event is set at
once, so the executor stops the containers within about one heartbeat interval.

When the server cannot be reached, the runner keeps running the stage only as long as the
lease would still be valid (measured conservatively from when the last successful heartbeat
was *sent*): after that the server has given the stage away (it ends as ``error`` there),
so running on would only waste the host and could double-run a deploy. The keeper then
cancels the stage (``lapsed``). Uploads may still be delivered for ``upload_grace`` more
seconds, in case the server was only restarting and kept the lease; then ``give_up`` is set
and everything about the stage stops. A 403/404/409/410 answer (``lost``) or a refused token
stops everything at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bastion.client import ClientError, LeaseLostError, RunnerClient, UnauthorizedError
from bastion.rpc.messages import Lease

log = logging.getLogger("bastion.runner.lease")

_MIN_INTERVAL = 0.2
# A cancel reaches the runner only with a heartbeat reply, and "cancel → containers gone
# within 10 s" must hold: beat at least this often, even if the server asks for less.
MAX_INTERVAL = 3.0


class LeaseKeeper:
    """The heartbeat thread of one stage."""

    def __init__(
        self,
        rpc: RunnerClient,
        lease: Lease,
        cancel: threading.Event,
        give_up: threading.Event,
        *,
        clock: Callable[[], float] = time.monotonic,
        upload_grace: float | None = None,
    ) -> None:
        self.rpc = rpc
        self.lease = lease
        self.cancel = cancel
        self.give_up = give_up
        self.clock = clock
        self.interval = min(max(lease.heartbeat_interval, _MIN_INTERVAL), MAX_INTERVAL)
        self.upload_grace = lease.expires_in if upload_grace is None else upload_grace
        self.expires_at = clock() + lease.expires_in
        self.cancelled = False  # the server asked to stop (the build was cancelled)
        self.lapsed = False  # no contact for longer than the lease: the server gave it away
        self.lost = False  # the server said the lease is not ours (or refused our token)
        self.last_error = ""
        # Set just before `complete` is sent: the server ends the lease when it accepts the
        # result, so a heartbeat racing it is refused as expected, not as a lost lease.
        self.completing = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-stage-{lease.stage_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _run(self) -> None:
        stage = self.lease.stage_id
        while not self._stopped.wait(self.interval):
            sent = self.clock()
            try:
                reply = self.rpc.heartbeat(
                    stage,
                    self.lease.lease_id,
                    retry_for=min(self.interval, 5.0),
                    stop=self._stopped,
                )
            except (LeaseLostError, UnauthorizedError) as exc:
                if self.completing.is_set() and isinstance(exc, LeaseLostError):
                    return  # `complete` ended the lease; nothing is lost
                log.warning("stage %d: lease lost (%s); stopping the stage", stage, exc)
                self.lost = True
                self.last_error = exc.message
                self.cancel.set()
                self.give_up.set()
                return
            except ClientError as exc:
                self.last_error = exc.message
                self._unreachable(stage)
                continue
            self.expires_at = sent + reply.expires_in
            if reply.cancel and not self.cancelled:
                log.info("stage %d: cancelled by the server; stopping its containers", stage)
                self.cancelled = True
                self.cancel.set()

    def _unreachable(self, stage: int) -> None:
        now = self.clock()
        if now >= self.expires_at and not self.lapsed:
            log.error(
                "stage %d: no contact with the server for longer than the lease (%s); "
                "stopping the stage",
                stage,
                self.last_error,
            )
            self.lapsed = True
            self.cancel.set()
        if now >= self.expires_at + self.upload_grace and not self.give_up.is_set():
            log.error("stage %d: giving up on reporting to the server", stage)
            self.give_up.set()
