"""The store's deployment environments (migration 0010): create or replace, read, list,
delete. ``EnvironmentStore`` is a mixin of ``Store`` (``repository.py``) and uses its
transactions."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bastion.store.models import EnvironmentRow
from bastion.store.types import Environment


def _environment(row: EnvironmentRow) -> Environment:
    return Environment(
        id=row.id,
        repo_id=row.repo_id,
        name=row.name,
        branches=tuple(str(b) for b in row.branches or ()),
        approval=row.approval,
        approvers=tuple(str(a) for a in row.approvers or ()),
        created=row.created,
        updated=row.updated,
    )


class EnvironmentStore:
    """Deployment environments in the ``environments`` table."""

    def _tx(self, *, write: bool = False, conflict: str = "") -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _now(self) -> int:
        raise NotImplementedError  # provided by Store

    def put_environment(
        self,
        repo_id: int,
        name: str,
        *,
        branches: Sequence[str],
        approval: bool,
        approvers: Sequence[str],
    ) -> Environment:
        """Create ``name`` for ``repo_id``, or replace its rules."""
        with self._tx(write=True, conflict=f"environment {name} changed concurrently") as s:
            now = self._now()
            row = s.execute(
                select(EnvironmentRow).where(
                    EnvironmentRow.repo_id == repo_id, EnvironmentRow.name == name
                )
            ).scalar_one_or_none()
            if row is None:
                row = EnvironmentRow(repo_id=repo_id, name=name, created=now)
                s.add(row)
            row.branches = list(branches)
            row.approval = approval
            row.approvers = list(approvers)
            row.updated = now
            s.flush()
            return _environment(row)

    def get_environment(self, repo_id: int, name: str) -> Environment | None:
        with self._tx() as s:
            row = s.execute(
                select(EnvironmentRow).where(
                    EnvironmentRow.repo_id == repo_id, EnvironmentRow.name == name
                )
            ).scalar_one_or_none()
            return None if row is None else _environment(row)

    def list_environments(self, repo_id: int) -> list[Environment]:
        with self._tx() as s:
            rows = s.execute(
                select(EnvironmentRow)
                .where(EnvironmentRow.repo_id == repo_id)
                .order_by(EnvironmentRow.name)
            ).scalars()
            return [_environment(r) for r in rows]

    def delete_environment(self, repo_id: int, name: str) -> bool:
        with self._tx(write=True) as s:
            result = s.execute(
                delete(EnvironmentRow).where(
                    EnvironmentRow.repo_id == repo_id, EnvironmentRow.name == name
                )
            )
            return bool(getattr(result, "rowcount", 0))
