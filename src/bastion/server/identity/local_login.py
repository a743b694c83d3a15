"""Login without a forge account, for the local forge on one machine: one-time login links.

An administrator asks for a link for a user (``bastion user login-link LOGIN``, or
``POST /api/users/{login}/login-link``); the link carries 256 random bits, is stored hashed,
works once, and expires after 15 minutes. This was chosen over passwords: there is no
password to choose badly, reuse elsewhere, guess online or crack from a copy of the
database, and whoever runs the CLI as an administrator of a single-machine server can
already do anything the link allows.

Opening the link (GET) only shows a page with a button; the button POSTs the code together
with a nonce that the GET put in a SameSite cookie. So a chat client or mail scanner that
fetches the link does not use it up, and a page of another site cannot log a visitor into
the attacker's account (its cross-site POST carries no such cookie).
"""

from __future__ import annotations

import html
import secrets

from bastion.crypto import hash_token, tokens_equal
from bastion.server.errors import Unauthorized
from bastion.server.settings import ServerSettings
from bastion.store.repository import Store
from bastion.store.types import User

LINK_SECONDS = 900
NONCE_COOKIE = "bastion_link"
_MAX_CODE = 128


def create_link(store: Store, settings: ServerSettings, user: User, now: int) -> tuple[str, int]:
    """A new one-time login link for ``user`` and its expiry (Unix time)."""
    code = secrets.token_urlsafe(32)
    expires = now + LINK_SECONDS
    store.put_login_state(hash_token(code), kind="link", user_id=user.id, expires=expires)
    return f"{settings.effective_public_url}/login/link?code={code}", expires


def page(code: str, nonce: str) -> str:
    """The confirmation page of a link (the code and nonce escaped into a form)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Bastion login</title></head>"
        "<body><form method='post' action='/login/link'>"
        f"<input type='hidden' name='code' value='{html.escape(code, quote=True)}'>"
        f"<input type='hidden' name='nonce' value='{html.escape(nonce, quote=True)}'>"
        "<button type='submit'>Log in to Bastion</button></form></body></html>"
    )


def redeem(store: Store, code: str, nonce: str, cookie_nonce: str | None, now: int) -> User:
    """The user of a link, which is used up; ``Unauthorized`` for a wrong, used or expired
    link or a POST that did not come from the link's page in this browser."""
    if not cookie_nonce or not nonce or not tokens_equal(nonce, cookie_nonce):
        raise Unauthorized("open the login link in this browser and press the button")
    if not code or len(code) > _MAX_CODE:
        raise Unauthorized("this login link is not valid")
    state = store.take_login_state(hash_token(code), "link")
    if state is None or state.expires <= now or state.user_id is None:
        raise Unauthorized("this login link is not valid, was used or has expired")
    user = store.get_user(state.user_id)
    if user is None or not user.active or user.machine:
        raise Unauthorized("this login link is not valid, was used or has expired")
    return user
