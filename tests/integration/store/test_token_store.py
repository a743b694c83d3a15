"""TokenStore and LockoutStore on SQLite and PostgreSQL: names unique among a user's live
tokens, rotation in place, revoking a user's or everyone's tokens, failure windows and
lockouts, and migration 0008 renaming live duplicate names it finds."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.integration.store.conftest import SECRET_KEY
from tests.integration.store.helpers import FakeClock

from bastion.crypto import hash_token, new_token
from bastion.store import Conflict, Store
from bastion.store.engine import create_engine
from bastion.store.types import Scope


def _hash() -> str:
    return hash_token(new_token("api"))


def test_live_names_are_unique_per_user(store: Store) -> None:
    bob = store.create_user("bob")
    carol = store.create_user("carol")
    first = store.create_token(bob.id, "ci", _hash(), [Scope.READ])
    with pytest.raises(Conflict, match="'ci'"):
        store.create_token(bob.id, "ci", _hash(), [Scope.READ])
    store.create_token(carol.id, "ci", _hash(), [Scope.READ])  # another user's name
    store.revoke_token(first.id)
    again = store.create_token(bob.id, "ci", _hash(), [Scope.WRITE])  # the name is free again
    assert store.find_user_token(bob.id, "ci") == again
    assert [t.name for t in store.list_tokens(bob.id, live=True)] == ["ci"]
    assert len(store.list_tokens(bob.id)) == 2
    with pytest.raises(ValueError, match="name"):
        store.create_token(bob.id, "", _hash(), [Scope.READ])


def test_rotation_replaces_the_secret_in_place(store: Store, clock: FakeClock) -> None:
    bob = store.create_user("bob")
    old_hash = _hash()
    token = store.create_token(bob.id, "ci", old_hash, [Scope.READ, Scope.WRITE], expires=500)
    store.touch_token(token.id, 123)
    new_hash = _hash()
    rotated = store.rotate_token(token.id, new_hash, expires=900)
    assert (rotated.id, rotated.name, rotated.scopes) == (token.id, "ci", token.scopes)
    assert (rotated.expires, rotated.last_used, rotated.created) == (900, 0, int(clock()))
    assert store.find_token(old_hash) is None
    found = store.find_token(new_hash)
    assert found is not None
    assert found[0] == rotated
    store.revoke_token(token.id)
    with pytest.raises(Conflict, match="revoked"):
        store.rotate_token(token.id, _hash(), expires=900)
    with pytest.raises(ValueError, match="SHA-256"):
        store.rotate_token(token.id, "not-a-hash", expires=900)


def test_revoke_everyone_can_keep_one(store: Store) -> None:
    bob = store.create_user("bob")
    admin = store.create_user("root", admin=True)
    store.create_token(bob.id, "a", _hash(), [Scope.READ])
    store.create_token(bob.id, "b", _hash(), [Scope.READ])
    mine = store.create_token(admin.id, "mine", _hash(), [Scope.ADMIN])
    assert store.revoke_all_tokens(keep=mine.id) == 2
    assert [t.name for t in store.list_tokens(admin.id, live=True)] == ["mine"]
    assert store.revoke_all_tokens() == 1
    assert store.revoke_all_tokens() == 0


def test_failure_windows_and_lockouts(store: Store) -> None:
    a, b = "a" * 64, "b" * 64
    assert store.record_auth_failure([a, b], 100, 0) == {a: 1, b: 1}
    assert store.record_auth_failure([a], 150, 0) == {a: 2}
    # Failures before ``since`` leave the window (and the table).
    assert store.record_auth_failure([a, b], 400, 120) == {a: 2, b: 1}
    store.clear_auth_failures(a)
    assert store.record_auth_failure([a], 401, 120) == {a: 1}
    assert store.auth_locked_until([a, b]) == 0
    assert store.lock_auth_key(a, 1000, 60, streak_until=700) == 1
    assert store.auth_locked_until([a, b]) == 1060
    assert store.record_auth_failure([a], 1001, 700) == {a: 1}  # the lockout consumed them
    assert store.lock_auth_key(a, 1060, 60, streak_until=760) == 2
    assert store.auth_locked_until([a]) == 1180  # doubled
    assert store.lock_auth_key(a, 5000, 60, streak_until=4700) == 1  # an old streak ended
    assert store.auth_locked_until([b, a]) == 5060
    assert store.clear_auth_lockouts() == 1
    assert store.auth_locked_until([a]) == 0


def test_migration_0008_renames_live_duplicate_names(db_url: str) -> None:
    from alembic import command

    from bastion.store.migrate import alembic_config

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0007")
            user_id = conn.execute(
                sa.text(
                    "INSERT INTO users (login, email, admin, active, machine, created, updated) "
                    "VALUES ('bob', '', false, true, false, 1, 1) RETURNING id"
                )
            ).scalar_one()
            for n, revoked in enumerate((False, False, True, False)):
                conn.execute(
                    sa.text(
                        "INSERT INTO tokens (user_id, name, hash, scopes, created, expires, "
                        "last_used, revoked) VALUES (:u, 'cli', :h, '[]', 1, 0, 0, :r)"
                    ),
                    {"u": user_id, "h": f"{n:064x}", "r": revoked},
                )
    finally:
        engine.dispose()
    with Store(db_url, secret_key=SECRET_KEY) as store:
        store.migrate()
        tokens = store.list_tokens(user_id)
        names = [(t.name, t.revoked) for t in tokens]
        ids = [t.id for t in tokens]
        assert names == [
            ("cli", False),
            (f"cli-{ids[1]}", False),
            ("cli", True),
            (f"cli-{ids[3]}", False),
        ]
        with pytest.raises(Conflict):
            store.create_token(user_id, "cli", _hash(), [Scope.READ])
