"""SQLAlchemy 2 declarative models: the tables of the store.

Nothing outside ``bastion.store`` imports this module; the repository converts rows to the
dataclasses of ``bastion.store.types``. The schema itself is created and changed only by the
Alembic migrations in ``bastion/store/migrations`` (a test checks that the two agree).

Conventions:

* times are Unix seconds in BIGINT columns (no 2038 overflow), 0 meaning "not yet";
* states are the lowercase strings of ``types.Status`` in a plain string column, so a new
  state needs no migration;
* secret material is stored only as a SHA-256 hash (``tokens.hash``, ``runners.token_hash``,
  ``stages.lease_hash``) or as AES-256-GCM ciphertext (``repo_secrets.value``,
  ``repos.webhook_secret``);
* constraint names follow ``NAMING_CONVENTION`` so migrations can refer to them by name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Lengths of the short, indexed string columns. Free text (messages, titles, errors, URLs)
# is TEXT: a long branch name or commit title must not fail a build.
NAME = 255
HASH = 64  # SHA-256 in hex
STATUS = 32


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        int: Integer,
        str: Text,
        bool: Boolean,
        float: Float,
        bytes: LargeBinary,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


def _time() -> Mapped[int]:
    return mapped_column(BigInteger, default=0)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(NAME), unique=True)
    email: Mapped[str] = mapped_column(default="")
    admin: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    machine: Mapped[bool] = mapped_column(default=False)
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()


class TokenRow(Base):
    __tablename__ = "tokens"
    # A user's live tokens have distinct names (migration 0008): rotate and revoke name them.
    __table_args__ = (
        Index(
            "uq_tokens_user_name_live",
            "user_id",
            "name",
            unique=True,
            sqlite_where=text("revoked = 0"),
            postgresql_where=text("NOT revoked"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME))
    # Unique and indexed: every API request looks its token up by this hash.
    hash: Mapped[str] = mapped_column(String(HASH), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created: Mapped[int] = _time()
    expires: Mapped[int] = _time()
    last_used: Mapped[int] = _time()
    revoked: Mapped[bool] = mapped_column(default=False)


class RepoRow(Base):
    __tablename__ = "repos"
    __table_args__ = (
        UniqueConstraint("owner", "name"),
        # A forge repository is registered once; local repositories have no forge id.
        Index(
            "uq_repos_forge_forge_id",
            "forge",
            "forge_id",
            unique=True,
            sqlite_where=text("forge_id != ''"),
            postgresql_where=text("forge_id != ''"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(NAME))
    name: Mapped[str] = mapped_column(String(NAME))
    forge: Mapped[str] = mapped_column(String(32), default="local")
    forge_id: Mapped[str] = mapped_column(String(NAME), default="")
    active: Mapped[bool] = mapped_column(default=True)
    trusted: Mapped[bool] = mapped_column(default=False)
    protected: Mapped[bool] = mapped_column(default=False)
    private: Mapped[bool] = mapped_column(default=True)
    visibility: Mapped[str] = mapped_column(String(32), default="private")
    timeout: Mapped[int] = mapped_column(default=60)
    config_path: Mapped[str] = mapped_column(default=".drone.yml")
    default_branch: Mapped[str] = mapped_column(default="main")
    http_url: Mapped[str] = mapped_column(default="")
    ssh_url: Mapped[str] = mapped_column(default="")
    link: Mapped[str] = mapped_column(default="")
    # The last build number handed out; incremented atomically by create_build.
    counter: Mapped[int] = mapped_column(default=0)
    ignore_forks: Mapped[bool] = mapped_column(default=False)
    ignore_pulls: Mapped[bool] = mapped_column(default=False)
    auto_cancel_pulls: Mapped[bool] = mapped_column(default=False)
    auto_cancel_pushes: Mapped[bool] = mapped_column(default=False)
    # AES-256-GCM ciphertext (AAD "repo-webhook:<id>"); NULL until one is set.
    webhook_secret: Mapped[bytes | None] = mapped_column(default=None)
    # AES-256-GCM ciphertext (AAD "repo-signing-key:<id>") of the key that signs this
    # repository's configs; NULL until first needed (migration 0005).
    signing_key: Mapped[bytes | None] = mapped_column(default=None)
    # Which builds wait for an approval ("" = the server's default) and who may approve (0006).
    approval_mode: Mapped[str] = mapped_column(String(32), default="", server_default="")
    approvers: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    prevent_self_approval: Mapped[bool] = mapped_column(default=True, server_default=true())
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()


class RepoSecretRow(Base):
    __tablename__ = "repo_secrets"
    __table_args__ = (UniqueConstraint("repo_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME))
    # AES-256-GCM ciphertext; the AAD binds it to this row's owner, name and pull_request
    # flag ("repo:<repo_id>:<name>", or "repo-pr:<repo_id>:<name>" when the flag is set), so
    # a flag flipped in the database makes the value undecryptable instead of reachable.
    value: Mapped[bytes]
    # Whether pull_request builds (never forks') may receive it (migration 0002).
    pull_request: Mapped[bool] = mapped_column(default=False, server_default=false())
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()
    # Filters and use (migration 0003): JSON lists of strings, bound into the AAD too.
    branches: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    events: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    images: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    last_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_build: Mapped[str] = mapped_column(String(2 * NAME + 16), default="", server_default="")
    # When the value itself last changed (0: before 0003; ``updated`` stands in).
    rotated: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class SharedSecretRow(Base):
    """Organisation (scope "org", namespace = repository owner) and global (scope "global",
    namespace "") secrets (migration 0003). The AAD of ``value`` names scope, namespace, name,
    the pull_request flag and every filter, so no row can be moved or widened by an edit."""

    __tablename__ = "shared_secrets"
    __table_args__ = (UniqueConstraint("scope", "namespace", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str] = mapped_column(String(NAME), index=True)
    name: Mapped[str] = mapped_column(String(NAME))
    value: Mapped[bytes]
    pull_request: Mapped[bool] = mapped_column(default=False)
    branches: Mapped[list[str]] = mapped_column(JSON, default=list)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    images: Mapped[list[str]] = mapped_column(JSON, default=list)
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()
    last_used: Mapped[int] = mapped_column(BigInteger, default=0)
    last_build: Mapped[str] = mapped_column(String(2 * NAME + 16), default="")
    rotated: Mapped[int] = mapped_column(BigInteger, default=0)


class BuildRow(Base):
    __tablename__ = "builds"
    __table_args__ = (UniqueConstraint("repo_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    number: Mapped[int]
    parent: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(STATUS), index=True)
    event: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(default="")
    link: Mapped[str] = mapped_column(default="")
    title: Mapped[str] = mapped_column(default="")
    message: Mapped[str] = mapped_column(default="")
    before: Mapped[str] = mapped_column(default="")
    after: Mapped[str] = mapped_column(default="")
    ref: Mapped[str] = mapped_column(default="")
    source_repo: Mapped[str] = mapped_column(default="")
    source: Mapped[str] = mapped_column(default="")
    target: Mapped[str] = mapped_column(default="")
    author_login: Mapped[str] = mapped_column(default="")
    author_name: Mapped[str] = mapped_column(default="")
    author_email: Mapped[str] = mapped_column(default="")
    author_avatar: Mapped[str] = mapped_column(default="")
    sender: Mapped[str] = mapped_column(default="")
    deploy_to: Mapped[str] = mapped_column(default="")
    cron: Mapped[str] = mapped_column(default="")
    trigger: Mapped[str] = mapped_column(default="")
    fork: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str] = mapped_column(default="")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()
    started: Mapped[int] = _time()
    finished: Mapped[int] = _time()
    # Why a blocked build waits for an approval ("signature"), "" if it is not held (0005).
    hold: Mapped[str] = mapped_column(String(32), default="", server_default="")


class RunnerRow(Base):
    __tablename__ = "runners"
    __table_args__ = (
        # One live runner per name; a revoked runner's name may be given to a new one.
        Index(
            "uq_runners_name_live",
            "name",
            unique=True,
            sqlite_where=text("revoked = 0"),
            postgresql_where=text("NOT revoked"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME))
    token_hash: Mapped[str] = mapped_column(String(HASH), unique=True)
    os: Mapped[str] = mapped_column(String(32), default="")
    arch: Mapped[str] = mapped_column(String(32), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    capacity: Mapped[int] = mapped_column(default=1)
    version: Mapped[str] = mapped_column(default="")
    created: Mapped[int] = _time()
    last_seen: Mapped[int] = _time()
    revoked: Mapped[bool] = mapped_column(default=False)


class StageRow(Base):
    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("build_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    # Denormalised from the build: the scheduler and the RPC checks need it without a join.
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    name: Mapped[str]
    kind: Mapped[str] = mapped_column(String(32), default="pipeline")
    type: Mapped[str] = mapped_column(String(32), default="docker")
    # Indexed: the scheduler polls for pending stages, the reaper for running ones.
    status: Mapped[str] = mapped_column(String(STATUS), index=True)
    error: Mapped[str] = mapped_column(default="")
    errignore: Mapped[bool] = mapped_column(default=False)
    exit_code: Mapped[int] = mapped_column(default=0)
    machine: Mapped[str] = mapped_column(default="")
    os: Mapped[str] = mapped_column(String(32), default="linux")
    arch: Mapped[str] = mapped_column(String(32), default="amd64")
    variant: Mapped[str] = mapped_column(String(32), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    depends_on: Mapped[list[Any]] = mapped_column(default=list)
    on_success: Mapped[bool] = mapped_column(default=True)
    on_failure: Mapped[bool] = mapped_column(default=False)
    runner_id: Mapped[int | None] = mapped_column(
        ForeignKey("runners.id", ondelete="SET NULL"), index=True, default=None
    )
    # SHA-256 of the lease id the holder presents; NULL when not leased.
    lease_hash: Mapped[str | None] = mapped_column(String(HASH), default=None)
    lease_expires: Mapped[int] = _time()
    started: Mapped[int] = _time()
    stopped: Mapped[int] = _time()
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()


class StepRow(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("stage_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"))
    number: Mapped[int]
    name: Mapped[str]
    status: Mapped[str] = mapped_column(String(STATUS))
    error: Mapped[str] = mapped_column(default="")
    exit_code: Mapped[int] = mapped_column(default=0)
    started: Mapped[int] = _time()
    stopped: Mapped[int] = _time()
    detached: Mapped[bool] = mapped_column(default=False)
    service: Mapped[bool] = mapped_column(default=False)


class LogRow(Base):
    """One line of a step's output. The primary key (step_id, n) makes re-sent lines no-ops."""

    __tablename__ = "logs"

    step_id: Mapped[int] = mapped_column(
        ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True
    )
    n: Mapped[int] = mapped_column(primary_key=True)
    t: Mapped[float]  # seconds since the step started
    text: Mapped[str]


