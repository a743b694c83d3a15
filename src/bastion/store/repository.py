"""The store's repository: every read and write of Bastion's state goes through ``Store``.

Every method runs in its own short transaction, returns plain dataclasses from
``bastion.store.types`` (never a SQLAlchemy object) and raises the errors of
``bastion.store.errors``: ``NotFound`` for a missing user / repository / build / stage / step /
runner, ``Conflict`` for a taken unique key, ``StoreError`` when the database fails.
``ValueError`` means the caller passed something invalid (an unknown setting, a plaintext
token where a hash belongs). ``Store`` is thread-safe: the server calls it from worker threads.

Concurrency guarantees, on SQLite and PostgreSQL alike:

* ``create_build`` numbers builds by incrementing ``repos.counter`` in one UPDATE ... RETURNING
  inside the build's transaction. PostgreSQL's row lock makes a concurrent increment wait and
  then see the committed value; SQLite write transactions start with BEGIN IMMEDIATE and so
  never overlap. Numbers are never handed out twice.
* ``lease_stage`` is a compare-and-set (UPDATE ... WHERE status = 'pending'): of any number of
  runners racing for a stage, exactly one gets it.
* ``append_log_lines`` and ``record_delivery`` are idempotent through unique keys and
  INSERT ... ON CONFLICT DO NOTHING, so retries and redeliveries are harmless.

Secrets: API tokens, runner tokens and lease ids are stored as SHA-256 hashes computed by the
caller (``bastion.crypto.hash_token``); methods that store one refuse anything that does not
look like a hash. Webhook secrets are encrypted with AES-256-GCM under the server key, bound
to their repository by the associated data; repository, organisation and global secrets are
kept by the ``SecretStore`` mixin (``secret_store.py``), bound to scope, owner, name and
filters.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import Any, Final, TypeVar

from sqlalchemy import (
    CursorResult,
    bindparam,
    delete,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.crypto import DecryptError, SecretBox, tokens_equal
from bastion.store import _convert, _hot, migrate
from bastion.store.approval_store import ApprovalStore
from bastion.store.audit_store import AuditStore
from bastion.store.cron_store import CronStore
from bastion.store.encrypted import RekeyStore
from bastion.store.engine import WRITE_OPTION, create_engine, is_memory_sqlite, normalize_url
from bastion.store.environment_store import EnvironmentStore
from bastion.store.errors import Conflict, NotFound, StoreError
from bastion.store.identity_store import IdentityStore
from bastion.store.lockout_store import LockoutStore
from bastion.store.models import (
    Base,
    BuildRow,
    DeliveryRow,
    LogRow,
    RepoRow,
    RunnerRow,
    StageRow,
    StepRow,
    UserRow,
)
from bastion.store.secret_store import SecretStore
from bastion.store.token_store import TokenStore
from bastion.store.types import (
    Build,
    NewBuild,
    NewStage,
    Repo,
    Runner,
    Stage,
    StageEnd,
    StageKey,
    Status,
    Step,
    StepReport,
    User,
)

_HASH = re.compile(r"^[0-9a-f]{64}$")
VISIBILITIES: Final = frozenset({"private", "internal", "public"})

# update_repo's settings and their types. Identity (owner, name, forge) and the build counter
# are not settings: they change only through dedicated code paths, or never.
REPO_SETTINGS: Final[dict[str, type]] = {
    "active": bool,
    "trusted": bool,
    "protected": bool,
    "private": bool,
    "visibility": str,
    "timeout": int,
    "config_path": str,
    "default_branch": str,
    "http_url": str,
    "ssh_url": str,
    "link": str,
    "forge_id": str,
    "ignore_forks": bool,
    "ignore_pulls": bool,
    "auto_cancel_pulls": bool,
    "auto_cancel_pushes": bool,
    "approval_mode": str,
    "approvers": list,
    "prevent_self_approval": bool,
}
APPROVAL_MODES: Final = frozenset({"", "none", "forks", "pull_requests", "all_events"})

# Rows per INSERT of log lines: far below SQLite's limit of 32766 bound parameters.
_LOG_CHUNK = 500

_Row = TypeVar("_Row", bound=Base)

# Alembic's `context` and `op` are process-wide proxies: two migrations running in threads of
# one process would configure each other's. Between processes, the database's own lock
# (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL) makes them take turns.
_MIGRATING = threading.Lock()


class Store(
    AuditStore,
    ApprovalStore,
    SecretStore,
    RekeyStore,
    LockoutStore,
    CronStore,
    IdentityStore,
    TokenStore,
    EnvironmentStore,
):
    """Bastion's persistent state in SQLite or PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        secret_key: bytes,
        previous_keys: Iterable[bytes] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``url``: SQLAlchemy URL (sqlite:///path.db or postgresql+psycopg://...).
        ``secret_key``: 32 bytes for AES-256-GCM encryption of repository secrets.
        ``previous_keys``: older keys that still decrypt (see ``rekey_encrypted``).
        ``clock``: returns Unix time; ``time.time`` unless a test injects another."""
        # WeakKeyError (a ValueError) unless every key has 32 bytes
        self._box = SecretBox(secret_key, previous_keys)
        parsed = normalize_url(url)
        self._clock = clock or time.time
        self._engine = create_engine(parsed)
        self._dialect = self._engine.dialect.name
        # One shared connection for an in-memory SQLite database: transactions must take turns.
        self._serial: threading.Lock | None = threading.Lock() if is_memory_sqlite(parsed) else None
        # SQLite has one writer at a time, and a writer waiting in BEGIN IMMEDIATE polls with
        # SQLite's busy handler, sleeping up to 100 ms between tries. The writers of this
        # process queue on this lock instead and start the moment the previous one commits
        # (other processes still meet the busy handler).
        self._writer: threading.RLock | None = (
            threading.RLock() if self._dialect == "sqlite" and self._serial is None else None
        )
        self._sessions = sessionmaker(self._engine, expire_on_commit=False, autoflush=False)

    def migrate(self) -> None:
        """Alembic ``upgrade head``; safe to call on every start, also by several processes at
        once on PostgreSQL (an advisory lock makes them take turns)."""
        with _MIGRATING:
            # Inside the lock, so threads of one process check and migrate one at a time, as
            # before the check existed (concurrent first connections to a new SQLite file
            # can otherwise collide while it switches to WAL).
            if self.schema_revision() == migrate.shipped_head():
                return  # nothing to do, and Alembic stays unimported (see bastion.store.migrate)
            with self._serialised(), self._wrap(), self._engine.connect() as connection:
                connection.execution_options(**{WRITE_OPTION: True})  # applies in place
                with connection.begin():
                    migrate.upgrade(connection)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; None before the first ``migrate``."""
        with self._tx() as session:
            if not inspect(session.connection()).has_table("alembic_version"):
                return None
            revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return None if revision is None else str(revision)

    def ping(self) -> bool:
        """True when the database answers (for health checks)."""
        try:
            with self._tx() as session:
                session.execute(text("SELECT 1"))
        except StoreError:
            return False
        return True

    def close(self) -> None:
        """Close every pooled connection. The store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- users ---------------------------------------------------------------------------------

    def create_user(
        self, login: str, *, email: str = "", admin: bool = False, machine: bool = False
    ) -> User:
        _require_name("login", login)
        with self._tx(write=True, conflict=f"user {login!r} already exists") as session:
            now = self._now()
            row = UserRow(
                login=login,
                email=email,
                admin=admin,
                active=True,
                machine=machine,
                created=now,
                updated=now,
            )
            session.add(row)
            session.flush()
            return _convert.user(row)

    def get_user(self, user_id: int) -> User | None:
        with self._tx() as session:
            row = session.get(UserRow, user_id)
            return None if row is None else _convert.user(row)

    def find_user(self, login: str) -> User | None:
        with self._tx() as session:
            row = session.scalar(select(UserRow).where(UserRow.login == login))
            return None if row is None else _convert.user(row)

    def list_users(self) -> list[User]:
        with self._tx() as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.login))
            return [_convert.user(r) for r in rows]

    def update_user(
        self,
        login: str,
        *,
        email: str | None = None,
        admin: bool | None = None,
        active: bool | None = None,
    ) -> User:
        with self._tx(write=True) as session:
            row = self._user_by_login(session, login)
            if email is not None:
                row.email = email
            if admin is not None:
                row.admin = admin
            if active is not None:
                row.active = active
            row.updated = self._now()
            session.flush()
            return _convert.user(row)

    def delete_user(self, login: str) -> None:
        """Delete the user and (by cascade) all its tokens."""
        with self._tx(write=True) as session:
            row = self._user_by_login(session, login)
            session.execute(delete(UserRow).where(UserRow.id == row.id))

    # -- repositories --------------------------------------------------------------------------

    def create_repo(
        self,
        owner: str,
        name: str,
        *,
        forge: str = "local",
        forge_id: str = "",
        http_url: str = "",
        ssh_url: str = "",
        link: str = "",
        default_branch: str = "main",
        private: bool = True,
        visibility: str = "private",
        config_path: str = ".drone.yml",
        active: bool = True,
        timeout: int = 60,
    ) -> Repo:
        _require_name("owner", owner)
        _require_name("name", name)
        _check_repo_setting("visibility", visibility)
        _check_repo_setting("timeout", timeout)
        _check_repo_setting("config_path", config_path)
        slug = f"{owner}/{name}"
        with self._tx(write=True, conflict=f"repository {slug} already exists") as session:
            if self._repo_row(session, owner, name) is not None:
                raise Conflict(f"repository {slug} already exists")
            if forge_id:
                taken = self._repo_row_by_forge_id(session, forge, forge_id)
                if taken is not None:
                    raise Conflict(
                        f"{forge} repository {forge_id} is registered already, as "
                        f"{taken.owner}/{taken.name}"
                    )
            now = self._now()
            row = RepoRow(
                owner=owner,
                name=name,
                forge=forge,
                forge_id=forge_id,
                active=active,
                trusted=False,
                protected=False,
                private=private,
                visibility=visibility,
                timeout=timeout,
                config_path=config_path,
                default_branch=default_branch,
                http_url=http_url,
                ssh_url=ssh_url,
                link=link,
                counter=0,
                ignore_forks=False,
                ignore_pulls=False,
                auto_cancel_pulls=False,
                auto_cancel_pushes=False,
                created=now,
                updated=now,
            )
            session.add(row)
            session.flush()
            return _convert.repo(row)

    def get_repo(self, owner: str, name: str) -> Repo | None:
        with self._tx() as session:
            row = self._repo_row(session, owner, name)
            return None if row is None else _convert.repo(row)

    def get_repo_by_id(self, repo_id: int) -> Repo | None:
        with self._tx() as session:
            row = session.get(RepoRow, repo_id)
            return None if row is None else _convert.repo(row)

    def find_repo_by_forge_id(self, forge: str, forge_id: str) -> Repo | None:
        if not forge_id:
            return None  # local repositories have no forge id; "" must match nothing
        with self._tx() as session:
            row = self._repo_row_by_forge_id(session, forge, forge_id)
            return None if row is None else _convert.repo(row)

    def list_repos(self, *, active_only: bool = False) -> list[Repo]:
        with self._tx() as session:
            query = select(RepoRow).order_by(RepoRow.owner, RepoRow.name)
            if active_only:
                query = query.where(RepoRow.active.is_(True))
            return [_convert.repo(r) for r in session.scalars(query)]

    def update_repo(self, repo_id: int, **changes: object) -> Repo:
        """Change settings of a repository. Only the names in ``REPO_SETTINGS`` are accepted,
        each with its type (``ValueError`` otherwise, before anything is written)."""
        for setting, value in changes.items():
            _check_repo_setting(setting, value)
        with self._tx(write=True, conflict="that forge repository is registered already") as s:
            row = self._repo_by_id(s, repo_id)
            for setting, value in changes.items():
                setattr(row, setting, value)
            row.updated = self._now()
            s.flush()
            return _convert.repo(row)

    def set_webhook_secret(self, repo_id: int, value: str) -> None:
        """Store the secret that signs the forge's webhooks for this repository (encrypted)."""
        blob = self._box.encrypt(value.encode("utf-8"), _webhook_aad(repo_id))
        with self._tx(write=True) as session:
            row = self._repo_by_id(session, repo_id)
            row.webhook_secret = blob
            row.updated = self._now()

    def get_webhook_secret(self, repo_id: int) -> str | None:
        """The repository's webhook secret, or None when none was set."""
        with self._tx() as session:
            row = self._repo_by_id(session, repo_id)
            blob = row.webhook_secret
        if blob is None:
            return None
        try:
            return self._box.decrypt(blob, _webhook_aad(repo_id)).decode("utf-8")
        except DecryptError as exc:
            raise StoreError(
                f"the webhook secret of repository {repo_id} cannot be decrypted: {exc}"
            ) from exc

    # -- builds --------------------------------------------------------------------------------

    def create_build(
        self, repo_id: int, build: NewBuild, stages: Sequence[NewStage]
    ) -> tuple[Build, list[Stage]]:
        """Store a build with its stages in one transaction; the build gets the repository's
        next number (never handed out twice, also under concurrent calls)."""
        numbers = [s.number for s in stages]
        if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
            raise ValueError(f"stage numbers must be distinct and start at 1, not {numbers}")
        with self._tx(write=True) as session:
            now = self._now()
            # The increment and the read of its result are one statement: no other
            # transaction can get the same number (see the module docstring).
            number = session.execute(
                update(RepoRow)
                .where(RepoRow.id == repo_id)
                .values(counter=RepoRow.counter + 1, updated=now)
                .returning(RepoRow.counter)
                .execution_options(synchronize_session=False)
            ).scalar()
            if number is None:
                raise NotFound(f"repository {repo_id} does not exist")
            fields = dataclasses.asdict(build)
            fields["status"] = Status(build.status).value
            build_row = BuildRow(
                repo_id=repo_id,
                number=number,
                created=now,
                updated=now,
                started=0,
                finished=0,
                **fields,
            )
            session.add(build_row)
            session.flush()
            stage_rows = [
                StageRow(
                    build_id=build_row.id,
                    repo_id=repo_id,
                    number=s.number,
                    name=s.name,
                    kind=s.kind,
                    type=s.type,
                    status=Status(s.status).value,
                    error=s.error,
                    errignore=False,
                    exit_code=0,
                    machine="",
                    os=s.os,
                    arch=s.arch,
                    variant=s.variant,
                    labels=dict(s.labels),
                    depends_on=list(s.depends_on),
                    on_success=s.on_success,
                    on_failure=s.on_failure,
                    runner_id=None,
                    lease_hash=None,
                    lease_expires=0,
                    started=0,
                    stopped=0,
                    created=now,
                    updated=now,
                )
                for s in sorted(stages, key=lambda s: s.number)
            ]
            session.add_all(stage_rows)
            session.flush()
            return _convert.build(build_row), [_convert.stage(r) for r in stage_rows]

    def get_build(self, repo_id: int, number: int) -> Build | None:
        with self._tx() as session:
            row = session.scalar(
                select(BuildRow).where(BuildRow.repo_id == repo_id, BuildRow.number == number)
            )
            return None if row is None else _convert.build(row)

    def get_build_by_id(self, build_id: int) -> Build | None:
        with self._tx() as session:
            row = session.get(BuildRow, build_id)
            return None if row is None else _convert.build(row)

    def list_builds(self, repo_id: int, *, page: int = 1, per_page: int = 25) -> list[Build]:
        """Builds of a repository, newest first, one page (pages start at 1)."""
        if page < 1 or per_page < 1:
            raise ValueError(f"page and per_page start at 1, not {page} and {per_page}")
        with self._tx() as session:
            rows = session.scalars(
                select(BuildRow)
                .where(BuildRow.repo_id == repo_id)
                .order_by(BuildRow.number.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
            return [_convert.build(r) for r in rows]

    def latest_build(self, repo_id: int, *, branch: str | None = None) -> Build | None:
        """The highest-numbered build, optionally of one branch (its ``target``: the branch
        pushed to, or the branch a pull request goes into)."""
        query = select(BuildRow).where(BuildRow.repo_id == repo_id)
        if branch is not None:
            query = query.where(BuildRow.target == branch)
        with self._tx() as session:
            row = session.scalar(query.order_by(BuildRow.number.desc()).limit(1))
            return None if row is None else _convert.build(row)

    def builds_with_status(self, statuses: Sequence[Status]) -> list[Build]:
        """All builds (of every repository) in one of ``statuses``, oldest first."""
        wanted = [Status(s).value for s in statuses]
        if not wanted:
            return []
        with self._tx() as session:
            rows = session.scalars(
                select(BuildRow).where(BuildRow.status.in_(wanted)).order_by(BuildRow.id)
            )
            return [_convert.build(r) for r in rows]

    def update_build(
        self,
        build_id: int,
        *,
        status: Status | None = None,
        error: str | None = None,
        started: int | None = None,
        finished: int | None = None,
    ) -> Build:
        with self._tx(write=True) as session:
            row = session.get(BuildRow, build_id)
            if row is None:
                raise NotFound(f"build {build_id} does not exist")
            if status is not None:
                row.status = Status(status).value
            if error is not None:
                row.error = error
            if started is not None:
                row.started = started
            if finished is not None:
                row.finished = finished
            row.updated = self._now()
            session.flush()
            return _convert.build(row)

    # -- stages and leases ---------------------------------------------------------------------

    def list_stages(self, build_id: int) -> list[Stage]:
        with self._tx() as session:
            rows = session.scalars(
                select(StageRow).where(StageRow.build_id == build_id).order_by(StageRow.number)
            )
            return [_convert.stage(r) for r in rows]

    def get_stage(self, stage_id: int) -> Stage | None:
        with self._core() as connection:
            return _stage_of(connection, stage_id)

    def build_with_stages(self, build_id: int) -> tuple[Build | None, list[Stage]]:
        """A build and its stages (by number), read in one transaction: what the build state
        machine settles."""
        with self._core() as connection:
            build: Any = connection.execute(_hot.BUILD_BY_ID, {"p_build_id": build_id}).first()
            if build is None:
                return None, []
            rows: Any = connection.execute(_hot.STAGES_OF_BUILD, {"p_build_id": build_id})
            return _convert.build(build), [_convert.stage(r) for r in rows]

    def build_and_repo(self, build_id: int, repo_id: int) -> tuple[Build | None, Repo | None]:
        """A stage's build and repository, read in one transaction (the stage details)."""
        with self._core() as connection:
            build: Any = connection.execute(_hot.BUILD_BY_ID, {"p_build_id": build_id}).first()
            repo: Any = connection.execute(_hot.REPO_BY_ID, {"p_repo_id": repo_id}).first()
        return (
            None if build is None else _convert.build(build),
            None if repo is None else _convert.repo(repo),
        )

    def update_stage(
        self,
        stage_id: int,
        *,
        status: Status | None = None,
        error: str | None = None,
        exit_code: int | None = None,
        started: int | None = None,
        stopped: int | None = None,
    ) -> Stage:
        """Change a stage. A status other than ``running`` ends its lease: the lease id stops
        working at once and ``lease_expires`` becomes 0. ``runner_id`` and ``machine`` stay,
        recording who ran it (a requeued stage gets new ones from its next ``lease_stage``)."""
        with self._tx(write=True) as session:
            row = self._stage_by_id(session, stage_id)
            if status is not None:
                row.status = Status(status).value
                if status != Status.RUNNING:
                    row.lease_hash = None
                    row.lease_expires = 0
            if error is not None:
                row.error = error
            if exit_code is not None:
                row.exit_code = exit_code
            if started is not None:
                row.started = started
            if stopped is not None:
                row.stopped = stopped
            row.updated = self._now()
            session.flush()
            return _convert.stage(row)

    def pending_stages(self, *, limit: int = 100) -> list[Stage]:
        """Stages waiting for a runner, oldest first."""
        with self._tx() as session:
            rows = session.scalars(
                select(StageRow)
                .where(StageRow.status == Status.PENDING.value)
                .order_by(StageRow.id)
                .limit(limit)
            )
            return [_convert.stage(r) for r in rows]

    def pending_stage_keys(self, *, limit: int = 100) -> list[StageKey]:
        """The id, os, arch and labels of the stages waiting for a runner, oldest first: what
        the scheduler matches runners against, read with SQLAlchemy Core (no ORM objects), so
        that looking past many stages a runner cannot take stays cheap."""
        with self._serialised(), self._wrap(), self._engine.connect() as connection:
            rows = connection.execute(_hot.PENDING_KEYS, {"p_limit": limit}).all()
        return [
            StageKey(id=id_, os=os, arch=arch, labels=_convert.str_dict(labels))
            for id_, os, arch, labels in rows
        ]

    def take_stage(
        self, stage_id: int, runner_id: int, machine: str, lease_hash: str, expires: int
    ) -> tuple[Stage, Build | None] | None:
        """``lease_stage`` that returns the leased stage (None for every caller but the one
        that got it), and the build when this lease made it ``running`` (its first lease:
        ``started`` = now unless set; None when it was running already). The
        compare-and-set, the read and the build's change are one write transaction (UPDATE
        ... RETURNING), on a pooled connection without an ORM session."""
        _require_hash("lease_hash", lease_hash)
        now = self._now()
        taking = {
            "p_stage_id": stage_id,
            "p_runner_id": runner_id,
            "p_machine": machine,
            "p_lease_hash": lease_hash,
            "p_expires": expires,
            "p_now": now,
        }
        with self._core(write=True) as connection:
            row: Any = connection.execute(_hot.TAKE_STAGE, taking).first()
            if row is None:
                return None
            stage = _convert.stage(row)
            started: Any = connection.execute(
                _hot.START_BUILD, {"p_build_id": stage.build_id, "p_now": now}
            ).first()
        return stage, None if started is None else _convert.build(started)

    def lease_stage(
        self, stage_id: int, runner_id: int, machine: str, lease_hash: str, expires: int
    ) -> bool:
        """Give a pending stage to a runner: True for exactly one of any number of concurrent
        callers, False for the others and when the stage is not pending (or does not exist).

        The stage becomes ``running`` with ``started`` = now; ``lease_hash`` is the SHA-256 of
        the lease id the runner will present, ``expires`` the Unix time the lease lapses."""
        _require_hash("lease_hash", lease_hash)
        with self._tx(write=True) as session:
            now = self._now()
            result = self._execute(
                session,
                update(StageRow)
                .where(StageRow.id == stage_id, StageRow.status == Status.PENDING.value)
                .values(
                    status=Status.RUNNING.value,
                    runner_id=runner_id,
                    machine=machine,
                    lease_hash=lease_hash,
                    lease_expires=expires,
                    started=now,
                    updated=now,
                ),
            )
            return result.rowcount == 1

    def check_lease(self, stage_id: int, runner_id: int, lease_hash: str) -> Stage | None:
        """The stage when ``runner_id`` holds a live lease on it with this lease hash: the stage
        is running, leased to that runner, the hash matches (compared in constant time) and the
        lease has not expired. None otherwise, whatever the reason."""
        with self._core() as connection:
            row: Any = connection.execute(_hot.STAGE_BY_ID, {"p_stage_id": stage_id}).first()
        return self._live_lease(row, runner_id, lease_hash)

    def authorize_lease(
        self, token_hash: str, stage_id: int, lease_hash: str
    ) -> tuple[Runner | None, Stage | None]:
        """``find_runner_by_token`` and ``check_lease`` in one read transaction: (None, None)
        for an unknown or revoked token, (runner, None) when that runner holds no live lease
        on the stage with this lease hash, else (runner, stage)."""
        with self._core() as connection:
            runner: Any = connection.execute(
                _hot.RUNNER_BY_TOKEN, {"p_token_hash": token_hash}
            ).first()
            if runner is None:
                return None, None
            row: Any = connection.execute(_hot.STAGE_BY_ID, {"p_stage_id": stage_id}).first()
        found = _convert.runner(runner)
        return found, self._live_lease(row, found.id, lease_hash)

    def _live_lease(self, row: Any, runner_id: int, lease_hash: str) -> Stage | None:
        if row is None:
            return None
        stored = row.lease_hash or ""
        # Compare first and always, so that timing does not tell which check failed.
        hash_ok = tokens_equal(stored, lease_hash)
        live = (
            row.status == Status.RUNNING.value
            and row.runner_id == runner_id
            and bool(stored)
            and row.lease_expires >= self._now()
        )
        return _convert.stage(row) if hash_ok and live else None

    def renew_lease(self, stage_id: int, expires: int) -> None:
        """Move the lease's expiry of a running stage to ``expires``. No-op when the stage is
        not running any more; ``NotFound`` when it does not exist."""
        with self._core(write=True) as connection:
            result = connection.execute(
                _hot.RENEW_LEASE, {"p_stage_id": stage_id, "p_expires": expires}
            )
            if result.rowcount == 0 and _stage_of(connection, stage_id) is None:
                raise NotFound(f"stage {stage_id} does not exist")

    def expired_leases(self, now: int) -> list[Stage]:
        """Running stages whose lease lapsed before ``now``."""
        with self._tx() as session:
            rows = session.scalars(
                select(StageRow)
                .where(StageRow.status == Status.RUNNING.value, StageRow.lease_expires < now)
                .order_by(StageRow.id)
            )
            return [_convert.stage(r) for r in rows]

    def extend_all_leases(self, expires: int) -> int:
        """Give every running stage's lease at least until ``expires`` (after a server restart,
        runners need time to reconnect before their leases count as lost). Returns how many
        leases were extended; none is shortened."""
        with self._tx(write=True) as session:
            result = self._execute(
                session,
                update(StageRow)
                .where(StageRow.status == Status.RUNNING.value, StageRow.lease_expires < expires)
                .values(lease_expires=expires),
            )
            return result.rowcount

    # -- steps and logs ------------------------------------------------------------------------

    def upsert_step(
        self,
        stage_id: int,
        number: int,
        name: str,
        *,
        status: Status,
        exit_code: int = 0,
        error: str = "",
        started: int = 0,
        stopped: int = 0,
        detached: bool = False,
        service: bool = False,
    ) -> Step:
        """Create step ``number`` of the stage or update it. ``started`` / ``stopped`` of 0 keep
        the stored value, so a later update that does not know them does not erase them."""
        report = StepReport(
            number=number,
            name=name,
            status=Status(status),
            exit_code=exit_code,
            error=error,
            started=started,
            stopped=stopped,
            detached=detached,
            service=service,
        )
        with self._core(write=True) as connection:
            if _stage_of(connection, stage_id) is None:
                raise NotFound(f"stage {stage_id} does not exist")
            row: Any = connection.execute(
                _step_upsert(self._dialect, bool(started), bool(stopped), returning=True),
                _step_values(stage_id, report),
            ).one()
            return _convert.step(row)

    def finish_stage(
        self,
        stage_id: int,
        *,
        status: Status,
        error: str,
        exit_code: int = 0,
        steps: Sequence[StepReport] = (),
        running_becomes: Status = Status.ERROR,
    ) -> StageEnd | None:
        """End a stage in one write transaction: store the runner's final ``steps``, close the
        steps still open (running ones become ``running_becomes``, the others ``skipped``),
        and give the stage its outcome (its lease ends; ``started`` = now unless set).

        Returns the stage, whether this call ended it (False when it had ended already: the
        first outcome is kept, the steps are not written) and, when it did, the status of
        its build and of all the build's stages once it ended; None when the stage does not
        exist."""
        now = self._now()
        with self._core(write=True) as connection:
            if self._dialect == "postgresql":
                # SQLite's BEGIN IMMEDIATE runs write transactions one at a time; PostgreSQL
                # needs row locks for the same. The build's row first: the ends of two
                # stages of one build take turns, so the later one's snapshot below sees the
                # earlier one done (else both could see the other running, and nobody would
                # settle the build). The UPDATE below then locks the stage's: a concurrent end
                # of this stage (the reaper, a retried report) waits and then finds it done.
                build_id = connection.execute(
                    _hot.BUILD_ID_OF_STAGE, {"p_stage_id": stage_id}
                ).scalar()
                if build_id is None:
                    return None
                connection.execute(_hot.LOCK_BUILD, {"p_build_id": build_id})
            # Ends the stage only if it has not ended: the compare-and-set keeps the first
            # outcome of a retried report, or of the reaper and the runner both.
            ending = {
                "p_stage_id": stage_id,
                "p_status": Status(status).value,
                "p_error": error,
                "p_exit_code": exit_code,
                "p_now": now,
            }
            row: Any = connection.execute(_hot.FINISH_STAGE, ending).first()
            if row is None:
                current = _stage_of(connection, stage_id)
                return None if current is None else StageEnd(current, False, None, ())
            stage = _convert.stage(row)
            for report in steps:
                connection.execute(
                    _step_upsert(self._dialect, bool(report.started), bool(report.stopped)),
                    _step_values(stage_id, report),
                )
            closing = {
                "p_stage_id": stage_id,
                "p_running_becomes": Status(running_becomes).value,
                "p_now": now,
            }
            connection.execute(_hot.CLOSE_STEPS, closing)
            snapshot = connection.execute(_hot.BUILD_SNAPSHOT, {"p_build_id": stage.build_id}).all()
            return StageEnd(
                stage,
                True,
                Status(snapshot[0][0]) if snapshot else None,
                tuple(Status(stage_status) for _, stage_status in snapshot),
            )

    def list_steps(self, stage_id: int) -> list[Step]:
        with self._tx() as session:
            rows = session.scalars(
                select(StepRow).where(StepRow.stage_id == stage_id).order_by(StepRow.number)
            )
            return [_convert.step(r) for r in rows]

    def get_step(self, stage_id: int, number: int) -> Step | None:
        with self._core() as connection:
            row: Any = connection.execute(
                _hot.STEP_BY_NUMBER, {"p_stage_id": stage_id, "p_number": number}
            ).first()
        return None if row is None else _convert.step(row)

    def append_log_lines(self, step_id: int, lines: Sequence[tuple[int, float, str]]) -> int:
        """Store ``(n, t, text)`` lines of a step; a line whose number ``n`` is stored already
        is skipped (so a runner may resend a batch). Returns how many lines were new.

        NUL characters become U+FFFD: PostgreSQL text cannot hold them, and SQLite should
        return the same as PostgreSQL."""
        unique: dict[int, tuple[float, str]] = {}
        for n, t, line in lines:
            if n < 0:
                raise ValueError(f"log line numbers start at 0, not {n}")
            unique.setdefault(n, (t, line))
        if not unique:
            return 0
        rows = [
            {"step_id": step_id, "n": n, "t": float(t), "text": line.replace("\x00", "\ufffd")}
            for n, (t, line) in sorted(unique.items())
        ]
        added = 0
        with self._tx(write=True) as session:
            if session.get(StepRow, step_id) is None:
                raise NotFound(f"step {step_id} does not exist")
            for start in range(0, len(rows), _LOG_CHUNK):
                # One multi-row INSERT per chunk; RETURNING lists only the rows inserted, which
                # counts them on both databases (executemany rowcounts are not reliable).
                statement = (
                    self._insert(LogRow)
                    .values(rows[start : start + _LOG_CHUNK])
                    .on_conflict_do_nothing(index_elements=[LogRow.step_id, LogRow.n])
                    .returning(LogRow.n)
                )
                added += len(session.execute(statement).all())
        return added

    def read_log_lines(
        self, step_id: int, *, after: int = -1, limit: int | None = None
    ) -> list[tuple[int, float, str]]:
        """Lines of a step with ``n > after``, in order; at most ``limit`` when given."""
        query = (
            select(LogRow.n, LogRow.t, LogRow.text)
            .where(LogRow.step_id == step_id, LogRow.n > after)
            .order_by(LogRow.n)
        )
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as session:
            return [(n, t, line) for n, t, line in session.execute(query)]

    # -- runners -------------------------------------------------------------------------------

    def create_runner(self, name: str, token_hash: str) -> Runner:
        """Register a runner by the hash of its token. ``Conflict`` when a runner of that name
        exists and is not revoked (a revoked runner's name may be reused)."""
        _require_name("runner name", name)
        _require_hash("token_hash", token_hash)
        with self._tx(write=True, conflict=f"runner {name!r} already exists") as session:
            if self._live_runner(session, name) is not None:
                raise Conflict(f"runner {name!r} already exists")
            row = RunnerRow(
                name=name,
                token_hash=token_hash,
                os="",
                arch="",
                labels={},
                capacity=1,
                version="",
                created=self._now(),
                last_seen=0,
                revoked=False,
            )
            session.add(row)
            session.flush()
            return _convert.runner(row)

    def find_runner_by_token(self, token_hash: str) -> Runner | None:
        """The runner with this token hash; None when there is none or it is revoked."""
        with self._core() as connection:
            row: Any = connection.execute(
                _hot.RUNNER_BY_TOKEN, {"p_token_hash": token_hash}
            ).first()
        return None if row is None else _convert.runner(row)

    def find_runner(self, name: str) -> Runner | None:
        """The live (not revoked) runner of that name, or None."""
        with self._tx() as session:
            row = self._live_runner(session, name)
            return None if row is None else _convert.runner(row)

    def get_runner(self, runner_id: int) -> Runner | None:
        with self._tx() as session:
            row = session.get(RunnerRow, runner_id)
            return None if row is None else _convert.runner(row)

    def list_runners(self) -> list[Runner]:
        """All runners, revoked ones included, by name."""
        with self._tx() as session:
            rows = session.scalars(select(RunnerRow).order_by(RunnerRow.name, RunnerRow.id))
            return [_convert.runner(r) for r in rows]

    def revoke_runner(self, name: str) -> None:
        """Revoke the live runner of that name: its token stops working at once."""
        with self._tx(write=True) as session:
            row = self._live_runner(session, name)
            if row is None:
                raise NotFound(f"runner {name!r} does not exist")
            row.revoked = True

    def touch_runner(
        self,
        runner_id: int,
        *,
        os: str,
        arch: str,
        labels: dict[str, str],
        capacity: int,
        version: str,
        when: int,
    ) -> None:
        """Record what a runner reported when it last polled."""
        with self._core(write=True) as connection:
            result = connection.execute(
                update(_hot.RUNNERS)
                .where(_hot.RUNNERS.c.id == runner_id)
                .values(
                    os=os,
                    arch=arch,
                    labels=dict(labels),
                    capacity=capacity,
                    version=version,
                    last_seen=when,
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"runner {runner_id} does not exist")

    def stages_of_runner(self, runner_id: int, statuses: Sequence[Status]) -> list[Stage]:
        wanted = [Status(s).value for s in statuses]
        if not wanted:
            return []
        with self._tx() as session:
            rows = session.scalars(
                select(StageRow)
                .where(StageRow.runner_id == runner_id, StageRow.status.in_(wanted))
                .order_by(StageRow.id)
            )
            return [_convert.stage(r) for r in rows]

    # -- webhook deliveries --------------------------------------------------------------------

    def record_delivery(self, forge: str, delivery_id: str, when: int) -> bool:
        """Remember a webhook delivery; False when (forge, delivery_id) was seen before."""
        with self._tx(write=True) as session:
            statement = (
                self._insert(DeliveryRow)
                .values(forge=forge, delivery_id=delivery_id, received=when)
                .on_conflict_do_nothing(index_elements=[DeliveryRow.forge, DeliveryRow.delivery_id])
                .returning(DeliveryRow.id)
            )
            return session.execute(statement).first() is not None

    def purge_deliveries(self, before: int) -> int:
        """Forget deliveries received before ``before``; returns how many. Forges redeliver
        within hours, so keeping a few days is enough to catch duplicates."""
        with self._tx(write=True) as session:
            result = self._execute(
                session, delete(DeliveryRow).where(DeliveryRow.received < before)
            )
            return result.rowcount

    # -- internals -----------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _serialised(self) -> AbstractContextManager[object]:
        return self._serial if self._serial is not None else nullcontext()

    @contextmanager
    def _wrap(self, conflict: str = "") -> Iterator[None]:
        """Translate database exceptions into the store's errors (never with SQL parameters:
        the engine hides them, and only the driver's first message line is kept)."""
        try:
            yield
        except IntegrityError as exc:
            raise Conflict(conflict or f"conflicting change: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {_first_line(exc)}") from exc

    @contextmanager
    def _tx(self, *, write: bool = False, conflict: str = "") -> Iterator[Session]:
        """One transaction; committed when the block ends without an exception.

        ``write`` transactions take SQLite's write lock at BEGIN (see engine.py); ``conflict``
        is the message of the ``Conflict`` raised for a unique-key violation."""
        writer = self._writer if write and self._writer is not None else nullcontext()
        with self._serialised(), writer, self._wrap(conflict), self._sessions() as session:
            session.connection(execution_options={WRITE_OPTION: write})
            yield session
            session.commit()

    @contextmanager
    def _core(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction on a pooled connection without an ORM session: the hot path's
        single-row reads and writes (a session costs several times the query itself)."""
        writer = self._writer if write and self._writer is not None else nullcontext()
        with self._serialised(), writer, self._wrap(), self._engine.connect() as connection:
            if write:
                connection.execution_options(**{WRITE_OPTION: True})  # applies in place
            with connection.begin():
                yield connection

    @staticmethod
    def _execute(session: Session, statement: Any) -> CursorResult[Any]:
        """Run a Core UPDATE / DELETE on the session's connection, for its ``rowcount``."""
        return session.connection().execute(statement)

    def _insert(self, model: type[_Row]) -> postgresql.Insert | sqlite.Insert:
        """INSERT with the dialect's ON CONFLICT support (same API on both databases)."""
        if self._dialect == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    @staticmethod
    def _user_by_login(session: Session, login: str) -> UserRow:
        row = session.scalar(select(UserRow).where(UserRow.login == login))
        if row is None:
            raise NotFound(f"user {login!r} does not exist")
        return row

    @staticmethod
    def _repo_row(session: Session, owner: str, name: str) -> RepoRow | None:
        return session.scalar(select(RepoRow).where(RepoRow.owner == owner, RepoRow.name == name))

    @staticmethod
    def _repo_row_by_forge_id(session: Session, forge: str, forge_id: str) -> RepoRow | None:
        return session.scalar(
            select(RepoRow).where(RepoRow.forge == forge, RepoRow.forge_id == forge_id)
        )

    @staticmethod
    def _repo_by_id(session: Session, repo_id: int) -> RepoRow:
        row = session.get(RepoRow, repo_id)
        if row is None:
            raise NotFound(f"repository {repo_id} does not exist")
        return row

    @staticmethod
    def _stage_by_id(session: Session, stage_id: int) -> StageRow:
        row = session.get(StageRow, stage_id)
        if row is None:
            raise NotFound(f"stage {stage_id} does not exist")
        return row

    @staticmethod
    def _live_runner(session: Session, name: str) -> RunnerRow | None:
        return session.scalar(
            select(RunnerRow).where(RunnerRow.name == name, RunnerRow.revoked.is_(False))
        )


@functools.cache
def _step_upsert(dialect: str, started: bool, stopped: bool, *, returning: bool = False) -> Any:
    """INSERT ... ON CONFLICT (stage, number) DO UPDATE of one step, with bound parameters
    named like the columns (``_step_values``); built once per variant, as building it costs
    more than running it. ``started`` / ``stopped``: whether the update sets them."""
    table = postgresql.insert if dialect == "postgresql" else sqlite.insert
    insert = table(StepRow).values({name: bindparam(name) for name in _STEP_VALUES})
    excluded = insert.excluded
    changes: dict[str, Any] = {
        "name": excluded.name,
        "status": excluded.status,
        "exit_code": excluded.exit_code,
        "error": excluded.error,
        "detached": excluded.detached,
        "service": excluded.service,
    }
    if started:
        changes["started"] = excluded.started
    if stopped:
        changes["stopped"] = excluded.stopped
    statement = insert.on_conflict_do_update(
        index_elements=[StepRow.stage_id, StepRow.number], set_=changes
    )
    return statement.returning(*_hot.STEPS.c) if returning else statement


_STEP_VALUES: Final = (
    "stage_id",
    "number",
    "name",
    "status",
    "exit_code",
    "error",
    "started",
    "stopped",
    "detached",
    "service",
)


def _step_values(stage_id: int, report: StepReport) -> dict[str, Any]:
    return {
        "stage_id": stage_id,
        "number": report.number,
        "name": report.name,
        "status": Status(report.status).value,
        "exit_code": report.exit_code,
        "error": report.error,
        "started": report.started,
        "stopped": report.stopped,
        "detached": report.detached,
        "service": report.service,
    }


def _stage_of(connection: Connection, stage_id: int) -> Stage | None:
    row: Any = connection.execute(_hot.STAGE_BY_ID, {"p_stage_id": stage_id}).first()
    return None if row is None else _convert.stage(row)


def _webhook_aad(repo_id: int) -> bytes:
    # Not "repo:<id>:webhook": that is the AAD of a repository secret named "webhook", and a
    # ciphertext must not be movable between the two.
    return f"repo-webhook:{repo_id}".encode()


def _require_name(what: str, value: str) -> None:
    if not value or len(value) > 255:
        raise ValueError(f"{what} must be 1 to 255 characters, not {len(value)}")


def _require_hash(what: str, value: str) -> None:
    # A plaintext token passed by mistake must never reach the database.
    if not _HASH.match(value):
        raise ValueError(
            f"{what} must be a SHA-256 hex digest (bastion.crypto.hash_token), not a token"
        )


def _check_repo_setting(name: str, value: object) -> None:
    kind = REPO_SETTINGS.get(name)
    if kind is None:
        known = ", ".join(sorted(REPO_SETTINGS))
        raise ValueError(f"unknown repository setting {name!r}; settings are: {known}")
    # bool is a subclass of int: check exactly, so timeout=True is refused.
    if type(value) is not kind:
        raise ValueError(
            f"repository setting {name!r} must be {kind.__name__}, not {type(value).__name__}"
        )
    if name == "visibility" and value not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {', '.join(sorted(VISIBILITIES))}")
    if name == "timeout" and not (isinstance(value, int) and value >= 1):
        raise ValueError(f"timeout is in minutes and at least 1, not {value}")
    if name in ("config_path", "default_branch") and not value:
        raise ValueError(f"repository setting {name!r} may not be empty")
    if name == "approval_mode" and value not in APPROVAL_MODES:
        modes = ", ".join(sorted(m for m in APPROVAL_MODES if m))
        raise ValueError(f"approval_mode must be one of {modes} (or empty: the server's default)")
    if name == "approvers" and not (
        isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    ):
        raise ValueError("approvers must be a list of logins")


def _first_line(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    message = str(original if original is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
