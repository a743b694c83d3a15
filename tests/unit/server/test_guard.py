"""AuthGuard on the real store: sliding windows per source and per account, lockout with
backoff, audit events, resets, and answers that do not depend on whether an account exists."""

from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import text

from bastion.server.services.audit import AuditLog
from bastion.server.services.guard import (
    AuthGuard,
    GuardPolicy,
    TooManyAttempts,
    source_address,
    source_key,
)
from bastion.store import Store
from bastion.store.types import AuditQuery


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


POLICY = GuardPolicy(window=300, account_limit=3, source_limit=5, lock_seconds=60)


def make(store: Store) -> tuple[AuthGuard, Clock]:
    clock = Clock()
    return AuthGuard(store, AuditLog(store), clock, POLICY), clock


def lockouts(store: Store) -> list[dict[str, object]]:
    events = store.list_audit_events(AuditQuery(kind="auth.lockout"))
    return [dict(e.detail) for e in reversed(events)]


def test_account_locked_after_limit_and_audited(store: Store) -> None:
    guard, clock = make(store)
    for i in range(3):
        guard.check(f"10.0.0.{i}", "alice")
        guard.failure(f"10.0.0.{i}", "alice", "bad password")
    with pytest.raises(TooManyAttempts) as caught:
        guard.check("10.9.9.9", "Alice")  # another source, the name in another case
    assert caught.value.status_code == 429
    assert 0 < caught.value.retry_after <= 60
    assert "alice" not in caught.value.message.lower()
    events = lockouts(store)
    assert len(events) == 1
    assert events[0]["locked"] == "account"
    assert events[0]["failures"] == 3
    guard.check("10.9.9.9", "bob")  # other accounts are not affected
    clock.now += 61
    guard.check("10.9.9.9", "alice")


def test_source_locked_for_every_account(store: Store) -> None:
    guard, _ = make(store)
    for i in range(5):
        guard.failure("192.0.2.7", f"user{i}", "bad password")
    with pytest.raises(TooManyAttempts):
        guard.check("192.0.2.7", "someone-else")
    with pytest.raises(TooManyAttempts):
        guard.check("192.0.2.7")
    guard.check("192.0.2.8", "someone-else")
    assert [e["locked"] for e in lockouts(store)] == ["source"]


def test_window_slides(store: Store) -> None:
    guard, clock = make(store)
    guard.failure("s", "carol")
    guard.failure("s", "carol")
    clock.now += 301  # the first two left the window
    guard.failure("s", "carol")
    guard.check("s", "carol")
    assert lockouts(store) == []


def test_success_resets_the_account_not_the_source(store: Store) -> None:
    guard, _ = make(store)
    guard.failure("s", "dave")
    guard.failure("s", "dave")
    guard.success("s", "dave")
    guard.failure("s", "dave")
    guard.failure("s", "dave")
    guard.check("s", "dave")  # 2 since the reset, limit 3
    guard.failure("s", "dave")  # source: 5th failure
    with pytest.raises(TooManyAttempts):
        guard.check("s", "")


def test_lockouts_of_a_streak_double(store: Store) -> None:
    guard, clock = make(store)
    for _ in range(3):
        guard.failure("a", "erin")
    with pytest.raises(TooManyAttempts) as first:
        guard.check("b", "erin")
    clock.now += first.value.retry_after
    for _ in range(3):
        guard.failure("c", "erin")
    with pytest.raises(TooManyAttempts) as second:
        guard.check("d", "erin")
    assert second.value.retry_after == 2 * POLICY.lock_seconds
    assert [e["streak"] for e in lockouts(store)] == [1, 2]


def test_unknown_and_known_accounts_answer_alike(store: Store) -> None:
    store.create_user("frank")
    guard, _ = make(store)
    answers = []
    for name in ("frank", "nobody-by-that-name"):
        for _ in range(3):
            guard.failure(f"src-{name}", name)
        with pytest.raises(TooManyAttempts) as caught:
            guard.check("elsewhere", name)
        answers.append((caught.value.status_code, caught.value.message, caught.value.retry_after))
    assert answers[0] == answers[1]


def test_counters_hold_across_guards_sharing_the_store(store: Store) -> None:
    one, clock = make(store)
    two = AuthGuard(store, AuditLog(store), clock, POLICY)  # a second server, or a restart
    one.failure("s", "gina")
    two.failure("s", "gina")
    one.failure("s", "gina")
    with pytest.raises(TooManyAttempts):
        two.check("t", "gina")


def test_no_name_is_stored_in_clear(store: Store) -> None:
    guard, _ = make(store)
    guard.failure("203.0.113.5", "hunter2-typed-as-login")
    with store._tx() as session:  # the raw rows, on purpose
        keys = [row[0] for row in session.execute(text("SELECT key FROM auth_failures"))]
    assert len(keys) == 2
    assert all("hunter2" not in k and "203.0.113" not in k and len(k) == 64 for k in keys)


PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "source"),
    [
        ("192.0.2.1", "", "192.0.2.1"),
        ("192.0.2.1", "198.51.100.1", "192.0.2.1"),  # not a proxy: the header is ignored
        ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client wrote 6.6.6.6
        ("10.0.0.5", "198.51.100.1, 10.0.0.9", "198.51.100.1"),  # two proxies in a row
        ("10.0.0.5", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # all proxies: the farthest one
        ("10.0.0.5", "garbage, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "198.51.100.1, garbage", "10.0.0.5"),  # stop at what cannot be read
        ("10.0.0.5", "", "10.0.0.5"),
        ("::1", "2001:db8::7", "2001:db8::7"),
        ("", "198.51.100.1", "unknown"),
    ],
)
def test_source_address(peer: str, forwarded: str, source: str) -> None:
    assert source_address(peer, forwarded, PROXIES) == source


def test_ipv6_sources_count_per_64(store: Store) -> None:
    guard, _ = make(store)
    for i in range(5):  # five addresses of one /64
        guard.failure(f"2001:db8:1:2::{i + 1:x}", "", "unknown token")
    with pytest.raises(TooManyAttempts):
        guard.check("2001:db8:1:2:ffff::9")
    guard.check("2001:db8:1:3::1")  # the next /64 is someone else
    assert source_key("::ffff:192.0.2.1") == source_key("192.0.2.1")
