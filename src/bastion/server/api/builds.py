"""Builds and their logs, on Drone's paths.

``GET .../builds`` pages newest first (``per_page`` at most 100); ``POST .../builds`` starts
a ``custom`` build of ``?commit=`` or of the head of ``?branch=`` (local forge);
``POST .../builds/{number}`` restarts (a new build with ``parent`` = number) and ``DELETE``
cancels. Starting, restarting and cancelling need write access to the repository.
``POST .../builds/{number}/approve[/{stage}]`` and ``.../decline[/{stage}]`` release a
``blocked`` build (or one stage of it): write access, and administrator access when the build
is held for its configuration's signature (``services.approvals``).
``POST .../builds/{number}/promote?target=ENV&KEY=VALUE...`` and ``.../rollback`` start a
deployment of the build's commit to ``ENV`` (Drone's paths and query), write access; the
environment's rules may refuse it (403) or hold it for an approval.
``GET .../logs/{stage}/{step}`` answers Drone's ``[{pos, out, time}]``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from bastion.rpc.api import BuildOut, LogLineOut
from bastion.server.auth import CtxDep, RepoAccess, RepoRead, RepoWrite, repo_scopes
from bastion.server.context import ServerContext
from bastion.server.errors import BadRequest, NotFound
from bastion.server.views import build_out, log_line_out, stage_out
from bastion.store.types import Build, Repo, Scope, Stage, Step

router = APIRouter(tags=["builds"])

PREFIX = "/api/repos/{owner}/{name}/builds"


def full_build(ctx: ServerContext, build: Build) -> BuildOut:
    stages = [
        stage_out(stage, ctx.store.list_steps(stage.id))
        for stage in ctx.store.list_stages(build.id)
    ]
    return build_out(build, stages)


def find_build(ctx: ServerContext, repo: Repo, number: int) -> Build:
    build = ctx.store.get_build(repo.id, number)
    if build is None:
        raise NotFound(f"build #{number} of {repo.slug} not found")
    return build


def find_step(
    ctx: ServerContext, repo: Repo, number: int, stage_number: int, step_number: int
) -> tuple[Build, Stage, Step]:
    build = find_build(ctx, repo, number)
    stage = next((s for s in ctx.store.list_stages(build.id) if s.number == stage_number), None)
    if stage is None:
        raise NotFound(f"build #{number} of {repo.slug} has no stage {stage_number}")
    step = ctx.store.get_step(stage.id, step_number)
    if step is None:
        raise NotFound(f"stage {stage_number} of build #{number} has no step {step_number}")
    return build, stage, step


@router.get(PREFIX)
def list_builds(
    access: RepoRead,
    ctx: CtxDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 25,
) -> list[BuildOut]:
    builds = ctx.store.list_builds(access.repo.id, page=page, per_page=per_page)
    return [build_out(b) for b in builds]


@router.post(PREFIX)
def create_build(
    access: RepoWrite,
    ctx: CtxDep,
    branch: Annotated[str, Query(max_length=255)] = "",
    commit: Annotated[str, Query(max_length=64)] = "",
) -> BuildOut:
    build = ctx.trigger.custom(
        access.repo, branch=branch, commit=commit, by=access.principal.user.login
    )
    return full_build(ctx, build)


@router.get(PREFIX + "/latest")
def latest_build(
    access: RepoRead,
    ctx: CtxDep,
    branch: Annotated[str | None, Query(max_length=255)] = None,
) -> BuildOut:
    build = ctx.store.latest_build(access.repo.id, branch=branch or None)
    if build is None:
        where = f" on branch {branch}" if branch else ""
        raise NotFound(f"{access.repo.slug} has no build{where} yet")
    return full_build(ctx, build)


@router.get(PREFIX + "/{number}")
def get_build(number: int, access: RepoRead, ctx: CtxDep) -> BuildOut:
    return full_build(ctx, find_build(ctx, access.repo, number))


@router.post(PREFIX + "/{number}")
def restart_build(number: int, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    old = find_build(ctx, access.repo, number)
    build = ctx.trigger.restart(access.repo, old, by=access.principal.user.login)
    return full_build(ctx, build)


@router.delete(PREFIX + "/{number}")
def cancel_build(number: int, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    build = find_build(ctx, access.repo, number)
    cancelled = ctx.builds.cancel(access.repo, build, by=access.principal.user.login)
    return full_build(ctx, cancelled)


@router.get(PREFIX + "/{number}/logs/{stage}/{step}")
def get_logs(number: int, stage: int, step: int, access: RepoRead, ctx: CtxDep) -> list[LogLineOut]:
    _build, found_stage, found_step = find_step(ctx, access.repo, number, stage, step)
    return [log_line_out(n, t, text) for n, t, text in ctx.logs.read(found_stage, found_step)]


def _granted(access: RepoAccess) -> frozenset[Scope]:
    """What the caller may do on the repository: its role's scopes that its token allows."""
    principal = access.principal
    granted = repo_scopes(principal.user, access.repo, principal.grants)
    return frozenset(s for s in granted if principal.allows(s))


def _release(
    number: int, stage: int | None, access: RepoAccess, ctx: ServerContext, *, approve: bool
) -> BuildOut:
    build = find_build(ctx, access.repo, number)
    release = ctx.approvals.approve if approve else ctx.approvals.decline
    released = release(
        access.repo,
        build,
        by=access.principal.user.login,
        granted=_granted(access),
        stage=stage,
    )
    return full_build(ctx, released)


@router.post(PREFIX + "/{number}/approve")
def approve_build(number: int, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    return _release(number, None, access, ctx, approve=True)


@router.post(PREFIX + "/{number}/approve/{stage}")
def approve_stage(number: int, stage: int, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    return _release(number, stage, access, ctx, approve=True)


@router.post(PREFIX + "/{number}/decline")
def decline_build(number: int, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    return _release(number, None, access, ctx, approve=False)


@router.post(PREFIX + "/{number}/decline/{stage}")
def decline_stage(number: int, stage: int, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    return _release(number, stage, access, ctx, approve=False)


_MAX_PARAMS = 50


def _deploy(
    number: int, request: Request, access: RepoAccess, ctx: ServerContext, *, event: str
) -> BuildOut:
    query = request.query_params
    target = query.get("target", "")
    if not target:
        raise BadRequest("query parameter target is required: the environment to deploy to")
    params = {k: v for k, v in query.multi_items() if k != "target"}
    if len(params) > _MAX_PARAMS:
        raise BadRequest(f"at most {_MAX_PARAMS} parameters")
    build = find_build(ctx, access.repo, number)
    deployed = ctx.trigger.promote(
        access.repo,
        build,
        target=target,
        params=params,
        by=access.principal.user.login,
        event=event,
    )
    return full_build(ctx, deployed)


@router.post(PREFIX + "/{number}/promote")
def promote_build(number: int, request: Request, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    return _deploy(number, request, access, ctx, event="promote")


@router.post(PREFIX + "/{number}/rollback")
def rollback_build(number: int, request: Request, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    return _deploy(number, request, access, ctx, event="rollback")
