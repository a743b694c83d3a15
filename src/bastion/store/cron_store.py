"""The store's cron jobs: create, read, change and delete them, and claim a due one.

``CronStore`` is a mixin of ``Store`` (``repository.py``) and uses its transactions; the
``Cron`` dataclass it returns lives here with it. Claiming is the only subtle part:
:meth:`CronStore.claim_cron` moves ``next`` forward with a compare-and-set on the value the
caller read (``UPDATE ... WHERE next = :seen``), so of any number of servers that saw the same
due job, exactly one gets to fire it, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from bastion.store.errors import NotFound
from bastion.store.models import CronRow

_CHANGEABLE = frozenset({"expr", "branch", "disabled", "next", "error"})
MAX_DUE = 100  # due jobs handed out per round; the rest wait for the next round


@dataclass(frozen=True)
class Cron:
    """A repository's cron job; times are Unix seconds, 0 meaning never."""

    id: int
    repo_id: int
    name: str
    expr: str
    branch: str
    disabled: bool
    next: int
    prev: int
    error: str
    created: int
    updated: int


def _cron(row: CronRow) -> Cron:
    return Cron(
        id=row.id,
        repo_id=row.repo_id,
        name=row.name,
        expr=row.expr,
        branch=row.branch,
        disabled=row.disabled,
        next=row.next,
        prev=row.prev,
        error=row.error,
        created=row.created,
        updated=row.updated,
    )


class CronStore:
    """Cron jobs in the ``crons`` table (migration 0009)."""

    def _tx(self, *, write: bool = False, conflict: str = "") -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _now(self) -> int:
        raise NotImplementedError  # provided by Store

    @staticmethod
    def _execute(session: Session, statement: Any) -> CursorResult[Any]:
        raise NotImplementedError  # provided by Store

    def create_cron(
        self, repo_id: int, *, name: str, expr: str, branch: str, disabled: bool, next_run: int
    ) -> Cron:
        """A new job; ``Conflict`` when the repository already has one of that name."""
        with self._tx(write=True, conflict=f"a cron job named {name!r} already exists") as s:
            now = self._now()
            row = CronRow(
                repo_id=repo_id,
                name=name,
                expr=expr,
                branch=branch,
                disabled=disabled,
                next=next_run,
                prev=0,
                error="",
                created=now,
                updated=now,
            )
            s.add(row)
            s.flush()
            return _cron(row)

    def get_cron(self, repo_id: int, name: str) -> Cron | None:
        with self._tx() as session:
            row = session.execute(
                select(CronRow).where(CronRow.repo_id == repo_id, CronRow.name == name)
            ).scalar_one_or_none()
            return None if row is None else _cron(row)

    def get_cron_by_id(self, cron_id: int) -> Cron | None:
        with self._tx() as session:
            row = session.get(CronRow, cron_id)
            return None if row is None else _cron(row)

    def list_crons(self, repo_id: int) -> list[Cron]:
        with self._tx() as session:
            rows = session.execute(
                select(CronRow).where(CronRow.repo_id == repo_id).order_by(CronRow.name)
            ).scalars()
            return [_cron(row) for row in rows]

    def update_cron(self, cron_id: int, **changes: object) -> Cron:
        """Change ``expr``, ``branch``, ``disabled``, ``next`` or ``error``."""
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"not a changeable cron field: {', '.join(sorted(unknown))}")
        with self._tx(write=True) as session:
            row = session.get(CronRow, cron_id)
            if row is None:
                raise NotFound(f"cron job {cron_id} does not exist")
            for field_name, value in changes.items():
                setattr(row, field_name, value)
            row.updated = self._now()
            session.flush()
            return _cron(row)

    def delete_cron(self, cron_id: int) -> None:
        with self._tx(write=True) as session:
            result = self._execute(session, delete(CronRow).where(CronRow.id == cron_id))
            if not result.rowcount:
                raise NotFound(f"cron job {cron_id} does not exist")

    def due_crons(self, now: int, *, limit: int = MAX_DUE) -> list[Cron]:
        """Enabled jobs whose ``next`` has come (oldest first)."""
        with self._tx() as session:
            rows = session.execute(
                select(CronRow)
                .where(
                    CronRow.disabled.is_(False),
                    CronRow.next > 0,
                    CronRow.next <= now,
                )
                .order_by(CronRow.next, CronRow.id)
                .limit(limit)
            ).scalars()
            return [_cron(row) for row in rows]

    def claim_cron(self, cron_id: int, *, seen_next: int, new_next: int) -> bool:
        """Move a due job's ``next`` from ``seen_next`` to ``new_next`` and set ``prev`` to
        now, only if nobody did it first (and it is still enabled). True: the caller fires it;
        False: another server (or an edit) got there first, and nothing changed."""
        with self._tx(write=True) as session:
            now = self._now()
            result = self._execute(
                session,
                update(CronRow)
                .where(
                    CronRow.id == cron_id,
                    CronRow.next == seen_next,
                    CronRow.disabled.is_(False),
                )
                .values(next=new_next, prev=now, updated=now),
            )
            return bool(result.rowcount)
