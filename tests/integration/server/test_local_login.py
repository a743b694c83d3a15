"""Login links of the local forge, repository grants, the activation filter, and the forge
permission cache, against a real server (and the test OAuth provider for the forge API)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from tests.integration.server._oauth_provider import Account, OAuthProvider
from tests.integration.server._support import Harness, start_server

SESSION = "__Host-bastion_session"


def link_for(server: Harness, login: str) -> str:
    response = server.admin.post(f"/api/users/{login}/login-link")
    assert response.status_code == 200, response.text
    return str(response.json()["url"])


def open_link(url: str) -> tuple[str, str]:
    """GET the link's page: (the nonce cookie, the nonce in the form)."""
    page = httpx.get(url, follow_redirects=False)
    assert page.status_code == 200
    assert "no-store" in page.headers["cache-control"]
    cookie = page.cookies["bastion_link"]
    form_nonce = page.text.split("name='nonce' value='", 1)[1].split("'", 1)[0]
    return cookie, form_nonce


def press(server: Harness, code: str, nonce: str, cookie: str | None) -> httpx.Response:
    return httpx.post(
        server.url + "/login/link",
        data={"code": code, "nonce": nonce},
        cookies={"bastion_link": cookie} if cookie else None,
        follow_redirects=False,
    )


def test_a_login_link_logs_in_once(server: Harness) -> None:
    server.admin.post("/api/users", json={"login": "bob"}).raise_for_status()
    url = link_for(server, "bob")
    code = parse_qs(urlsplit(url).query)["code"][0]
    # Fetching the link (a chat preview, a mail scanner) does not use it up.
    open_link(url)
    cookie, nonce = open_link(url)
    assert cookie == nonce
    done = press(server, code, nonce, cookie)
    assert done.status_code == 303
    session = done.cookies[SESSION]
    me = httpx.get(server.url + "/api/user", cookies={SESSION: session})
    assert me.json()["login"] == "bob"
    again = press(server, code, nonce, cookie)
    assert again.status_code == 401
    kinds = [e["kind"] for e in server.admin.get("/api/audit", params={"kind": "login"}).json()]
    assert kinds.count("login") == 1
    assert "login.failed" in kinds


def test_a_login_link_cannot_be_pressed_from_another_site(server: Harness) -> None:
    server.admin.post("/api/users", json={"login": "bob"}).raise_for_status()
    url = link_for(server, "bob")
    code = parse_qs(urlsplit(url).query)["code"][0]
    # Login CSRF: another site posts the attacker's link; the SameSite nonce cookie is absent.
    assert press(server, code, "guess", None).status_code == 401
    cookie, nonce = open_link(url)
    assert press(server, code, "other", cookie).status_code == 401
    # The link was not used up by the refusals above... but each refusal is counted.
    assert press(server, code, nonce, cookie).status_code == 303


def test_a_made_up_or_expired_link_is_refused(make_server: object) -> None:
    assert callable(make_server)
    server: Harness = make_server()
    server.admin.post("/api/users", json={"login": "bob"}).raise_for_status()
    cookie, nonce = open_link(server.url + "/login/link?code=made-up")
    assert press(server, "made-up", nonce, cookie).status_code == 401
    url = link_for(server, "bob")
    code = parse_qs(urlsplit(url).query)["code"][0]
    cookie, nonce = open_link(url)
    ctx = server.ctx
    real = ctx.clock
    ctx.clock = lambda: real() + 901  # past the 15 minutes
    try:
        assert press(server, code, nonce, cookie).status_code == 401
    finally:
        ctx.clock = real


def test_no_link_for_machine_or_blocked_accounts(server: Harness) -> None:
    server.admin.post("/api/users", json={"login": "bot", "machine": True}).raise_for_status()
    assert server.admin.post("/api/users/bot/login-link").status_code == 400
    assert server.admin.post("/api/users/ghost/login-link").status_code == 404
    server.admin.post("/api/users", json={"login": "bob"}).raise_for_status()
    url = link_for(server, "bob")
    server.admin.patch("/api/users/bob", json={"active": False}).raise_for_status()
    cookie, nonce = open_link(url)
    code = parse_qs(urlsplit(url).query)["code"][0]
    assert press(server, code, nonce, cookie).status_code == 401


def test_grants_decide_access_to_a_private_local_repository(server: Harness) -> None:
    server.local_repo()
    bob = server.client(server.user_token("bob"))
    assert bob.get("/api/repos/acme/web").status_code == 404
    assert [r["slug"] for r in bob.get("/api/repos").json()] == []
    put = server.admin.put("/api/repos/acme/web/permissions/bob", json={"scopes": ["write"]})
    assert put.status_code == 200
    assert put.json()["scopes"] == ["read", "write"]  # write implies read
    assert bob.get("/api/repos/acme/web").status_code == 200
    assert bob.patch("/api/repos/acme/web", json={"timeout": 30}).status_code == 200
    assert bob.post("/api/repos/acme/web/sign", json={"data": "x"}).status_code == 403
    listed = server.admin.get("/api/repos/acme/web/permissions").json()
    assert listed[0]["login"] == "bob" and listed[0]["source"] == "grant"
    bad = server.admin.put("/api/repos/acme/web/permissions/bob", json={"scopes": ["root"]})
    assert bad.status_code == 400
    assert server.admin.delete("/api/repos/acme/web/permissions/bob").status_code == 204
    assert bob.get("/api/repos/acme/web").status_code == 404
    kinds = [
        e["kind"] for e in server.admin.get("/api/audit", params={"kind": "permission"}).json()
    ]
    assert sorted(kinds) == ["permission.granted", "permission.revoked"]


