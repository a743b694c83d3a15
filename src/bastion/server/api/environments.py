"""Deployment environments of a repository: ``/api/repos/{owner}/{name}/environments``.

An environment is the rules of one promote / rollback target (``services.approvals``):
which branches may be deployed there and whether a deployment waits for an approval, by
whom. Reading needs read access; creating, replacing and deleting them need repository
administrator access, since they decide what reaches production unreviewed. Every change
is an audit event.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from bastion.rpc.api import EnvironmentIn, EnvironmentOut
from bastion.server.auth import CtxDep, RepoAdmin, RepoRead
from bastion.server.errors import BadRequest, NotFound
from bastion.spec.conditions import glob_error
from bastion.store.types import Environment

router = APIRouter(tags=["environments"])

PREFIX = "/api/repos/{owner}/{name}/environments"


def environment_out(env: Environment) -> EnvironmentOut:
    return EnvironmentOut(
        name=env.name,
        branches=list(env.branches),
        approval=env.approval,
        approvers=list(env.approvers),
        created=env.created,
        updated=env.updated,
    )


@router.get(PREFIX)
def list_environments(access: RepoRead, ctx: CtxDep) -> list[EnvironmentOut]:
    return [environment_out(e) for e in ctx.store.list_environments(access.repo.id)]


@router.post(PREFIX)
def put_environment(body: EnvironmentIn, access: RepoAdmin, ctx: CtxDep) -> EnvironmentOut:
    for pattern in body.branches:
        problem = glob_error(pattern) if pattern else "an empty pattern"
        if problem:
            raise BadRequest(f"branches: {pattern!r} is not a valid glob: {problem}")
    if any(not login.strip() for login in body.approvers):
        raise BadRequest("approvers: give logins, not empty strings")
    env = ctx.store.put_environment(
        access.repo.id,
        body.name,
        branches=body.branches,
        approval=body.approval,
        approvers=[login.strip() for login in body.approvers],
    )
    ctx.audit.record(
        "environment.changed",
        actor=access.principal.user.login,
        repo=access.repo.slug,
        detail={
            "environment": env.name,
            "branches": list(env.branches),
            "approval": env.approval,
            "approvers": list(env.approvers),
        },
    )
    return environment_out(env)


@router.get(PREFIX + "/{environment}")
def get_environment(environment: str, access: RepoRead, ctx: CtxDep) -> EnvironmentOut:
    env = ctx.store.get_environment(access.repo.id, environment)
    if env is None:
        raise NotFound(f"{access.repo.slug} has no environment {environment!r}")
    return environment_out(env)


@router.delete(PREFIX + "/{environment}", status_code=204)
def delete_environment(environment: str, access: RepoAdmin, ctx: CtxDep) -> Response:
    if not ctx.store.delete_environment(access.repo.id, environment):
        raise NotFound(f"{access.repo.slug} has no environment {environment!r}")
    ctx.audit.record(
        "environment.deleted",
        actor=access.principal.user.login,
        repo=access.repo.slug,
        detail={"environment": environment},
    )
    return Response(status_code=204)
