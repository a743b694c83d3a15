"""Re-keying every encrypted column, on SQLite and PostgreSQL: the registry covers every binary
column of the models; a census by key id; every value (repository, filtered, organisation and
global secrets, webhook secrets, signing keys, format-1 values) moves to the new key and then
decrypts without the old one; interruptions between batches, inside a batch and by SIGKILL lose
nothing, and a second run finishes; a value no key decrypts is reported and left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.crypto import SecretBox, hash_token
from bastion.crypto.secretbox import key_id
from bastion.store import Store, StoreError
from bastion.store.encrypted import FORMAT_1, encrypted_columns
from bastion.store.engine import create_engine
from bastion.store.identity_store import _verifier_aad
from bastion.store.models import Base
from bastion.store.types import SecretFilters

OLD = bytes.fromhex("5e2b7c91a4d3f60817e9c2b5a6d4f3e1c8b7a69584736251f0e9d8c7b6a59483")
NEW = bytes.fromhex("a1c3e5f7092b4d6f8193a5c7e9fb1d3f5072b4d6f8a1c3e5079b2d4f6a8c1e3b")
LOST = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff1")
OLD_ID, NEW_ID = key_id(OLD).hex(), key_id(NEW).hex()
STATE = hash_token("oauth-state")
ALL = 19  # values populate() writes under OLD


def open_store(url: str, key: bytes, previous: tuple[bytes, ...] = ()) -> Store:
    store = Store(url, secret_key=key, previous_keys=previous)
    store.migrate()
    return store


def raw(url: str, query: str, **params: object) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(query), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def format_1(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(key).encrypt(nonce, plaintext, b"\x01" + aad)


def populate(url: str, repos: int = 3) -> dict[str, object]:
    """Values of every encrypted column under OLD (one repository secret in format 1); returns
    what each should decrypt to."""
    expected: dict[str, object] = {}
    with open_store(url, OLD) as store:
        for i in range(repos):
            repo = store.create_repo("acme", f"r{i}")
            store.set_repo_secret(repo.id, "plain", f"plain-{i}")
            store.set_repo_secret(repo.id, "pr", f"pr-{i}", pull_request=True)
            store.set_repo_secret(repo.id, "filtered", f"filtered-{i}", branches=["main"])
            store.set_webhook_secret(repo.id, f"hook-{i}")
            expected[f"signing:{repo.id}"] = store.repo_signing_key(repo.id)
            expected[f"repo:{repo.id}"] = {
                "plain": f"plain-{i}",
                "pr": f"pr-{i}",
                "filtered": f"filtered-{i}",
            }
            expected[f"hook:{repo.id}"] = f"hook-{i}"
        user = store.create_user("ada")
        store.link_forge_account(user.id, "github", "42", "ada", "gho-forge-token-of-ada")
        expected[f"forge:{user.id}"] = "gho-forge-token-of-ada"
        store.put_login_state(
            STATE, kind="oauth", expires=2_000_000_000, forge="github", verifier="pkce-verifier"
        )
        store.set_shared_secret("org", "acme", "npm", "org-value", SecretFilters())
        store.set_shared_secret("global", "", "gpg", "global-value", SecretFilters(events=("tag",)))
        first = store.get_repo("acme", "r0")
        assert first is not None
    # One value as the first release wrote it (format 1, no key id).
    blob = format_1(OLD, b"plain-0", f"repo:{first.id}:plain".encode())
    raw(
        url,
        "UPDATE repo_secrets SET value = :v WHERE repo_id = :r AND name = 'plain'",
        v=blob,
        r=first.id,
    )
    return expected


def check_all(store: Store, expected: dict[str, object]) -> None:
    """Every value decrypts to what was stored (raises StoreError otherwise)."""
    for key, value in expected.items():
        kind, _, ident = key.partition(":")
        repo_id = int(ident)
        if kind == "signing":
            assert store.repo_signing_key(repo_id) == value
        elif kind == "forge":
            account = store.forge_account_of(repo_id)  # (a user id here)
            assert account is not None
            assert account.access_token == value
        elif kind == "repo":
            assert store.get_repo_secrets(repo_id) == value
        else:
            assert store.get_webhook_secret(repo_id) == value
    assert store.get_shared_secret("org", "acme", "npm") == "org-value"
    assert store.get_shared_secret("global", "", "gpg") == "global-value"
    # Read past take_login_state, which would consume the login.
    with store._tx() as session:
        [blob] = session.execute(sa.text("SELECT verifier FROM login_states")).scalars()
    assert store._box.decrypt(bytes(blob), _verifier_aad(STATE)) == b"pkce-verifier"


def test_registry_covers_every_binary_column() -> None:
    """A new table of ciphertexts must be registered, or rotation would leave it behind."""
    binary = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, sa.LargeBinary)
    }
    assert binary == {c.name for c in encrypted_columns()}


def test_census_rekey_and_old_key_no_longer_needed(db_url: str) -> None:
    expected = populate(db_url)
    with open_store(db_url, NEW, (OLD,)) as store:
        census = store.rekey_encrypted(dry_run=True)
        assert census.dry_run
        assert census.current_key_id == NEW_ID
        assert census.keys["repo_secrets.value"] == {OLD_ID: 8, FORMAT_1: 1}
        assert census.keys["repos.webhook_secret"] == {OLD_ID: 3}
        assert census.keys["repos.signing_key"] == {OLD_ID: 3}
        assert census.keys["shared_secrets.value"] == {OLD_ID: 2}
        assert census.keys["forge_accounts.access_token"] == {OLD_ID: 1}
        assert census.keys["login_states.verifier"] == {OLD_ID: 1}
        assert census.total_rekeyed == 0
        assert census.remaining == ALL
        check_all(store, expected)  # both keys held: everything readable before the run

        report = store.rekey_encrypted(batch_size=4)
        assert report.total_rekeyed == ALL
        assert report.failed == {}
        again = store.rekey_encrypted()
        assert again.total_rekeyed == 0  # idempotent
        assert again.keys["repo_secrets.value"] == {NEW_ID: 9}
    with open_store(db_url, NEW) as store:
        check_all(store, expected)  # the old key is gone and nothing was lost
    with open_store(db_url, OLD) as store, pytest.raises(StoreError):
        store.get_webhook_secret(1)


def test_interrupted_between_batches_then_resumed(db_url: str) -> None:
    expected = populate(db_url)

    class StopRekeyError(Exception):
        pass

    def stop_after_two(column: str, batches: int) -> None:
        if batches == 2:
            raise StopRekeyError(column)

    with open_store(db_url, NEW, (OLD,)) as store:
        with pytest.raises(StopRekeyError):
            store.rekey_encrypted(batch_size=2, after_batch=stop_after_two)
        census = store.rekey_encrypted(dry_run=True)
        moved = sum(per.get(NEW_ID, 0) for per in census.keys.values())
        assert 0 < moved < ALL  # really interrupted half-way
        check_all(store, expected)
        report = store.rekey_encrypted(batch_size=2)
        assert report.total_rekeyed == ALL - moved
    with open_store(db_url, NEW) as store:
        check_all(store, expected)


def test_failure_inside_a_batch_rolls_the_batch_back(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = populate(db_url)
    calls = 0
    real = SecretBox.rekey

    def failing(self: SecretBox, blob: bytes, aad: bytes) -> bytes | None:
        nonlocal calls
        calls += 1
        if calls == 6:
            raise RuntimeError("simulated crash in the middle of a batch")
        return real(self, blob, aad)

    with open_store(db_url, NEW, (OLD,)) as store:
        monkeypatch.setattr(SecretBox, "rekey", failing)
        with pytest.raises(RuntimeError, match="simulated"):
            store.rekey_encrypted(batch_size=4)
        monkeypatch.setattr(SecretBox, "rekey", real)
        census = store.rekey_encrypted(dry_run=True)
        # The one-row batches of forge_accounts and login_states committed; the first batch
        # of repo_secrets rolled back the three rows it had re-encrypted.
        assert sum(per.get(NEW_ID, 0) for per in census.keys.values()) == 2
        check_all(store, expected)
        assert store.rekey_encrypted().total_rekeyed == ALL - 2
    with open_store(db_url, NEW) as store:
        check_all(store, expected)


def test_undecryptable_value_is_reported_and_left_alone(db_url: str) -> None:
    with open_store(db_url, LOST) as store:
        repo = store.create_repo("acme", "lost")
        store.set_repo_secret(repo.id, "gone", "value-under-a-lost-key")
        store.set_repo_secret(repo.id, "kept", "x")
    [(lost_blob,)] = raw(db_url, "SELECT value FROM repo_secrets WHERE name = 'gone'")
    with open_store(db_url, NEW, (OLD,)) as store:
        # "kept" re-written under OLD (recoverable); "gone" stays under a key nobody holds.
        blob = SecretBox(OLD).encrypt(b"x", f"repo:{repo.id}:kept".encode())
        raw(db_url, "UPDATE repo_secrets SET value = :v WHERE name = 'kept'", v=blob)
        report = store.rekey_encrypted()
        [(row_id,)] = raw(db_url, "SELECT id FROM repo_secrets WHERE name = 'gone'")
        assert report.failed == {"repo_secrets.value": [row_id]}
        assert report.rekeyed["repo_secrets.value"] == 1
        assert "value-under-a-lost-key" not in repr(report)
    [(after,)] = raw(db_url, "SELECT value FROM repo_secrets WHERE name = 'gone'")
    assert bytes(after) == bytes(lost_blob)  # untouched, still recoverable with its key


def test_bad_batch_size(store: Store) -> None:
    with pytest.raises(ValueError, match="batch size"):
        store.rekey_encrypted(batch_size=0)


_KILLED_CHILD = """
import sys, time
from pathlib import Path
from bastion.crypto import SecretBox, hash_token
from bastion.store import Store
url, marker, where = sys.argv[1], Path(sys.argv[2]), sys.argv[5]
new, old = bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
store = Store(url, secret_key=new, previous_keys=[old])

