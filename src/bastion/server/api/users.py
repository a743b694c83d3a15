"""Users: ``/api/user`` (yourself), ``/api/user/repos``, ``/api/users`` (administrators).

Registration is closed: users are created by an administrator (``bastion user add``), and
``POST /api/users/{login}/token`` makes them an API token, shown once and stored hashed.
The last active administrator cannot be demoted, blocked or deleted (409), so the server
never locks itself out.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from bastion.rpc.api import RepoOut, TokenCreated, UserCreate, UserOut, UserPatch
from bastion.server.api.tokens import free_token_name, issue_token
from bastion.server.auth import ALL_SCOPES, AdminDep, CtxDep, UserDep, repo_scopes
from bastion.server.context import ServerContext
from bastion.server.errors import Conflict, NotFound
from bastion.server.views import repo_out, user_out
from bastion.store.types import Scope, User

router = APIRouter(tags=["users"])


@router.get("/api/user")
def get_self(principal: UserDep) -> UserOut:
    return user_out(principal.user)


@router.get("/api/user/repos")
def get_own_repos(principal: UserDep, ctx: CtxDep) -> list[RepoOut]:
    return [
        repo_out(repo)
        for repo in ctx.store.list_repos()
        if Scope.READ in repo_scopes(principal.user, repo, principal.grants)
    ]


@router.get("/api/users")
def list_users(_admin: AdminDep, ctx: CtxDep) -> list[UserOut]:
    return [user_out(u) for u in ctx.store.list_users()]


@router.post("/api/users")
def create_user(body: UserCreate, _admin: AdminDep, ctx: CtxDep) -> UserOut:
    user = ctx.store.create_user(
        body.login, email=body.email, admin=body.admin, machine=body.machine
    )
    return user_out(user)


def _user(ctx: ServerContext, login: str) -> User:
    user = ctx.store.find_user(login)
    if user is None:
        raise NotFound(f"user {login} not found")
    return user


def _other_active_admins(ctx: ServerContext, login: str) -> int:
    return sum(1 for u in ctx.store.list_users() if u.admin and u.active and u.login != login)


@router.get("/api/users/{login}")
def get_user(login: str, _admin: AdminDep, ctx: CtxDep) -> UserOut:
    return user_out(_user(ctx, login))


@router.patch("/api/users/{login}")
def update_user(login: str, body: UserPatch, admin: AdminDep, ctx: CtxDep) -> UserOut:
    user = _user(ctx, login)
    loses_admin = body.admin is False or body.active is False
    if user.admin and user.active and loses_admin and not _other_active_admins(ctx, login):
        raise Conflict(f"{login} is the last active administrator; make another one first")
    updated = ctx.store.update_user(login, email=body.email, admin=body.admin, active=body.active)
    if body.active is False:
        # Blocking ends the user's browser sessions at once (their tokens are refused
        # while they are inactive).
        ended = ctx.store.delete_user_sessions(user.id)
        ctx.audit.record(
            "user.blocked", actor=admin.user.login, detail={"user": login, "sessions": ended}
        )
    return user_out(updated)


@router.delete("/api/users/{login}", status_code=204)
def delete_user(login: str, _admin: AdminDep, ctx: CtxDep) -> Response:
    user = _user(ctx, login)
    if user.admin and user.active and not _other_active_admins(ctx, login):
        raise Conflict(f"{login} is the last active administrator; make another one first")
    ctx.store.delete_user(login)
    return Response(status_code=204)


@router.post("/api/users/{login}/token")
def create_token(
    login: str,
    admin: AdminDep,
    ctx: CtxDep,
    name: str = Query(default="cli", min_length=1, max_length=100),
) -> TokenCreated:
    # All scopes and the server's default expiry; the name made unique (api/tokens.py).
    user = _user(ctx, login)
    return issue_token(ctx, admin, user, free_token_name(ctx, user, name), ALL_SCOPES)
