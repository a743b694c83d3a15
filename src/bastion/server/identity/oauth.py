"""The OAuth2 authorization-code flow with PKCE (RFC 6749, RFC 7636) against GitHub, Gitea and
GitLab, built on Authlib's protocol functions.

``begin`` makes a random ``state`` and PKCE ``code_verifier``, stores them (hashed state,
encrypted verifier, the sanitised ``next`` path) for ten minutes, and returns the forge's
authorize URL with the S256 challenge. ``finish`` takes the stored state exactly once, checks
that the browser returning it is the one that started (the state is also in an HttpOnly
cookie: a login started elsewhere cannot be completed here), and exchanges the code with the
verifier and the client secret for the user's token. Authlib's HTTP integrations are not used
(their httpx one is deprecated); the token request goes through httpx without redirects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx
from authlib.common.security import generate_token, is_secure_transport
from authlib.oauth2.rfc6749.errors import MismatchingStateException, MissingCodeException
from authlib.oauth2.rfc6749.parameters import (
    parse_authorization_code_response,
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from bastion.crypto import hash_token, tokens_equal
from bastion.scm.accounts import AccountClient, GiteaAccounts, GitHubAccounts, GitLabAccounts
from bastion.server.errors import BadRequest, Unauthorized, Unavailable
from bastion.server.settings import ServerSettings
from bastion.store.repository import Store

STATE_SECONDS = 600
STATE_COOKIE = "bastion_login"
_TIMEOUT = 10.0
_MAX_REPLY = 64 * 1024
FORGES = ("github", "gitea", "gitlab")


@dataclass(frozen=True)
class Provider:
    forge: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scope: str
    accounts: AccountClient


def providers(settings: ServerSettings) -> dict[str, Provider]:
    """The forges with an OAuth application configured (a client id and a secret)."""
    out: dict[str, Provider] = {}
    if settings.github_client_id and settings.github_client_secret.get_secret_value():
        web = settings.github_server.rstrip("/")
        out["github"] = Provider(
            "github",
            settings.github_client_id,
            settings.github_client_secret.get_secret_value(),
            f"{web}/login/oauth/authorize",
            f"{web}/login/oauth/access_token",
            "repo read:org user:email",
            GitHubAccounts(settings.github_api_url),
        )
    if (
        settings.gitea_client_id
        and settings.gitea_client_secret.get_secret_value()
        and settings.gitea_url
    ):
        web = settings.gitea_url.rstrip("/")
        out["gitea"] = Provider(
            "gitea",
            settings.gitea_client_id,
            settings.gitea_client_secret.get_secret_value(),
            f"{web}/login/oauth/authorize",
            f"{web}/login/oauth/access_token",
            "",
            GiteaAccounts(web),
        )
    if settings.gitlab_client_id and settings.gitlab_client_secret.get_secret_value():
        web = settings.gitlab_url.rstrip("/")
        out["gitlab"] = Provider(
            "gitlab",
            settings.gitlab_client_id,
            settings.gitlab_client_secret.get_secret_value(),
            f"{web}/oauth/authorize",
            f"{web}/oauth/token",
            "read_user read_api",
            GitLabAccounts(web),
        )
    return out


def redirect_uri(settings: ServerSettings) -> str:
    """Drone's callback address: ``/login`` answers both the start and the forge's return."""
    return f"{settings.effective_public_url}/login"


def safe_next(value: str | None) -> str:
    """A path on this server to go to after login; anything else (another host, a scheme,
    ``//host``, ``/\\host``, control characters) becomes ``/``."""
    if not value or len(value) > 2000 or not value.startswith("/"):
        return "/"
    if value.startswith(("//", "/\\")) or any(c in value for c in "\\\r\n\t\x00"):
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    return value


def begin(
    store: Store, settings: ServerSettings, provider: Provider, next_url: str, now: int
) -> tuple[str, str]:
    """Store a new login and return (the authorize URL, the state for the cookie)."""
    for url in (provider.authorize_url, provider.token_url):
        if not is_secure_transport(url):
            # The code and the client secret would cross the network in the clear.
            raise Unavailable(
                f"login through {provider.forge} needs https (or a loopback address): {url}"
            )
    state = generate_token(43)
    verifier = generate_token(64)
    store.put_login_state(
        hash_token(state),
        kind="oauth",
        forge=provider.forge,
        verifier=verifier,
        next_url=safe_next(next_url),
        expires=now + STATE_SECONDS,
    )
    url = prepare_grant_uri(
        provider.authorize_url,
        provider.client_id,
        "code",
        redirect_uri=redirect_uri(settings),
        scope=provider.scope or None,
        state=state,
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
    )
    return str(url), state


@dataclass(frozen=True)
class Returned:
    provider: Provider
    access_token: str
    next_url: str


def finish(
    store: Store,
    settings: ServerSettings,
    known: dict[str, Provider],
    callback_url: str,
    cookie_state: str | None,
    now: int,
) -> Returned:
    """Complete a login the forge sent back to ``callback_url``; ``Unauthorized`` when it
    cannot be (forged, replayed, expired or another browser's state; a refused code)."""
    query = dict(parse_qsl(callback_url.partition("?")[2]))
    state = query.get("state", "")
    if not state or not cookie_state or not tokens_equal(state, cookie_state):
        raise Unauthorized("this login was not started by this browser; start again at /login")
    try:
        params = parse_authorization_code_response(callback_url, state=cookie_state)
    except (MissingCodeException, MismatchingStateException):
        raise Unauthorized("the forge did not return a usable authorization code") from None
    stored = store.take_login_state(hash_token(state), "oauth")
    if stored is None or stored.expires <= now:
        raise Unauthorized("this login is unknown, used or expired; start again at /login")
    provider = known.get(stored.forge)
    if provider is None:
        raise BadRequest(f"login through {stored.forge} is not configured")
    token = _exchange(provider, settings, str(params["code"]), stored.verifier)
    return Returned(provider, token, stored.next_url)


def _exchange(provider: Provider, settings: ServerSettings, code: str, verifier: str) -> str:
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=redirect_uri(settings),
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        code_verifier=verifier,
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    try:
        with httpx.Client(timeout=_TIMEOUT, follow_redirects=False) as client:
            response = client.post(provider.token_url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise Unavailable(f"{provider.forge} could not be reached: {type(exc).__name__}") from None
    text = response.content[:_MAX_REPLY]
    try:
        data = json.loads(text)
    except ValueError:
        data = dict(parse_qsl(text.decode("utf-8", "replace")))  # GitHub without Accept
    token = data.get("access_token") if isinstance(data, dict) else None
    if response.status_code != 200 or not isinstance(token, str) or not token:
        raise Unauthorized(f"{provider.forge} refused the authorization code")
    return token
