"""Cron jobs on Drone's paths: ``/api/repos/{owner}/{name}/cron[/{cron}]``.

``GET`` lists (sorted by name) or shows one, ``POST`` creates (201), ``PATCH`` changes
``expr`` / ``branch`` / ``disabled``, ``DELETE`` removes (204), and ``POST .../cron/{cron}``
runs the job now and answers the build it made. As in Drone, every one of them needs write
access to the repository (a job's branch and schedule decide what runs). The rules and the
loop that fires due jobs are in ``services.cron``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from bastion.rpc.api import BuildOut, CronCreate, CronOut, CronPatch
from bastion.server.api.builds import full_build
from bastion.server.auth import CtxDep, RepoWrite
from bastion.server.context import ServerContext
from bastion.server.errors import NotFound
from bastion.store.cron_store import Cron
from bastion.store.types import Repo

router = APIRouter(tags=["cron"])

PREFIX = "/api/repos/{owner}/{name}/cron"


def cron_out(cron: Cron) -> CronOut:
    return CronOut(
        id=cron.id,
        repo_id=cron.repo_id,
        name=cron.name,
        expr=cron.expr,
        next=cron.next,
        prev=cron.prev,
        branch=cron.branch,
        disabled=cron.disabled,
        error=cron.error,
        created=cron.created,
        updated=cron.updated,
    )


def _find(ctx: ServerContext, repo: Repo, name: str) -> Cron:
    cron = ctx.store.get_cron(repo.id, name)
    if cron is None:
        raise NotFound(f"{repo.slug} has no cron job {name[:100]!r}")
    return cron


@router.get(PREFIX)
def list_crons(access: RepoWrite, ctx: CtxDep) -> list[CronOut]:
    return [cron_out(c) for c in ctx.store.list_crons(access.repo.id)]


@router.post(PREFIX, status_code=201)
def create_cron(body: CronCreate, access: RepoWrite, ctx: CtxDep) -> CronOut:
    cron = ctx.cron.create(
        access.repo,
        name=body.name,
        expr=body.expr,
        branch=body.branch,
        disabled=body.disabled,
        actor=access.principal.user.login,
    )
    return cron_out(cron)


@router.get(PREFIX + "/{cron}")
def get_cron(cron: str, access: RepoWrite, ctx: CtxDep) -> CronOut:
    return cron_out(_find(ctx, access.repo, cron))


@router.patch(PREFIX + "/{cron}")
def update_cron(cron: str, body: CronPatch, access: RepoWrite, ctx: CtxDep) -> CronOut:
    found = _find(ctx, access.repo, cron)
    updated = ctx.cron.update(
        access.repo,
        found,
        expr=body.expr,
        branch=body.branch,
        disabled=body.disabled,
        actor=access.principal.user.login,
    )
    return cron_out(updated)


@router.delete(PREFIX + "/{cron}", status_code=204)
def delete_cron(cron: str, access: RepoWrite, ctx: CtxDep) -> Response:
    found = _find(ctx, access.repo, cron)
    ctx.cron.delete(access.repo, found, actor=access.principal.user.login)
    return Response(status_code=204)


@router.post(PREFIX + "/{cron}")
def execute_cron(cron: str, access: RepoWrite, ctx: CtxDep) -> BuildOut:
    found = _find(ctx, access.repo, cron)
    build = ctx.cron.execute(access.repo, found, actor=access.principal.user.login)
    return full_build(ctx, build)
