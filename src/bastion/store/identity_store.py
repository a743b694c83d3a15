"""The store's part of identity: forge accounts, login sessions, logins in progress and
repository permissions (migration 0007).

``IdentityStore`` is a mixin of ``Store`` (``repository.py``) and uses its transactions. Secret
values never reach the database in the clear: sessions, CSRF tokens, OAuth states and login
links are stored as SHA-256 hashes of 256-bit random values (the caller hashes them), and the
forge OAuth token and the PKCE verifier as AES-GCM ciphertext bound to their row's owner.

A login state is taken at most once: ``take_login_state`` deletes the row it read and succeeds
only if that delete removed it, so two requests replaying one ``state`` (or one login link)
cannot both log in, also with two servers on one PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from bastion.crypto import DecryptError, SecretBox
from bastion.store import _convert
from bastion.store.errors import NotFound
from bastion.store.models import (
    ForgeAccountRow,
    LoginStateRow,
    RepoPermissionRow,
    SessionRow,
    UserRow,
)
from bastion.store.types import Scope, User


@dataclass(frozen=True)
class ForgeAccount:
    user_id: int
    forge: str
    forge_user_id: str
    forge_login: str
    access_token: str  # "" when none is stored (or it no longer decrypts)
    updated: int


@dataclass(frozen=True)
class LoginSession:
    id: int
    user_id: int
    csrf_hash: str
    created: int
    last_seen: int
    expires: int  # absolute end


@dataclass(frozen=True)
class LoginState:
    kind: str  # "oauth" or "link"
    forge: str
    verifier: str  # the PKCE code verifier of an OAuth login, "" for a link
    next_url: str
    user_id: int | None  # whom a login link logs in
    expires: int


@dataclass(frozen=True)
class RepoPermission:
    repo_id: int
    scopes: frozenset[Scope]
    source: str  # "forge" (mirrored) or "grant" (set by an administrator)
    fetched: int


def forge_token_aad(user_id: int) -> bytes:
    return f"forge-token:{user_id}".encode()


def _verifier_aad(state_hash: str) -> bytes:
    return f"login-verifier:{state_hash}".encode()


class IdentityStore:
    """Forge accounts, sessions, login states and repository permissions."""

    _box: SecretBox  # provided by Store

    def _tx(self, *, write: bool = False, conflict: str = "") -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _now(self) -> int:
        raise NotImplementedError  # provided by Store

    @staticmethod
    def _execute(session: Session, statement: Any) -> CursorResult[Any]:
        raise NotImplementedError  # provided by Store

    # -- forge accounts ------------------------------------------------------------------------

    def link_forge_account(
        self,
        user_id: int,
        forge: str,
        forge_user_id: str,
        forge_login: str,
        access_token: str,
    ) -> None:
        """Link ``user_id`` to the forge account (replacing its former link) and store the
        account's current OAuth token. ``Conflict`` if another user holds that account."""
        sealed = self._box.encrypt(access_token.encode(), forge_token_aad(user_id))
        with self._tx(write=True, conflict="this forge account belongs to another user") as tx:
            row = tx.scalar(select(ForgeAccountRow).where(ForgeAccountRow.user_id == user_id))
            if row is None:
                row = ForgeAccountRow(user_id=user_id)
                tx.add(row)
            row.forge = forge
            row.forge_user_id = forge_user_id
            row.forge_login = forge_login
            row.access_token = sealed
            row.updated = self._now()
            tx.flush()

    def find_forge_account(self, forge: str, forge_user_id: str) -> ForgeAccount | None:
        with self._tx() as tx:
            row = tx.scalar(
                select(ForgeAccountRow).where(
                    ForgeAccountRow.forge == forge, ForgeAccountRow.forge_user_id == forge_user_id
                )
            )
            return None if row is None else self._account(row)

    def forge_account_of(self, user_id: int) -> ForgeAccount | None:
        with self._tx() as tx:
            row = tx.scalar(select(ForgeAccountRow).where(ForgeAccountRow.user_id == user_id))
            return None if row is None else self._account(row)

    def _account(self, row: ForgeAccountRow) -> ForgeAccount:
        token = ""
        if row.access_token is not None:
            try:
                token = self._box.decrypt(row.access_token, forge_token_aad(row.user_id)).decode()
            except DecryptError:
                token = ""  # copied from another row, or an unknown key: unusable
        return ForgeAccount(
            row.user_id, row.forge, row.forge_user_id, row.forge_login, token, row.updated
        )

    # -- sessions ------------------------------------------------------------------------------

    def create_session(
        self, user_id: int, session_hash: str, csrf_hash: str, *, expires: int
    ) -> LoginSession:
        with self._tx(write=True) as tx:
            if tx.get(UserRow, user_id) is None:
                raise NotFound(f"user {user_id} does not exist")
            now = self._now()
            row = SessionRow(
                user_id=user_id,
                hash=session_hash,
                csrf_hash=csrf_hash,
                created=now,
                last_seen=now,
                expires=expires,
            )
            tx.add(row)
            tx.flush()
            return _session(row)

    def find_session(self, session_hash: str) -> tuple[LoginSession, User] | None:
        """The session with this hash and its user, as stored: deciding whether it is still
        valid (expiry, idle time, blocked user) is the server's job."""
        with self._tx() as tx:
            found = tx.execute(
                select(SessionRow, UserRow)
                .join(UserRow, UserRow.id == SessionRow.user_id)
                .where(SessionRow.hash == session_hash)
            ).first()
            if found is None:
                return None
            return _session(found[0]), _convert.user(found[1])

    def touch_session(self, session_id: int, when: int) -> None:
        with self._tx(write=True) as tx:
            self._execute(
                tx, update(SessionRow).where(SessionRow.id == session_id).values(last_seen=when)
            )

    def delete_session(self, session_id: int) -> None:
        with self._tx(write=True) as tx:
            self._execute(tx, delete(SessionRow).where(SessionRow.id == session_id))

    def delete_user_sessions(self, user_id: int) -> int:
        """End every session of ``user_id`` (blocking, removal); the number ended."""
        with self._tx(write=True) as tx:
            result = self._execute(tx, delete(SessionRow).where(SessionRow.user_id == user_id))
            return int(result.rowcount or 0)

    def purge_identity(self, now: int) -> int:
        """Delete sessions past their absolute end and expired login states."""
        with self._tx(write=True) as tx:
            gone = self._execute(tx, delete(SessionRow).where(SessionRow.expires <= now))
            states = self._execute(tx, delete(LoginStateRow).where(LoginStateRow.expires <= now))
            return int(gone.rowcount or 0) + int(states.rowcount or 0)

    # -- logins in progress --------------------------------------------------------------------

    def put_login_state(
        self,
        state_hash: str,
        *,
        kind: str,
        expires: int,
        forge: str = "",
        verifier: str = "",
        next_url: str = "",
        user_id: int | None = None,
    ) -> None:
        sealed = (
            self._box.encrypt(verifier.encode(), _verifier_aad(state_hash)) if verifier else None
        )
        with self._tx(write=True) as tx:
            tx.add(
                LoginStateRow(
                    hash=state_hash,
                    kind=kind,
                    forge=forge,
                    verifier=sealed,
                    next_url=next_url,
                    user_id=user_id,
                    expires=expires,
                )
            )

    def take_login_state(self, state_hash: str, kind: str) -> LoginState | None:
        """The login state with this hash and kind, deleted in the same transaction; None if
        there is none (unknown, or already taken). Expiry is the caller's to check."""
        with self._tx(write=True) as tx:
            row = tx.scalar(
                select(LoginStateRow).where(
                    LoginStateRow.hash == state_hash, LoginStateRow.kind == kind
                )
            )
            if row is None:
                return None
            taken = self._execute(tx, delete(LoginStateRow).where(LoginStateRow.id == row.id))
            if taken.rowcount != 1:
                return None  # another request took it first
            verifier = ""
            if row.verifier is not None:
                try:
                    verifier = self._box.decrypt(row.verifier, _verifier_aad(state_hash)).decode()
                except DecryptError:
                    return None
            return LoginState(row.kind, row.forge, verifier, row.next_url, row.user_id, row.expires)

    # -- repository permissions ----------------------------------------------------------------

    def set_repo_permission(
        self, user_id: int, repo_id: int, scopes: Iterable[Scope], *, source: str
    ) -> None:
        """Store (or replace) what ``user_id`` may do on ``repo_id``; no scopes: none."""
        values = sorted(Scope(s).value for s in scopes)
        with self._tx(write=True) as tx:
            row = tx.scalar(
                select(RepoPermissionRow).where(
                    RepoPermissionRow.user_id == user_id, RepoPermissionRow.repo_id == repo_id
                )
            )
            if row is None:
                row = RepoPermissionRow(user_id=user_id, repo_id=repo_id)
                tx.add(row)
            row.scopes = values
            row.source = source
            row.fetched = self._now()
            tx.flush()

    def delete_repo_permission(self, user_id: int, repo_id: int) -> None:
        with self._tx(write=True) as tx:
            self._execute(
                tx,
                delete(RepoPermissionRow).where(
                    RepoPermissionRow.user_id == user_id, RepoPermissionRow.repo_id == repo_id
                ),
            )

    def repo_permissions(self, user_id: int) -> dict[int, RepoPermission]:
        """Every stored permission of ``user_id``, by repository id."""
        with self._tx() as tx:
            rows = tx.scalars(select(RepoPermissionRow).where(RepoPermissionRow.user_id == user_id))
            return {
                r.repo_id: RepoPermission(
                    r.repo_id, frozenset(Scope(s) for s in r.scopes), r.source, r.fetched
                )
                for r in rows
            }

    def repo_permission_list(self, repo_id: int) -> list[tuple[str, RepoPermission]]:
        """Every stored permission on ``repo_id`` with the user's login, by login."""
        with self._tx() as tx:
            rows = tx.execute(
                select(RepoPermissionRow, UserRow.login)
                .join(UserRow, UserRow.id == RepoPermissionRow.user_id)
                .where(RepoPermissionRow.repo_id == repo_id)
                .order_by(UserRow.login)
            ).all()
            return [
                (
                    login,
                    RepoPermission(
                        r.repo_id, frozenset(Scope(s) for s in r.scopes), r.source, r.fetched
                    ),
                )
                for r, login in rows
            ]


def _session(row: SessionRow) -> LoginSession:
    return LoginSession(row.id, row.user_id, row.csrf_hash, row.created, row.last_seen, row.expires)
