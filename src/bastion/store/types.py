"""Plain dataclasses the store returns: users, tokens, repositories (and what is known of
their secrets besides the values), builds, stages, steps, runners. Nothing outside
``bastion.store`` ever sees a SQLAlchemy object.

Times are Unix seconds (integers), as in Drone's API. Secret material is never a field of
these types: token hashes, lease ids and encrypted webhook secrets stay inside the store
and are reached through dedicated functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """Build and stage states, as Drone names them."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    KILLED = "killed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"  # waiting for an approval
    DECLINED = "declined"
    WAITING = "waiting_on_dependencies"

    @property
    def done(self) -> bool:
        return self in _DONE

    @property
    def failed(self) -> bool:
        return self in {Status.FAILURE, Status.ERROR, Status.KILLED, Status.DECLINED}


_DONE = frozenset(
    {Status.SUCCESS, Status.FAILURE, Status.ERROR, Status.KILLED, Status.SKIPPED, Status.DECLINED}
)


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


@dataclass(frozen=True)
class User:
    id: int
    login: str
    email: str
    admin: bool
    active: bool  # False: blocked; its tokens stop working at once
    machine: bool  # a machine account (bots), never logs in interactively
    created: int
    updated: int


@dataclass(frozen=True)
class Token:
    id: int
    user_id: int
    name: str
    scopes: tuple[Scope, ...]
    created: int
    expires: int  # 0: never
    last_used: int  # 0: never used
    revoked: bool


@dataclass(frozen=True)
class Repo:
    id: int
    owner: str
    name: str
    forge: str  # local, github, gitea, gitlab
    forge_id: str  # the forge's own id, "" for local
    active: bool
    trusted: bool
    protected: bool
    private: bool
    visibility: str  # private, internal, public
    timeout: int  # minutes
    config_path: str
    default_branch: str
    http_url: str
    ssh_url: str
    link: str
    counter: int  # last build number
    ignore_forks: bool
    ignore_pulls: bool
    auto_cancel_pulls: bool
    auto_cancel_pushes: bool
    created: int
    updated: int
    # Which builds wait for an approval: none, forks, pull_requests, all_events; "" = the
    # server's default. Who may approve ("" = anyone with write access), and whether the
    # author of a change may approve it.
    approval_mode: str = ""
    approvers: tuple[str, ...] = ()
    prevent_self_approval: bool = True

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class RepoSecret:
    """What is known about a repository secret apart from its value (which the store hands
    out only through ``get_repo_secret`` / ``get_repo_secrets``)."""

    id: int
    repo_id: int
    name: str
    pull_request: bool  # pull_request builds (never forks') may receive it
    created: int
    updated: int
    branches: tuple[str, ...] = ()  # globs of target branches; () = every branch
    events: tuple[str, ...] = ()  # build events; () = every event
    images: tuple[str, ...] = ()  # globs of images; non-empty = plugin steps of those images
    last_used: int = 0  # when a stage last received it (0 = never)
    last_build: str = ""  # which build: "owner/name#number"
    rotated: int = 0  # when the value last changed (0: unknown, ``updated`` stands in)


SECRET_SCOPES = ("repo", "org", "global")


@dataclass(frozen=True)
class SecretFilters:
    """Who may receive a secret, beyond its scope: empty tuples mean "no restriction".
    ``pull_request``: pull_request builds may receive it (a fork's never)."""

    branches: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    pull_request: bool = False


@dataclass(frozen=True)
class SharedSecret:
    """An organisation (``scope == "org"``, ``namespace`` = the repositories' owner) or global
    (``scope == "global"``, ``namespace == ""``) secret, apart from its value."""

    id: int
    scope: str
    namespace: str
    name: str
    filters: SecretFilters
    created: int
    updated: int
    last_used: int = 0
    last_build: str = ""
    rotated: int = 0


@dataclass(frozen=True)
class Build:
    id: int
    repo_id: int
    number: int
    parent: int
    status: Status
    event: str
    action: str
    link: str
    title: str
    message: str
    before: str
    after: str  # the commit sha being built
    ref: str
    source_repo: str
    source: str  # source branch
    target: str  # target branch (the branch for pushes)
    author_login: str
    author_name: str
    author_email: str
    author_avatar: str
    sender: str
    deploy_to: str
    cron: str
    trigger: str
    fork: bool
    error: str
    params: dict[str, str]
    created: int
    updated: int
    started: int
    finished: int
    hold: str = ""  # why a blocked build waits for an approval: "signature"; "" if not held


@dataclass(frozen=True)
class StageKey:
    """What the scheduler needs to match a pending stage to a runner, without the rest of the
    row (``Store.pending_stage_keys``)."""

    id: int
    os: str
    arch: str
    labels: dict[str, str]  # the pipeline's `node:` labels a runner must have


