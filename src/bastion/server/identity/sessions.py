"""Browser sessions: a random id in a cookie, its hash in the database, a CSRF token beside it.

**Cookies.** ``__Host-bastion_session`` holds the session id: Secure, HttpOnly, SameSite=Lax,
Path=/, no Domain (the ``__Host-`` prefix makes browsers refuse it otherwise). Only a plain
HTTP server started with ``--dev`` on a loopback address drops Secure, and with it the prefix
(``bastion_session``). ``bastion_csrf`` holds the CSRF token and is readable by the page's
scripts (not HttpOnly), which send it back in the ``X-CSRF-Token`` header.

**CSRF (synchronizer token).** Every request authenticated by the session cookie with a
method other than GET, HEAD or OPTIONS must carry ``X-CSRF-Token`` whose hash is the one
stored with the session; otherwise 403. A cross-site page can make the browser send the
cookie, but can neither read the token nor set the header. Bearer-token calls are not
concerned (no ambient credential).

**Lifetime.** A session ends ``session_idle_seconds`` after its last request and at the latest
``session_lifetime_seconds`` after login; ``last_seen`` is written at most once a minute. A
blocked user's sessions are deleted when they are blocked, and refused anyway while the user
is inactive; logout deletes the record, so a copied cookie is dead too. Every login makes a
new id (and ends the session the browser came with), so a planted id never becomes valid.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from bastion.crypto import hash_token, tokens_equal
from bastion.server.errors import Forbidden, Unauthorized
from bastion.server.settings import ServerSettings
from bastion.store.identity_store import LoginSession
from bastion.store.repository import Store
from bastion.store.types import User

SESSION_COOKIE = "bastion_session"
SECURE_SESSION_COOKIE = "__Host-bastion_session"
CSRF_COOKIE = "bastion_csrf"
CSRF_HEADER = "x-csrf-token"
TOUCH_INTERVAL = 60
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_COOKIE = 128


@dataclass(frozen=True)
class NewSession:
    session_id: str  # for the cookie only; the store has its hash
    csrf_token: str
    record: LoginSession


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secure_cookies(settings: ServerSettings) -> bool:
    """Cookies are Secure unless a plain HTTP ``--dev`` server listens on loopback only."""
    plain = settings.link_proto != "https"
    return not (plain and settings.dev and _loopback(settings.host))


def session_cookie_name(settings: ServerSettings) -> str:
    return SECURE_SESSION_COOKIE if secure_cookies(settings) else SESSION_COOKIE


def start(store: Store, settings: ServerSettings, user: User, now: int) -> NewSession:
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    record = store.create_session(
        user.id,
        hash_token(session_id),
        hash_token(csrf),
        expires=now + settings.session_lifetime_seconds,
    )
    return NewSession(session_id, csrf, record)


def set_cookies(response: Response, settings: ServerSettings, new: NewSession) -> None:
    secure = secure_cookies(settings)
    max_age = settings.session_lifetime_seconds
    response.set_cookie(
        session_cookie_name(settings),
        new.session_id,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    response.set_cookie(
        CSRF_COOKIE,
        new.csrf_token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="lax",
    )


def clear_cookies(response: Response, settings: ServerSettings) -> None:
    secure = secure_cookies(settings)
    for name, http_only in ((session_cookie_name(settings), True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="lax")


def presented_session(request: Request, settings: ServerSettings) -> str | None:
    value = request.cookies.get(session_cookie_name(settings))
    return value if value else None


def lookup(
    store: Store, settings: ServerSettings, request: Request, now: int
) -> tuple[LoginSession, User] | None:
    """The session of the request's cookie and its user; None without a cookie.
    ``Unauthorized`` for a cookie that does not (or no longer) log in, ``Forbidden`` for a
    state-changing request without the session's CSRF token."""
    session_id = presented_session(request, settings)
    if session_id is None:
        return None
    if len(session_id) > _MAX_COOKIE:
        raise Unauthorized("invalid session; log in again")
    found = store.find_session(hash_token(session_id))
    if found is None:
        raise Unauthorized("invalid session; log in again")
    record, user = found
    if record.expires <= now or now - record.last_seen > settings.session_idle_seconds:
        store.delete_session(record.id)
        raise Unauthorized("the session has expired; log in again")
    if not user.active:
        store.delete_session(record.id)
        raise Unauthorized(f"the account {user.login} is blocked")
    if request.method not in _SAFE_METHODS:
        check_csrf(record, request.headers.get(CSRF_HEADER, ""))
    if now - record.last_seen >= TOUCH_INTERVAL:
        store.touch_session(record.id, now)
    return record, user


def check_csrf(record: LoginSession, presented: str) -> None:
    if not presented or len(presented) > _MAX_COOKIE:
        raise Forbidden("this request needs the X-CSRF-Token header of the session")
    if not tokens_equal(hash_token(presented), record.csrf_hash):
        raise Forbidden("the X-CSRF-Token header does not match the session")
