"""The store's part of held builds: repositories' configuration signing keys, and the atomic
release of a blocked build (approve or decline).

``ApprovalStore`` is a mixin of ``Store`` (``repository.py``) and uses its transactions.

A repository's signing key is 32 random bytes, made on first use and stored as AES-GCM
ciphertext bound to the repository (``repo-signing-key:<id>``), so a key copied to another
repository's row does not decrypt. Two servers making it at once agree on one: the key is
written only where none is stored yet, and everyone reads back what was written.

Releasing a held build is a compare-and-set on the ``blocked`` status of its stages and of
the build, in one transaction: of two concurrent approvals (or an approval racing a decline
or a cancel), exactly one changes anything, and the other is told nothing was blocked.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from bastion.crypto import DecryptError, SecretBox
from bastion.store.errors import NotFound, StoreError
from bastion.store.models import BuildRow, RepoRow, StageRow
from bastion.store.types import Status

SIGNING_KEY_BYTES = 32


def signing_key_aad(repo_id: int) -> bytes:
    return f"repo-signing-key:{repo_id}".encode()


class ApprovalStore:
    """Signing keys (``repos.signing_key``) and held builds (``builds.hold``), migration 0005."""

    _box: SecretBox  # provided by Store

    def _tx(self, *, write: bool = False, conflict: str = "") -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _now(self) -> int:
        raise NotImplementedError  # provided by Store

    @staticmethod
    def _execute(session: Session, statement: Any) -> CursorResult[Any]:
        raise NotImplementedError  # provided by Store

    def repo_signing_key(self, repo_id: int) -> bytes:
        """The key that signs ``repo_id``'s configuration, made (and stored) on first use."""
        fresh = self._box.encrypt(secrets.token_bytes(SIGNING_KEY_BYTES), signing_key_aad(repo_id))
        with self._tx(write=True) as session:
            self._execute(
                session,
                update(RepoRow)
                .where(RepoRow.id == repo_id, RepoRow.signing_key.is_(None))
                .values(signing_key=fresh),
            )
            blob = session.execute(
                select(RepoRow.signing_key).where(RepoRow.id == repo_id)
            ).scalar_one_or_none()
        if blob is None:
            raise NotFound(f"repository {repo_id} does not exist")
        try:
            return self._box.decrypt(blob, signing_key_aad(repo_id))
        except DecryptError as exc:
            raise StoreError(
                f"the configuration signing key of repository {repo_id} cannot be decrypted: {exc}"
            ) from exc

    def release_held_build(
        self, build_id: int, *, approve: bool, stage_number: int | None, error: str
    ) -> bool:
        """Approve or decline the ``blocked`` stages of a blocked build (only stage
        ``stage_number`` when given). Approved stages become ``pending`` (no dependencies) or
        ``waiting_on_dependencies``; declined ones ``declined`` with ``error``. The build
        leaves ``blocked`` once no stage is blocked: ``pending`` when an approved stage is
        left to run (the state machine takes it on; a declined stage still makes it end
        ``declined``), otherwise ``declined``. False, and nothing changed, when nothing
        matching was blocked."""
        with self._tx(write=True) as session:
            now = self._now()
            build_status = session.execute(
                select(BuildRow.status).where(BuildRow.id == build_id)
            ).scalar_one_or_none()
            if build_status != Status.BLOCKED.value:
                return False
            query = select(StageRow.id, StageRow.depends_on).where(
                StageRow.build_id == build_id, StageRow.status == Status.BLOCKED.value
            )
            if stage_number is not None:
                query = query.where(StageRow.number == stage_number)
            changed = 0
            for stage_id, depends_on in session.execute(query).all():
                if approve:
                    status = Status.WAITING if depends_on else Status.PENDING
                    values: dict[str, Any] = {"status": status.value, "error": "", "updated": now}
                else:
                    values = {
                        "status": Status.DECLINED.value,
                        "error": error,
                        "stopped": now,
                        "updated": now,
                    }
                changed += self._execute(
                    session,
                    update(StageRow)
                    .where(StageRow.id == stage_id, StageRow.status == Status.BLOCKED.value)
                    .values(**values),
                ).rowcount
            if not changed:
                return False
            still_blocked = session.execute(
                select(StageRow.id)
                .where(StageRow.build_id == build_id, StageRow.status == Status.BLOCKED.value)
                .limit(1)
            ).first()
            if still_blocked is None:
                # Something approved (now or earlier) still has to run: the build goes on.
                approved = session.execute(
                    select(StageRow.id)
                    .where(
                        StageRow.build_id == build_id,
                        StageRow.status.in_([Status.PENDING.value, Status.WAITING.value]),
                    )
                    .limit(1)
                ).first()
                build_values: dict[str, Any] = {"hold": "", "updated": now}
                if approved is not None:
                    build_values.update(status=Status.PENDING.value, error="")
                else:
                    build_values.update(status=Status.DECLINED.value, error=error, finished=now)
                self._execute(
                    session,
                    update(BuildRow)
                    .where(BuildRow.id == build_id, BuildRow.status == Status.BLOCKED.value)
                    .values(**build_values),
                )
            return True