def test_public_repositories_are_readable_by_every_user(server: Harness) -> None:
    server.local_repo()
    server.admin.patch("/api/repos/acme/web", json={"visibility": "public"}).raise_for_status()
    bob = server.client(server.user_token("bob"))
    assert bob.get("/api/repos/acme/web").status_code == 200
    assert bob.patch("/api/repos/acme/web", json={"timeout": 30}).status_code == 403


def test_forge_repositories_take_no_grants(server: Harness) -> None:
    server.forge_repo("github", "octo", "app")
    server.user_token("bob")
    answer = server.admin.put("/api/repos/octo/app/permissions/bob", json={"scopes": ["read"]})
    assert answer.status_code == 400
    assert "come from github" in answer.json()["message"]


def test_the_repository_filter_limits_activation(make_server: object) -> None:
    assert callable(make_server)
    server: Harness = make_server(repository_filter="acme/*, tools/ci")
    refused = server.admin.post("/api/repos", json={"owner": "evil", "name": "x", "forge": "local"})
    assert refused.status_code == 403
    assert "BASTION_REPOSITORY_FILTER" in refused.json()["message"]
    assert server.admin.post(
        "/api/repos", json={"owner": "tools", "name": "ci", "forge": "local"}
    ).is_success
    server.local_repo("acme", "web")


def test_forge_permissions_are_asked_again_when_stale(tmp_path: Path) -> None:
    provider = OAuthProvider()
    provider.start()
    try:
        for server in start_server(
            tmp_path,
            github_client_id=provider.client_id,
            github_client_secret=provider.client_secret,
            github_server=provider.url,
            github_api_url=provider.url + "/api/v3",
            admins="carol",
            permission_cache_seconds=60,
        ):
            provider.redirect_uri = server.url + "/login"
            server.forge_repo("github", "acme", "app")
            account = provider.add(
                Account(id=5, login="dave", repos={"acme/app": {"pull": True, "push": True}})
            )
            provider.signed_in = "dave"
            server.admin.post("/api/users", json={"login": "dave"}).raise_for_status()
            jar: dict[str, str] = {}
            start = httpx.get(server.url + "/login", follow_redirects=False)
            jar.update(start.cookies)
            back = httpx.get(start.headers["location"], follow_redirects=False)
            done = httpx.get(back.headers["location"], cookies=jar, follow_redirects=False)
            assert done.status_code == 303, done.text
            session = {SESSION: done.cookies[SESSION]}
            assert httpx.get(server.url + "/api/repos/acme/app", cookies=session).is_success
            # Revoked on the forge: still allowed while the cache is fresh ...
            account.repos = {}
            assert httpx.get(server.url + "/api/repos/acme/app", cookies=session).is_success
            # ... and refused once it is stale.
            ctx = server.ctx
            real = ctx.clock
            ctx.clock = lambda real=real: real() + 61
            try:
                stale = httpx.get(server.url + "/api/repos/acme/app", cookies=session)
                assert stale.status_code == 404
            finally:
                ctx.clock = real
    finally:
        provider.stop()


def _session(server: Harness, login: str) -> dict[str, str]:
    url = link_for(server, login)
    code = parse_qs(urlsplit(url).query)["code"][0]
    cookie, nonce = open_link(url)
    done = press(server, code, nonce, cookie)
    assert done.status_code == 303
    return {SESSION: done.cookies[SESSION]}


def test_sessions_end_when_idle_and_at_their_lifetime(make_server: object) -> None:
    assert callable(make_server)
    server: Harness = make_server(session_idle_seconds=600, session_lifetime_seconds=3600)
    server.admin.post("/api/users", json={"login": "bob"}).raise_for_status()
    ctx = server.ctx
    real = ctx.clock
    try:
        idle = _session(server, "bob")
        ctx.clock = lambda: real() + 601
        answer = httpx.get(server.url + "/api/user", cookies=idle)
        assert answer.status_code == 401
        assert "expired" in answer.json()["message"]
        ctx.clock = real
        assert httpx.get(server.url + "/api/user", cookies=idle).status_code == 401  # deleted
        busy = _session(server, "bob")
        for minutes in range(5, 60, 5):  # used every 5 minutes: never idle ...
            ctx.clock = lambda minutes=minutes: real() + minutes * 60
            assert httpx.get(server.url + "/api/user", cookies=busy).status_code == 200
        ctx.clock = lambda: real() + 3601  # ... but not beyond its lifetime
        assert httpx.get(server.url + "/api/user", cookies=busy).status_code == 401
    finally:
        ctx.clock = real
