"""Messages and endpoints of the channel between the server and its runners.

Every call carries ``Authorization: Bearer <runner token>`` (a token of that runner alone,
created by ``bastion runner add``, stored hashed). Calls about a stage also carry the lease
id in ``X-Bastion-Lease``: the server answers them only for the runner holding a live lease
on that stage, so a second runner (or a holder of a stale lease) learns nothing about it.

Flow of one stage::

    POST /rpc/v1/request            RunnerPoll  -> 200 Lease (with the StageDetails) | 204
                                                   (long-poll, no work)
    GET  /rpc/v1/stages/{id}                    -> StageDetails (config, build, secrets): for a
                                                   lease without them, or a resumed one
    GET  /rpc/v1/stages/{id}/source             -> git bundle of the commit (local forge)
    POST /rpc/v1/stages/{id}/heartbeat          -> HeartbeatReply (renews the lease; cancel?)
    POST /rpc/v1/stages/{id}/steps              StepUpdate (state changes of one step)
    POST /rpc/v1/stages/{id}/logs               LogBatch  (idempotent by step and line)
    POST /rpc/v1/stages/{id}/complete           StageResult
    POST /rpc/v1/runners/cleanup                -> leases this runner lost while away

Log uploads are idempotent (the server keeps each (step, line number) once), so a runner
that lost its connection retries everything it has not had acknowledged: no log line is
lost when the server restarts mid-build.

Status codes the runner acts on: 401 — the runner token is unknown or revoked (the runner
stops asking for work); 403 / 404 / 409 / 410 on a stage call — this runner does not hold a
live lease on that stage (it stops the stage at once and sends nothing more about it);
408 / 429 / 5xx and connection errors — retried with backoff (the lease is kept alive by
heartbeats meanwhile). Error bodies are ``{"message": ...}``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# 2: the lease reply carries the stage's details. The server still serves protocol 1
# runners (they fetch the details with GET /rpc/v1/stages/{id}).
PROTOCOL_VERSION = 2
OLDEST_PROTOCOL_VERSION = 1

LEASE_HEADER = "X-Bastion-Lease"
PATH_REQUEST = "/rpc/v1/request"
PATH_STAGE = "/rpc/v1/stages/{stage_id}"
PATH_SOURCE = "/rpc/v1/stages/{stage_id}/source"
PATH_HEARTBEAT = "/rpc/v1/stages/{stage_id}/heartbeat"
PATH_STEPS = "/rpc/v1/stages/{stage_id}/steps"
PATH_LOGS = "/rpc/v1/stages/{stage_id}/logs"
PATH_COMPLETE = "/rpc/v1/stages/{stage_id}/complete"
PATH_RUNNER_CLEANUP = "/rpc/v1/runners/cleanup"


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    KILLED = "killed"
    ERROR = "error"
    SKIPPED = "skipped"


class RunnerPoll(Message):
    """A runner asking for work it can take now."""

    os: str = "linux"
    arch: str = "amd64"
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: int = Field(default=1, ge=1)  # stages it can start now
    version: str = ""
    protocol: int = PROTOCOL_VERSION
    # How long the server may hold the request open when there is no work (long-poll). The
    # runner keeps it short so that it stops within seconds on SIGTERM; its HTTP read
    # timeout is longer than this, so a lease is never handed to a request it gave up on.
    wait: float = Field(default=30.0, ge=0, le=120)


class RepoInfo(Message):
    owner: str
    name: str
    default_branch: str
    private: bool
    visibility: str
    trusted: bool
    link: str = ""
    http_url: str = ""
    ssh_url: str = ""
    forge: str = "local"


class BuildInfo(Message):
    number: int
    parent: int = 0
    event: str
    action: str = ""
    ref: str = ""
    branch: str = ""  # target branch for pull requests
    source_branch: str = ""
    sha: str = ""
    before: str = ""
    message: str = ""
    author: str = ""
    author_email: str = ""
    author_avatar: str = ""
    title: str = ""
    pull_request: int = 0
    tag: str = ""
    deploy_to: str = ""
    cron: str = ""
    link: str = ""
    trigger: str = ""
    fork: bool = False
    created: int = 0
    started: int = 0
    # Parameters of a promote / rollback (or custom) build: extra variables for every step,
    # which never replace a DRONE_* / CI_* variable.
    params: dict[str, str] = Field(default_factory=dict)


class StageInfo(Message):
    number: int
    name: str
    timeout: int  # seconds


class CloneInfo(Message):
    """How the runner gets the source. ``bundle``: download a git bundle of the commit from
    the server (local forge, authorised by the lease). ``git``: clone ``url`` (forges), with
    credentials that only the runner's clone on the host ever sees."""

    kind: str = "bundle"  # bundle | git | none
    url: str = ""
    username: str = ""
    password: str = Field(default="", repr=False)
    depth: int = 0


class StageDetails(Message):
    """What a runner needs to run one stage, and nothing more."""

    stage_id: int
    repo: RepoInfo
    build: BuildInfo
    stage: StageInfo
    config: str  # the whole .drone.yml at the commit
    config_path: str = ".drone.yml"
    pipeline: str  # the name of the pipeline this stage runs
    clone: CloneInfo = Field(default_factory=CloneInfo)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    # Per step (and service) name: the secret names it may use (None: no per-step grants,
    # an older server) and those refused to it, each with the rule that refused it. The
    # compiler fails a step with a refusal before its container exists.
    secret_grants: dict[str, list[str]] | None = None
    secret_denials: dict[str, dict[str, str]] = Field(default_factory=dict)
    system_host: str = ""
    system_proto: str = "http"


class Lease(Message):
    stage_id: int
    lease_id: str  # secret to the holder; sent back in LEASE_HEADER
    expires_in: float  # seconds until the lease lapses without a heartbeat
    heartbeat_interval: float
    # The stage's details, to the runner that polled with protocol 2 or later (it then skips
    # GET /rpc/v1/stages/{id}); None when the server could not make them at lease time (the
    # runner asks with the lease, which answers 503 until the forge can be read).
    details: StageDetails | None = Field(default=None, repr=False)


class HeartbeatReply(Message):
    cancel: bool = False  # the build was cancelled: stop the containers now
    expires_in: float


class StepUpdate(Message):
    number: int  # step number within the stage (services first, 1-based)
    name: str
    state: StepState
    exit_code: int | None = None
    started: float | None = None  # unix time
    finished: float | None = None
    detail: str = ""
    detached: bool = False
    service: bool = False


class LogLine(Message):
    n: int = Field(ge=0)  # line number within the step, from 0
    t: float  # seconds since the step started
    text: str


class LogBatch(Message):
    step: int  # step number
    lines: list[LogLine]


class StageResult(Message):
    state: StepState
    error: str = ""
    steps: list[StepUpdate] = Field(default_factory=list)


class CleanupReply(Message):
    """Stages this runner held whose leases lapsed: their containers must be removed."""

    lost_stages: list[int] = Field(default_factory=list)
