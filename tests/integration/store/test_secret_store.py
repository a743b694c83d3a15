"""``SecretStore`` on SQLite and PostgreSQL: organisation and global secrets, filters, updates
that re-encrypt, the most specific scope winning, last use — and ciphertexts bound to scope,
owner, name and every filter, so a database edit can neither move nor widen a secret."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from tests.integration.store.helpers import FakeClock

from bastion.store import Store, StoreError
from bastion.store.engine import create_engine
from bastion.store.types import Repo, SecretFilters

DOCKER = SecretFilters(images=("plugins/docker",), events=("push", "tag"), branches=("main",))


def execute(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """Statements past the store, as someone with write access to the database."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(query), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def repo(store: Store) -> Repo:
    return store.create_repo("acme", "web")


def test_org_and_global_secrets(store: Store, clock: FakeClock) -> None:
    saved = store.set_shared_secret("org", "acme", "docker_password", "pw-Vc2Bx9Zn", DOCKER)
    assert (saved.scope, saved.namespace, saved.name) == ("org", "acme", "docker_password")
    # Stored sorted, without duplicates.
    assert saved.filters == SecretFilters(
        images=("plugins/docker",), events=("push", "tag"), branches=("main",)
    )
    assert saved.rotated == saved.created > 0
    store.set_shared_secret("global", "", "npm", "npm-Fj4Hs6Dg", SecretFilters(pull_request=True))
    assert store.get_shared_secret("org", "acme", "docker_password") == "pw-Vc2Bx9Zn"
    assert [s.name for s in store.describe_shared_secrets("org", "acme")] == ["docker_password"]
    assert store.describe_shared_secrets("org", "evil") == []
    assert [s.name for s in store.describe_shared_secrets("global", "")] == ["npm"]

    clock.advance(100)
    changed = store.update_shared_secret("org", "acme", "docker_password", events=["tag"])
    assert changed is not None
    assert changed.filters.events == ("tag",)
    assert changed.filters.images == ("plugins/docker",)
    assert changed.rotated == saved.rotated  # only the filters changed, not the value
    assert changed.updated > saved.updated
    assert store.get_shared_secret("org", "acme", "docker_password") == "pw-Vc2Bx9Zn"
    rotated = store.update_shared_secret("org", "acme", "docker_password", value="pw-new-Lm4N")
    assert rotated is not None and rotated.rotated == rotated.updated
    assert store.update_shared_secret("org", "acme", "missing", value="x-value") is None

    assert store.delete_shared_secret("global", "", "npm")
    assert not store.delete_shared_secret("global", "", "npm")
    with pytest.raises(ValueError, match="no namespace"):
        store.set_shared_secret("global", "acme", "x", "value", SecretFilters())
    with pytest.raises(ValueError, match="org or global"):
        store.describe_shared_secrets("repo", "acme")


def test_repository_secret_filters_and_update(store: Store, repo: Repo) -> None:
    saved = store.set_repo_secret(repo.id, "token", "tok-Qz7Wv3Kp", branches=["main"])
    assert saved.branches == ("main",)
    updated = store.update_repo_secret(repo.id, "token", branches=[], pull_request=True)
    assert updated is not None
    assert (updated.branches, updated.pull_request) == ((), True)
    assert store.get_repo_secret(repo.id, "token") == "tok-Qz7Wv3Kp"
    assert store.update_repo_secret(repo.id, "nope", value="abcd") is None


def test_the_most_specific_scope_wins(store: Store, repo: Repo) -> None:
    other = store.create_repo("evil", "fork")
    store.set_shared_secret("global", "", "token", "global-Rt5Yu1Io", SecretFilters())
    store.set_shared_secret("org", "acme", "token", "org-Lm4Nb8Xc", SecretFilters())
    store.set_shared_secret("org", "evil", "evil_only", "evil-Pp0Oo9Ii", SecretFilters())
    found = store.find_secrets(repo.id, "acme", ["token", "evil_only"])
    assert set(found) == {"token"}  # another namespace's secret is not visible
    assert store.open_secret(found["token"]) == "org-Lm4Nb8Xc"
    store.set_repo_secret(repo.id, "token", "repo-Qz7Wv3Kp")
    assert store.open_secret(store.find_secrets(repo.id, "acme", ["token"])["token"]) == (
        "repo-Qz7Wv3Kp"
    )
    assert store.open_secret(store.find_secrets(other.id, "evil", None)["token"]) == (
        "global-Rt5Yu1Io"
    )
    assert store.has_secrets_for(other.id, "evil")
    store.delete_shared_secret("global", "", "token")
    store.delete_shared_secret("org", "evil", "evil_only")
    assert not store.has_secrets_for(other.id, "evil")
    assert store.has_secrets_for(repo.id, "acme")


