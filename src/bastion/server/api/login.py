"""Login and logout: ``/login`` (OAuth2 with the forges, Drone's path for both the start and
the forge's return), ``/login/link`` (one-time links of the local forge), ``/logout``, and
``POST /api/users/{login}/login-link`` for administrators.

``GET /login[?forge=github&next=/path]`` redirects to the forge with a fresh state and PKCE
challenge; the forge sends the browser back to ``/login?code=...&state=...``, where the code
is exchanged, the account admitted (``identity.admission``), its repository permissions
mirrored, and a new session started (the one the browser came with, if any, is ended). Each
failure is counted by ``ctx.guard`` (429 once a source or account is locked) and audited
(``login.failed``, ``login.refused``); a success is audited as ``login``. ``next`` is only
ever a path on this server. ``POST /logout`` needs the session's CSRF token (the
``X-CSRF-Token`` header or a ``csrf_token`` form field) and deletes the session record.
"""

from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import parse_qsl

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from bastion.crypto import hash_token
from bastion.rpc.api import LoginLinkOut
from bastion.scm.errors import ForgeError
from bastion.server.auth import AdminDep, CtxDep
from bastion.server.context import ServerContext
from bastion.server.errors import BadRequest, Forbidden, NotFound, Unauthorized, Unavailable
from bastion.server.identity import admission, local_login, oauth, permissions, sessions
from bastion.store.types import User

log = logging.getLogger("bastion.server")
router = APIRouter(tags=["login"])

_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")
_MAX_FORM = 4096


def _end_presented_session(ctx: ServerContext, request: Request) -> None:
    """End the session the browser came with: a login always makes a new id."""
    old = sessions.presented_session(request, ctx.settings)
    if old and len(old) <= 128:
        found = ctx.store.find_session(hash_token(old))
        if found is not None:
            ctx.store.delete_session(found[0].id)


def _logged_in(ctx: ServerContext, request: Request, user: User, target: str) -> Response:
    _end_presented_session(ctx, request)
    new = sessions.start(ctx.store, ctx.settings, user, ctx.now())
    response = RedirectResponse(oauth.safe_next(target), status_code=303)
    sessions.set_cookies(response, ctx.settings, new)
    return response


@router.get("/login")
def login(
    request: Request,
    ctx: CtxDep,
    forge: str = Query(default="", max_length=16),
    next_url: str = Query(default="/", alias="next", max_length=2000),
) -> Response:
    if any(key in request.query_params for key in ("code", "state", "error")):
        return _callback(request, ctx)
    known = oauth.providers(ctx.settings)
    if not known:
        raise NotFound(
            "no forge login is configured on this server; an administrator can make you a "
            "one-time login link (bastion user login-link LOGIN)"
        )
    if not forge:
        if len(known) != 1:
            raise BadRequest(f"query parameter forge: one of {', '.join(sorted(known))}")
        forge = next(iter(known))
    provider = known.get(forge)
    if provider is None:
        raise BadRequest(f"query parameter forge: one of {', '.join(sorted(known))}")
    url, state = oauth.begin(ctx.store, ctx.settings, provider, next_url, ctx.now())
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        oauth.STATE_COOKIE,
        state,
        max_age=oauth.STATE_SECONDS,
        path="/login",
        secure=sessions.secure_cookies(ctx.settings),
        httponly=True,
        samesite="lax",
    )
    return response


