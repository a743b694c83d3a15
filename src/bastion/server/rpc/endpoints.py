"""The runner endpoints: poll, stage details, source, heartbeat, steps, logs, complete, cleanup.

Answers the runner acts on (see ``bastion.rpc.messages``): 200 with a message, 204 when there
is nothing to say (no work, an upload stored), 401 for a bad runner token, 409 for a stage
call without the live lease, 503 when a forge cannot be read (the runner retries). State
changes go through the services (``BuildService``, ``LogService``, ``Scheduler``).

Only the leaseholder gets a stage's details: secrets (those the stage's pipeline references
and its build is entitled to; see ``services.secrets``), the clone credentials and the
config. They travel in the reply to the poll that leased it the stage (protocol 2: one request
less per stage), or come from ``GET /rpc/v1/stages/{id}`` with the lease (protocol 1, a lease
whose details could not be made at once, a runner resuming after a restart).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from bastion.rpc.messages import (
    OLDEST_PROTOCOL_VERSION,
    PATH_COMPLETE,
    PATH_HEARTBEAT,
    PATH_LOGS,
    PATH_REQUEST,
    PATH_RUNNER_CLEANUP,
    PATH_SOURCE,
    PATH_STAGE,
    PATH_STEPS,
    PROTOCOL_VERSION,
    BuildInfo,
    CleanupReply,
    HeartbeatReply,
    Lease,
    LogBatch,
    RepoInfo,
    RunnerPoll,
    StageDetails,
    StageInfo,
    StageResult,
    StepState,
    StepUpdate,
)
from bastion.scm.errors import ForgeError
from bastion.server.context import ServerContext
from bastion.server.errors import BadRequest, Conflict, NotFound, Unavailable
from bastion.server.rpc.auth import CtxDep, LeaseDep, RunnerDep
from bastion.server.services.builds import lost_stage_message
from bastion.store.types import Build, Repo, Runner, Stage, Status

log = logging.getLogger("bastion.server")

router = APIRouter(tags=["rpc"], include_in_schema=False)

_LOST_STAGE_MEMORY = 24 * 3600  # how long a returning runner is told about stages it lost
_DETAILS_IN_LEASE = 2  # the runner protocol from which the lease reply carries the details
_TOUCH_INTERVAL = 5  # seconds: how stale a polling runner's `last_seen` may be


def _stage_build_repo(ctx: ServerContext, stage: Stage) -> tuple[Build, Repo]:
    build, repo = ctx.store.build_and_repo(stage.build_id, stage.repo_id)
    if build is None or repo is None:
        raise Conflict(f"stage {stage.id}: this runner holds no live lease on it")
    return build, repo


@router.post(PATH_REQUEST, response_model=None)
async def request_work(
    poll: RunnerPoll, runner: RunnerDep, ctx: CtxDep, request: Request
) -> Lease | Response:
    if not OLDEST_PROTOCOL_VERSION <= poll.protocol <= PROTOCOL_VERSION:
        raise BadRequest(
            f"this server speaks runner protocol {OLDEST_PROTOCOL_VERSION} to "
            f"{PROTOCOL_VERSION}, the runner {poll.protocol}: upgrade the older of the two"
        )
    now = ctx.now()
    if _touch_due(runner, poll, now):
        await anyio.to_thread.run_sync(
            lambda: ctx.store.touch_runner(
                runner.id,
                os=poll.os,
                arch=poll.arch,
                labels=poll.labels,
                capacity=poll.capacity,
                version=poll.version,
                when=now,
            )
        )

    def details(stage: Stage) -> StageDetails | None:
        # In the scheduler's worker thread, right after the lease: the reply goes to the
        # runner that now holds it, exactly what GET /rpc/v1/stages/{id} would tell it.
        # Whatever fails here must not lose the lease just taken: the runner then asks for
        # the details with GET /rpc/v1/stages/{id}, which answers the same error (503 for a
        # forge it cannot read now, retried).
        try:
            return _details(ctx, stage, runner)
        except (Unavailable, Conflict) as exc:
            log.warning("stage %d: details not sent with the lease: %s", stage.id, exc)
        except Exception:
            log.exception("stage %d: details not sent with the lease", stage.id)
        return None

    lease = await ctx.scheduler.poll(
        runner,
        poll,
        disconnected=request.is_disconnected,
        stopping=ctx.should_stop,
        details=details if poll.protocol >= _DETAILS_IN_LEASE else None,
    )
    if lease is None:
        return Response(status_code=204)
    return lease


@router.get(PATH_STAGE)
def stage_details(leased: LeaseDep, ctx: CtxDep) -> StageDetails:
    return _details(ctx, leased.stage, leased.runner)


def _details(ctx: ServerContext, stage: Stage, runner: Runner) -> StageDetails:
    """What the leaseholder ``runner`` of ``stage`` gets (``Unavailable`` when the forge
    cannot be read now)."""
    build, repo = _stage_build_repo(ctx, stage)
    try:
        config = ctx.forges.fetch_config(repo, build.after)
    except (ForgeError, ValueError) as exc:
        raise Unavailable(f"cannot read {repo.config_path} of {repo.slug}: {exc}") from exc
    if config is None:
        raise Unavailable(f"{repo.config_path} of {repo.slug} is gone at {build.after[:12]}")
    settings = ctx.settings
    handed = ctx.secrets.delivery(repo, build, stage, config, runner=runner.name)
    return StageDetails(
        stage_id=stage.id,
        repo=RepoInfo(
            owner=repo.owner,
            name=repo.name,
            default_branch=repo.default_branch,
            private=repo.private,
            visibility=repo.visibility,
            trusted=repo.trusted and not build.fork,  # a fork's pull request never is
            link=repo.link,
            http_url=repo.http_url,
            ssh_url=repo.ssh_url,
            forge=repo.forge,
        ),
        build=BuildInfo(
            number=build.number,
            parent=build.parent,
            event=build.event,
            action=build.action,
            ref=build.ref,
            branch=build.target,
            source_branch=build.source,
            sha=build.after,
            before=build.before,
            message=build.message,
            author=build.author_login,
            author_email=build.author_email,
            author_avatar=build.author_avatar,
            title=build.title,
            pull_request=_pull_request(build),
            tag=build.ref.removeprefix("refs/tags/") if build.event == "tag" else "",
            deploy_to=build.deploy_to,
            cron=build.cron,
            link=build.link,
            trigger=build.trigger,
            fork=build.fork,
            created=build.created,
            started=build.started,
            params=dict(build.params),
        ),
        stage=StageInfo(number=stage.number, name=stage.name, timeout=repo.timeout * 60),
        config=config.decode("utf-8", errors="replace"),
        config_path=repo.config_path,
        pipeline=stage.name,
        clone=ctx.secrets.clone(repo, stage),
        secrets=handed.values,
        secret_grants=handed.grants,
        secret_denials=handed.denials,
        system_host=settings.link_host,
        system_proto=settings.link_proto,
    )


def _touch_due(runner: Runner, poll: RunnerPoll, now: int) -> bool:
    """Whether the runner's row must be written: what it reports changed, or ``last_seen`` is
    ``_TOUCH_INTERVAL`` old (a busy runner polls many times a second; one write per poll
    would be most of the database's writes)."""
    reported = (poll.os, poll.arch, poll.labels, poll.capacity, poll.version)
    stored = (runner.os, runner.arch, runner.labels, runner.capacity, runner.version)
    return reported != stored or now - runner.last_seen >= _TOUCH_INTERVAL


def _pull_request(build: Build) -> int:
    if build.event != "pull_request":
        return 0
    for part in build.ref.split("/"):
        if part.isdigit():
            return int(part)
    return 0


@router.get(PATH_SOURCE)
def stage_source(leased: LeaseDep, ctx: CtxDep) -> FileResponse:
    build, repo = _stage_build_repo(ctx, leased.stage)
    if repo.forge != "local":
        raise NotFound(f"{repo.slug} is a {repo.forge} repository: clone it from the forge")
    # A private directory (0700): the bundle is the repository's source.
    scratch = Path(tempfile.mkdtemp(prefix="bastion-source-"))
    path = scratch / "source.bundle"
    try:
        ctx.forges.local.bundle(repo.owner, repo.name, build.after, path)
    except (ForgeError, ValueError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise Unavailable(f"cannot bundle {repo.slug} at {build.after[:12]}: {exc}") from exc
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type="application/x-git-bundle",
        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True),
    )


