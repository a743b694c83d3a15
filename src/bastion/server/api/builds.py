"""Builds and their logs, on Drone's paths.

``GET .../builds`` pages newest first (``per_page`` at most 100); ``POST .../builds`` starts
a ``custom`` build of ``?commit=`` or of the head of ``?branch=`` (local forge);
``POST .../builds/{number}`` restarts (a new build with ``parent`` = number) and ``DELETE``
cancels. Starting, restarting and cancelling need write access to the repository.
``GET .../logs/{stage}/{step}`` answers Drone's ``[{pos, out, time}]``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bastion.rpc.api import BuildOut, LogLineOut
from bastion.server.auth import CtxDep, RepoRead, RepoWrite
from bastion.server.context import ServerContext
from bastion.server.errors import NotFound
from bastion.server.views import build_out, log_line_out, stage_out
from bastion.store.types import Build, Repo, Stage, Step

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
