"""API tokens: ``/api/user/tokens`` (your own), ``/api/users/{login}/tokens`` and the emergency
``/api/admin/tokens/revoke-all`` (administrators); ``DELETE /api/admin/lockouts`` lifts the
lockouts of ``services/guard.py``.

A token is shown once, when it is created or rotated; the server keeps only its hash, and
lists name, scopes, created, expires and last use. Rules that keep a token from being a way up:

* a token's scopes (read, write, admin) narrow its user's rights and never add to them, and a
  token can only make or rotate tokens whose scopes it has itself (a read token cannot mint a
  write token); a browser session counts as every scope;
* expiry: the server's default (BASTION_TOKEN_DEFAULT_DAYS) unless asked, never more than
  BASTION_TOKEN_MAX_DAYS, "never" only with BASTION_TOKEN_ALLOW_NEVER; and a token cannot make
  one that outlives it (a short-lived token cannot turn into a long-lived one: asked for
  more, 400; asked for nothing, the default is cut to the caller's expiry);
* rotation gives the token a new secret with the same name, scopes and lifetime; the old
  secret stops working at once.

The emergency revoke kills every token of every user, the caller's own included unless the
body says ``keep_mine`` (so that an administrator may choose to keep acting, e.g. to create
fresh tokens for the CI systems; by default nobody keeps a way in that might be the leaked
one). Every change is an audit event (``token.*``), with names and scopes, never a secret.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from bastion.crypto import hash_token, new_token
from bastion.rpc.api import (
    LockoutsLifted,
    RevokeAllTokens,
    TokenCreate,
    TokenCreated,
    TokenOut,
    TokensRevoked,
)
from bastion.server.auth import AdminDep, CtxDep, Principal, UserDep
from bastion.server.context import ServerContext
from bastion.server.errors import BadRequest, Forbidden, NotFound
from bastion.store.types import Scope, Token, User

router = APIRouter(tags=["tokens"])

DAY = 86400


def token_out(token: Token, now: int) -> TokenOut:
    return TokenOut(
        name=token.name,
        scopes=[s.value for s in token.scopes],
        created=token.created,
        expires=token.expires,
        last_used=token.last_used,
        expired=bool(token.expires and token.expires <= now),
    )


def _scopes(values: list[str]) -> tuple[Scope, ...]:
    try:
        scopes = {Scope(v) for v in values}
    except ValueError:
        raise BadRequest(
            f"body field scopes: {values!r} - each scope is one of read, write, admin"
        ) from None
    return tuple(s for s in (Scope.READ, Scope.WRITE, Scope.ADMIN) if s in scopes)


def _check_scopes(principal: Principal, scopes: tuple[Scope, ...]) -> None:
    missing = [s.value for s in scopes if not principal.allows(s)]
    if missing:
        raise Forbidden(
            f"your token lacks the scope {', '.join(missing)}: a token cannot make or rotate "
            "a token with scopes it does not have"
        )


def _expiry(
    ctx: ServerContext,
    principal: Principal,
    *,
    days: int | None,
    never: bool,
    own: Token | None = None,
) -> int:
    """The expiry (Unix time, 0 for never) of a token made now by ``principal``; ``own``: the
    token being rotated, when it is the caller's own (it may renew itself)."""
    settings = ctx.settings
    now = ctx.now()
    if never:
        if days is not None:
            raise BadRequest("body: give expires_in_days or never, not both")
        if not settings.token_allow_never:
            raise BadRequest(
                "this server does not allow tokens that never expire "
                f"(BASTION_TOKEN_ALLOW_NEVER); ask for at most {settings.token_max_days} days"
            )
        expires = 0
    else:
        wanted = settings.token_default_days if days is None else days
        if wanted > settings.token_max_days:
            raise BadRequest(
                f"body field expires_in_days: at most {settings.token_max_days} days on this "
                "server (BASTION_TOKEN_MAX_DAYS)"
            )
        expires = now + wanted * DAY
    caller = principal.token
    renewing_itself = caller is not None and own is not None and caller.id == own.id
    if caller is None or not caller.expires or renewing_itself:
        return expires
    if expires == 0 or expires > caller.expires:
        if days is None and not never:
            return caller.expires  # the default lifetime, cut to the caller's
        raise BadRequest(
            "a token cannot make a token that outlives it: ask for an expiry before "
            f"{caller.expires} (Unix time), or use a longer-lived token"
        )
    return expires


def issue_token(
    ctx: ServerContext,
    principal: Principal,
    user: User,
    name: str,
    scopes: tuple[Scope, ...],
    *,
    days: int | None = None,
    never: bool = False,
) -> TokenCreated:
    """Make ``user`` a token (checks of the module docstring), audited; the secret is in the
    answer only."""
    _check_scopes(principal, scopes)
    expires = _expiry(ctx, principal, days=days, never=never)
    secret = new_token("api")
    token = ctx.store.create_token(user.id, name, hash_token(secret), scopes, expires)
    ctx.audit.record(
        "token.created",
        actor=principal.user.login,
        detail={
            "user": user.login,
            "name": name,
            "scopes": [s.value for s in scopes],
            "expires": expires,
            # Which of the actor's tokens made it ("" for a browser session): a leaked token
            # may have made others, and this is how they are found.
            "by_token": principal.token.name if principal.token is not None else "",
        },
    )
    return _created(user, token, secret)