@router.post(PATH_HEARTBEAT)
def heartbeat(leased: LeaseDep, ctx: CtxDep) -> HeartbeatReply:
    expires_in = ctx.scheduler.renew(leased.stage)
    build = ctx.store.get_build_by_id(leased.stage.build_id)
    cancel = build is not None and build.status == Status.KILLED
    return HeartbeatReply(cancel=cancel, expires_in=expires_in)


def _masked_step(ctx: ServerContext, stage: Stage, update: StepUpdate) -> StepUpdate:
    """The runner masks a step's error text; the server masks it again before storing it,
    as it does log lines (an error may quote what a step printed). Empty texts, the common
    case, cost nothing."""
    if not update.detail:
        return update
    return update.model_copy(update={"detail": ctx.secrets.masker(stage).mask(update.detail)})


@router.post(PATH_STEPS, status_code=204)
def update_step(update: StepUpdate, leased: LeaseDep, ctx: CtxDep) -> Response:
    ctx.builds.update_step(leased.stage, _masked_step(ctx, leased.stage, update))
    return Response(status_code=204)


@router.post(PATH_LOGS, status_code=204)
def upload_logs(batch: LogBatch, leased: LeaseDep, ctx: CtxDep) -> Response:
    stage = leased.stage
    step = ctx.store.get_step(stage.id, batch.step)
    if step is None:
        # Lines may arrive before the step's first state report: make the step exist.
        step = ctx.builds.update_step(
            stage,
            StepUpdate(number=batch.step, name=f"step {batch.step}", state=StepState.RUNNING),
        )
    ctx.logs.append(stage, step, batch.lines)
    return Response(status_code=204)


