"""The store's part of API tokens: create, find, list, rotate and revoke, by hash only.

``TokenStore`` is a mixin of ``Store`` (``repository.py``) and uses its transactions. A token
is stored as the SHA-256 hash of its secret (``bastion.crypto.hash_token``); methods refuse
anything else, so a plaintext token passed by mistake never reaches the database. A user's
live (not revoked) tokens have distinct names (a partial unique index, migration 0008), which
is what rotate and revoke go by. Rotation replaces the hash in place: the old secret stops
working in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from bastion.store import _convert
from bastion.store.errors import Conflict, NotFound
from bastion.store.models import TokenRow, UserRow
from bastion.store.types import Scope, Token, User

_HASH = re.compile(r"^[0-9a-f]{64}$")
MAX_TOKEN_NAME = 100


def _require_hash(token_hash: str) -> None:
    if not _HASH.match(token_hash):
        raise ValueError(
            "token_hash must be a SHA-256 hex digest (bastion.crypto.hash_token), not a token"
        )


class TokenStore:
    """API tokens (see the module docstring)."""

    def _tx(self, *, write: bool = False, conflict: str = "") -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _now(self) -> int:
        raise NotImplementedError  # provided by Store

    @staticmethod
    def _execute(session: Session, statement: Any) -> CursorResult[Any]:
        raise NotImplementedError  # provided by Store

    def create_token(
        self,
        user_id: int,
        name: str,
        token_hash: str,
        scopes: Sequence[Scope],
        expires: int = 0,
    ) -> Token:
        """Store a token by its hash. ``expires``: Unix time, 0 for never. ``Conflict`` when
        the user has a live token of that name, or the hash exists (it never should)."""
        _require_hash(token_hash)
        if not name or len(name) > MAX_TOKEN_NAME:
            raise ValueError(f"a token name is 1 to {MAX_TOKEN_NAME} characters")
        stored_scopes = [Scope(s).value for s in scopes]  # ValueError for an unknown scope
        conflict = f"a token named {name!r} exists already (revoke or rotate it)"
        # The name is checked first; a unique-key violation is then a concurrent creation of
        # that name, or a hash collision (which a fresh 256-bit secret never makes).
        race = f"a token with this hash or named {name!r} exists already"
        with self._tx(write=True, conflict=race) as session:
            if session.get(UserRow, user_id) is None:
                raise NotFound(f"user {user_id} does not exist")
            if self._live(session, user_id, name) is not None:
                raise Conflict(conflict)
            row = TokenRow(
                user_id=user_id,
                name=name,
                hash=token_hash,
                scopes=stored_scopes,
                created=self._now(),
                expires=expires,
                last_used=0,
                revoked=False,
            )
            session.add(row)
            session.flush()
            return _convert.token(row)

    @staticmethod
    def _live(session: Session, user_id: int, name: str) -> TokenRow | None:
        return session.scalars(
            select(TokenRow).where(
                TokenRow.user_id == user_id, TokenRow.name == name, TokenRow.revoked.is_(False)
            )
        ).first()

    def find_token(self, token_hash: str) -> tuple[Token, User] | None:
        """The token with this hash and its user, or None.

        Revoked and expired tokens, and tokens of inactive users, are returned as they are:
        deciding whether they authenticate is the server's job (it must check ``revoked``,
        ``expires`` and ``user.active``), and it can then say why a token was refused."""
        with self._tx() as session:
            found = session.execute(
                select(TokenRow, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.hash == token_hash)
            ).first()
            if found is None:
                return None
            token_row, user_row = found
            return _convert.token(token_row), _convert.user(user_row)

    def find_user_token(self, user_id: int, name: str) -> Token | None:
        """The user's live token of that name, or None."""
        with self._tx() as session:
            row = self._live(session, user_id, name)
            return None if row is None else _convert.token(row)

    def touch_token(self, token_id: int, when: int) -> None:
        """Record a use of the token. Best effort: a token deleted meanwhile is ignored."""
        with self._tx(write=True) as session:
            session.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used=when))

    def list_tokens(self, user_id: int, *, live: bool = False) -> list[Token]:
        """The user's tokens, oldest first; ``live``: only those not revoked."""
        with self._tx() as session:
            query = select(TokenRow).where(TokenRow.user_id == user_id)
            if live:
                query = query.where(TokenRow.revoked.is_(False))
            return [_convert.token(r) for r in session.scalars(query.order_by(TokenRow.id))]

    def rotate_token(self, token_id: int, new_hash: str, expires: int) -> Token:
        """Give the live token ``token_id`` a new secret (its hash) and expiry, keeping its
        name and scopes; the old secret stops working in the same transaction. ``Conflict``
        when the token was revoked meanwhile."""
        _require_hash(new_hash)
        with self._tx(write=True, conflict="a token with this hash exists already") as session:
            changed = self._execute(
                session,
                update(TokenRow)
                .where(TokenRow.id == token_id, TokenRow.revoked.is_(False))
                .values(hash=new_hash, expires=expires, created=self._now(), last_used=0),
            ).rowcount
            if not changed:
                raise Conflict("the token was revoked meanwhile; nothing changed")
            row = session.get(TokenRow, token_id)
            assert row is not None
            return _convert.token(row)

    def revoke_token(self, token_id: int) -> None:
        with self._tx(write=True) as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"token {token_id} does not exist")
            row.revoked = True

    def revoke_user_tokens(self, user_id: int) -> int:
        """Revoke every token of the user; returns how many were not revoked yet."""
        with self._tx(write=True) as session:
            result = self._execute(
                session,
                update(TokenRow)
                .where(TokenRow.user_id == user_id, TokenRow.revoked.is_(False))
                .values(revoked=True),
            )
            return result.rowcount

    def revoke_all_tokens(self, *, keep: int | None = None) -> int:
        """Revoke every live token of every user, except the token ``keep`` when given;
        returns how many were revoked (the emergency switch)."""
        with self._tx(write=True) as session:
            query = update(TokenRow).where(TokenRow.revoked.is_(False))
            if keep is not None:
                query = query.where(TokenRow.id != keep)
            return self._execute(session, query.values(revoked=True)).rowcount
