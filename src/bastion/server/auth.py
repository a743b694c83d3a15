"""Who is asking, and what they may do: API tokens, roles, repository access. Deny by default.

**Credentials.** ``Authorization: Bearer <token>``, or ``?access_token=<token>`` for Drone
compatibility (browsers' EventSource cannot send headers); without either, the browser
session cookie of a login (``bastion.server.identity.sessions``: expiry, CSRF token on every
state-changing request, refused for a blocked user). The token is hashed and looked up
(``store.find_token``; the hash lookup is the comparison, and hashes are of 256-bit random
tokens, so timing tells nothing). Refused with 401: no token, an unknown one, a revoked or
expired one, a token of an inactive (blocked) user. ``last_used`` is updated at most once a
minute per token. Unknown tokens count as failures of the source address (``ctx.guard``); a
locked source gets 429 with ``Retry-After`` for every token, valid or not.

**Roles.** *anonymous* (no token): only ``/healthz`` and ``/version``. *user*: their own
account, and what the repository rule below grants. *admin*: everything. A token's scopes
narrow its user's rights (a ``read`` token cannot write even for an admin); the bootstrap and
CLI-created tokens carry all three scopes.

**Repository access** (:func:`repo_scopes`, the rule of
``bastion.server.identity.permissions``). Admins have read, write and admin on every
repository. Other users have what the forge reports for them on that repository (mirrored at
login, asked again when older than a few minutes), or what an administrator granted on a
local-forge repository, plus read on active public and internal repositories. A repository they
may not read does not exist for them (404, not 403, so its name is not confirmed). ``trusted``
is changed by system admins only, whatever the repository rule grants, and so are a
repository's secrets (:func:`require_admin_repo`; listing them too: their names and flags are
for administrators).

**Deny by default.** Every route under ``/api`` declares one of :func:`require_user`,
:func:`require_admin`, :func:`require_repo` or :func:`require_admin_repo` as a dependency; a
test walks the routes and fails on one without. The dependencies carry the attribute
``bastion_auth`` for that test. Runner endpoints (``/rpc``) use ``bastion.server.rpc.auth``;
webhooks verify signatures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, Request

from bastion.crypto import hash_token
from bastion.server.context import ServerContext, get_ctx
from bastion.server.errors import Forbidden, NotFound, Unauthorized
from bastion.server.identity import permissions, sessions
from bastion.store.identity_store import LoginSession, RepoPermission
from bastion.store.types import Repo, Scope, Token, User

log = logging.getLogger("bastion.server")

TOUCH_INTERVAL = 60  # seconds between two last_used updates of one token
ALL_SCOPES: tuple[Scope, ...] = (Scope.READ, Scope.WRITE, Scope.ADMIN)
_MAX_TOKEN_CHARS = 512


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: by an API token, or (``token`` None) by a browser session,
    which carries all of its user's rights. ``permissions``: the user's stored repository
    permissions (``repo_permissions``), by repository id."""

    user: User
    token: Token | None = None
    session: LoginSession | None = None
    permissions: Mapping[int, RepoPermission] = field(default_factory=dict)

    @property
    def admin(self) -> bool:
        return self.user.admin and self.allows(Scope.ADMIN)

    @property
    def grants(self) -> dict[int, frozenset[Scope]]:
        return {repo_id: p.scopes for repo_id, p in self.permissions.items()}

    def allows(self, scope: Scope) -> bool:
        """Whether the token's scopes include ``scope`` (no scopes, or a session: all)."""
        if self.token is None:
            return True
        return not self.token.scopes or scope in self.token.scopes


@dataclass(frozen=True)
class RepoAccess:
    principal: Principal
    repo: Repo


