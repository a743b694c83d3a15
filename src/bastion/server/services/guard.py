"""``AuthGuard``: rate limits and lockout for failed logins and bad tokens (``ctx.guard``).

Every authentication path asks :meth:`AuthGuard.check` before it looks at a credential,
reports :meth:`AuthGuard.failure` when the credential did not work and
:meth:`AuthGuard.success` when it did. Failures are counted per *source* (the client address)
and per *account* (the login name asked for, whether or not such an account exists) in a
sliding window; reaching a limit locks that source or that account, doubling the lock for each
further lockout of a streak. A locked source or account is answered 429 with ``Retry-After``
before any credential is looked at, so a locked source cannot probe even a valid token: the
lockout is on the source, not on the token's user (an attacker who shares an address with a
user — a NAT, a proxy not listed in BASTION_TRUSTED_PROXIES — locks that user out for the
lock's duration; the price of not letting the attacker learn which of its guesses worked).

Nothing here says whether an account exists: the account's key is a hash of the name asked
for, counted and locked the same way for a name that matches no user, and the 429 message
never names the account. Keys are SHA-256 digests (``source:<address>``, ``account:<login>``
lowercased), so the store never holds a typed name or password. Each lockout is an
``auth.lockout`` audit event; the counters live in the database (``LockoutStore``), so they
hold across restarts and between servers sharing it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import Request

from bastion.server.errors import ServerError
from bastion.server.services.audit import AuditLog
from bastion.server.settings import ServerSettings
from bastion.store.errors import StoreError
from bastion.store.repository import Store

log = logging.getLogger("bastion.server")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
TOO_MANY = "too many failed authentication attempts; try again later"


class TooManyAttempts(ServerError):  # noqa: N818 - the name of the interface
    """The source or the account is locked: HTTP 429 with ``Retry-After`` (seconds)."""

    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(TOO_MANY)
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True)
class GuardPolicy:
    """Limits of the sliding windows, the length of a lockout (seconds), and the reverse
    proxies whose ``X-Forwarded-For`` names the source."""

    window: int = 300
    account_limit: int = 10
    source_limit: int = 50
    lock_seconds: int = 900
    trusted_proxies: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> GuardPolicy:
        proxies = tuple(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in settings.trusted_proxies.split(",")
            if item.strip()
        )
        return cls(
            window=settings.auth_window_seconds,
            account_limit=settings.auth_account_limit,
            source_limit=settings.auth_source_limit,
            lock_seconds=settings.auth_lockout_seconds,
            trusted_proxies=proxies,
        )


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def source_address(peer: str, forwarded_for: str, trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    right-most address of ``X-Forwarded-For`` that is not itself a trusted proxy (the entries
    left of it were written by the client and prove nothing)."""
    current = _address(peer)
    if current is None:
        return peer or "unknown"
    hops = [h for h in forwarded_for.split(",") if h.strip()] if forwarded_for else []
    while hops and any(current in net for net in trusted):
        previous = _address(hops.pop())
        if previous is None:
            break  # a malformed entry: the last proxy is as far back as we can trust
        current = previous
    return str(current)


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def source_key(source: str) -> str:
    """The key of a source address; an IPv6 address counts as its /64, which one holder
    usually has whole (rotating addresses inside it must not escape the limit)."""
    address = _address(source)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return _key("source", str(ipaddress.ip_network(f"{address}/64", strict=False)))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _key("source", str(address.ipv4_mapped))
    return _key("source", source)


def account_key(account: str) -> str:
    return _key("account", account.strip().lower())


class AuthGuard:
    """Counts failed authentications and refuses locked sources and accounts."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        clock: Callable[[], float],
        policy: GuardPolicy | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self.policy = policy or GuardPolicy()

    def source(self, request: Request) -> str:
        """The address a request comes from (X-Forwarded-For only from trusted proxies)."""
        peer = request.client.host if request.client else ""
        forwarded = request.headers.get("x-forwarded-for", "")
        return source_address(peer, forwarded, self.policy.trusted_proxies)

    def _keys(self, source: str, account: str) -> list[str]:
        keys = [source_key(source)]
        if account:
            keys.append(account_key(account))
        return keys

    def check(self, source: str, account: str = "") -> None:
        """Raise ``TooManyAttempts`` when ``source`` or ``account`` is locked."""
        now = int(self._clock())
        until = self._store.auth_locked_until(self._keys(source, account))
        if until > now:
            raise TooManyAttempts(until - now)

    def failure(self, source: str, account: str = "", reason: str = "") -> None:
        """Count a failed attempt from ``source`` for ``account`` ("" when no account was
        named, e.g. an unknown token); lock what reached its limit (audited)."""
        policy = self.policy
        now = int(self._clock())
        skey = source_key(source)
        akey = account_key(account) if account else ""
        keys = [skey, akey] if akey else [skey]
        try:
            counts = self._store.record_auth_failure(keys, now, now - policy.window + 1)
        except StoreError:
            log.exception("could not record a failed authentication from %s", source)
            return
        limits = [(skey, "source", policy.source_limit)]
        if akey:
            limits.append((akey, "account", policy.account_limit))
        for key, scope, limit in limits:
            failures = counts.get(key, 0)
            if failures < limit:
                continue
            try:
                streak = self._store.lock_auth_key(
                    key, now, policy.lock_seconds, streak_until=now - policy.window
                )
                until = self._store.auth_locked_until([key])
            except StoreError:
                log.exception("could not lock %s %s", scope, source)
                continue
            self._audit.record(
                "auth.lockout",
                actor=account if scope == "account" else "",
                detail={
                    "locked": scope,
                    "source": source,
                    "account": account,
                    "failures": failures,
                    "reason": reason,
                    "until": until,
                    "streak": streak,
                },
            )
            log.warning(
                "authentication locked for %s (%s failures) until %s", scope, failures, until
            )

    def success(self, source: str, account: str) -> None:
        """A credential of ``account`` worked: its failure counter starts again at zero.
        The source's counter is kept (one good login must not launder a source's guesses)."""
        del source
        try:
            self._store.clear_auth_failures(account_key(account))
        except StoreError:
            log.exception("could not reset the failure counter of an account")
