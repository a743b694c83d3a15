"""Engine set-up: SQLite pragmas and file mode, URL handling, in-memory databases, errors that
show no SQL parameters."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.integration.store.conftest import SECRET_KEY

from bastion.crypto import hash_token
from bastion.store import Conflict, Store, StoreError
from bastion.store.engine import create_engine, normalize_url
from bastion.store.migrate import MIGRATIONS_DIR, head_revision, next_revision_id, shipped_head
from bastion.store.types import NewBuild


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 30000,
        "synchronous": 1,
    }


def test_sqlite_write_transactions_take_the_lock_at_begin(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE for writes: a second writer waits at BEGIN (here: times out) instead of
    reading first and failing later to upgrade its lock."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.connect() as holder:
            holder.execution_options(bastion_write=True)
            holder.begin()
            other = sa.create_engine(url, connect_args={"timeout": 0.1})
            try:
                with other.connect() as conn:
                    raw = conn.connection.dbapi_connection
                    assert raw is not None
                    raw.isolation_level = None
                    raw.execute("PRAGMA busy_timeout = 100")
                    with pytest.raises(sa.exc.OperationalError, match="locked"):
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    # Readers are not blocked (WAL).
                    conn.exec_driver_sql("SELECT 1").scalar()
            finally:
                other.dispose()
    finally:
        engine.dispose()


def test_new_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "bastion.db"
    with Store(f"sqlite:///{path}", secret_key=SECRET_KEY) as store:
        store.migrate()
        store.create_user("bob")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in tmp_path.glob("sub/dir/bastion.db-*"):
        assert stat.S_IMODE(extra.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgres://u:p@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
        ("sqlite://", "sqlite"),
    ],
)
def test_normalize_url(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


@pytest.mark.parametrize(
    "url", ["mysql://root:hunter2@h/db", "not a url", "sqlite+aiosqlite:///x.db"]
)
def test_unsupported_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"supported|not valid") as info:
        Store(url, secret_key=SECRET_KEY)
    assert "hunter2" not in str(info.value)


def test_in_memory_store_is_usable_from_threads() -> None:
    with Store("sqlite://", secret_key=SECRET_KEY) as store:
        store.migrate()
        repo = store.create_repo("acme", "web")
        barrier = threading.Barrier(4)

        def work() -> None:
            barrier.wait()
            for _ in range(10):
                store.create_build(repo.id, NewBuild(event="push"), [])

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        numbers = sorted(b.number for b in store.list_builds(repo.id, per_page=100))
        assert numbers == list(range(1, 41))


def test_errors_show_no_sql_parameters(tmp_path: Path) -> None:
    token_hash = hash_token("some token")
    with Store(f"sqlite:///{tmp_path / 'x.db'}", secret_key=SECRET_KEY) as store:
        store.migrate()
        store.create_runner("a", token_hash)
        with pytest.raises(Conflict) as info:
            store.create_runner("b", token_hash)
    text = f"{info.value} {info.value.__cause__}"
    assert token_hash not in text


def test_a_missing_database_is_a_store_error(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'x.db'}", secret_key=SECRET_KEY) as store:
        # not migrated: no tables
        with pytest.raises(StoreError, match="no such table"):
            store.list_users()
        assert store.ping()


def test_postgres_down_is_a_store_error() -> None:
    # Port 9 on loopback: nothing listens there.
    with Store("postgresql+psycopg://u:hunter2@127.0.0.1:9/db", secret_key=SECRET_KEY) as store:
        assert not store.ping()
        with pytest.raises(StoreError, match="database error") as info:
            store.list_users()
    assert "hunter2" not in str(info.value)


def test_migrations_ship_inside_the_package() -> None:
    import bastion.store

    assert MIGRATIONS_DIR.parent == Path(bastion.store.__file__).resolve().parent
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert head_revision() == "0010"
    assert next_revision_id() == "0011"
    assert not os.path.exists(MIGRATIONS_DIR / "alembic.ini")


def test_the_shipped_head_is_alembics_head() -> None:
    assert shipped_head() == head_revision()


def test_a_database_at_the_head_is_opened_without_importing_alembic(tmp_path: Path) -> None:
    """Alembic costs a server ≈ 11 MB; a restart with nothing to migrate must not load it.
    Checked in fresh interpreters: this test process has imported Alembic long ago."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    script = (
        "import sys\n"
        "from bastion.store import Store\n"
        f"store = Store({url!r}, secret_key=bytes.fromhex({SECRET_KEY.hex()!r}))\n"
        "store.migrate()\n"
        "print(store.schema_revision(), 'alembic' in sys.modules)\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert first.stdout.split() == [head_revision(), "True"]  # a new database: migrated
    second = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert second.stdout.split() == [head_revision(), "False"]
