"""JSON shapes of the REST API, shared by the server (responses) and the client SDK.

Field names follow Drone's API (``/api/repos/{owner}/{name}/builds/...``) so that existing
Drone API clients keep working. Request bodies are separate models from responses, and
forbid unknown fields so that a typo is a 400 with a message, not a silent no-op.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepOut(Response):
    id: int
    step_id: int  # Drone's name for the stage id
    number: int
    name: str
    status: str
    error: str = ""
    exit_code: int = 0
    started: int = 0
    stopped: int = 0
    detached: bool = False
    service: bool = False


class StageOut(Response):
    id: int
    repo_id: int
    build_id: int
    number: int
    name: str
    kind: str = "pipeline"
    type: str = "docker"
    status: str
    error: str = ""
    errignore: bool = False
    exit_code: int = 0
    machine: str = ""
    os: str = "linux"
    arch: str = "amd64"
    variant: str = ""
    started: int = 0
    stopped: int = 0
    created: int = 0
    updated: int = 0
    on_success: bool = True
    on_failure: bool = False
    depends_on: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    steps: list[StepOut] = Field(default_factory=list)


class BuildOut(Response):
    id: int
    repo_id: int
    trigger: str = ""
    number: int
    parent: int = 0
    status: str
    error: str = ""
    event: str
    action: str = ""
    link: str = ""
    timestamp: int = 0
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
    params: dict[str, str] = Field(default_factory=dict)
    cron: str = ""
    deploy_to: str = ""
    started: int = 0
    finished: int = 0
    created: int = 0
    updated: int = 0
    stages: list[StageOut] = Field(default_factory=list)
    # Why a blocked build waits for an approval ("signature"); "" when it is not held.
    hold: str = ""


class RepoOut(Response):
    id: int
    uid: str = ""
    namespace: str
    name: str
    slug: str
    scm: str = "git"
    forge: str = "local"
    git_http_url: str = ""
    git_ssh_url: str = ""
    link: str = ""
    default_branch: str = "main"
    private: bool = True
    visibility: str = "private"
    active: bool = False
    config_path: str = ".drone.yml"
    trusted: bool = False
    protected: bool = False
    ignore_forks: bool = False
    ignore_pull_requests: bool = False
    auto_cancel_pull_requests: bool = False
    auto_cancel_pushes: bool = False
    timeout: int = 60
    counter: int = 0
    created: int = 0
    updated: int = 0
    build: BuildOut | None = None
    # Which builds wait for an approval ("" = the server's default, BASTION_APPROVAL_MODE),
    # who may approve ([] = anyone with write access), and whether authors may approve their
    # own changes.
    approval_mode: str = ""
    approvers: list[str] = Field(default_factory=list)
    prevent_self_approval: bool = True


class UserOut(Response):
    id: int
    login: str
    email: str = ""
    machine: bool = False
    admin: bool = False
    active: bool = True
    created: int = 0
    updated: int = 0


class RunnerOut(Response):
    id: int
    name: str
    os: str = ""
    arch: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: int = 1
    version: str = ""
    created: int = 0
    last_seen: int = 0
    revoked: bool = False


class RunnerCreated(RunnerOut):
    token: str  # shown once


class TokenCreated(Response):
    login: str
    token: str  # shown once
    # The token's name, scopes and expiry (0: never) - Bastion's additions to Drone's shape.
    name: str = ""
    scopes: list[str] = Field(default_factory=list)
    expires: int = 0


class TokenOut(Response):
    """An API token as listed: never its secret (only a hash of it is stored)."""

    name: str
    scopes: list[str]
    created: int
    expires: int = 0  # 0: never
    last_used: int = 0  # 0: never used
    expired: bool = False


TOKEN_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # noqa: S105 - a pattern


class TokenCreate(Request):
    """``POST /api/user/tokens``: a new named token. ``scopes``: read, write and/or admin
    (default read), never more than the token that asks for it has; ``expires_in_days``: the
    server's default when absent, at most its maximum; ``never``: no expiry, only when the
    server allows it (BASTION_TOKEN_ALLOW_NEVER)."""

    name: str = Field(pattern=TOKEN_NAME_PATTERN)
    scopes: list[str] = Field(default_factory=lambda: ["read"], min_length=1, max_length=3)
    expires_in_days: int | None = Field(default=None, ge=1, le=36500)
    never: bool = False


class TokensRevoked(Response):
    revoked: int


class LockoutsLifted(Response):
    lifted: int


class RevokeAllTokens(Request):
    """``POST /api/admin/tokens/revoke-all``: the caller's own token dies too, unless
    ``keep_mine`` (then the caller can still act after the emergency)."""

    keep_mine: bool = False


class LogLineOut(Response):
    """Drone's log line shape."""

    pos: int
    out: str
    time: int


class VersionOut(Response):
    version: str
    protocol: int