def pause():
    marker.write_text(where)
    while True:
        time.sleep(1)

def between(column, batches):
    if batches == 2:
        pause()

real, calls = SecretBox.rekey, [0]

def inside(self, blob, aad):
    # The fourth batch has UPDATEd two rows, uncommitted, when this pauses.
    calls[0] += 1
    if calls[0] == 8:
        pause()
    return real(self, blob, aad)

if where == "inside":
    SecretBox.rekey = inside
store.rekey_encrypted(batch_size=3, after_batch=between if where == "between" else None)
"""


@pytest.fixture
def child() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.parametrize("where", ["between", "inside"])
def test_killed_mid_rekey(
    db_url: str, tmp_path: Path, child: list[subprocess.Popen[bytes]], where: str
) -> None:
    """SIGKILL of the process while it re-keys, between two batches or in the middle of one
    (an UPDATE done, not committed): the database is as the last commit left it."""
    expected = populate(db_url)
    marker = tmp_path / "paused"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, db_url, str(marker), NEW.hex(), OLD.hex(), where],
        stderr=subprocess.PIPE,
    )
    child.append(proc)
    deadline = time.monotonic() + 120  # a bound on waiting, not an assertion on speed
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"child exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "the child never reached its pause"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with open_store(db_url, NEW, (OLD,)) as store:
        census = store.rekey_encrypted(dry_run=True)
        committed = {"between": 2, "inside": 5}[where]  # batches done before the pause
        assert sum(per.get(NEW_ID, 0) for per in census.keys.values()) == committed
        check_all(store, expected)
        assert store.rekey_encrypted().total_rekeyed == ALL - committed
    with open_store(db_url, NEW) as store:
        check_all(store, expected)


@pytest.mark.postgres
def test_a_concurrent_write_wins_over_the_rekey(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value changed while its batch is being re-encrypted keeps the writer's value (the
    compare-and-set on the old ciphertext). On SQLite writers cannot overlap the batch's write
    transaction at all; PostgreSQL is where this can happen."""
    expected = populate(postgres_url)
    real = SecretBox.rekey
    with (
        open_store(postgres_url, NEW, (OLD,)) as store,
        open_store(postgres_url, NEW) as writer,
    ):
        first = store.get_repo("acme", "r0")
        assert first is not None

        def rekey_with_a_writer(self: SecretBox, blob: bytes, aad: bytes) -> bytes | None:
            if aad == f"repo:{first.id}:plain".encode():
                writer.set_repo_secret(first.id, "plain", "changed-while-rekeying")
            return real(self, blob, aad)

        monkeypatch.setattr(SecretBox, "rekey", rekey_with_a_writer)
        report = store.rekey_encrypted()
        monkeypatch.setattr(SecretBox, "rekey", real)
        assert report.total_rekeyed == ALL - 1  # the changed row was left to its writer
        assert report.failed == {}
    repo_values = expected[f"repo:{first.id}"]
    assert isinstance(repo_values, dict)
    repo_values["plain"] = "changed-while-rekeying"
    with open_store(postgres_url, NEW) as store:
        check_all(store, expected)
