"""Every method of ``Store``, on SQLite and on PostgreSQL (the ``store`` fixture runs each test
on both): results, NotFound / Conflict, atomic build numbers and leases under threads,
idempotent logs and deliveries, secrets encrypted at rest, tokens stored as hashes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from tests.integration.store.conftest import SECRET_KEY
from tests.integration.store.helpers import FakeClock

from bastion.crypto import SecretBox, hash_token, new_token
from bastion.store import Conflict, NotFound, Store, StoreError
from bastion.store.engine import create_engine
from bastion.store.types import (
    NewBuild,
    NewStage,
    Repo,
    Scope,
    Stage,
    StageKey,
    Status,
    StepReport,
)

T = TypeVar("T")
HEAD = "0010"
LEASE = hash_token("lease-1")
OTHER_LEASE = hash_token("lease-2")


def race(n: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` in ``n`` threads released at the same moment; their results in order."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def raw_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows read past the store, straight from the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def make_build(store: Store, repo: Repo, stages: int = 1, **fields: Any) -> tuple[int, list[Stage]]:
    build, stage_list = store.create_build(
        repo.id,
        NewBuild(event=fields.pop("event", "push"), **fields),
        [NewStage(number=i, name=f"s{i}", status=Status.PENDING) for i in range(1, stages + 1)],
    )
    return build.id, stage_list


@pytest.fixture
def repo(store: Store) -> Repo:
    return store.create_repo("acme", "web")


@pytest.fixture
def stage(store: Store, repo: Repo) -> Stage:
    return make_build(store, repo)[1][0]


@pytest.fixture
def runner_id(store: Store) -> int:
    return store.create_runner("r1", hash_token(new_token("runner"))).id


# -- schema and migrations ----------------------------------------------------------------------


def test_migrate_from_empty_and_twice(db_url: str) -> None:
    with Store(db_url, secret_key=SECRET_KEY) as store:
        assert store.schema_revision() is None
        store.migrate()
        assert store.schema_revision() == HEAD
        store.migrate()  # a second start finds nothing to do
        assert store.schema_revision() == HEAD
        assert store.ping()
    engine = create_engine(db_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {
        "users",
        "tokens",
        "repos",
        "repo_secrets",
        "builds",
        "stages",
        "steps",
        "logs",
        "runners",
        "deliveries",
        "alembic_version",
    } <= tables


def test_models_match_the_migrations(db_url: str) -> None:
    """A model changed without a migration (or the reverse) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bastion.store.models import Base

    with Store(db_url, secret_key=SECRET_KEY) as store:
        store.migrate()
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(db_url: str) -> None:
    from alembic import command

    from bastion.store.migrate import alembic_config

    with Store(db_url, secret_key=SECRET_KEY) as store:
        store.migrate()
        store.create_user("bob")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    with Store(db_url, secret_key=SECRET_KEY) as store:
        store.migrate()
        assert store.list_users() == []


def test_concurrent_migrate_on_one_database(db_url: str) -> None:
    """Several servers starting at once: every migrate() succeeds, the schema is made once."""
    stores = [Store(db_url, secret_key=SECRET_KEY) for _ in range(4)]
    try:
        errors: list[BaseException] = []

        def migrate(i: int) -> None:
            try:
                stores[i].migrate()
            except BaseException as exc:  # collected and reported below
                errors.append(exc)

        race(4, migrate)
        assert errors == []
        assert stores[0].schema_revision() == HEAD
    finally:
        for s in stores:
            s.close()


