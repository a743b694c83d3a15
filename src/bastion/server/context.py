"""Everything one running server holds: settings, store, forges, services, broker.

Built by the app's lifespan (``bastion.server.app``) and kept on ``app.state.ctx``; routes
reach it through the ``get_ctx`` dependency. There is no module-level instance: two apps in
one process (tests do that) never share state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import anyio
from fastapi import Request

from bastion.engine.hardening import Hardening
from bastion.server.errors import Unavailable
from bastion.server.forges import FileSource, ForgeAccess
from bastion.server.services.approvals import ApprovalService
from bastion.server.services.audit import AuditLog
from bastion.server.services.builds import BuildService
from bastion.server.services.commit_status import CommitStatusReporter, ForgeCommits
from bastion.server.services.cron import CronService
from bastion.server.services.events import BuildEvent, EventBroker
from bastion.server.services.guard import AuthGuard, GuardPolicy
from bastion.server.services.logs import (
    DatabaseLogBackend,
    FileLogBackend,
    LogService,
    credential_auditor,
)
from bastion.server.services.rekey import KeyRotation
from bastion.server.services.scheduler import Scheduler
from bastion.server.services.secret_providers import provider_from_settings
from bastion.server.services.secrets import StageSecrets
from bastion.server.services.signals import Wakeups
from bastion.server.services.trigger import TriggerService
from bastion.server.settings import ServerSettings
from bastion.server.views import build_out, repo_out, stage_out
from bastion.store.repository import Store
from bastion.store.types import Build, Repo


@dataclass
class ServerContext:
    settings: ServerSettings
    store: Store
    hardening: Hardening
    forges: ForgeAccess
    events: EventBroker
    scheduler_wakeups: Wakeups
    log_wakeups: Wakeups
    secrets: StageSecrets
    builds: BuildService
    logs: LogService
    scheduler: Scheduler
    trigger: TriggerService
    approvals: ApprovalService
    clock: Callable[[], float]
    # Audit events (secret changes and deliveries, detected credentials, key rotation).
    audit: AuditLog
    # `bastion secret rekey`: one run at a time, audited.
    rekey: KeyRotation
    # Cron jobs (their loop runs in app.py) and the commit statuses reported to forges.
    cron: CronService
    statuses: CommitStatusReporter
    # Rate limits and lockout of failed logins and bad tokens (services/guard.py).
    guard: AuthGuard
    # Set when the server shuts down: live streams end (created on the serving loop).
    shutdown_event: anyio.Event | None = field(default=None)
    # True once the HTTP server is asked to stop (set by ``serve``): long-polls answer "no
    # work" and live streams end within a second, so a restart does not wait for them.
    should_stop: Callable[[], bool] = field(default=lambda: False)

    def now(self) -> int:
        return int(self.clock())

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the wake-ups and the broker to the loop that serves requests."""
        self.events.bind(loop)
        self.scheduler_wakeups.bind(loop)
        self.log_wakeups.bind(loop)
        self.shutdown_event = anyio.Event()


def build_context(
    settings: ServerSettings,
    store: Store,
    hardening: Hardening,
    *,
    clock: Callable[[], float] = time.time,
    forge_clients: Mapping[str, FileSource] | None = None,
) -> ServerContext:
    forges = ForgeAccess(settings, forge_clients)
    events = EventBroker()
    scheduler_wakeups = Wakeups()
    log_wakeups = Wakeups()
    audit = AuditLog(store)
    provider = provider_from_settings(settings)
    secrets = StageSecrets(settings, store, audit=audit, provider=provider)

    def build_event(repo: Repo, build: Build) -> BuildEvent:
        stages = [stage_out(s) for s in store.list_stages(build.id)]
        payload = repo_out(repo).model_copy(update={"build": build_out(build, stages)})
        return BuildEvent(repo.id, repo.active, "build", payload.model_dump(mode="json"))

    builds = BuildService(
        store,
        events=events,
        scheduler_wakeups=scheduler_wakeups,
        log_wakeups=log_wakeups,
        build_event=build_event,
        clock=clock,
    )
    commits = ForgeCommits(settings)
    statuses = CommitStatusReporter(settings, store, commits)
    builds.on_change.append(statuses.changed)
    backend = (
        DatabaseLogBackend(store)
        if settings.log_store == "database"
        else FileLogBackend(settings.log_dir)
    )
    logs = LogService(
        backend,
        limit_bytes=settings.log_limit_bytes,
        wakeups=log_wakeups,
        masker_for=secrets.masker,
        on_credential=credential_auditor(store, audit),
    )
    scheduler = Scheduler(settings, store, builds, scheduler_wakeups, clock=clock)

    def forge_head(repo: Repo, branch: str) -> str | None:
        head = commits.client(repo.forge).branch_head(repo.owner, repo.name, branch)
        return head.sha if head is not None else None

    trigger = TriggerService(settings, forges, builds, hardening, store, forge_head)
    approvals = ApprovalService(store, builds, scheduler_wakeups, audit)
    return ServerContext(
        settings=settings,
        store=store,
        hardening=hardening,
        forges=forges,
        events=events,
        scheduler_wakeups=scheduler_wakeups,
        log_wakeups=log_wakeups,
        secrets=secrets,
        builds=builds,
        logs=logs,
        scheduler=scheduler,
        trigger=trigger,
        approvals=approvals,
        clock=clock,
        audit=audit,
        rekey=KeyRotation(store, audit),
        cron=CronService(store, forges, commits, trigger, audit, clock=clock),
        statuses=statuses,
        guard=AuthGuard(store, audit, clock, GuardPolicy.from_settings(settings)),
    )


def get_ctx(request: Request) -> ServerContext:
    """The running server's context (a FastAPI dependency)."""
    ctx = getattr(request.app.state, "ctx", None)
    if not isinstance(ctx, ServerContext):
        raise Unavailable("the server is starting or stopping; try again in a moment")
    return ctx