class EnvironmentRow(Base):
    """A deployment target of a repository and its rules (migration 0010)."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("repo_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    branches: Mapped[list[Any]] = mapped_column(default=list)  # globs; empty: any branch
    approval: Mapped[bool] = mapped_column(default=True)  # deployments wait for an approval
    approvers: Mapped[list[Any]] = mapped_column(default=list)  # empty: anyone with write
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()


class DeliveryRow(Base):
    """A webhook delivery seen, so that a redelivered hook does not start a second build."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("forge", "delivery_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    forge: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(NAME))
    received: Mapped[int] = mapped_column(BigInteger, index=True)


class AuditEventRow(Base):
    """One audit event (migration 0004): who did what to which secret, repository or build.

    Never holds a secret value: ``detail`` is metadata (counts, names, reasons) only. The
    context columns are plain strings and numbers, not foreign keys, so an event outlives the
    repository, build or runner it names (deleting a repository must not erase its history).
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(NAME), default="")
    repo: Mapped[str] = mapped_column(String(2 * NAME + 1), default="", index=True)
    build: Mapped[int | None] = mapped_column(default=None)
    stage: Mapped[int | None] = mapped_column(default=None)
    step: Mapped[str] = mapped_column(String(NAME), default="")
    runner: Mapped[str] = mapped_column(String(NAME), default="")
    secret: Mapped[str] = mapped_column(String(NAME), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuthFailureRow(Base):
    """One failed authentication (migration 0008), counted in a sliding window per key.

    ``key`` is a SHA-256 hex digest of ``source:<address>`` or ``account:<login>``, never the
    name itself: a password typed into the login field must not be stored in clear.
    """

    __tablename__ = "auth_failures"
    __table_args__ = (Index("ix_auth_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(HASH))
    at: Mapped[int] = mapped_column(BigInteger, index=True)


class AuthLockoutRow(Base):
    """A source or account locked until ``until`` (migration 0008); ``count`` lockouts so far
    in a row, for the backoff (reset once a lockout has expired and a window passed clean)."""

    __tablename__ = "auth_lockouts"

    key: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    until: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(default=1)


class CronRow(Base):
    """A repository's cron job (migration 0009). ``next`` is the one time it fires next; the
    loop claims a due job with a compare-and-set on it, so two servers never both fire it."""

    __tablename__ = "crons"
    __table_args__ = (UniqueConstraint("repo_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME))
    expr: Mapped[str] = mapped_column(String(NAME))
    branch: Mapped[str] = mapped_column(String(NAME))
    disabled: Mapped[bool] = mapped_column(default=False)
    next: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    prev: Mapped[int] = mapped_column(BigInteger, default=0)
    # Why the last run made no build (no such branch, forge down); "" after a good run.
    error: Mapped[str] = mapped_column(default="")
    created: Mapped[int] = _time()
    updated: Mapped[int] = _time()


class ForgeAccountRow(Base):
    """The forge account a user logs in with (migration 0007): at most one per user, and one
    user per forge account. ``access_token`` is the OAuth token Bastion uses to read the
    user's repository permissions, AES-GCM ciphertext bound to the user ("forge-token:<id>")."""

    __tablename__ = "forge_accounts"
    __table_args__ = (UniqueConstraint("forge", "forge_user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    forge: Mapped[str] = mapped_column(String(32))
    forge_user_id: Mapped[str] = mapped_column(String(NAME))
    forge_login: Mapped[str] = mapped_column(String(NAME))
    access_token: Mapped[bytes | None] = mapped_column(default=None)
    updated: Mapped[int] = _time()


class SessionRow(Base):
    """A browser login session (0007). Only SHA-256 hashes of the session id and of its CSRF
    token are stored; ``expires`` is the absolute end, ``last_seen`` drives the idle end."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    hash: Mapped[str] = mapped_column(String(HASH), unique=True)
    csrf_hash: Mapped[str] = mapped_column(String(HASH))
    created: Mapped[int] = _time()
    last_seen: Mapped[int] = _time()
    expires: Mapped[int] = _time()


class LoginStateRow(Base):
    """A login in progress (0007): an OAuth ``state`` (with its PKCE verifier, encrypted) or a
    one-time local login link, by the SHA-256 hash of its random value; used once."""

    __tablename__ = "login_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    hash: Mapped[str] = mapped_column(String(HASH), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    forge: Mapped[str] = mapped_column(String(32), default="")
    verifier: Mapped[bytes | None] = mapped_column(default=None)
    next_url: Mapped[str] = mapped_column(default="")
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    expires: Mapped[int] = mapped_column(BigInteger, index=True)


class RepoPermissionRow(Base):
    """What a user may do on a repository (0007): mirrored from the forge (``source`` "forge",
    refreshed when older than the cache time) or granted by an administrator ("grant")."""

    __tablename__ = "repo_permissions"
    __table_args__ = (UniqueConstraint("user_id", "repo_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(String(16))
    fetched: Mapped[int] = _time()
