"""``IdentityStore`` on SQLite and PostgreSQL: sessions, single-use login states, forge
accounts (token bound to its user), repository permissions, purge and cascades."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update
from tests.integration.store.helpers import FakeClock

from bastion.crypto import hash_token
from bastion.store import Store
from bastion.store.errors import Conflict
from bastion.store.models import ForgeAccountRow
from bastion.store.types import Scope


def test_sessions_are_found_by_hash_and_end_with_their_user(store: Store) -> None:
    alice = store.create_user("alice")
    record = store.create_session(alice.id, hash_token("sid"), hash_token("csrf"), expires=500)
    found = store.find_session(hash_token("sid"))
    assert found is not None
    assert found[0] == record and found[1].login == "alice"
    assert store.find_session("sid") is None  # never by the id itself
    store.create_session(alice.id, hash_token("sid2"), hash_token("c2"), expires=500)
    assert store.delete_user_sessions(alice.id) == 2
    assert store.find_session(hash_token("sid")) is None
    store.create_session(alice.id, hash_token("sid3"), hash_token("c3"), expires=500)
    store.delete_user("alice")
    assert store.find_session(hash_token("sid3")) is None


def test_a_login_state_is_taken_once(store: Store) -> None:
    store.put_login_state(
        hash_token("st"),
        kind="oauth",
        forge="github",
        verifier="v" * 64,
        next_url="/x",
        expires=600,
    )
    assert store.take_login_state(hash_token("st"), "link") is None  # wrong kind
    taken = store.take_login_state(hash_token("st"), "oauth")
    assert taken is not None
    assert (taken.forge, taken.verifier, taken.next_url) == ("github", "v" * 64, "/x")
    assert store.take_login_state(hash_token("st"), "oauth") is None


def test_concurrent_takes_of_one_state_succeed_once(store: Store) -> None:
    for round_ in range(5):
        key = hash_token(f"race{round_}")
        store.put_login_state(key, kind="link", expires=600)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(store.take_login_state, [key] * 4, ["link"] * 4))
        assert sum(r is not None for r in results) == 1


def test_purge_removes_ended_sessions_and_states(store: Store, clock: FakeClock) -> None:
    alice = store.create_user("alice")
    store.create_session(alice.id, hash_token("old"), hash_token("c"), expires=100)
    store.create_session(alice.id, hash_token("new"), hash_token("c"), expires=10_000)
    store.put_login_state(hash_token("s"), kind="oauth", expires=100)
    assert store.purge_identity(200) == 2
    assert store.find_session(hash_token("new")) is not None


def test_forge_tokens_are_bound_to_their_user(store: Store) -> None:
    alice = store.create_user("alice")
    mallory = store.create_user("mallory")
    store.link_forge_account(alice.id, "github", "101", "alice", "gho_alice")
    store.link_forge_account(mallory.id, "github", "666", "mallory", "gho_mallory")
    account = store.find_forge_account("github", "101")
    assert account is not None and account.access_token == "gho_alice"
    with pytest.raises(Conflict):
        store.link_forge_account(mallory.id, "github", "101", "alice", "x")
    # Alice's ciphertext copied into mallory's row does not decrypt there.
    with store._tx(write=True) as tx:  # a tampered database
        sealed = tx.scalar(select(ForgeAccountRow).where(ForgeAccountRow.user_id == alice.id))
        assert sealed is not None
        tx.execute(
            update(ForgeAccountRow)
            .where(ForgeAccountRow.user_id == mallory.id)
            .values(access_token=sealed.access_token)
        )
    stolen = store.forge_account_of(mallory.id)
    assert stolen is not None and stolen.access_token == ""


def test_permissions_per_user_and_repository(store: Store) -> None:
    alice = store.create_user("alice")
    repo = store.create_repo("acme", "web")
    store.set_repo_permission(alice.id, repo.id, [Scope.WRITE, Scope.READ], source="grant")
    stored = store.repo_permissions(alice.id)[repo.id]
    assert stored.scopes == {Scope.READ, Scope.WRITE} and stored.source == "grant"
    store.set_repo_permission(alice.id, repo.id, [], source="forge")
    assert store.repo_permissions(alice.id)[repo.id].scopes == frozenset()
    assert [login for login, _ in store.repo_permission_list(repo.id)] == ["alice"]
    store.delete_repo_permission(alice.id, repo.id)
    assert store.repo_permissions(alice.id) == {}
