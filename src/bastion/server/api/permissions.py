"""Who may do what on a repository: ``/api/repos/{owner}/{name}/permissions``.

``GET`` lists the stored permissions (mirrored from the forge, or granted). ``PUT .../{login}``
with ``{"scopes": [...]}`` grants scopes on a local-forge repository and ``DELETE`` removes the
grant; the permissions of GitHub, Gitea and GitLab repositories come from the forge only (400).
System administrators only; each change is audited (``permission.granted`` / ``.revoked``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from bastion.rpc.api import PermissionOut, PermissionPut
from bastion.server.auth import AdminRepo, CtxDep
from bastion.server.context import ServerContext
from bastion.server.errors import BadRequest, NotFound
from bastion.server.identity.permissions import closed
from bastion.store.types import Repo, Scope, User

router = APIRouter(tags=["permissions"])
PREFIX = "/api/repos/{owner}/{name}/permissions"


@router.get(PREFIX)
def list_permissions(access: AdminRepo, ctx: CtxDep) -> list[PermissionOut]:
    return [
        PermissionOut(
            login=login,
            scopes=sorted(s.value for s in p.scopes),
            source=p.source,
            fetched=p.fetched,
        )
        for login, p in ctx.store.repo_permission_list(access.repo.id)
    ]


def _target(ctx: ServerContext, repo: Repo, login: str) -> User:
    if repo.forge != "local":
        raise BadRequest(
            f"permissions on {repo.forge} repositories come from {repo.forge}; change them there"
        )
    user = ctx.store.find_user(login)
    if user is None:
        raise NotFound(f"user {login} not found")
    return user


@router.put(PREFIX + "/{login}")
def grant(login: str, body: PermissionPut, access: AdminRepo, ctx: CtxDep) -> PermissionOut:
    user = _target(ctx, access.repo, login)
    scopes = closed({Scope(s) for s in body.scopes})
    ctx.store.set_repo_permission(user.id, access.repo.id, scopes, source="grant")
    ctx.audit.record(
        "permission.granted",
        actor=access.principal.user.login,
        repo=access.repo.slug,
        detail={"user": login, "scopes": sorted(s.value for s in scopes)},
    )
    return PermissionOut(
        login=login, scopes=sorted(s.value for s in scopes), source="grant", fetched=ctx.now()
    )


@router.delete(PREFIX + "/{login}", status_code=204)
def revoke(login: str, access: AdminRepo, ctx: CtxDep) -> Response:
    user = _target(ctx, access.repo, login)
    ctx.store.delete_repo_permission(user.id, access.repo.id)
    ctx.audit.record(
        "permission.revoked",
        actor=access.principal.user.login,
        repo=access.repo.slug,
        detail={"user": login},
    )
    return Response(status_code=204)
