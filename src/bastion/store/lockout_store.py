"""The store's part of brute-force protection: failed authentications and lockouts (0008).

``LockoutStore`` is a mixin of ``Store`` (``repository.py``) and uses its transactions. Keys
are opaque 64-character hex digests made by ``bastion.server.services.guard`` (a hash of the
source address or of the account name); the store never sees the names. Failures are rows
counted in a sliding window, so two servers sharing the database count the same attempts, and
a restart forgets nothing. Rows older than the window are deleted as new ones arrive, so the
table stays as small as the attack currently under way.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bastion.store.models import AuthFailureRow, AuthLockoutRow

_LOCKOUTS = AuthLockoutRow.__table__


class LockoutStore:
    """Failed-authentication counters and lockouts (see the module docstring)."""

    def _tx(self, *, write: bool = False, conflict: str = "") -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _core(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # provided by Store

    @staticmethod
    def _execute(session: Session, statement: Any) -> CursorResult[Any]:
        raise NotImplementedError  # provided by Store

    def record_auth_failure(self, keys: Sequence[str], at: int, since: int) -> dict[str, int]:
        """Count one failure at ``at`` against each key; return each key's failures at or
        after ``since`` (this one included). Failures older than ``since``, and lockouts that
        ended before it, are deleted."""
        with self._tx(write=True) as session:
            self._execute(session, delete(AuthFailureRow).where(AuthFailureRow.at < since))
            # A lockout that ended before the window began no longer extends a streak.
            self._execute(session, delete(AuthLockoutRow).where(AuthLockoutRow.until < since))
            session.add_all(AuthFailureRow(key=key, at=at) for key in keys)
            session.flush()
            rows = session.execute(
                select(AuthFailureRow.key, func.count())
                .where(AuthFailureRow.key.in_(list(keys)), AuthFailureRow.at >= since)
                .group_by(AuthFailureRow.key)
            ).all()
            return {key: int(count) for key, count in rows}

    def clear_auth_failures(self, key: str) -> None:
        """Forget the failures of ``key`` (a successful authentication of that account)."""
        with self._tx(write=True) as session:
            self._execute(session, delete(AuthFailureRow).where(AuthFailureRow.key == key))

    def lock_auth_key(self, key: str, now: int, seconds: int, *, streak_until: int) -> int:
        """Lock ``key`` for ``seconds`` (doubled for each lockout of the current streak) from
        ``now``; returns how many lockouts the streak counts now. A previous lockout that ended
        before ``streak_until`` no longer counts: the streak starts again at one. The key's
        failures are consumed by the lockout: once it ends, the next lockout needs a full
        window's limit of new failures (and then lasts twice as long)."""
        with self._tx(write=True) as session:
            self._execute(session, delete(AuthFailureRow).where(AuthFailureRow.key == key))
            row = session.get(AuthLockoutRow, key, with_for_update=True)
            if row is None:
                session.add(AuthLockoutRow(key=key, until=now + seconds, count=1))
                return 1
            count = 1 if row.until < streak_until else row.count + 1
            row.count = count
            row.until = max(row.until, now + seconds * 2 ** min(count - 1, 10))
            return count

    def auth_locked_until(self, keys: Sequence[str]) -> int:
        """The latest end of a lockout of any of ``keys`` (0 when none is recorded).

        Asked on every authenticated request, so through Core on a pooled connection: an ORM
        session costs several times this one-index read."""
        with self._core() as connection:
            until = connection.scalar(
                select(func.max(_LOCKOUTS.c.until)).where(_LOCKOUTS.c.key.in_(list(keys)))
            )
            return int(until or 0)

    def clear_auth_lockouts(self) -> int:
        """Lift every lockout and forget every failure (an administrator's reset); returns
        how many lockouts there were."""
        with self._tx(write=True) as session:
            lifted = self._execute(session, delete(AuthLockoutRow)).rowcount
            self._execute(session, delete(AuthFailureRow))
            return int(lifted or 0)