def test_concurrent_migrate_from_several_processes(db_url: str) -> None:
    """Servers in separate processes, started together against one empty database."""
    code = (
        "import sys; from bastion.store import Store; "
        "s = Store(sys.argv[1], secret_key=bytes(32 * [7])); s.migrate(); s.close()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    with Store(db_url, secret_key=SECRET_KEY) as store:
        assert store.schema_revision() == HEAD
        store.create_user("bob")


# -- users ----------------------------------------------------------------------------------------


def test_users(store: Store, clock: FakeClock) -> None:
    bob = store.create_user("bob", email="bob@example.com", admin=True)
    assert (bob.login, bob.email, bob.admin, bob.active, bob.machine) == (
        "bob",
        "bob@example.com",
        True,
        True,
        False,
    )
    assert bob.created == bob.updated == int(clock())
    bot = store.create_user("bot", machine=True)
    assert bot.machine
    assert store.get_user(bob.id) == bob
    assert store.get_user(9999) is None
    assert store.find_user("bob") == bob
    assert store.find_user("nobody") is None
    assert [u.login for u in store.list_users()] == ["bob", "bot"]

    clock.advance(10)
    changed = store.update_user("bob", email="b@example.org", admin=False, active=False)
    assert (changed.email, changed.admin, changed.active) == ("b@example.org", False, False)
    assert changed.updated == bob.updated + 10
    unchanged = store.update_user("bob")
    assert (unchanged.email, unchanged.admin, unchanged.active) == ("b@example.org", False, False)

    store.delete_user("bot")
    assert store.find_user("bot") is None


def test_user_errors(store: Store) -> None:
    store.create_user("bob")
    with pytest.raises(Conflict, match="user 'bob' already exists"):
        store.create_user("bob")
    with pytest.raises(NotFound, match="user 'nobody' does not exist"):
        store.update_user("nobody", admin=True)
    with pytest.raises(NotFound, match="nobody"):
        store.delete_user("nobody")
    with pytest.raises(ValueError, match="login"):
        store.create_user("")


# -- tokens ---------------------------------------------------------------------------------------


def test_tokens(store: Store, clock: FakeClock) -> None:
    bob = store.create_user("bob")
    token = new_token("api")
    created = store.create_token(bob.id, "laptop", hash_token(token), [Scope.READ, Scope.WRITE])
    assert (created.name, created.scopes, created.expires, created.last_used, created.revoked) == (
        "laptop",
        (Scope.READ, Scope.WRITE),
        0,
        0,
        False,
    )
    found = store.find_token(hash_token(token))
    assert found == (created, bob)
    assert store.find_token(hash_token("other")) is None

    store.touch_token(created.id, 1234)
    store.touch_token(9999, 1234)  # best effort: no error
    [listed] = store.list_tokens(bob.id)
    assert listed.last_used == 1234

    second = store.create_token(bob.id, "ci", hash_token(new_token("api")), [Scope.ADMIN], 99)
    assert second.expires == 99
    assert [t.name for t in store.list_tokens(bob.id)] == ["laptop", "ci"]

    store.revoke_token(created.id)
    # Revoked tokens and inactive users come back as they are: the server decides.
    store.update_user("bob", active=False)
    found = store.find_token(hash_token(token))
    assert found is not None
    assert found[0].revoked
    assert not found[1].active

    assert store.revoke_user_tokens(bob.id) == 1  # only "ci" was still live
    assert store.revoke_user_tokens(bob.id) == 0
    assert all(t.revoked for t in store.list_tokens(bob.id))


def test_token_errors(store: Store) -> None:
    bob = store.create_user("bob")
    token_hash = hash_token(new_token("api"))
    with pytest.raises(NotFound, match="user 9999"):
        store.create_token(9999, "x", token_hash, [Scope.READ])
    store.create_token(bob.id, "x", token_hash, [Scope.READ])
    with pytest.raises(Conflict, match="hash"):
        store.create_token(bob.id, "y", token_hash, [Scope.READ])
    with pytest.raises(NotFound, match="token 9999"):
        store.revoke_token(9999)
    with pytest.raises(ValueError, match="SHA-256"):
        store.create_token(bob.id, "plaintext", new_token("api"), [Scope.READ])
    with pytest.raises(ValueError, match="nope"):
        store.create_token(bob.id, "z", hash_token("z"), ["nope"])  # type: ignore[list-item]


def test_deleting_a_user_deletes_its_tokens(store: Store) -> None:
    bob = store.create_user("bob")
    token_hash = hash_token(new_token("api"))
    store.create_token(bob.id, "x", token_hash, [Scope.READ])
    store.delete_user("bob")
    assert store.find_token(token_hash) is None
    assert store.list_tokens(bob.id) == []


def test_only_token_hashes_reach_the_database(store: Store, db_url: str, tmp_path: Path) -> None:
    bob = store.create_user("bob")
    api_token = new_token("api")
    runner_token = new_token("runner")
    lease_id = new_token("lease")
    store.create_token(bob.id, "x", hash_token(api_token), [Scope.READ])
    runner = store.create_runner("r1", hash_token(runner_token))
    repo = store.create_repo("acme", "web")
    _, [stage] = make_build(store, repo)
    assert store.lease_stage(stage.id, runner.id, "m", hash_token(lease_id), 2_000_000_000)

    rows = raw_rows(db_url, "SELECT hash FROM tokens") + raw_rows(
        db_url, "SELECT token_hash FROM runners"
    )
    rows += raw_rows(db_url, "SELECT lease_hash FROM stages")
    assert sorted(r[0] for r in rows) == sorted(
        hash_token(t) for t in (api_token, runner_token, lease_id)
    )
    if db_url.startswith("sqlite"):
        # The whole database, WAL included, byte for byte.
        data = b"".join(p.read_bytes() for p in tmp_path.glob("bastion.db*"))
        assert hash_token(api_token).encode() in data  # the check below can see the table
        for secret in (api_token, runner_token, lease_id):
            assert secret.encode() not in data
            assert secret.split("_")[-1].encode() not in data


# -- repositories ---------------------------------------------------------------------------------


def test_repos(store: Store, clock: FakeClock) -> None:
    web = store.create_repo(
        "acme",
        "web",
        forge="github",
        forge_id="123",
        http_url="https://github.com/acme/web.git",
        ssh_url="git@github.com:acme/web.git",
        link="https://github.com/acme/web",
        default_branch="trunk",
        private=False,
        visibility="public",
        config_path="ci/.drone.yml",
        timeout=30,
    )
    assert web.slug == "acme/web"
    assert (web.forge, web.forge_id, web.default_branch, web.visibility, web.timeout) == (
        "github",
        "123",
        "trunk",
        "public",
        30,
    )
    assert (web.trusted, web.protected, web.counter, web.active, web.private) == (
        False,
        False,
        0,
        True,
        False,
    )
    api = store.create_repo("acme", "api", active=False)
    local = store.create_repo("zeta", "local")  # local repositories have no forge id
    assert store.get_repo("acme", "web") == web
    assert store.get_repo("acme", "nope") is None
    assert store.get_repo_by_id(api.id) == api
    assert store.get_repo_by_id(9999) is None
    assert store.find_repo_by_forge_id("github", "123") == web
    assert store.find_repo_by_forge_id("gitea", "123") is None
    assert store.find_repo_by_forge_id("local", "") is None
    assert [r.slug for r in store.list_repos()] == ["acme/api", "acme/web", "zeta/local"]
    assert [r.slug for r in store.list_repos(active_only=True)] == ["acme/web", "zeta/local"]
    assert local.forge == "local"


def test_repo_conflicts(store: Store) -> None:
    store.create_repo("acme", "web", forge="github", forge_id="123")
    store.create_repo("acme", "other")
    store.create_repo("acme", "third")  # two local repos: "" forge ids do not collide
    with pytest.raises(Conflict, match="repository acme/web already exists"):
        store.create_repo("acme", "web")
    with pytest.raises(Conflict, match="github repository 123 is registered already, as acme/web"):
        store.create_repo("acme", "fork", forge="github", forge_id="123")
    with pytest.raises(ValueError, match="visibility"):
        store.create_repo("acme", "bad", visibility="secret")


def test_update_repo(store: Store, repo: Repo, clock: FakeClock) -> None:
    clock.advance(5)
    changed = store.update_repo(
        repo.id,
        trusted=True,
        protected=True,
        visibility="internal",
        timeout=90,
        config_path=".bastion.yml",
        ignore_forks=True,
        ignore_pulls=True,
        auto_cancel_pulls=True,
        auto_cancel_pushes=True,
        active=False,
    )
    assert (changed.trusted, changed.protected, changed.visibility, changed.timeout) == (
        True,
        True,
        "internal",
        90,
    )
    assert changed.config_path == ".bastion.yml"
    assert changed.ignore_forks and changed.ignore_pulls
    assert changed.auto_cancel_pulls and changed.auto_cancel_pushes
    assert not changed.active
    assert changed.updated == repo.updated + 5
    assert store.get_repo_by_id(repo.id) == changed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"counter": 5}, "unknown repository setting 'counter'"),
        ({"owner": "evil"}, "unknown repository setting 'owner'"),
        ({"trusted": "yes"}, "must be bool"),
        ({"timeout": True}, "must be int"),
        ({"timeout": 0}, "at least 1"),
        ({"visibility": "everyone"}, "visibility must be one of"),
        ({"config_path": ""}, "may not be empty"),
    ],
)
def test_update_repo_refuses(
    store: Store, repo: Repo, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.update_repo(repo.id, protected=True, **changes)
    assert not store.get_repo_by_id(repo.id).protected  # type: ignore[union-attr]  # nothing written


def test_update_repo_errors(store: Store, repo: Repo) -> None:
    with pytest.raises(NotFound, match="repository 9999"):
        store.update_repo(9999, trusted=True)
    store.create_repo("acme", "api", forge="github", forge_id="7")
    mirror = store.create_repo("acme", "mirror", forge="github", forge_id="8")
    with pytest.raises(Conflict, match="registered already"):
        store.update_repo(mirror.id, forge_id="7")
    assert store.update_repo(mirror.id, forge_id="9").forge_id == "9"


# -- secrets --------------------------------------------------------------------------------------


def test_repo_secrets(store: Store, repo: Repo) -> None:
    assert store.get_repo_secret(repo.id, "password") is None
    store.set_repo_secret(repo.id, "password", "hunter2")
    store.set_repo_secret(repo.id, "token", "tok-ünïcode")
    assert store.get_repo_secret(repo.id, "password") == "hunter2"
    store.set_repo_secret(repo.id, "password", "correct horse")  # replaces
    assert store.get_repo_secret(repo.id, "password") == "correct horse"
    assert store.list_repo_secrets(repo.id) == ["password", "token"]
    assert store.get_repo_secrets(repo.id) == {"password": "correct horse", "token": "tok-ünïcode"}
    assert store.get_repo_secrets(repo.id, ["token", "missing"]) == {"token": "tok-ünïcode"}
    assert store.get_repo_secrets(repo.id, []) == {}
    assert store.delete_repo_secret(repo.id, "token")
    assert not store.delete_repo_secret(repo.id, "token")
    assert store.list_repo_secrets(repo.id) == ["password"]
    with pytest.raises(NotFound, match="repository 9999"):
        store.set_repo_secret(9999, "x", "y")
    with pytest.raises(ValueError, match="secret name"):
        store.set_repo_secret(repo.id, "", "y")


def test_repo_secret_pull_request_flag_and_metadata(
    store: Store, repo: Repo, clock: FakeClock
) -> None:
    created = store.set_repo_secret(repo.id, "token", "push-only-value")
    assert (created.name, created.repo_id, created.pull_request) == ("token", repo.id, False)
    assert created.created == created.updated == int(clock())
    clock.advance(60)
    shared = store.set_repo_secret(repo.id, "npm", "shared-with-prs", pull_request=True)
    assert shared.pull_request
    assert store.describe_repo_secrets(repo.id) == [shared, created]
    assert store.describe_repo_secret(repo.id, "token") == created
    assert store.describe_repo_secret(repo.id, "missing") is None
    assert store.get_repo_secret(repo.id, "npm") == "shared-with-prs"
    assert store.get_repo_secrets(repo.id, pull_request_only=True) == {"npm": "shared-with-prs"}
    assert store.get_repo_secrets(repo.id, ["token"], pull_request_only=True) == {}
    # Replacing changes the value and the flag, keeps the creation time.
    clock.advance(60)
    replaced = store.set_repo_secret(repo.id, "token", "now-for-prs-too", pull_request=True)
    assert (replaced.id, replaced.created, replaced.pull_request) == (
        created.id,
        created.created,
        True,
    )
    assert replaced.updated == int(clock())
    assert store.get_repo_secrets(repo.id, pull_request_only=True) == {
        "npm": "shared-with-prs",
        "token": "now-for-prs-too",
    }
    store.set_repo_secret(repo.id, "npm", "no-longer-for-prs")
    assert store.get_repo_secrets(repo.id, pull_request_only=True) == {"token": "now-for-prs-too"}
    assert store.get_repo_secret(repo.id, "npm") == "no-longer-for-prs"


def test_a_pull_request_flag_flipped_in_the_database_does_not_decrypt(
    store: Store, repo: Repo, db_url: str
) -> None:
    """Someone who can write to the database sets the flag of a push-only secret to hand it
    to pull requests: the ciphertext is bound to the flag, so nobody gets it."""
    store.set_repo_secret(repo.id, "deploy_key", "push-only-deploy-key")
    store.set_repo_secret(repo.id, "npm", "shared-with-prs", pull_request=True)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE repo_secrets SET pull_request = NOT pull_request WHERE repo_id = :r"
                ),
                {"r": repo.id},
            )
    finally:
        engine.dispose()
    for name in ("deploy_key", "npm"):
        with pytest.raises(StoreError, match="cannot be decrypted") as info:
            store.get_repo_secret(repo.id, name)
        assert "push-only-deploy-key" not in str(info.value)
    with pytest.raises(StoreError, match="cannot be decrypted"):
        store.get_repo_secrets(repo.id, pull_request_only=True)