class RepoPatch(Request):
    """``PATCH /api/repos/{owner}/{name}``. ``trusted`` needs a system admin."""

    trusted: bool | None = None
    protected: bool | None = None
    visibility: str | None = Field(default=None, pattern="^(private|internal|public)$")
    timeout: int | None = Field(default=None, ge=1, le=24 * 60)
    config_path: str | None = Field(default=None, min_length=1, max_length=255)
    ignore_forks: bool | None = None
    ignore_pull_requests: bool | None = None
    auto_cancel_pull_requests: bool | None = None
    auto_cancel_pushes: bool | None = None
    # Approval settings need repository administrator access (they decide what runs
    # unreviewed). approval_mode "" = follow the server's default.
    approval_mode: str | None = Field(
        default=None, pattern="^(|none|forks|pull_requests|all_events)$"
    )
    approvers: list[str] | None = Field(default=None, max_length=100)
    prevent_self_approval: bool | None = None


class RepoCreate(Request):
    """``POST /api/repos`` (admins): register a repository. ``forge: local`` creates a bare
    repository on the server's local forge; github / gitea / gitlab register one whose
    webhooks the server will accept (a webhook secret is generated and shown once)."""

    owner: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    forge: str = Field(default="local", pattern="^(local|github|gitea|gitlab)$")
    forge_id: str = ""
    http_url: str = ""  # clone URL for forge repositories
    default_branch: str = "main"
    private: bool = True


class RepoCreated(RepoOut):
    """The response to ``POST /api/repos``: where to push, or how to set up the webhook."""

    git_push_url: str = ""  # local forge: the path or URL to push to
    webhook_url: str = ""  # forges: where to point the webhook
    webhook_secret: str = ""  # forges: shown once


class UserCreate(Request):
    login: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    email: str = ""
    admin: bool = False
    machine: bool = False


class UserPatch(Request):
    """``PATCH /api/users/{login}`` (admins). Fields left out are not changed."""

    email: str | None = None
    admin: bool | None = None
    active: bool | None = None


class RunnerCreate(Request):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


# A secret's name is used as an environment variable's (Drone's rule, plus . and -).
SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"  # noqa: S105 - a pattern, not a password
SECRET_NAME_MAX = 255
SECRET_DATA_MAX = 64 * 1024  # characters: room for a PEM key or a Docker config.json


SECRET_FILTER_MAX = 50  # entries per filter list
SECRET_EVENTS = ("push", "pull_request", "tag", "promote", "rollback", "cron", "custom")