def free_token_name(ctx: ServerContext, user: User, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``... the first the user has no live token of (Drone's
    ``POST /api/users/{login}/token`` may be called again for the same user and name)."""
    taken = {t.name for t in ctx.store.list_tokens(user.id, live=True)}
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name[:90]}-{n}"
    return candidate


def _created(user: User, token: Token, secret: str) -> TokenCreated:
    return TokenCreated(
        login=user.login,
        token=secret,
        name=token.name,
        scopes=[s.value for s in token.scopes],
        expires=token.expires,
    )


def _user(ctx: ServerContext, login: str) -> User:
    user = ctx.store.find_user(login)
    if user is None:
        raise NotFound(f"user {login} not found")
    return user


def _token(ctx: ServerContext, user: User, name: str) -> Token:
    token = ctx.store.find_user_token(user.id, name)
    if token is None:
        raise NotFound(f"{user.login} has no token named {name!r}")
    return token


def _revoke(ctx: ServerContext, principal: Principal, user: User, name: str) -> Response:
    token = _token(ctx, user, name)
    ctx.store.revoke_token(token.id)
    ctx.audit.record(
        "token.revoked", actor=principal.user.login, detail={"user": user.login, "name": name}
    )
    return Response(status_code=204)


# -- your own tokens ---------------------------------------------------------------------------


@router.get("/api/user/tokens")
def list_own_tokens(principal: UserDep, ctx: CtxDep) -> list[TokenOut]:
    now = ctx.now()
    return [token_out(t, now) for t in ctx.store.list_tokens(principal.user.id, live=True)]


@router.post("/api/user/tokens", status_code=201)
def create_own_token(body: TokenCreate, principal: UserDep, ctx: CtxDep) -> TokenCreated:
    scopes = _scopes(body.scopes)
    return issue_token(
        ctx,
        principal,
        principal.user,
        body.name,
        scopes,
        days=body.expires_in_days,
        never=body.never,
    )


@router.delete("/api/user/tokens/{name}", status_code=204)
def revoke_own_token(name: str, principal: UserDep, ctx: CtxDep) -> Response:
    return _revoke(ctx, principal, principal.user, name)


@router.post("/api/user/tokens/{name}/rotate")
def rotate_own_token(name: str, principal: UserDep, ctx: CtxDep) -> TokenCreated:
    user = principal.user
    old = _token(ctx, user, name)
    _check_scopes(principal, old.scopes)
    lifetime = old.expires - old.created if old.expires else 0
    if lifetime > 0:
        days = max(1, min(-(-lifetime // DAY), ctx.settings.token_max_days))
        expires = _expiry(ctx, principal, days=days, never=False, own=old)
    else:
        # A token that never expired renews the same way only while the server allows it.
        never = ctx.settings.token_allow_never
        expires = _expiry(ctx, principal, days=None, never=never, own=old)
    secret = new_token("api")
    token = ctx.store.rotate_token(old.id, hash_token(secret), expires)
    ctx.audit.record(
        "token.rotated",
        actor=user.login,
        detail={"user": user.login, "name": name, "expires": expires},
    )
    return _created(user, token, secret)


# -- administrators ----------------------------------------------------------------------------


@router.get("/api/users/{login}/tokens")
def list_user_tokens(login: str, _admin: AdminDep, ctx: CtxDep) -> list[TokenOut]:
    user = _user(ctx, login)
    now = ctx.now()
    return [token_out(t, now) for t in ctx.store.list_tokens(user.id, live=True)]


@router.post("/api/users/{login}/tokens", status_code=201)
def create_user_token(login: str, body: TokenCreate, admin: AdminDep, ctx: CtxDep) -> TokenCreated:
    user = _user(ctx, login)
    scopes = _scopes(body.scopes)
    return issue_token(
        ctx, admin, user, body.name, scopes, days=body.expires_in_days, never=body.never
    )


@router.delete("/api/users/{login}/tokens/{name}", status_code=204)
def revoke_user_token(login: str, name: str, admin: AdminDep, ctx: CtxDep) -> Response:
    return _revoke(ctx, admin, _user(ctx, login), name)


@router.delete("/api/users/{login}/tokens")
def revoke_user_tokens(login: str, admin: AdminDep, ctx: CtxDep) -> TokensRevoked:
    user = _user(ctx, login)
    count = ctx.store.revoke_user_tokens(user.id)
    ctx.audit.record(
        "token.revoked_user",
        actor=admin.user.login,
        detail={"user": user.login, "revoked": count},
    )
    return TokensRevoked(revoked=count)


@router.post("/api/admin/tokens/revoke-all")
def revoke_every_token(body: RevokeAllTokens, admin: AdminDep, ctx: CtxDep) -> TokensRevoked:
    keep = admin.token.id if body.keep_mine and admin.token is not None else None
    # Revoked even when the audit log cannot be written (record logs the event then): in an
    # emergency, stopping the tokens matters more than the trace.
    count = ctx.store.revoke_all_tokens(keep=keep)
    ctx.audit.record(
        "token.revoked_everyone",
        actor=admin.user.login,
        detail={"revoked": count, "kept_mine": keep is not None},
    )
    return TokensRevoked(revoked=count)


@router.delete("/api/admin/lockouts")
def lift_lockouts(admin: AdminDep, ctx: CtxDep) -> LockoutsLifted:
    """Lift every authentication lockout and forget the failures counted so far (e.g. an
    office behind one address locked out by someone's script)."""
    count = ctx.store.clear_auth_lockouts()
    ctx.audit.record("auth.unlocked", actor=admin.user.login, detail={"lockouts": count})
    return LockoutsLifted(lifted=count)
