"""OAuth login end to end, sessions and their attacks, against a real server and a real OAuth2
provider (``_oauth_provider``) on 127.0.0.1.

The "browser" follows every redirect by hand and keeps cookies itself (also Secure ones over
plain HTTP, so that the production cookie attributes can be tested on a loopback server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.integration.server._oauth_provider import Account, OAuthProvider
from tests.integration.server._support import Harness, start_server

SESSION = "__Host-bastion_session"


class Browser:
    """Cookies per host, no automatic redirects, every Set-Cookie recorded."""

    def __init__(self) -> None:
        self.jar: dict[str, dict[str, str]] = {}
        self.set_cookies: list[str] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        host = urlsplit(url).netloc
        cookies = self.jar.setdefault(host, {})
        headers = dict(kwargs.pop("headers", {}))
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        response = httpx.request(method, url, headers=headers, follow_redirects=False, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            self.set_cookies.append(raw)
            parsed = SimpleCookie()
            parsed.load(raw)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0" or not morsel.value.strip('"'):
                    cookies.pop(name, None)
                else:
                    cookies[name] = morsel.value
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def cookie(self, url: str, name: str) -> str | None:
        return self.jar.get(urlsplit(url).netloc, {}).get(name)


@pytest.fixture
def provider() -> Iterator[OAuthProvider]:
    provider = OAuthProvider()
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def login_server(tmp_path: Path, provider: OAuthProvider) -> Iterator[Callable[..., Harness]]:
    stops: list[Iterator[Harness]] = []

    def make(**overrides: Any) -> Harness:
        settings: dict[str, Any] = {
            "github_client_id": provider.client_id,
            "github_client_secret": provider.client_secret,
            "github_server": provider.url,
            "github_api_url": provider.url + "/api/v3",
            "user_filter": "acme",
            **overrides,
        }
        generator = start_server(tmp_path, **settings)
        harness = next(generator)
        stops.append(generator)
        provider.redirect_uri = harness.url + "/login"
        return harness

    yield make
    for generator in stops:
        next(generator, None)


def login(browser: Browser, server: Harness, next_url: str = "/") -> httpx.Response:
    """The whole redirect dance; the last answer (Bastion's, after the forge's callback)."""
    start = browser.get(server.url + "/login", params={"next": next_url})
    assert start.status_code == 302, start.text
    at_forge = browser.get(start.headers["location"])
    if at_forge.status_code != 302:
        return at_forge
    back = at_forge.headers["location"]
    assert back.startswith(server.url + "/login?")
    return browser.get(back)


def alice(provider: OAuthProvider, **changes: Any) -> Account:
    account = Account(
        id=101,
        login="alice",
        email="alice@example.com",
        orgs=["acme"],
        repos={
            "acme/app": {"pull": True, "push": True, "admin": False},
            "acme/ops": {"pull": True, "push": True, "admin": True},
        },
    )
    for key, value in changes.items():
        setattr(account, key, value)
    provider.add(account)
    provider.signed_in = account.login
    return account


def events(server: Harness, kind: str) -> list[dict[str, Any]]:
    response = server.admin.get("/api/audit", params={"kind": kind})
    response.raise_for_status()
    return list(response.json())


def test_oauth_login_end_to_end(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    server.forge_repo("github", "acme", "app")
    server.forge_repo("github", "acme", "secret")
    alice(provider)
    browser = Browser()

    start = browser.get(server.url + "/login", params={"next": "/acme/app"})
    assert start.status_code == 302
    authorize = urlsplit(start.headers["location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == provider.url
    query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == server.url + "/login"
    assert len(query["state"]) >= 40
    assert browser.cookie(server.url, "bastion_login") == query["state"]

    at_forge = browser.get(start.headers["location"])
    done = browser.get(at_forge.headers["location"])
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/acme/app"
    session_cookie = next(c for c in browser.set_cookies if c.startswith(SESSION + "="))
    attributes = {part.strip().lower() for part in session_cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= attributes
    csrf_cookie = next(c for c in browser.set_cookies if c.startswith("bastion_csrf="))
    assert "httponly" not in csrf_cookie.lower()
    # The code was exchanged with the verifier and the client secret.
    exchange = provider.token_requests[-1]
    assert exchange["code_verifier"] and exchange["client_secret"] == provider.client_secret

    me = browser.get(server.url + "/api/user")
    assert me.status_code == 200
    assert me.json()["login"] == "alice"
    assert me.json()["admin"] is False
    # Permissions mirrored at login: write on acme/app, nothing on the private acme/secret.
    assert browser.get(server.url + "/api/repos/acme/app").status_code == 200
    assert browser.get(server.url + "/api/repos/acme/secret").status_code == 404
    slugs = [r["slug"] for r in browser.get(server.url + "/api/user/repos").json()]
    assert slugs == ["acme/app"]
    csrf = browser.cookie(server.url, "bastion_csrf")
    assert csrf
    patch = browser.request("PATCH", server.url + "/api/repos/acme/app", json={"timeout": 30})
    assert patch.status_code == 403
    assert "X-CSRF-Token" in patch.json()["message"]
    patch = browser.request(
        "PATCH",
        server.url + "/api/repos/acme/app",
        json={"timeout": 30},
        headers={"X-CSRF-Token": "x" * 43},
    )
    assert patch.status_code == 403
    patch = browser.request(
        "PATCH",
        server.url + "/api/repos/acme/app",
        json={"timeout": 30},
        headers={"X-CSRF-Token": csrf},
    )
    assert patch.status_code == 200, patch.text
    # Write, not admin: no activation, no trust.
    assert (
        browser.post(server.url + "/api/repos/acme/app", headers={"X-CSRF-Token": csrf}).status_code
        == 403
    )
    [event] = events(server, "login")
    assert event["actor"] == "alice"
    assert event["detail"]["forge"] == "github"


def test_a_forge_repository_admin_may_activate_it(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    server.forge_repo("github", "acme", "ops")
    server.admin.delete("/api/repos/acme/ops").raise_for_status()  # inactive
    alice(provider)
    browser = Browser()
    assert login(browser, server).status_code == 303
    csrf = browser.cookie(server.url, "bastion_csrf")
    enabled = browser.post(server.url + "/api/repos/acme/ops", headers={"X-CSRF-Token": csrf})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["active"] is True


def test_replayed_callback_and_replayed_code_are_refused(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    alice(provider)
    browser = Browser()
    start = browser.get(server.url + "/login")
    callback = browser.get(start.headers["location"]).headers["location"]
    assert browser.get(callback).status_code == 303
    # The same callback again, with the state cookie copied back: its state was used.
    state = parse_qs(urlsplit(callback).query)["state"][0]
    browser.jar[urlsplit(server.url).netloc]["bastion_login"] = state
    again = browser.get(callback)
    assert again.status_code == 401
    assert "unknown, used or expired" in again.json()["message"]
    # The same code with a fresh state of this browser: the forge refuses the used code.
    code = parse_qs(urlsplit(callback).query)["code"][0]
    fresh = browser.get(server.url + "/login")
    state = parse_qs(urlsplit(fresh.headers["location"]).query)["state"][0]
    replay = browser.get(server.url + "/login", params={"code": code, "state": state})
    assert replay.status_code == 401
    assert "refused the authorization code" in replay.json()["message"]
    assert len(events(server, "login.failed")) == 2


def test_forged_state_is_refused(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    alice(provider)
    victim = Browser()
    victim.get(server.url + "/login")  # the victim started a login of their own
    attacker = Browser()
    start = attacker.get(server.url + "/login")
    callback = attacker.get(start.headers["location"]).headers["location"]
    # Login CSRF: the attacker's callback (valid code and state) opened in the victim's browser.
    forced = victim.get(callback)
    assert forced.status_code == 401
    assert "not started by this browser" in forced.json()["message"]
    assert victim.cookie(server.url, SESSION) is None
    # A state nobody issued, with a matching cookie.
    forger = Browser()
    forger.jar[urlsplit(server.url).netloc] = {"bastion_login": "A" * 43}
    made_up = forger.get(server.url + "/login", params={"code": "c", "state": "A" * 43})
    assert made_up.status_code == 401
    assert forger.cookie(server.url, SESSION) is None


def test_a_stolen_code_without_its_pkce_verifier_is_useless(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    alice(provider)
    victim = Browser()
    start = victim.get(server.url + "/login")
    stolen = parse_qs(urlsplit(victim.get(start.headers["location"]).headers["location"]).query)
    code = stolen["code"][0]
    # Straight to the token endpoint without a verifier: refused by the provider.
    direct = httpx.post(
        provider.url + "/login/oauth/access_token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": server.url + "/login",
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
        },
    )
    assert direct.status_code == 400
    assert "code_verifier" in direct.text
    # Injected into the attacker's own login at Bastion: exchanged with the attacker's
    # verifier, which does not match the victim's challenge.
    attacker = Browser()
    own = attacker.get(server.url + "/login")
    state = parse_qs(urlsplit(own.headers["location"]).query)["state"][0]
    injected = attacker.get(server.url + "/login", params={"code": code, "state": state})
    assert injected.status_code == 401
    assert attacker.cookie(server.url, SESSION) is None
    assert any("Code challenge failed" in e for e in provider.token_errors)


def test_registration_is_closed_to_users_outside_the_filter(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    alice(provider, login="mallory", id=666, orgs=["elsewhere"])
    browser = Browser()
    refused = login(browser, server)
    assert refused.status_code == 403
    assert "registration is closed" in refused.json()["message"]
    assert browser.cookie(server.url, SESSION) is None
    assert server.admin.get("/api/users/mallory").status_code == 404
    [event] = events(server, "login.refused")
    assert event["actor"] == "mallory"


def test_admin_created_user_may_log_in_but_not_the_bootstrap_admin_by_name(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server(user_filter="")
    server.admin.post("/api/users", json={"login": "carol"}).raise_for_status()
    alice(provider, login="carol", id=7, orgs=[])
    assert login(Browser(), server).status_code == 303
    # Someone registers "admin" on the forge: the bootstrap administrator is not theirs.
    alice(provider, login="admin", id=8, orgs=[])
    hijack = login(Browser(), server)
    assert hijack.status_code == 403


def test_a_young_forge_account_is_refused(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server(min_account_age_days=30)
    alice(provider, created_at="2099-01-01T00:00:00Z")
    refused = login(Browser(), server)
    assert refused.status_code == 403
    assert "BASTION_MIN_ACCOUNT_AGE_DAYS" in refused.json()["message"]


def test_admins_come_from_configuration_at_every_login(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server(admins="alice, root")
    alice(provider)
    browser = Browser()
    assert login(browser, server).status_code == 303
    assert browser.get(server.url + "/api/user").json()["admin"] is True
    # Removed from BASTION_ADMINS: the next login demotes.
    ctx = server.ctx
    ctx.settings = ctx.settings.model_copy(update={"admins": "root"})
    again = Browser()
    assert login(again, server).status_code == 303
    assert again.get(server.url + "/api/user").json()["admin"] is False
    kinds = [e["kind"] for e in server.admin.get("/api/audit", params={"kind": "user."}).json()]
    assert "user.admin_granted" in kinds
    assert "user.admin_revoked" in kinds


def test_blocking_a_user_kills_their_live_session(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    alice(provider)
    browser = Browser()
    assert login(browser, server).status_code == 303
    assert browser.get(server.url + "/api/user").status_code == 200
    server.admin.patch("/api/users/alice", json={"active": False}).raise_for_status()
    assert browser.get(server.url + "/api/user").status_code == 401
    # Unblocked: the old session stays dead (it was deleted, not just refused).
    server.admin.patch("/api/users/alice", json={"active": True}).raise_for_status()
    assert browser.get(server.url + "/api/user").status_code == 401
    # A blocked user cannot log in again either.
    server.admin.patch("/api/users/alice", json={"active": False}).raise_for_status()
    assert login(Browser(), server).status_code == 403


def test_login_makes_a_new_session_id(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    alice(provider)
    browser = Browser()
    host = urlsplit(server.url).netloc
    browser.jar[host] = {SESSION: "planted-by-the-attacker"}
    assert login(browser, server).status_code == 303
    first = browser.cookie(server.url, SESSION)
    assert first and first != "planted-by-the-attacker"
    assert login(browser, server).status_code == 303
    second = browser.cookie(server.url, SESSION)
    assert second and second != first
    old = Browser()
    old.jar[host] = {SESSION: first}
    assert old.get(server.url + "/api/user").status_code == 401  # ended by the new login


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "x"],
)
def test_next_never_leaves_the_server(
    login_server: Callable[..., Harness], provider: OAuthProvider, target: str
) -> None:
    server = login_server()
    alice(provider)
    done = login(Browser(), server, next_url=target)
    assert done.status_code == 303
    assert done.headers["location"] == "/"


def test_logout_needs_the_csrf_token_and_really_ends_the_session(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    alice(provider)
    browser = Browser()
    login(browser, server)
    session = browser.cookie(server.url, SESSION)
    csrf = browser.cookie(server.url, "bastion_csrf")
    assert browser.post(server.url + "/logout").status_code == 403  # cross-site forgery
    assert browser.get(server.url + "/api/user").status_code == 200
    form = browser.post(
        server.url + "/logout",
        content=f"csrf_token={csrf}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 204
    assert browser.cookie(server.url, SESSION) is None
    copied = Browser()
    copied.jar[urlsplit(server.url).netloc] = {SESSION: str(session)}
    assert copied.get(server.url + "/api/user").status_code == 401


def test_bearer_tokens_need_no_csrf_token(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server()
    assert server.admin.patch("/api/users/admin", json={"email": "a@b.c"}).status_code == 200


def test_dev_server_on_loopback_drops_secure(
    login_server: Callable[..., Harness], provider: OAuthProvider
) -> None:
    server = login_server(dev=True)
    alice(provider)
    browser = Browser()
    assert login(browser, server).status_code == 303
    session_cookie = next(c for c in browser.set_cookies if c.startswith("bastion_session="))
    assert "secure" not in session_cookie.lower()
    assert "httponly" in session_cookie.lower()


def test_no_forge_login_configured(tmp_path: Path) -> None:
    for server in start_server(tmp_path):
        answer = httpx.get(server.url + "/login", follow_redirects=False)
        assert answer.status_code == 404
        assert "login-link" in answer.json()["message"]


@pytest.mark.parametrize("forge", ["gitea", "gitlab"])
def test_oauth_login_through_gitea_and_gitlab(
    tmp_path: Path, provider: OAuthProvider, forge: str
) -> None:
    settings = {
        f"{forge}_client_id": provider.client_id,
        f"{forge}_client_secret": provider.client_secret,
        f"{forge}_url": provider.url,
        "user_filter": "acme",
    }
    for server in start_server(tmp_path, **settings):
        provider.redirect_uri = server.url + "/login"
        server.forge_repo(forge, "acme", "app")
        server.forge_repo(forge, "acme", "ops")
        alice(provider)
        browser = Browser()
        start = browser.get(server.url + "/login")
        assert start.headers["location"].startswith(
            provider.url + ("/oauth/authorize" if forge == "gitlab" else "/login/oauth/authorize")
        )
        at_forge = browser.get(start.headers["location"])
        assert browser.get(at_forge.headers["location"]).status_code == 303
        assert browser.get(server.url + "/api/user").json()["login"] == "alice"
        csrf = str(browser.cookie(server.url, "bastion_csrf"))
        # Mirrored: write on acme/app, admin on acme/ops.
        app = browser.request(
            "PATCH",
            server.url + "/api/repos/acme/app",
            json={"timeout": 30},
            headers={"X-CSRF-Token": csrf},
        )
        assert app.status_code == 200, app.text
        sign = {"data": "kind: pipeline\n"}
        headers = {"X-CSRF-Token": csrf}
        assert (
            browser.post(
                server.url + "/api/repos/acme/app/sign", json=sign, headers=headers
            ).status_code
            == 403
        )
        assert (
            browser.post(
                server.url + "/api/repos/acme/ops/sign", json=sign, headers=headers
            ).status_code
            == 200
        )
        [event] = events(server, "login")
        assert event["detail"]["forge"] == forge