def _callback(request: Request, ctx: ServerContext) -> Response:
    source = ctx.guard.source(request)
    ctx.guard.check(source)
    error = request.query_params.get("error", "")
    if error:
        shown = error if _ERROR_CODE.match(error) else "invalid"
        ctx.audit.record("login.failed", detail={"reason": f"forge error {shown}"})
        raise Unauthorized(f"the forge did not authorize the login ({shown})")
    try:
        returned = oauth.finish(
            ctx.store,
            ctx.settings,
            oauth.providers(ctx.settings),
            str(request.url),
            request.cookies.get(oauth.STATE_COOKIE),
            ctx.now(),
        )
    except Unauthorized as exc:
        ctx.guard.failure(source, "", "oauth callback")
        ctx.audit.record("login.failed", detail={"reason": exc.message})
        raise
    provider = returned.provider
    try:
        account = provider.accounts.user(returned.access_token)
        orgs = provider.accounts.orgs(returned.access_token) if ctx.settings.user_filter else []
    except ForgeError as exc:
        raise Unavailable(str(exc)) from None
    ctx.guard.check(source, account.login)
    try:
        admitted = admission.admit(
            ctx.store, ctx.settings, ctx.audit, provider.forge, account, orgs, ctx.now()
        )
    except Forbidden as exc:
        ctx.guard.failure(source, account.login, "login refused")
        ctx.audit.record(
            "login.refused",
            actor=account.login,
            detail={"forge": provider.forge, "reason": exc.message},
        )
        raise
    user = admitted.user
    ctx.store.link_forge_account(
        user.id, provider.forge, account.id, account.login, returned.access_token
    )
    if not user.admin:
        permissions.mirror_all(
            ctx.store, provider.accounts, user, provider.forge, returned.access_token
        )
    ctx.guard.success(source, account.login)
    ctx.audit.record(
        "login",
        actor=user.login,
        detail={"forge": provider.forge, "created": admitted.created, "admin": user.admin},
    )
    response = _logged_in(ctx, request, user, returned.next_url)
    response.delete_cookie(oauth.STATE_COOKIE, path="/login")
    return response


@router.get("/login/link")
def link_page(ctx: CtxDep, code: str = Query(default="", max_length=128)) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = HTMLResponse(local_login.page(code, nonce))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.set_cookie(
        local_login.NONCE_COOKIE,
        nonce,
        max_age=local_login.LINK_SECONDS,
        path="/login/link",
        secure=sessions.secure_cookies(ctx.settings),
        httponly=True,
        samesite="strict",
    )
    return response


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise BadRequest("the form is too large")
    return dict(parse_qsl(body.decode("utf-8", "replace")))


@router.post("/login/link")
async def link_login(request: Request, ctx: CtxDep) -> Response:
    form = await _form(request)
    return await anyio.to_thread.run_sync(_link_login, request, ctx, form)


def _link_login(request: Request, ctx: ServerContext, form: dict[str, str]) -> Response:
    source = ctx.guard.source(request)
    ctx.guard.check(source)
    try:
        user = local_login.redeem(
            ctx.store,
            form.get("code", ""),
            form.get("nonce", ""),
            request.cookies.get(local_login.NONCE_COOKIE),
            ctx.now(),
        )
    except Unauthorized as exc:
        ctx.guard.failure(source, "", "login link")
        ctx.audit.record("login.failed", detail={"reason": exc.message})
        raise
    ctx.audit.record("login", actor=user.login, detail={"forge": "local", "link": True})
    response = _logged_in(ctx, request, user, "/")
    response.delete_cookie(local_login.NONCE_COOKIE, path="/login/link")
    return response


@router.post("/logout")
async def logout(request: Request, ctx: CtxDep) -> Response:
    form = await _form(request) if not request.headers.get(sessions.CSRF_HEADER) else {}
    return await anyio.to_thread.run_sync(_logout, request, ctx, form)


def _logout(request: Request, ctx: ServerContext, form: dict[str, str]) -> Response:
    response = Response(status_code=204)
    session_id = sessions.presented_session(request, ctx.settings)
    found = ctx.store.find_session(hash_token(session_id)) if session_id else None
    if found is not None:
        record, user = found
        presented = request.headers.get(sessions.CSRF_HEADER) or form.get("csrf_token", "")
        sessions.check_csrf(record, presented)
        ctx.store.delete_session(record.id)
        ctx.audit.record("logout", actor=user.login)
    sessions.clear_cookies(response, ctx.settings)
    return response


@router.post("/api/users/{login}/login-link")
def create_login_link(login: str, admin: AdminDep, ctx: CtxDep) -> LoginLinkOut:
    user = ctx.store.find_user(login)
    if user is None:
        raise NotFound(f"user {login} not found")
    if user.machine or not user.active:
        raise BadRequest(f"user {login} is a machine account or blocked; it cannot log in")
    url, expires = local_login.create_link(ctx.store, ctx.settings, user, ctx.now())
    ctx.audit.record("user.login_link", actor=admin.user.login, detail={"user": login})
    return LoginLinkOut(login=login, url=url, expires=expires)