def test_last_use_is_recorded(store: Store, repo: Repo) -> None:
    store.set_repo_secret(repo.id, "token", "repo-Qz7Wv3Kp")
    store.set_shared_secret("org", "acme", "npm", "org-Lm4Nb8Xc", SecretFilters())
    records = store.find_secrets(repo.id, "acme", ["token", "npm"]).values()
    store.mark_secrets_used(records, "acme/web#12")
    [token] = store.describe_repo_secrets(repo.id)
    assert (token.last_build, token.last_used > 0) == ("acme/web#12", True)
    npm = store.describe_shared_secret("org", "acme", "npm")
    assert npm is not None and npm.last_build == "acme/web#12"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("images", "'[]'"),  # plugin-only no more: would reach steps with commands
        ("events", "'[]'"),
        ("branches", """'["*"]'"""),
        ("pull_request", None),  # flipped to true below
        ("namespace", "'evil'"),  # moved to another organisation
        ("scope", "'global'"),
    ],
)
def test_editing_an_org_secret_row_makes_it_undecryptable(
    store: Store, db_url: str, column: str, value: str | None
) -> None:
    store.set_shared_secret("org", "acme", "docker_password", "pw-Vc2Bx9Zn", DOCKER)
    if column == "pull_request":
        execute(db_url, "UPDATE shared_secrets SET pull_request = :t", t=True)
    elif column == "scope":
        execute(db_url, "UPDATE shared_secrets SET scope = 'global', namespace = ''")
    else:
        execute(db_url, f"UPDATE shared_secrets SET {column} = {value}")
    [record] = store.find_secrets(1, "evil" if column == "namespace" else "acme", None).values()
    with pytest.raises(StoreError, match="cannot be decrypted") as failed:
        store.open_secret(record)
    assert "pw-Vc2Bx9Zn" not in str(failed.value)


def test_ciphertexts_cannot_move_between_scopes_names_or_filter_sets(
    store: Store, repo: Repo, db_url: str
) -> None:
    store.set_shared_secret("org", "acme", "docker_password", "pw-Vc2Bx9Zn", DOCKER)
    store.set_shared_secret("global", "", "placeholder", "nothing-here", SecretFilters())
    store.set_repo_secret(repo.id, "placeholder", "nothing-either")
    store.set_repo_secret(repo.id, "narrow", "narrow-Qz7Wv3Kp", events=["tag"])
    store.set_repo_secret(repo.id, "wide", "wide-placeholder")
    [(blob,)] = execute(db_url, "SELECT value FROM shared_secrets WHERE name = 'docker_password'")
    [(narrow,)] = execute(db_url, "SELECT value FROM repo_secrets WHERE name = 'narrow'")
    execute(db_url, "UPDATE shared_secrets SET value = :v WHERE name = 'placeholder'", v=blob)
    execute(db_url, "UPDATE repo_secrets SET value = :v WHERE name = 'placeholder'", v=blob)
    execute(db_url, "UPDATE repo_secrets SET value = :v WHERE name = 'wide'", v=narrow)
    for name in ("placeholder", "wide"):
        with pytest.raises(StoreError, match="cannot be decrypted"):
            store.get_repo_secret(repo.id, name)
    with pytest.raises(StoreError, match="cannot be decrypted"):
        store.get_shared_secret("global", "", "placeholder")
    assert store.get_shared_secret("org", "acme", "docker_password") == "pw-Vc2Bx9Zn"
    assert store.get_repo_secret(repo.id, "narrow") == "narrow-Qz7Wv3Kp"


def test_values_are_encrypted_at_rest(store: Store, db_url: str) -> None:
    store.set_shared_secret("org", "acme", "docker_password", "pw-Vc2Bx9Zn-at-rest", DOCKER)
    [(blob,)] = execute(db_url, "SELECT value FROM shared_secrets")
    assert b"pw-Vc2Bx9Zn-at-rest" not in bytes(blob)


def test_downgrade_below_0003_keeps_what_0002_can_read(
    store: Store, repo: Repo, db_url: str
) -> None:
    """Unfiltered repository secrets keep the AAD of 0002, so they survive a downgrade and
    the upgrade after it; filtered ones (bound to their filters) and the organisation and
    global table go with the columns that held them."""
    from alembic import command

    from bastion.store.migrate import alembic_config

    store.set_repo_secret(repo.id, "plain", "plain-Qz7Wv3Kp", pull_request=True)
    store.set_repo_secret(repo.id, "filtered", "filtered-Lm4Nb8", events=["tag"])
    store.set_shared_secret("org", "acme", "org", "org-Rt5Yu1Io", SecretFilters())
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
            names = [r[0] for r in conn.execute(sa.text("SELECT name FROM repo_secrets"))]
            assert "shared_secrets" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert names == ["plain"]
    store.migrate()
    assert store.get_repo_secret(repo.id, "plain") == "plain-Qz7Wv3Kp"
    assert store.describe_shared_secrets("org", "acme") == []