@dataclass(frozen=True)
class Stage:
    id: int
    build_id: int
    repo_id: int
    number: int
    name: str
    kind: str
    type: str
    status: Status
    error: str
    errignore: bool
    exit_code: int
    machine: str  # name of the runner that ran it
    os: str
    arch: str
    variant: str
    labels: dict[str, str]  # the pipeline's `node:` labels a runner must have
    depends_on: tuple[str, ...]
    on_success: bool  # run when the stages it depends on succeeded
    on_failure: bool  # run when one of them failed
    runner_id: int | None
    lease_expires: int  # 0 when not leased
    started: int
    stopped: int
    created: int
    updated: int


@dataclass(frozen=True)
class Step:
    id: int
    stage_id: int
    number: int
    name: str
    status: Status
    error: str
    exit_code: int
    started: int
    stopped: int
    detached: bool
    service: bool


@dataclass(frozen=True)
class StepReport:
    """A runner's report of one step, as ``Store.finish_stage`` writes it: times of 0 keep
    the stored value."""

    number: int
    name: str
    status: Status
    exit_code: int = 0
    error: str = ""
    started: int = 0
    stopped: int = 0
    detached: bool = False
    service: bool = False


@dataclass(frozen=True)
class StageEnd:
    """What ``Store.finish_stage`` did: the stage, whether this call ended it, and (when it
    did) the status of its build and of each of the build's stages (by number) right after,
    in the same transaction."""

    stage: Stage
    ended: bool
    build_status: Status | None
    stage_statuses: tuple[Status, ...]


@dataclass(frozen=True)
class Runner:
    id: int
    name: str
    os: str
    arch: str
    labels: dict[str, str] = field(default_factory=dict)
    capacity: int = 1
    version: str = ""
    created: int = 0
    last_seen: int = 0
    revoked: bool = False


@dataclass(frozen=True)
class NewStage:
    """A stage to create with its build."""

    number: int
    name: str
    status: Status
    kind: str = "pipeline"
    type: str = "docker"
    os: str = "linux"
    arch: str = "amd64"
    variant: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    on_success: bool = True
    on_failure: bool = False
    error: str = ""


@dataclass(frozen=True)
class NewBuild:
    """The fields of a build to create; the store allocates its number."""

    event: str
    status: Status = Status.PENDING
    action: str = ""
    link: str = ""
    title: str = ""
    message: str = ""
    before: str = ""
    after: str = ""
    ref: str = ""
    source_repo: str = ""
    source: str = ""
    target: str = ""
    author_login: str = ""
    author_name: str = ""
    author_email: str = ""
    author_avatar: str = ""
    sender: str = ""
    deploy_to: str = ""
    cron: str = ""
    trigger: str = ""
    fork: bool = False
    error: str = ""
    parent: int = 0
    params: dict[str, str] = field(default_factory=dict)
    hold: str = ""  # see Build.hold


@dataclass(frozen=True)
class AuditEvent:
    """One audit event: ``kind`` (dotted, e.g. ``secret.delivered``), when, by whom, and the
    repository (``owner/name``), build number, stage number, step, runner and secret name it
    concerns ("" / None when not applicable). ``detail`` is metadata, never a secret value."""

    id: int
    created: int
    kind: str
    actor: str = ""
    repo: str = ""
    build: int | None = None
    stage: int | None = None
    step: str = ""
    runner: str = ""
    secret: str = ""
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditQuery:
    """Filters of ``Store.list_audit_events``: ``kind`` is a prefix (``secret.`` matches every
    secret event); ``after_id`` pages backwards (events with a smaller id, newest first)."""

    kind: str = ""
    repo: str = ""
    build: int | None = None
    secret: str = ""
    since: int | None = None
    until: int | None = None
    before_id: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class RekeyReport:
    """What ``Store.rekey_encrypted`` found and did, by encrypted column (``table.column``).

    ``keys``: rows per key id before the run (``"v1"`` for format-1 values, which name no
    key); ``rekeyed``: rows moved to the current key; ``failed``: ids of rows that no key
    held decrypts (left untouched, never deleted)."""

    current_key_id: str
    dry_run: bool
    keys: dict[str, dict[str, int]] = field(default_factory=dict)
    rekeyed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, list[int]] = field(default_factory=dict)
    batches: int = 0

    @property
    def total_rekeyed(self) -> int:
        return sum(self.rekeyed.values())

    @property
    def total_failed(self) -> int:
        return sum(len(ids) for ids in self.failed.values())

    @property
    def remaining(self) -> int:
        """Rows not under the current key before the run (all of them still, for a dry run)."""
        return sum(
            n
            for per_key in self.keys.values()
            for kid, n in per_key.items()
            if kid != self.current_key_id
        )


@dataclass(frozen=True)
class Environment:
    """A deployment target of a repository: which branches may be promoted or rolled back
    to it (globs; empty = any), whether a deployment waits for an approval, and who may
    give it (empty = anyone with write access)."""

    id: int
    repo_id: int
    name: str
    branches: tuple[str, ...]
    approval: bool
    approvers: tuple[str, ...]
    created: int
    updated: int