@router.post(PATH_COMPLETE, status_code=204)
def complete_stage(result: StageResult, leased: LeaseDep, ctx: CtxDep) -> Response:
    stage = leased.stage
    if result.error or any(step.detail for step in result.steps):
        result = result.model_copy(
            update={
                "error": ctx.secrets.masker(stage).mask(result.error) if result.error else "",
                "steps": [_masked_step(ctx, stage, step) for step in result.steps],
            }
        )
    ctx.builds.complete_stage(stage, result)
    return Response(status_code=204)


@router.post(PATH_RUNNER_CLEANUP)
def cleanup(runner: RunnerDep, ctx: CtxDep) -> CleanupReply:
    """Stages this runner held whose leases lapsed (reaped now if the reaper has not yet)."""
    now = ctx.now()
    lost: list[int] = []
    for stage in ctx.store.stages_of_runner(runner.id, [Status.RUNNING]):
        if stage.lease_expires < now:
            ctx.builds.lose_stage(stage, runner.name, ctx.settings.lease_seconds)
            lost.append(stage.id)
    # The reaper's message, whatever lease length was configured when it wrote it.
    marker = lost_stage_message(runner.name, 0).split(" (", 1)[0]
    for stage in ctx.store.stages_of_runner(runner.id, [Status.ERROR, Status.KILLED]):
        recent = stage.stopped >= now - _LOST_STAGE_MEMORY
        if recent and stage.error.startswith(marker) and stage.id not in lost:
            lost.append(stage.id)
    return CleanupReply(lost_stages=sorted(lost))