def test_migration_0002_keeps_existing_secrets(db_url: str) -> None:
    """A database at 0001 with secrets: after the upgrade they decrypt as before and are
    not for pull requests; a downgrade drops only what 0001 could not read."""
    from alembic import command

    from bastion.store.migrate import alembic_config

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
    finally:
        engine.dispose()
    with Store(db_url, secret_key=SECRET_KEY) as store:
        assert store.schema_revision() == "0001"
        engine = create_engine(db_url)
        try:
            with engine.begin() as conn:
                # Raw SQL, not the store: the models describe the newest schema, not 0001's.
                repo_id = conn.execute(
                    sa.text(
                        "INSERT INTO repos (owner, name, forge, forge_id, active, trusted, "
                        "protected, private, visibility, timeout, config_path, default_branch, "
                        "http_url, ssh_url, link, counter, ignore_forks, ignore_pulls, "
                        "auto_cancel_pulls, auto_cancel_pushes, created, updated) VALUES "
                        "('acme', 'web', 'local', '', true, false, false, true, 'private', 60, "
                        "'.drone.yml', 'main', '', '', '', 0, false, false, false, false, 1, 1) "
                        "RETURNING id"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
        blob = SecretBox(SECRET_KEY).encrypt(b"written-by-0001", f"repo:{repo_id}:token".encode())
        engine = create_engine(db_url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO repo_secrets (repo_id, name, value, created, updated) "
                        "VALUES (:r, 'token', :v, 1, 1)"
                    ),
                    {"r": repo_id, "v": blob},
                )
        finally:
            engine.dispose()
        store.migrate()
        assert store.schema_revision() == HEAD
        assert store.get_repo_secret(repo_id, "token") == "written-by-0001"
        [meta] = store.describe_repo_secrets(repo_id)
        assert not meta.pull_request
        store.set_repo_secret(repo_id, "npm", "for-pull-requests", pull_request=True)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
            names = [r[0] for r in conn.execute(sa.text("SELECT name FROM repo_secrets"))]
    finally:
        engine.dispose()
    assert names == ["token"]


def test_secrets_are_encrypted_at_rest(
    store: Store, repo: Repo, db_url: str, tmp_path: Path
) -> None:
    value = "s3cr3t-value-that-must-not-leak"
    store.set_repo_secret(repo.id, "password", value)
    store.set_webhook_secret(repo.id, value + "-webhook")
    [(blob,)] = raw_rows(db_url, "SELECT value FROM repo_secrets")
    blob = bytes(blob)
    assert value.encode() not in blob
    assert blob[0] == 2  # format version
    [(hook,)] = raw_rows(db_url, "SELECT webhook_secret FROM repos")
    assert value.encode() not in bytes(hook)
    if db_url.startswith("sqlite"):
        data = b"".join(p.read_bytes() for p in tmp_path.glob("bastion.db*"))
        assert blob in data
        assert value.encode() not in data


def test_a_ciphertext_moved_to_another_owner_does_not_decrypt(store: Store, db_url: str) -> None:
    """Someone who can write to the database copies one repository's ciphertext into another
    repository's row, or under another name: the store refuses to decrypt it."""
    web = store.create_repo("acme", "web")
    evil = store.create_repo("evil", "fork")
    store.set_repo_secret(web.id, "deploy_key", "web-deploy-key")
    store.set_repo_secret(evil.id, "deploy_key", "evil-placeholder")
    store.set_repo_secret(web.id, "other", "web-other")
    store.set_webhook_secret(web.id, "hook-secret")

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            blob = conn.execute(
                sa.text(
                    "SELECT value FROM repo_secrets WHERE repo_id = :r AND name = 'deploy_key'"
                ),
                {"r": web.id},
            ).scalar_one()
            conn.execute(
                sa.text("UPDATE repo_secrets SET value = :v WHERE repo_id = :r"),
                {"v": blob, "r": evil.id},
            )
            conn.execute(
                sa.text("UPDATE repo_secrets SET value = :v WHERE repo_id = :r AND name = 'other'"),
                {"v": blob, "r": web.id},
            )
            conn.execute(
                sa.text("UPDATE repos SET webhook_secret = :v WHERE id = :r"),
                {"v": blob, "r": evil.id},
            )
    finally:
        engine.dispose()

    assert store.get_repo_secret(web.id, "deploy_key") == "web-deploy-key"
    with pytest.raises(StoreError, match="cannot be decrypted") as moved:
        store.get_repo_secret(evil.id, "deploy_key")
    assert "web-deploy-key" not in str(moved.value)
    with pytest.raises(StoreError, match="cannot be decrypted"):
        store.get_repo_secret(web.id, "other")
    with pytest.raises(StoreError, match="cannot be decrypted"):
        store.get_repo_secrets(evil.id)
    with pytest.raises(StoreError, match=r"webhook secret .* cannot be decrypted"):
        store.get_webhook_secret(evil.id)


def test_secrets_need_the_same_key(db_url: str) -> None:
    with Store(db_url, secret_key=SECRET_KEY) as store:
        store.migrate()
        repo = store.create_repo("acme", "web")
        store.set_repo_secret(repo.id, "password", "hunter2")
    with Store(db_url, secret_key=bytes(reversed(SECRET_KEY))) as other:
        with pytest.raises(StoreError, match="cannot be decrypted") as info:
            other.get_repo_secret(repo.id, "password")
        assert "hunter2" not in str(info.value)


def test_webhook_secret(store: Store, repo: Repo) -> None:
    assert store.get_webhook_secret(repo.id) is None
    store.set_webhook_secret(repo.id, "whsec")
    assert store.get_webhook_secret(repo.id) == "whsec"
    # Not reachable as a repository secret, and the reverse.
    assert store.get_repo_secret(repo.id, "webhook") is None
    with pytest.raises(NotFound):
        store.set_webhook_secret(9999, "x")
    with pytest.raises(NotFound):
        store.get_webhook_secret(9999)


def test_store_refuses_a_wrong_size_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32-byte key"):
        Store(f"sqlite:///{tmp_path / 'x.db'}", secret_key=b"short")


# -- builds ---------------------------------------------------------------------------------------


def test_create_build(store: Store, repo: Repo, clock: FakeClock) -> None:
    new = NewBuild(
        event="pull_request",
        action="opened",
        title="Fix",
        message="fix: thing\n\nbody",
        before="a" * 40,
        after="b" * 40,
        ref="refs/pull/7/head",
        source_repo="someone/web",
        source="feature",
        target="main",
        author_login="alice",
        author_name="Alice",
        author_email="alice@example.com",
        author_avatar="https://example.com/a.png",
        sender="alice",
        fork=True,
        params={"deploy": "yes"},
        trigger="@hook",
    )
    stages = [
        NewStage(
            number=2,
            name="deploy",
            status=Status.WAITING,
            depends_on=("test",),
            labels={"region": "eu"},
            arch="arm64",
            on_failure=True,
        ),
        NewStage(number=1, name="test", status=Status.PENDING),
    ]
    build, created = store.create_build(repo.id, new, stages)
    assert build.number == 1
    assert build.repo_id == repo.id
    assert build.status == Status.PENDING
    assert (build.event, build.action, build.title, build.message) == (
        "pull_request",
        "opened",
        "Fix",
        "fix: thing\n\nbody",
    )
    assert (build.source, build.target, build.fork, build.params) == (
        "feature",
        "main",
        True,
        {"deploy": "yes"},
    )
    assert build.created == int(clock())
    assert (build.started, build.finished) == (0, 0)
    assert [s.number for s in created] == [1, 2]
    deploy = created[1]
    assert (deploy.name, deploy.status, deploy.depends_on, deploy.labels, deploy.arch) == (
        "deploy",
        Status.WAITING,
        ("test",),
        {"region": "eu"},
        "arm64",
    )
    assert deploy.on_failure and deploy.on_success
    assert (deploy.runner_id, deploy.lease_expires, deploy.build_id, deploy.repo_id) == (
        None,
        0,
        build.id,
        repo.id,
    )
    assert store.get_repo_by_id(repo.id).counter == 1  # type: ignore[union-attr]
    assert store.get_build(repo.id, 1) == build
    assert store.get_build_by_id(build.id) == build
    assert store.list_stages(build.id) == created
    assert store.get_stage(created[0].id) == created[0]

    second, _ = store.create_build(repo.id, NewBuild(event="push"), [])
    assert second.number == 2


def test_create_build_errors(store: Store, repo: Repo) -> None:
    with pytest.raises(NotFound, match="repository 9999"):
        store.create_build(9999, NewBuild(event="push"), [])
    same = [NewStage(number=1, name="a", status=Status.PENDING)] * 2
    with pytest.raises(ValueError, match="distinct"):
        store.create_build(repo.id, NewBuild(event="push"), same)
    assert store.get_repo_by_id(repo.id).counter == 0  # type: ignore[union-attr]


def test_build_numbers_are_unique_under_concurrency(store: Store) -> None:
    repo = store.create_repo("acme", "busy")
    other = store.create_repo("acme", "other")
    threads, per_thread = 8, 5

    def work(i: int) -> list[int]:
        target = repo if i % 4 else other
        return [
            store.create_build(
                target.id,
                NewBuild(event="push"),
                [NewStage(number=1, name="x", status=Status.PENDING)],
            )[0].number
            for _ in range(per_thread)
        ]

    race(threads, work)
    numbers = [b.number for b in store.list_builds(repo.id, per_page=1000)]
    other_numbers = [b.number for b in store.list_builds(other.id, per_page=1000)]
    assert sorted(numbers) == list(range(1, 6 * per_thread + 1))
    assert sorted(other_numbers) == list(range(1, 2 * per_thread + 1))
    assert store.get_repo_by_id(repo.id).counter == 6 * per_thread  # type: ignore[union-attr]


def test_list_and_find_builds(store: Store, repo: Repo) -> None:
    for target in ("main", "dev", "main", "dev", "main"):
        make_build(store, repo, target=target)
    assert [b.number for b in store.list_builds(repo.id)] == [5, 4, 3, 2, 1]
    assert [b.number for b in store.list_builds(repo.id, page=2, per_page=2)] == [3, 2]
    assert store.list_builds(repo.id, page=4, per_page=2) == []
    with pytest.raises(ValueError, match="page"):
        store.list_builds(repo.id, page=0)
    assert store.latest_build(repo.id).number == 5  # type: ignore[union-attr]
    assert store.latest_build(repo.id, branch="dev").number == 4  # type: ignore[union-attr]
    assert store.latest_build(repo.id, branch="nope") is None
    assert store.latest_build(9999) is None
    assert store.get_build(repo.id, 99) is None
    assert store.get_build_by_id(9999) is None


def test_update_build_and_builds_with_status(store: Store, repo: Repo, clock: FakeClock) -> None:
    first, _ = make_build(store, repo)
    second, _ = make_build(store, repo)
    third, _ = make_build(store, repo, status=Status.BLOCKED)
    clock.advance(3)
    running = store.update_build(first, status=Status.RUNNING, started=100)
    assert (running.status, running.started, running.updated) == (
        Status.RUNNING,
        100,
        int(clock()),
    )
    done = store.update_build(first, status=Status.FAILURE, error="boom", finished=200)
    assert (done.status, done.error, done.started, done.finished) == (
        Status.FAILURE,
        "boom",
        100,
        200,
    )
    assert [b.id for b in store.builds_with_status([Status.PENDING, Status.BLOCKED])] == [
        second,
        third,
    ]
    assert store.builds_with_status([]) == []
    with pytest.raises(NotFound, match="build 9999"):
        store.update_build(9999, status=Status.KILLED)


# -- stages and leases ----------------------------------------------------------------------------


def test_pending_stages(store: Store, repo: Repo) -> None:
    _, first = make_build(store, repo, stages=2)
    _, second = make_build(store, repo, stages=1)
    store.update_stage(first[1].id, status=Status.SKIPPED)
    assert [s.id for s in store.pending_stages()] == [first[0].id, second[0].id]
    assert [s.id for s in store.pending_stages(limit=1)] == [first[0].id]


def test_pending_stage_keys(store: Store, repo: Repo) -> None:
    _, stages = store.create_build(
        repo.id,
        NewBuild(event="push"),
        [
            NewStage(number=1, name="a", status=Status.PENDING),
            NewStage(
                number=2,
                name="b",
                status=Status.PENDING,
                os="windows",
                arch="arm64",
                labels={"gpu": "yes", "zone": "eu"},
            ),
            NewStage(number=3, name="c", status=Status.PENDING),
        ],
    )
    _, later = make_build(store, repo, stages=1)
    store.update_stage(stages[2].id, status=Status.SKIPPED)
    assert store.pending_stage_keys() == [
        StageKey(id=stages[0].id, os="linux", arch="amd64", labels={}),
        StageKey(id=stages[1].id, os="windows", arch="arm64", labels={"gpu": "yes", "zone": "eu"}),
        StageKey(id=later[0].id, os="linux", arch="amd64", labels={}),
    ]
    assert [k.id for k in store.pending_stage_keys(limit=2)] == [stages[0].id, stages[1].id]
    assert [k.id for k in store.pending_stage_keys()] == [s.id for s in store.pending_stages()]
    assert store.lease_stage(stages[0].id, store.create_runner("r", LEASE).id, "m", LEASE, 1)
    assert [k.id for k in store.pending_stage_keys()] == [stages[1].id, later[0].id]


def test_lease_stage(store: Store, stage: Stage, runner_id: int, clock: FakeClock) -> None:
    clock.advance(1)
    assert store.lease_stage(stage.id, runner_id, "host-1", LEASE, int(clock()) + 60)
    leased = store.get_stage(stage.id)
    assert leased is not None
    assert (leased.status, leased.runner_id, leased.machine, leased.started) == (
        Status.RUNNING,
        runner_id,
        "host-1",
        int(clock()),
    )
    assert leased.lease_expires == int(clock()) + 60
    # A stage is leased once.
    assert not store.lease_stage(stage.id, runner_id, "host-2", OTHER_LEASE, int(clock()) + 60)
    assert store.get_stage(stage.id).machine == "host-1"  # type: ignore[union-attr]
    assert not store.lease_stage(9999, runner_id, "host-1", LEASE, 1)
    with pytest.raises(ValueError, match="SHA-256"):
        store.lease_stage(stage.id, runner_id, "host-1", "bst_lease_plaintext", 1)


def test_lease_race_has_one_winner(store: Store, repo: Repo) -> None:
    _, [stage] = make_build(store, repo)
    runners = [store.create_runner(f"r{i}", hash_token(f"t{i}")).id for i in range(10)]
    wins = race(
        10,
        lambda i: store.lease_stage(
            stage.id, runners[i], f"m{i}", hash_token(f"lease{i}"), 2_000_000_000
        ),
    )
    assert wins.count(True) == 1
    winner = wins.index(True)
    leased = store.get_stage(stage.id)
    assert leased is not None
    assert (leased.runner_id, leased.machine) == (runners[winner], f"m{winner}")
    assert store.check_lease(stage.id, runners[winner], hash_token(f"lease{winner}")) is not None


def test_lease_races_on_many_stages(store: Store, repo: Repo) -> None:
    """Runners grabbing from one queue: every stage goes to exactly one runner."""
    _, stages = make_build(store, repo, stages=20)
    runners = [store.create_runner(f"r{i}", hash_token(f"t{i}")).id for i in range(6)]

    def grab(i: int) -> list[int]:
        won = []
        for s in stages:
            if store.lease_stage(s.id, runners[i], f"m{i}", hash_token(f"{i}:{s.id}"), 2**40):
                won.append(s.id)
        return won

    results = race(6, grab)
    won = sorted(sid for r in results for sid in r)
    assert won == sorted(s.id for s in stages)


def test_take_stage_starts_the_build_on_its_first_lease_only(
    store: Store, repo: Repo, runner_id: int, clock: FakeClock
) -> None:
    build_id, stages = make_build(store, repo, stages=2)
    clock.advance(1)
    taken = store.take_stage(stages[0].id, runner_id, "host-1", LEASE, int(clock()) + 60)
    assert taken is not None
    first, started = taken
    assert (first.status, first.machine, first.started) == (Status.RUNNING, "host-1", int(clock()))
    assert started is not None and (started.id, started.status) == (build_id, Status.RUNNING)
    assert started.started == int(clock())
    clock.advance(1)
    taken = store.take_stage(stages[1].id, runner_id, "host-1", OTHER_LEASE, int(clock()) + 60)
    assert taken is not None and taken[1] is None  # running already: nothing changed
    assert store.get_build_by_id(build_id).started == int(clock()) - 1  # type: ignore[union-attr]
    assert store.take_stage(stages[0].id, runner_id, "host-2", OTHER_LEASE, 2**31) is None
    assert store.take_stage(9999, runner_id, "host-1", LEASE, 2**31) is None


def test_finish_stage_writes_the_steps_closes_the_open_ones_and_keeps_the_first_end(
    store: Store, repo: Repo, runner_id: int, clock: FakeClock
) -> None:
    _, [stage, _] = make_build(store, repo, stages=2)
    assert store.take_stage(stage.id, runner_id, "host-1", LEASE, 2**31) is not None
    store.upsert_step(stage.id, 2, "left running", status=Status.RUNNING, started=5)
    store.upsert_step(stage.id, 3, "never started", status=Status.PENDING)
    clock.advance(1)
    report = StepReport(number=1, name="build", status=Status.SUCCESS, started=3, stopped=4)
    end = store.finish_stage(
        stage.id,
        status=Status.ERROR,
        error="boom",
        exit_code=2,
        steps=[report],
        running_becomes=Status.ERROR,
    )
    assert end is not None and end.ended
    assert (end.stage.status, end.stage.error, end.stage.exit_code) == (Status.ERROR, "boom", 2)
    assert end.stage.stopped == int(clock())
    assert end.build_status == Status.RUNNING
    assert end.stage_statuses == (Status.ERROR, Status.PENDING)  # this stage, the other one
    steps = {s.number: s for s in store.list_steps(stage.id)}
    assert (steps[1].status, steps[1].started, steps[1].stopped) == (Status.SUCCESS, 3, 4)
    assert (steps[2].status, steps[2].started, steps[2].stopped) == (
        Status.ERROR,
        5,
        int(clock()),
    )
    assert steps[3].status == Status.SKIPPED
    assert store.check_lease(stage.id, runner_id, LEASE) is None  # the lease ended with it
    again = store.finish_stage(stage.id, status=Status.SUCCESS, error="", steps=[report])
    assert again is not None and not again.ended
    assert again.stage.status == Status.ERROR  # the first outcome is kept
    assert store.finish_stage(9999, status=Status.SUCCESS, error="") is None


def test_stages_ending_at_once_leave_one_that_sees_the_build_done(
    store: Store, repo: Repo, runner_id: int
) -> None:
    """The build state machine skips settling when its snapshot shows stages still running:
    of stages ending concurrently, exactly one must see all of them done (PostgreSQL too,
    where a snapshot could otherwise miss a concurrent end that commits after it)."""
    for _ in range(3):
        _, stages = make_build(store, repo, stages=8)
        for i, s in enumerate(stages):
            assert store.take_stage(s.id, runner_id, "m", hash_token(f"l{s.id}:{i}"), 2**31)
        ids = [s.id for s in stages]
        ends = race(
            8, lambda i, ids=ids: store.finish_stage(ids[i], status=Status.SUCCESS, error="")
        )
        saw_all_done = [e for e in ends if e is not None and all(s.done for s in e.stage_statuses)]
        assert len(saw_all_done) == 1


def test_check_lease(store: Store, stage: Stage, runner_id: int, clock: FakeClock) -> None:
    other_runner = store.create_runner("r2", hash_token("r2")).id
    assert store.check_lease(stage.id, runner_id, LEASE) is None  # pending: no lease yet
    expires = int(clock()) + 30
    assert store.lease_stage(stage.id, runner_id, "m", LEASE, expires)
    held = store.check_lease(stage.id, runner_id, LEASE)
    assert held is not None
    assert held.id == stage.id
    assert store.check_lease(stage.id, runner_id, OTHER_LEASE) is None
    assert store.check_lease(stage.id, other_runner, LEASE) is None
    assert store.check_lease(9999, runner_id, LEASE) is None
    assert store.check_lease(stage.id, runner_id, "") is None
    clock.advance(30)
    assert store.check_lease(stage.id, runner_id, LEASE) is not None  # until its last second
    clock.advance(1)
    assert store.check_lease(stage.id, runner_id, LEASE) is None  # expired
    store.renew_lease(stage.id, int(clock()) + 30)
    assert store.check_lease(stage.id, runner_id, LEASE) is not None
    store.update_stage(stage.id, status=Status.SUCCESS, exit_code=0, stopped=int(clock()))
    assert store.check_lease(stage.id, runner_id, LEASE) is None  # done: the lease ended


def test_check_lease_compares_in_constant_time(
    store: Store, stage: Stage, runner_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    from bastion.crypto import tokens

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    assert store.lease_stage(stage.id, runner_id, "m", LEASE, 2**40)
    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert store.check_lease(stage.id, runner_id, OTHER_LEASE) is None
    assert calls == [(LEASE.encode(), OTHER_LEASE.encode())]


def test_update_stage_ends_the_lease(store: Store, stage: Stage, runner_id: int) -> None:
    assert store.lease_stage(stage.id, runner_id, "m", LEASE, 2**40)
    requeued = store.update_stage(stage.id, status=Status.PENDING, error="runner lost")
    assert (requeued.status, requeued.lease_expires, requeued.error) == (
        Status.PENDING,
        0,
        "runner lost",
    )
    assert requeued.runner_id == runner_id  # who ran it last stays recorded
    assert store.check_lease(stage.id, runner_id, LEASE) is None
    # Requeued, it can be leased again, to another runner.
    other = store.create_runner("r2", hash_token("r2")).id
    assert store.lease_stage(stage.id, other, "m2", OTHER_LEASE, 2**40)
    assert store.check_lease(stage.id, other, OTHER_LEASE) is not None
    done = store.update_stage(stage.id, status=Status.FAILURE, exit_code=2, started=5, stopped=9)
    assert (done.exit_code, done.started, done.stopped) == (2, 5, 9)
    with pytest.raises(NotFound, match="stage 9999"):
        store.update_stage(9999, status=Status.KILLED)


def test_renew_lease(store: Store, stage: Stage, runner_id: int) -> None:
    store.renew_lease(stage.id, 500)  # not running: nothing happens
    assert store.get_stage(stage.id).lease_expires == 0  # type: ignore[union-attr]
    assert store.lease_stage(stage.id, runner_id, "m", LEASE, 100)
    store.renew_lease(stage.id, 500)
    assert store.get_stage(stage.id).lease_expires == 500  # type: ignore[union-attr]
    with pytest.raises(NotFound, match="stage 9999"):
        store.renew_lease(9999, 500)


def test_expired_and_extended_leases(store: Store, repo: Repo, runner_id: int) -> None:
    _, stages = make_build(store, repo, stages=4)
    a, b, c, d = stages
    assert store.lease_stage(a.id, runner_id, "m", hash_token("a"), 100)
    assert store.lease_stage(b.id, runner_id, "m", hash_token("b"), 200)
    assert store.lease_stage(c.id, runner_id, "m", hash_token("c"), 300)
    store.update_stage(c.id, status=Status.SUCCESS)  # done: not a lease any more
    assert [s.id for s in store.expired_leases(150)] == [a.id]
    assert [s.id for s in store.expired_leases(201)] == [a.id, b.id]
    assert store.expired_leases(100) == []  # expires at 100: lapsed only after 100
    assert store.extend_all_leases(150) == 1  # only a's lease was shorter
    assert store.get_stage(a.id).lease_expires == 150  # type: ignore[union-attr]
    assert store.get_stage(b.id).lease_expires == 200  # type: ignore[union-attr]  # not shortened
    assert store.get_stage(d.id).lease_expires == 0  # type: ignore[union-attr]  # pending
    assert store.get_stage(c.id).lease_expires == 0  # type: ignore[union-attr]


# -- steps and logs -------------------------------------------------------------------------------


def test_steps(store: Store, stage: Stage) -> None:
    created = store.upsert_step(stage.id, 1, "clone", status=Status.RUNNING, started=10)
    assert (created.number, created.name, created.status, created.started, created.stopped) == (
        1,
        "clone",
        Status.RUNNING,
        10,
        0,
    )
    # An update that does not know `started` keeps it.
    done = store.upsert_step(
        stage.id, 1, "clone", status=Status.FAILURE, exit_code=128, error="no repo", stopped=20
    )
    assert done.id == created.id
    assert (done.status, done.exit_code, done.error, done.started, done.stopped) == (
        Status.FAILURE,
        128,
        "no repo",
        10,
        20,
    )
    service = store.upsert_step(stage.id, 2, "db", status=Status.RUNNING, service=True)
    detached = store.upsert_step(stage.id, 3, "bg", status=Status.RUNNING, detached=True)
    assert service.service
    assert detached.detached
    assert [s.number for s in store.list_steps(stage.id)] == [1, 2, 3]
    assert store.get_step(stage.id, 1) == done
    assert store.get_step(stage.id, 9) is None
    with pytest.raises(NotFound, match="stage 9999"):
        store.upsert_step(9999, 1, "x", status=Status.RUNNING)


def test_logs_are_idempotent(store: Store, stage: Stage) -> None:
    step = store.upsert_step(stage.id, 1, "build", status=Status.RUNNING)
    assert store.append_log_lines(step.id, [(0, 0.0, "a"), (1, 0.5, "b")]) == 2
    # A retried batch, overlapping the stored lines: only the new one counts.
    assert store.append_log_lines(step.id, [(1, 0.5, "b"), (2, 1.0, "c")]) == 1
    assert store.append_log_lines(step.id, [(0, 9.9, "changed?")]) == 0  # first write wins
    assert store.append_log_lines(step.id, [(3, 1.0, "d"), (3, 1.1, "dup in one batch")]) == 1
    assert store.append_log_lines(step.id, []) == 0
    assert store.read_log_lines(step.id) == [
        (0, 0.0, "a"),
        (1, 0.5, "b"),
        (2, 1.0, "c"),
        (3, 1.0, "d"),
    ]
    assert store.read_log_lines(step.id, after=1) == [(2, 1.0, "c"), (3, 1.0, "d")]
    assert store.read_log_lines(step.id, after=0, limit=1) == [(1, 0.5, "b")]
    assert store.read_log_lines(step.id, after=3) == []


def test_log_edge_cases(store: Store, stage: Stage) -> None:
    step = store.upsert_step(stage.id, 1, "build", status=Status.RUNNING)
    many = [(n, n / 10, f"line {n} " + "x" * 100) for n in range(1234)]
    assert store.append_log_lines(step.id, many) == 1234  # more than one INSERT chunk
    assert store.append_log_lines(step.id, many[::-1]) == 0
    assert store.read_log_lines(step.id) == many
    other = store.upsert_step(stage.id, 2, "other", status=Status.RUNNING)
    text = "nul\x00byte, ünïcode ✓, \x1b[31mansi\x1b[0m, tab\t"
    assert store.append_log_lines(other.id, [(0, 0.0, text)]) == 1
    assert store.read_log_lines(other.id) == [(0, 0.0, text.replace("\x00", "\ufffd"))]
    with pytest.raises(NotFound, match="step 9999"):
        store.append_log_lines(9999, [(0, 0.0, "x")])
    with pytest.raises(ValueError, match="start at 0"):
        store.append_log_lines(other.id, [(-1, 0.0, "x")])


def test_concurrent_log_retries(store: Store, stage: Stage) -> None:
    step = store.upsert_step(stage.id, 1, "build", status=Status.RUNNING)
    lines = [(n, float(n), f"l{n}") for n in range(200)]
    added = race(6, lambda i: store.append_log_lines(step.id, lines[i * 20 : i * 20 + 100]))
    assert sum(added) == 200
    assert store.read_log_lines(step.id) == lines


# -- runners --------------------------------------------------------------------------------------


def test_runners(store: Store, repo: Repo, clock: FakeClock) -> None:
    token = new_token("runner")
    runner = store.create_runner("ci-1", hash_token(token))
    assert (runner.name, runner.revoked, runner.created, runner.last_seen) == (
        "ci-1",
        False,
        int(clock()),
        0,
    )
    assert store.find_runner_by_token(hash_token(token)) == runner
    assert store.find_runner_by_token(hash_token("other")) is None
    assert store.find_runner("ci-1") == runner
    assert store.get_runner(runner.id) == runner
    assert store.get_runner(9999) is None

    store.touch_runner(
        runner.id,
        os="linux",
        arch="arm64",
        labels={"gpu": "yes"},
        capacity=4,
        version="0.1.0",
        when=777,
    )
    touched = store.get_runner(runner.id)
    assert touched is not None
    assert (touched.os, touched.arch, touched.labels, touched.capacity, touched.version) == (
        "linux",
        "arm64",
        {"gpu": "yes"},
        4,
        "0.1.0",
    )
    assert touched.last_seen == 777

    _, [a, b] = make_build(store, repo, stages=2)
    assert store.lease_stage(a.id, runner.id, "m", LEASE, 2**40)
    assert store.lease_stage(b.id, runner.id, "m", OTHER_LEASE, 2**40)
    store.update_stage(b.id, status=Status.ERROR)
    assert [s.id for s in store.stages_of_runner(runner.id, [Status.RUNNING])] == [a.id]
    assert [s.id for s in store.stages_of_runner(runner.id, [Status.RUNNING, Status.ERROR])] == [
        a.id,
        b.id,
    ]
    assert store.stages_of_runner(runner.id, []) == []

    store.revoke_runner("ci-1")
    assert store.find_runner_by_token(hash_token(token)) is None
    assert store.find_runner("ci-1") is None
    assert store.get_runner(runner.id).revoked  # type: ignore[union-attr]
    # The name of a revoked runner can be given to a new one.
    again = store.create_runner("ci-1", hash_token(new_token("runner")))
    assert again.id != runner.id
    assert [(r.name, r.revoked) for r in store.list_runners()] == [
        ("ci-1", True),
        ("ci-1", False),
    ]


def test_runner_errors(store: Store) -> None:
    store.create_runner("ci-1", hash_token("a"))
    with pytest.raises(Conflict, match="runner 'ci-1' already exists"):
        store.create_runner("ci-1", hash_token("b"))
    with pytest.raises(Conflict):
        store.create_runner("ci-2", hash_token("a"))  # same token hash
    with pytest.raises(NotFound, match="runner 'nope'"):
        store.revoke_runner("nope")
    with pytest.raises(NotFound, match="runner 9999"):
        store.touch_runner(9999, os="", arch="", labels={}, capacity=1, version="", when=0)
    with pytest.raises(ValueError, match="SHA-256"):
        store.create_runner("ci-3", new_token("runner"))


# -- webhook deliveries ---------------------------------------------------------------------------


def test_deliveries(store: Store) -> None:
    assert store.record_delivery("github", "abc", 100)
    assert not store.record_delivery("github", "abc", 200)  # a redelivery
    assert store.record_delivery("gitea", "abc", 100)  # another forge's id space
    assert store.record_delivery("github", "def", 300)
    assert store.purge_deliveries(250) == 2
    assert store.record_delivery("github", "abc", 400)  # forgotten after the purge
    assert not store.record_delivery("github", "def", 400)


def test_concurrent_redeliveries(store: Store) -> None:
    assert race(8, lambda i: store.record_delivery("github", "same", i)).count(True) == 1
