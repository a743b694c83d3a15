"""The store's audit events: append, query (filters and pagination, newest first), purge.

``AuditStore`` is a mixin of ``Store`` (``repository.py``) and uses its transactions; it is
split out only to keep that module small. Events are append-only: there is no update, and
the only delete is the retention purge. Filters are the ones the admin API offers; ``kind`` is
a prefix match on the dotted kind, escaped so that ``_`` and ``%`` in a filter match
themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from bastion.store.models import AuditEventRow
from bastion.store.types import AuditEvent, AuditQuery

MAX_AUDIT_PAGE = 1000
_KIND_MAX = 64


class AuditStore:
    """Audit events in the ``audit_events`` table (migration 0004)."""

    def _tx(self, *, write: bool = False, conflict: str = "") -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _now(self) -> int:
        raise NotImplementedError  # provided by Store

    @staticmethod
    def _execute(session: Session, statement: Any) -> CursorResult[Any]:
        raise NotImplementedError  # provided by Store

    def add_audit_event(
        self,
        kind: str,
        *,
        actor: str = "",
        repo: str = "",
        build: int | None = None,
        stage: int | None = None,
        step: str = "",
        runner: str = "",
        secret: str = "",
        detail: Mapping[str, object] | None = None,
        when: int | None = None,
    ) -> AuditEvent:
        """Append one event (``when`` defaults to now) and return it."""
        if not kind or len(kind) > _KIND_MAX:
            raise ValueError(f"audit event kind must be 1 to {_KIND_MAX} characters")
        with self._tx(write=True) as session:
            row = AuditEventRow(
                created=self._now() if when is None else when,
                kind=kind,
                actor=actor[:255],
                repo=repo[:511],
                build=build,
                stage=stage,
                step=step[:255],
                runner=runner[:255],
                secret=secret[:255],
                detail=dict(detail or {}),
            )
            session.add(row)
            session.flush()
            return _event(row)

    def list_audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        """Events matching every filter of ``query``, newest first, at most ``query.limit``
        (capped at ``MAX_AUDIT_PAGE``)."""
        if not 1 <= query.limit <= MAX_AUDIT_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_AUDIT_PAGE}, not {query.limit}")
        statement = select(AuditEventRow)
        if query.kind:
            pattern = query.kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(AuditEventRow.kind.like(pattern + "%", escape="\\"))
        if query.repo:
            statement = statement.where(AuditEventRow.repo == query.repo)
        if query.build is not None:
            statement = statement.where(AuditEventRow.build == query.build)
        if query.secret:
            statement = statement.where(AuditEventRow.secret == query.secret)
        if query.since is not None:
            statement = statement.where(AuditEventRow.created >= query.since)
        if query.until is not None:
            statement = statement.where(AuditEventRow.created < query.until)
        if query.before_id is not None:
            statement = statement.where(AuditEventRow.id < query.before_id)
        statement = statement.order_by(AuditEventRow.id.desc()).limit(query.limit)
        with self._tx() as session:
            return [_event(row) for row in session.scalars(statement)]

    def purge_audit_events(self, before: int) -> int:
        """Delete the events created before ``before`` (retention); returns how many."""
        with self._tx(write=True) as session:
            result = self._execute(
                session, delete(AuditEventRow).where(AuditEventRow.created < before)
            )
            return result.rowcount


def _event(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        created=row.created,
        kind=row.kind,
        actor=row.actor,
        repo=row.repo,
        build=row.build,
        stage=row.stage,
        step=row.step,
        runner=row.runner,
        secret=row.secret,
        detail=dict(row.detail or {}),
    )