class SecretCreate(Request):
    """``POST`` a secret (admins): create or replace one, in a repository
    (``/api/repos/{owner}/{name}/secrets``), an organisation (``/api/secrets/{namespace}``)
    or the global scope (``/api/admin/secrets``).

    ``data`` is a ``SecretStr``: it never shows in a ``repr``, a log line or a validation
    error (``hide_input_in_errors``), and ``model_dump`` gives ``**********`` — send
    :meth:`wire` instead. Values whose text without surrounding whitespace is shorter than
    the masker's minimum (4) are refused by the server: they could not be masked in logs.
    ``pull_request``: pull_request builds may receive it too (never a fork's). ``events``,
    ``branches`` (globs of the target branch) and ``images`` (globs; makes the secret
    plugin-only) restrict who receives it; empty lists restrict nothing."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=SECRET_NAME_MAX, pattern=SECRET_NAME_PATTERN)
    data: SecretStr = Field(max_length=SECRET_DATA_MAX)
    pull_request: bool = False
    events: list[str] = Field(default_factory=list, max_length=SECRET_FILTER_MAX)
    branches: list[str] = Field(default_factory=list, max_length=SECRET_FILTER_MAX)
    images: list[str] = Field(default_factory=list, max_length=SECRET_FILTER_MAX)

    def wire(self) -> dict[str, Any]:
        """The JSON body to send, with the value in clear (for the HTTP request only)."""
        return {
            "name": self.name,
            "data": self.data.get_secret_value(),
            "pull_request": self.pull_request,
            "events": self.events,
            "branches": self.branches,
            "images": self.images,
        }


class SecretUpdate(Request):
    """``PATCH`` a secret (admins): what is given changes, the rest stays (a new value, or
    only filters: the server re-encrypts the value under them)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    data: SecretStr | None = Field(default=None, max_length=SECRET_DATA_MAX)
    pull_request: bool | None = None
    events: list[str] | None = Field(default=None, max_length=SECRET_FILTER_MAX)
    branches: list[str] | None = Field(default=None, max_length=SECRET_FILTER_MAX)
    images: list[str] | None = Field(default=None, max_length=SECRET_FILTER_MAX)

    def wire(self) -> dict[str, Any]:
        """The JSON body to send (only the fields given), with a value in clear."""
        body: dict[str, Any] = {}
        if self.data is not None:
            body["data"] = self.data.get_secret_value()
        for key in ("pull_request", "events", "branches", "images"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


class SecretOut(Response):
    """A secret as the API shows it: never its value (there is no field for it).

    ``scope`` is ``repo``, ``org`` or ``global``; ``namespace`` the repository
    (``owner/name``), the organisation, or ``""``. ``last_used`` / ``last_build``: when and
    by which build (``owner/name#number``) it was last handed out (0 / "": never).
    ``rotated``: when its value last changed (a change of filters only does not count);
    ``age_days``: days since then; ``rotation_due``: at least the server's rotation period
    (``BASTION_SECRET_ROTATION_DAYS``, default 90) old."""

    name: str
    scope: str = "repo"
    namespace: str = ""
    pull_request: bool = False
    events: list[str] = Field(default_factory=list)
    branches: list[str] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    created: int = 0
    updated: int = 0
    last_used: int = 0
    last_build: str = ""
    rotated: int = 0
    age_days: int = 0
    rotation_due: bool = False


class ErrorOut(Response):
    message: str


class SignRequest(Request):
    """``POST /api/repos/{owner}/{name}/sign``: the configuration text to sign (as Drone)."""

    data: str = Field(max_length=1024 * 1024)


class SignResponse(Response):
    """The hex HMAC of the configuration under the repository's signing key (as Drone)."""

    data: str


class AuditEventOut(Response):
    """One audit event (``GET /api/audit``, admins). Never holds a secret value."""

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
    detail: dict[str, Any] = Field(default_factory=dict)


class RekeyRequest(Request):
    """``POST /api/admin/rekey``: re-encrypt values under the current database key, or with
    ``dry_run`` only count the rows under each key id."""

    dry_run: bool = False
    batch_size: int = Field(default=200, ge=1, le=10_000)


class RekeyOut(Response):
    """What a rekey run found and did, by encrypted column (``table.column``): rows per key id
    before the run (``v1``: the first format, which names no key), rows re-encrypted, and the
    ids of rows no configured key decrypts (left untouched)."""

    current_key_id: str
    dry_run: bool
    keys: dict[str, dict[str, int]] = Field(default_factory=dict)
    rekeyed: dict[str, int] = Field(default_factory=dict)
    failed: dict[str, list[int]] = Field(default_factory=dict)
    batches: int = 0
    total_rekeyed: int = 0
    total_failed: int = 0
    remaining: int = 0


CRON_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class _DroneCronFields(Request):
    """The fields drone-go sends in every cron body (it marshals its whole ``Cron`` struct):
    the server's own (``id``, ``next``, ...) are accepted and ignored; ``event`` may only be
    what Drone's cron jobs use; ``target`` (a cron job that promotes) is not supported."""

    id: int | None = None
    repo_id: int | None = None
    next: int | None = None
    prev: int | None = None
    created: int | None = None
    updated: int | None = None
    version: int | None = None
    event: Literal["", "push", "cron"] = ""
    target: Literal[""] = ""


class CronCreate(_DroneCronFields):
    """``POST /api/repos/{owner}/{name}/cron`` (write access): a new cron job, as Drone.
    ``expr``: six fields with seconds first (Drone's), five (minute first) or ``@hourly``,
    ``@daily``...; ``branch``: default the repository's default branch."""

    name: str = Field(pattern=CRON_NAME_PATTERN)
    expr: str = Field(min_length=1, max_length=255)
    branch: str = Field(default="", max_length=255)
    disabled: bool = False


class CronPatch(_DroneCronFields):
    """``PATCH .../cron/{cron}``: what is given changes (a new ``expr``, or enabling the job
    again, schedules it from now)."""

    expr: str | None = Field(default=None, min_length=1, max_length=255)
    branch: str | None = Field(default=None, min_length=1, max_length=255)
    disabled: bool | None = None


class CronOut(Response):
    """A cron job as Drone shows it (``next`` / ``prev``: Unix seconds, 0 = never), plus
    ``error``: why its last run made no build ("" after a good one)."""

    id: int
    repo_id: int
    name: str
    expr: str
    next: int = 0
    prev: int = 0
    branch: str
    disabled: bool = False
    error: str = ""
    created: int = 0
    updated: int = 0


# -- identity (login links, repository permissions) ----------------------------------------------


class LoginLinkOut(Response):
    login: str
    url: str  # a one-time login link, shown once
    expires: int


class PermissionOut(Response):
    login: str
    scopes: list[str]  # read, write, admin
    source: str  # "forge" (mirrored) or "grant" (set by an administrator)
    fetched: int


class PermissionPut(Request):
    scopes: list[Literal["read", "write", "admin"]] = Field(max_length=3)


# A deployment target (environment) and a deployment parameter's name, as the server checks
# them and the CLI checks them before sending.
TARGET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class EnvironmentIn(Request):
    """``POST /api/repos/{owner}/{name}/environments`` (repository admins): create or replace
    a deployment environment's rules."""

    name: str = Field(pattern=TARGET_PATTERN)
    branches: list[str] = Field(default_factory=list, max_length=50)
    approval: bool = True
    approvers: list[str] = Field(default_factory=list, max_length=100)


class EnvironmentOut(Response):
    name: str
    branches: list[str] = Field(default_factory=list)
    approval: bool = True
    approvers: list[str] = Field(default_factory=list)
    created: int = 0
    updated: int = 0