def _mark(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.bastion_auth = kind  # type: ignore[attr-defined]
        return fn

    return mark


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be: Bearer <token>")
        return value.strip()
    query = request.query_params.get("access_token")
    return query.strip() if query else None


def authenticate(ctx: ServerContext, request: Request) -> Principal | None:
    """The caller, None when anonymous; ``Unauthorized`` for a token that does not work,
    ``TooManyAttempts`` (429) from a locked source."""
    token = presented_token(request)
    if token is not None:
        principal: Principal | None = bearer_principal(ctx, request, token)
    else:
        principal = session_principal(ctx, request)
    if principal is None or principal.user.admin:
        return principal
    return replace(principal, permissions=ctx.store.repo_permissions(principal.user.id))


def session_principal(ctx: ServerContext, request: Request) -> Principal | None:
    """The user of the request's browser session cookie (see ``identity.sessions``), None
    without one. A bearer token, when present, wins and needs no CSRF token."""
    found = sessions.lookup(ctx.store, ctx.settings, request, ctx.now())
    if found is None:
        return None
    record, user = found
    return Principal(user, session=record)


def bearer_principal(ctx: ServerContext, request: Request, token: str) -> Principal:
    """The principal of an API token (the bearer path; see the module docstring).

    The source is checked before the token is looked at, so a locked source learns nothing,
    not even that a token it holds is valid. Only tokens that match nothing (or could not)
    count as failures: a revoked or expired token is no guess, and counting those would let
    a forgotten CI job lock out everyone behind its address."""
    source = ctx.guard.source(request)
    ctx.guard.check(source)
    if len(token) > _MAX_TOKEN_CHARS:
        ctx.guard.failure(source, "", "malformed token")
        raise Unauthorized("invalid token")
    found = ctx.store.find_token(hash_token(token))
    if found is None:
        ctx.guard.failure(source, "", "unknown token")
        raise Unauthorized("invalid token")
    record, user = found
    now = ctx.now()
    if record.revoked:
        raise Unauthorized("this token was revoked")
    if record.expires and record.expires <= now:
        raise Unauthorized("this token has expired")
    if not user.active:
        raise Unauthorized(f"the account {user.login} is blocked")
    if now - record.last_used >= TOUCH_INTERVAL:
        ctx.store.touch_token(record.id, now)
    return Principal(user, record)


def _principal(request: Request, ctx: ServerContext) -> Principal:
    principal = authenticate(ctx, request)
    if principal is None:
        raise Unauthorized(
            "authentication required: send Authorization: Bearer <token> (or log in at /login)"
        )
    return principal


CtxDep = Annotated[ServerContext, Depends(get_ctx)]


@_mark("user")
def require_user(request: Request, ctx: CtxDep) -> Principal:
    """Any authenticated, active user."""
    return _principal(request, ctx)


@_mark("admin")
def require_admin(request: Request, ctx: CtxDep) -> Principal:
    """A system administrator (with an admin-scoped token)."""
    principal = _principal(request, ctx)
    if not principal.admin:
        raise Forbidden("this needs a system administrator")
    return principal


def repo_scopes(
    user: User, repo: Repo, grants: Mapping[int, frozenset[Scope]] | None = None
) -> frozenset[Scope]:
    """What ``user`` may do on ``repo`` given their stored ``grants`` (by repository id; the
    rule of ``identity.permissions``). Without grants: admins everything, others read on
    active public and internal repositories."""
    return permissions.scopes_for(user, repo, grants)


def check_repo_access(principal: Principal, repo: Repo, scope: Scope) -> None:
    granted = repo_scopes(principal.user, repo, principal.grants)
    if not granted:
        raise NotFound(f"repository {repo.owner}/{repo.name} not found")
    if scope not in granted or not principal.allows(scope):
        verb = {Scope.READ: "read", Scope.WRITE: "change", Scope.ADMIN: "administer"}[scope]
        raise Forbidden(f"you may not {verb} repository {repo.slug} (needs {scope.value} access)")


def require_repo(scope: Scope) -> Callable[..., RepoAccess]:
    """A dependency: the repository of the path's ``{owner}/{name}``, if the caller has
    ``scope`` on it. Anonymous callers get 401 before any lookup (no name is confirmed)."""

    @_mark(f"repo:{scope.value}")
    def dependency(owner: str, name: str, request: Request, ctx: CtxDep) -> RepoAccess:
        principal = _principal(request, ctx)
        repo = ctx.store.get_repo(owner, name)
        if repo is None:
            raise NotFound(f"repository {owner}/{name} not found")
        principal = with_fresh_permission(ctx, principal, repo)
        check_repo_access(principal, repo, scope)
        return RepoAccess(principal, repo)

    return dependency


def with_fresh_permission(ctx: ServerContext, principal: Principal, repo: Repo) -> Principal:
    """``principal`` with its forge permission on ``repo`` asked again when stale."""
    fresh = permissions.refreshed(
        ctx.store, ctx.settings, principal.user, repo, principal.permissions, ctx.now()
    )
    if fresh is None:
        return principal
    stored = dict(principal.permissions)
    stored[repo.id] = RepoPermission(repo.id, fresh, "forge", ctx.now())
    return replace(principal, permissions=stored)


@_mark("admin")
def require_admin_repo(owner: str, name: str, request: Request, ctx: CtxDep) -> RepoAccess:
    """A dependency: a system administrator (admin-scoped token) and the repository of the
    path, for what only administrators may do on a repository whatever the repository rule
    grants — its secrets, for now. Anyone else gets 401 / 403 before any lookup (no name is
    confirmed); an administrator asking for a repository that does not exist, 404."""
    principal = require_admin(request, ctx)
    repo = ctx.store.get_repo(owner, name)
    if repo is None:
        raise NotFound(f"repository {owner}/{name} not found")
    check_repo_access(principal, repo, Scope.ADMIN)
    return RepoAccess(principal, repo)


UserDep = Annotated[Principal, Depends(require_user)]
AdminDep = Annotated[Principal, Depends(require_admin)]
RepoRead = Annotated[RepoAccess, Depends(require_repo(Scope.READ))]
RepoWrite = Annotated[RepoAccess, Depends(require_repo(Scope.WRITE))]
RepoAdmin = Annotated[RepoAccess, Depends(require_repo(Scope.ADMIN))]
AdminRepo = Annotated[RepoAccess, Depends(require_admin_repo)]
