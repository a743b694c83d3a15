"""Heartbeats: renewal, cancel from the server, a lost lease, a lease that lapses."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from tests.unit.runner.factories import lease

from bastion.client import Backoff, RunnerClient
from bastion.runner.lease import LeaseKeeper


class Beats:
    def __init__(self) -> None:
        self.count = 0
        self.cancel = False
        self.status = 200
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        self.paths.append(request.url.path)
        if self.status == 0:
            raise httpx.ConnectError("refused", request=request)
        if self.status != 200:
            return httpx.Response(self.status, json={"message": "no"})
        return httpx.Response(200, json={"cancel": self.cancel, "expires_in": 1.0})


def keeper_for(beats: Beats, expires_in: float = 30.0, grace: float | None = None) -> LeaseKeeper:
    rpc = RunnerClient(
        "http://127.0.0.1:1",
        "t" * 20,
        backoff=Backoff(initial=0.01, maximum=0.02),
        transport=httpx.MockTransport(beats),
    )
    keeper = LeaseKeeper(
        rpc,
        lease(7, expires_in=expires_in, heartbeat_interval=0.05),
        threading.Event(),
        threading.Event(),
        upload_grace=grace,
    )
    keeper.start()
    return keeper


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_heartbeats_renew_until_stopped() -> None:
    beats = Beats()
    keeper = keeper_for(beats)
    assert wait_for(lambda: beats.count >= 3)
    keeper.stop()
    count = beats.count
    time.sleep(0.2)
    assert beats.count == count
    assert set(beats.paths) == {"/rpc/v1/stages/7/heartbeat"}
    assert not keeper.cancel.is_set()


def test_cancel_from_the_server_sets_the_cancel_event() -> None:
    beats = Beats()
    beats.cancel = True
    keeper = keeper_for(beats)
    assert keeper.cancel.wait(5)
    assert keeper.cancelled
    assert not keeper.give_up.is_set()  # the result is still reported
    keeper.stop()


def test_a_lost_lease_stops_everything() -> None:
    beats = Beats()
    beats.status = 409
    keeper = keeper_for(beats)
    assert keeper.give_up.wait(5)
    assert keeper.lost
    assert keeper.cancel.is_set()
    keeper.stop()


def test_an_unreachable_server_lapses_the_lease_then_gives_up() -> None:
    beats = Beats()
    beats.status = 0
    keeper = keeper_for(beats, expires_in=0.3, grace=0.3)
    assert keeper.cancel.wait(5)
    assert keeper.lapsed
    assert not keeper.lost
    assert keeper.give_up.wait(5)
    keeper.stop()


def test_a_short_outage_within_the_lease_changes_nothing() -> None:
    beats = Beats()
    beats.status = 503
    keeper = keeper_for(beats, expires_in=30.0)
    assert wait_for(lambda: beats.count >= 3)
    beats.status = 200
    time.sleep(0.2)
    assert not keeper.cancel.is_set()
    assert not keeper.lapsed
    keeper.stop()


def test_a_heartbeat_refused_after_complete_was_sent_is_no_lost_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`complete` ends the lease on the server; a heartbeat racing it gets 409. That is the
    expected end, not a lost lease: no warning, nothing stopped, no more heartbeats."""
    beats = Beats()
    keeper = keeper_for(beats)
    assert wait_for(lambda: beats.count >= 1)
    with caplog.at_level(logging.WARNING, logger="bastion.runner.lease"):
        keeper.completing.set()  # what StageRun._finish does just before `complete`
        beats.status = 409
        keeper._thread.join(5)  # the keeper ends by itself on the refusal
        assert not keeper._thread.is_alive()
    count = beats.count
    time.sleep(0.2)
    assert beats.count == count  # no more heartbeats
    assert not keeper.lost
    assert not keeper.cancel.is_set()
    assert not keeper.give_up.is_set()
    assert not [r for r in caplog.records if "lease lost" in r.getMessage()]
    keeper.stop()
