"""Deny by default: every route, asked by each role, answers as the rule in
``bastion.server.auth`` says — and a route added without an auth dependency (or without a
row in ``ROUTES``) fails ``test_every_route_declares_its_authorization``.

Roles (``ROLES``), on the private local-forge repository ``acme/web``: ``anonymous``;
``nobody``, a user without access to it; ``user``, a user with read on it (granted); ``write``
and ``repo_admin``, users granted write and admin on it; ``session``, another user granted
write, through a browser session with its CSRF token; ``admin``, a system administrator;
``wrong_scope``, a read-only token of another system administrator; ``revoked`` and
``expired`` tokens and a ``blocked`` (inactive) user, refused everywhere but ``/healthz`` and
``/version``.

Each row of ``ROUTES`` names the statuses of ``anonymous``, ``user`` and ``admin`` (``OPEN``,
``USER``, ``ADMIN`` ...) and may name any other role. ``MATRIX`` writes out every cell of
every row it lists; a row it does not list gets the other roles derived from its three and
from its authorization dependency (``derived``), which is how a new route's row stays short.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from tests.integration.server._support import PIPELINE, FakeRunner, Harness, start_server, wait_for

from bastion.crypto import hash_token, new_token
from bastion.rpc.messages import StepState
from bastion.server.auth import ALL_SCOPES
from bastion.store.types import Scope, SecretFilters

OPEN = {"anonymous": 200, "user": 200, "admin": 200}
USER = {"anonymous": 401, "user": 200, "admin": 200}
ADMIN = {"anonymous": 401, "user": 403, "admin": 200}
CREATED = {"anonymous": 401, "user": 201, "admin": 201}
MISSING = {"anonymous": 401, "user": 404, "admin": 404}  # let in; no such token of theirs


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as the app declares it
    url: str  # a concrete URL
    expect: dict[str, int]
    body: Any = None
    stream: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.url}"


ROUTES = [
    Route("GET", "/healthz", "/healthz", OPEN),
    Route("GET", "/version", "/version", OPEN),
    Route("GET", "/api/user", "/api/user", USER),
    Route("GET", "/api/user/repos", "/api/user/repos", USER),
    Route("GET", "/api/users", "/api/users", ADMIN),
    Route("POST", "/api/users", "/api/users", ADMIN, body={"login": "newcomer"}),
    Route("GET", "/api/users/{login}", "/api/users/spare", ADMIN),
    Route("PATCH", "/api/users/{login}", "/api/users/spare", ADMIN, body={"email": "x@y.z"}),
    Route("DELETE", "/api/users/{login}", "/api/users/spare", {**ADMIN, "admin": 204}),
    Route("POST", "/api/users/{login}/token", "/api/users/spare/token", ADMIN),
    # Identity: one-time login links (admins), repository permissions (system admins).
    Route("POST", "/api/users/{login}/login-link", "/api/users/spare/login-link", ADMIN),
    Route("GET", "/api/repos/{owner}/{name}/permissions", "/api/repos/acme/web/permissions", ADMIN),
    Route(
        "PUT",
        "/api/repos/{owner}/{name}/permissions/{login}",
        "/api/repos/acme/web/permissions/spare",
        ADMIN,
        body={"scopes": ["read"]},
    ),
    Route(
        "DELETE",
        "/api/repos/{owner}/{name}/permissions/{login}",
        "/api/repos/acme/web/permissions/spare",
        {**ADMIN, "admin": 204},
    ),
    # API tokens (api/tokens.py): your own, and a user's or everyone's for administrators.
    Route("GET", "/api/user/tokens", "/api/user/tokens", USER),
    Route("POST", "/api/user/tokens", "/api/user/tokens", CREATED, body={"name": "m"}),
    Route("DELETE", "/api/user/tokens/{name}", "/api/user/tokens/nope", MISSING),
    Route("POST", "/api/user/tokens/{name}/rotate", "/api/user/tokens/nope/rotate", MISSING),
    Route("GET", "/api/users/{login}/tokens", "/api/users/spare/tokens", ADMIN),
    Route(
        "POST",
        "/api/users/{login}/tokens",
        "/api/users/spare/tokens",
        {**ADMIN, "admin": 201},
        body={"name": "m"},
    ),
    Route(
        "DELETE",
        "/api/users/{login}/tokens/{name}",
        "/api/users/spare/tokens/cli",
        {**ADMIN, "admin": 204},
    ),
    Route("DELETE", "/api/users/{login}/tokens", "/api/users/spare/tokens", ADMIN),
    Route("POST", "/api/admin/tokens/revoke-all", "/api/admin/tokens/revoke-all", ADMIN, body={}),
    Route("DELETE", "/api/admin/lockouts", "/api/admin/lockouts", ADMIN),
    Route("GET", "/api/repos", "/api/repos", USER),
    Route("POST", "/api/repos", "/api/repos", ADMIN, body={"owner": "acme", "name": "new"}),
    Route("GET", "/api/repos/{owner}/{name}", "/api/repos/acme/web", USER),
    Route("POST", "/api/repos/{owner}/{name}", "/api/repos/acme/web", ADMIN),
    Route("DELETE", "/api/repos/{owner}/{name}", "/api/repos/acme/web", ADMIN),
    Route("PATCH", "/api/repos/{owner}/{name}", "/api/repos/acme/web", ADMIN, body={"timeout": 30}),
    Route("GET", "/api/repos/{owner}/{name}/secrets", "/api/repos/acme/web/secrets", ADMIN),
    Route(
        "POST",
        "/api/repos/{owner}/{name}/secrets",
        "/api/repos/acme/web/secrets",
        ADMIN,
        body={"name": "fresh", "data": "fresh-value-1234"},
    ),
    Route(
        "GET",
        "/api/repos/{owner}/{name}/secrets/{secret}",
        "/api/repos/acme/web/secrets/token",
        ADMIN,
    ),
    Route(
        "PATCH",
        "/api/repos/{owner}/{name}/secrets/{secret}",
        "/api/repos/acme/web/secrets/token",
        ADMIN,
        body={"events": ["push"]},
    ),
    Route(
        "DELETE",
        "/api/repos/{owner}/{name}/secrets/{secret}",
        "/api/repos/acme/web/secrets/token",
        {**ADMIN, "admin": 204},
    ),
    *(
        route
        for base, url in (
            ("/api/secrets/{namespace}", "/api/secrets/acme"),
            ("/api/admin/secrets", "/api/admin/secrets"),
        )
        for route in (
            Route("GET", base, url, ADMIN),
            Route("POST", base, url, ADMIN, body={"name": "fresh", "data": "fresh-value-1234"}),
            Route("GET", base + "/{secret}", url + "/token", ADMIN),
            Route("PATCH", base + "/{secret}", url + "/token", ADMIN, body={"branches": ["m*"]}),
            Route("DELETE", base + "/{secret}", url + "/token", {**ADMIN, "admin": 204}),
        )
    ),
    Route("GET", "/api/repos/{owner}/{name}/builds", "/api/repos/acme/web/builds", USER),
    Route("POST", "/api/repos/{owner}/{name}/builds", "/api/repos/acme/web/builds", ADMIN),
    Route(
        "GET",
        "/api/repos/{owner}/{name}/builds/latest",
        "/api/repos/acme/web/builds/latest",
        USER,
    ),
    Route("GET", "/api/repos/{owner}/{name}/builds/{number}", "/api/repos/acme/web/builds/1", USER),
    Route(
        "POST", "/api/repos/{owner}/{name}/builds/{number}", "/api/repos/acme/web/builds/1", ADMIN
    ),
    Route(
        "DELETE",
        "/api/repos/{owner}/{name}/builds/{number}",
        "/api/repos/acme/web/builds/1",
        ADMIN,
    ),
    *(
        Route(
            "POST",
            f"/api/repos/{{owner}}/{{name}}/builds/{{number}}/{verb}{stage}",
            f"/api/repos/acme/web/builds/1/{verb}{stage.replace('{stage}', '1')}",
            # Build 1 is not blocked: an administrator is let in and told there is nothing
            # to approve.
            {**ADMIN, "admin": 409},
        )
        for verb in ("approve", "decline")
        for stage in ("", "/{stage}")
    ),
    *(
        Route(
            "POST",
            f"/api/repos/{{owner}}/{{name}}/builds/{{number}}/{verb}",
            f"/api/repos/acme/web/builds/1/{verb}?target=staging",
            {**ADMIN, "admin": 200},
        )
        for verb in ("promote", "rollback")
    ),
    Route(
        "GET", "/api/repos/{owner}/{name}/environments", "/api/repos/acme/web/environments", USER
    ),
    Route(
        "POST",
        "/api/repos/{owner}/{name}/environments",
        "/api/repos/acme/web/environments",
        ADMIN,
        body={"name": "production", "branches": ["main"]},
    ),
    Route(
        "GET",
        "/api/repos/{owner}/{name}/environments/{environment}",
        "/api/repos/acme/web/environments/qa",
        USER,
    ),
    Route(
        "DELETE",
        "/api/repos/{owner}/{name}/environments/{environment}",
        "/api/repos/acme/web/environments/qa",
        {**ADMIN, "admin": 204},
    ),
    Route(
        "POST",
        "/api/repos/{owner}/{name}/sign",
        "/api/repos/acme/web/sign",
        ADMIN,
        body={"data": "kind: pipeline\nname: x\n"},
    ),
    Route(
        "GET",
        "/api/repos/{owner}/{name}/builds/{number}/logs/{stage}/{step}",
        "/api/repos/acme/web/builds/1/logs/1/1",
        USER,
    ),
    # Cron jobs: write access for everything, as in Drone ("nightly" exists in the world).
    Route("GET", "/api/repos/{owner}/{name}/cron", "/api/repos/acme/web/cron", ADMIN),
    Route(
        "POST",
        "/api/repos/{owner}/{name}/cron",
        "/api/repos/acme/web/cron",
        # a job of that name exists: every writer is let in and told so (test_cron.py
        # covers creating; here the answer must not depend on who asked first)
        {**ADMIN, "admin": 409},
        body={"name": "nightly", "expr": "@weekly"},
    ),
    Route(
        "GET", "/api/repos/{owner}/{name}/cron/{cron}", "/api/repos/acme/web/cron/nightly", ADMIN
    ),
    Route(
        "PATCH",
        "/api/repos/{owner}/{name}/cron/{cron}",
        "/api/repos/acme/web/cron/nightly",
        ADMIN,
        body={"disabled": True},
    ),
    Route(
        "POST", "/api/repos/{owner}/{name}/cron/{cron}", "/api/repos/acme/web/cron/nightly", ADMIN
    ),
    Route(
        "DELETE",
        "/api/repos/{owner}/{name}/cron/{cron}",
        "/api/repos/acme/web/cron/gone",
        {**ADMIN, "admin": 404},  # let in, and told there is no such job
    ),
    Route("GET", "/api/runners", "/api/runners", ADMIN),
    Route("POST", "/api/runners", "/api/runners", ADMIN, body={"name": "another"}),
    Route("DELETE", "/api/runners/{name}", "/api/runners/r1", {**ADMIN, "admin": 204}),
    Route("GET", "/api/audit", "/api/audit", ADMIN),
    Route("POST", "/api/admin/rekey", "/api/admin/rekey", ADMIN, body={"dry_run": True}),
    Route("GET", "/api/stream", "/api/stream", USER, stream=True),
    Route(
        "GET",
        "/api/stream/{owner}/{name}/{number}/{stage}/{step}",
        "/api/stream/acme/web/1/1/1",
        USER,
        stream=True,
    ),
]


ROLES = (
    "anonymous",
    "nobody",
    "user",
    "write",
    "repo_admin",
    "session",
    "wrong_scope",
    "revoked",
    "expired",
    "blocked",
    "admin",  # last: its call may change what the others would see
)

# Every cell written out, in the order of ROLES (rows not listed here are derived). Roles
# ask in that order on one world, so after a role whose call changed something, a 404 or 409
# of a later role that was let in means "already done" (build 1 cancelled, the repository
# disabled, the environment deleted), not a refusal: refusals are 401, 403, and 404 for a
# repository the caller may not see.
# "~" stands for /api/repos/acme/web. Columns: anonymous nobody user write repo_admin session
# wrong_scope revoked expired blocked admin.
MATRIX_TEXT = """
GET /healthz:                            200 200 200 200 200 200 200 200 200 200 200
GET /version:                            200 200 200 200 200 200 200 200 200 200 200
GET /api/user:                           401 200 200 200 200 200 200 401 401 401 200
GET /api/user/repos:                     401 200 200 200 200 200 200 401 401 401 200
GET /api/users:                          401 403 403 403 403 403 403 401 401 401 200
POST /api/users:                         401 403 403 403 403 403 403 401 401 401 200
GET /api/users/spare:                    401 403 403 403 403 403 403 401 401 401 200
PATCH /api/users/spare:                  401 403 403 403 403 403 403 401 401 401 200
DELETE /api/users/spare:                 401 403 403 403 403 403 403 401 401 401 204
POST /api/users/spare/token:             401 403 403 403 403 403 403 401 401 401 200
POST /api/users/spare/login-link:        401 403 403 403 403 403 403 401 401 401 200
GET ~/permissions:                       401 403 403 403 403 403 403 401 401 401 200
PUT ~/permissions/spare:                 401 403 403 403 403 403 403 401 401 401 200
DELETE ~/permissions/spare:              401 403 403 403 403 403 403 401 401 401 204
GET /api/user/tokens:                    401 200 200 200 200 200 200 401 401 401 200
POST /api/user/tokens:                   401 201 201 201 201 201 201 401 401 401 201
DELETE /api/user/tokens/nope:            401 404 404 404 404 404 404 401 401 401 404
POST /api/user/tokens/nope/rotate:       401 404 404 404 404 404 404 401 401 401 404
GET /api/users/spare/tokens:             401 403 403 403 403 403 403 401 401 401 200
POST /api/users/spare/tokens:            401 403 403 403 403 403 403 401 401 401 201
DELETE /api/users/spare/tokens/cli:      401 403 403 403 403 403 403 401 401 401 204
DELETE /api/users/spare/tokens:          401 403 403 403 403 403 403 401 401 401 200
POST /api/admin/tokens/revoke-all:       401 403 403 403 403 403 403 401 401 401 200
GET /api/repos:                          401 200 200 200 200 200 200 401 401 401 200
POST /api/repos:                         401 403 403 403 403 403 403 401 401 401 200
GET ~:                                   401 404 200 200 200 200 200 401 401 401 200
POST ~:                                  401 404 403 403 200 403 403 401 401 401 200
DELETE ~:                                401 404 403 403 200 404 403 401 401 401 200
PATCH ~:                                 401 404 403 200 200 200 403 401 401 401 200
GET ~/secrets:                           401 403 403 403 403 403 403 401 401 401 200
POST ~/secrets:                          401 403 403 403 403 403 403 401 401 401 200
GET ~/secrets/token:                     401 403 403 403 403 403 403 401 401 401 200
PATCH ~/secrets/token:                   401 403 403 403 403 403 403 401 401 401 200
DELETE ~/secrets/token:                  401 403 403 403 403 403 403 401 401 401 204
GET /api/secrets/acme:                   401 403 403 403 403 403 403 401 401 401 200
POST /api/secrets/acme:                  401 403 403 403 403 403 403 401 401 401 200
GET /api/secrets/acme/token:             401 403 403 403 403 403 403 401 401 401 200
PATCH /api/secrets/acme/token:           401 403 403 403 403 403 403 401 401 401 200
DELETE /api/secrets/acme/token:          401 403 403 403 403 403 403 401 401 401 204
GET /api/admin/secrets:                  401 403 403 403 403 403 403 401 401 401 200
POST /api/admin/secrets:                 401 403 403 403 403 403 403 401 401 401 200
GET /api/admin/secrets/token:            401 403 403 403 403 403 403 401 401 401 200
PATCH /api/admin/secrets/token:          401 403 403 403 403 403 403 401 401 401 200
DELETE /api/admin/secrets/token:         401 403 403 403 403 403 403 401 401 401 204
GET ~/builds:                            401 404 200 200 200 200 200 401 401 401 200
POST ~/builds:                           401 404 403 200 200 200 403 401 401 401 200
GET ~/builds/latest:                     401 404 200 200 200 200 200 401 401 401 200
GET ~/builds/1:                          401 404 200 200 200 200 200 401 401 401 200
POST ~/builds/1:                         401 404 403 200 200 200 403 401 401 401 200
DELETE ~/builds/1:                       401 404 403 200 409 409 403 401 401 401 409
POST ~/builds/1/approve:                 401 404 403 409 409 409 403 401 401 401 409
POST ~/builds/1/approve/1:               401 404 403 409 409 409 403 401 401 401 409
POST ~/builds/1/decline:                 401 404 403 409 409 409 403 401 401 401 409
POST ~/builds/1/decline/1:               401 404 403 409 409 409 403 401 401 401 409
POST ~/builds/1/promote?target=staging:  401 404 403 200 200 200 403 401 401 401 200
POST ~/builds/1/rollback?target=staging: 401 404 403 200 200 200 403 401 401 401 200
GET ~/environments:                      401 404 200 200 200 200 200 401 401 401 200
POST ~/environments:                     401 404 403 403 200 403 403 401 401 401 200
GET ~/environments/qa:                   401 404 200 200 200 200 200 401 401 401 200
DELETE ~/environments/qa:                401 404 403 403 204 403 403 401 401 401 404
POST ~/sign:                             401 404 403 403 200 403 403 401 401 401 200
GET ~/builds/1/logs/1/1:                 401 404 200 200 200 200 200 401 401 401 200
GET ~/cron:                              401 404 403 200 200 200 403 401 401 401 200
POST ~/cron:                             401 404 403 409 409 409 403 401 401 401 409
GET ~/cron/nightly:                      401 404 403 200 200 200 403 401 401 401 200
PATCH ~/cron/nightly:                    401 404 403 200 200 200 403 401 401 401 200
POST ~/cron/nightly:                     401 404 403 200 200 200 403 401 401 401 200
DELETE ~/cron/gone:                      401 404 403 404 404 404 403 401 401 401 404
GET /api/runners:                        401 403 403 403 403 403 403 401 401 401 200
POST /api/runners:                       401 403 403 403 403 403 403 401 401 401 200
DELETE /api/runners/r1:                  401 403 403 403 403 403 403 401 401 401 204
GET /api/audit:                          401 403 403 403 403 403 403 401 401 401 200
POST /api/admin/rekey:                   401 403 403 403 403 403 403 401 401 401 200
GET /api/stream:                         401 200 200 200 200 200 200 401 401 401 200
GET /api/stream/acme/web/1/1/1:          401 404 200 200 200 200 200 401 401 401 200
"""


def _matrix() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in MATRIX_TEXT.strip().splitlines():
        key, _, cells = line.rpartition(": ")
        statuses = [int(c) for c in cells.split()]
        assert len(statuses) == len(ROLES), line
        route_id = key.strip().rstrip(":").replace("~", "/api/repos/acme/web")
        out[route_id] = dict(zip(ROLES, statuses, strict=True))
    return out


MATRIX = _matrix()


def derived(route: Route, kind: str) -> dict[str, int]:
    """The statuses of every role from a row's ``anonymous``/``user``/``admin`` and the kind
    of its authorization dependency (``user``, ``admin``, ``repo:read|write|admin``)."""
    given = route.expect
    user, admin = given["user"], given["admin"]
    refused = 200 if given["anonymous"] == 200 else 401
    repo = kind.startswith("repo:")
    if kind == "admin":
        write = repo_admin = wrong_scope = nobody = 403
    elif kind == "repo:read":
        write, repo_admin, wrong_scope, nobody = user, admin, admin, 404
    elif kind == "repo:write":
        write, repo_admin, wrong_scope, nobody = admin, admin, 403, 404
    elif kind == "repo:admin":
        write, repo_admin, wrong_scope, nobody = 403, admin, 403, 404
    else:  # any user, or open
        write = repo_admin = wrong_scope = nobody = user
    out = {
        "anonymous": given["anonymous"],
        "nobody": nobody if repo else user,
        "user": user,
        "write": write,
        "repo_admin": repo_admin,
        "session": write,
        "wrong_scope": wrong_scope,
        "revoked": refused,
        "expired": refused,
        "blocked": refused,
        "admin": admin,
    }
    out.update({role: status for role, status in given.items() if role in out})
    return out


@dataclass
class World:
    server: Harness
    tokens: dict[str, str | None]
    session: tuple[str, str]  # the write user's session cookie and CSRF token


def _world(tmp_path: Path) -> Iterator[World]:
    for server in start_server(tmp_path):
        checkout = server.local_repo()
        checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
        checkout.push()
        wait_for(server.builds)
        runner = FakeRunner(server, "r1")
        lease = runner.poll()
        assert lease is not None
        runner.step(lease, 1, StepState.RUNNING)
        runner.logs(lease, 1, [(0, "hello")])
        server.user_token("spare")
        store = server.ctx.store
        store.set_repo_secret(store_repo_id(server), "token", "world-token-value")
        store.put_environment(
            store_repo_id(server), "qa", branches=[], approval=False, approvers=[]
        )
        store.create_cron(
            store_repo_id(server),
            name="nightly",
            expr="@daily",
            branch="main",
            disabled=False,
            next_run=2_000_000_000,
        )
        store.set_shared_secret("org", "acme", "token", "org-token-value", SecretFilters())
        store.set_shared_secret("global", "", "token", "global-token-value", SecretFilters())
        revoked_user = store.create_user("revoked")
        revoked = new_token("api")
        token = store.create_token(revoked_user.id, "t", hash_token(revoked), ALL_SCOPES)
        store.revoke_token(token.id)
        expired = new_token("api")
        store.create_token(revoked_user.id, "t", hash_token(expired), ALL_SCOPES, expires=1000)
        blocked = server.user_token("blocked")
        server.admin.patch("/api/users/blocked", json={"active": False}).raise_for_status()
        tokens: dict[str, str | None] = {"anonymous": None, "nobody": server.user_token("nemo")}
        for role, login, scopes in (
            ("user", "alice", [Scope.READ]),
            ("write", "walt", [Scope.READ, Scope.WRITE]),
            ("repo_admin", "ada", ALL_SCOPES),
            ("session", "sam", [Scope.READ, Scope.WRITE]),
        ):
            tokens[role] = server.user_token(login)
            user = store.find_user(login)
            assert user is not None
            store.set_repo_permission(user.id, store_repo_id(server), scopes, source="grant")
        root = store.create_user("root", admin=True)
        read_only = new_token("api")
        store.create_token(root.id, "ro", hash_token(read_only), [Scope.READ])
        tokens.update(
            admin=server.admin_token,
            wrong_scope=read_only,
            revoked=revoked,
            expired=expired,
            blocked=blocked,
        )
        yield World(server, tokens, _session_of(server, "sam"))


def _session_of(server: Harness, login: str) -> tuple[str, str]:
    """A browser session of ``login`` through a one-time login link (identity.local_login)."""
    link = server.admin.post(f"/api/users/{login}/login-link")
    link.raise_for_status()
    url = link.json()["url"]
    page = httpx.get(url, follow_redirects=False)
    nonce = page.cookies["bastion_link"]
    code = url.split("code=", 1)[1]
    done = httpx.post(
        server.url + "/login/link",
        data={"code": code, "nonce": nonce},
        cookies={"bastion_link": nonce},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    cookies = {c.name: c.value for c in done.cookies.jar}
    session = next(v for k, v in cookies.items() if k.endswith("bastion_session"))
    return session, cookies["bastion_csrf"]


def store_repo_id(server: Harness, slug: str = "acme/web") -> int:
    owner, name = slug.split("/")
    repo = server.ctx.store.get_repo(owner, name)
    assert repo is not None
    return repo.id


def _ask(client: httpx.Client, route: Route) -> int:
    if route.stream:
        with client.stream(route.method, route.url) as response:
            return response.status_code
    return client.request(route.method, route.url, json=route.body).status_code


def _client(world: World, role: str) -> httpx.Client:
    if role != "session":
        return world.server.client(world.tokens[role])
    session, csrf = world.session
    name = "__Host-bastion_session"  # the Secure cookie name (not a --dev server)
    return httpx.Client(
        base_url=world.server.url,
        headers={"Cookie": f"{name}={session}", "X-CSRF-Token": csrf},
        timeout=30,
    )


def _kind(server: Harness, route: Route) -> str:
    for path, api_route in _api_routes(server.live.app.routes):
        if path == route.path and route.method in api_route.methods:
            kinds = _auth_kinds(api_route.dependant) - {"runner"}
            return sorted(kinds)[0] if kinds else "open"
    return "open"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_route_answers_each_role(route: Route, tmp_path: Path) -> None:
    for world in _world(tmp_path):
        server = world.server
        results = {}
        for role in ROLES:
            with _client(world, role) as client:
                results[role] = _ask(client, route)
        expected = MATRIX.get(route.id) or derived(route, _kind(server, route))
        assert results == expected, f"{route.id}: {' '.join(str(results[r]) for r in ROLES)}"


def test_query_parameter_token_as_drone_clients_send_it(server: Harness) -> None:
    response = server.client().get("/api/user", params={"access_token": server.admin_token})
    assert response.status_code == 200
    assert response.json()["login"] == "admin"
    bad = server.client().get("/api/user", headers={"Authorization": "Basic abc"})
    assert bad.status_code == 401


def test_users_do_not_see_inactive_repositories(server: Harness) -> None:
    server.local_repo("acme", "hidden")
    server.admin.delete("/api/repos/acme/hidden").raise_for_status()
    user = server.client(server.user_token("alice"))
    assert user.get("/api/repos/acme/hidden").status_code == 404
    assert user.get("/api/repos/acme/nonexistent").status_code == 404
    assert [r["slug"] for r in user.get("/api/repos").json()] == []
    assert server.client().get("/api/repos/acme/hidden").status_code == 401
    assert [r["slug"] for r in server.admin.get("/api/repos").json()] == ["acme/hidden"]


def test_only_admins_change_trusted(server: Harness) -> None:
    server.local_repo()
    user = server.client(server.user_token("alice"))
    server.grant("alice", "acme/web", "admin")  # even a repository admin
    assert user.patch("/api/repos/acme/web", json={"trusted": True}).status_code == 403
    assert server.admin.get("/api/repos/acme/web").json()["trusted"] is False
    assert server.admin.patch("/api/repos/acme/web", json={"trusted": True}).json()["trusted"]


def test_the_last_admin_cannot_lock_the_server_out(server: Harness) -> None:
    response = server.admin.patch("/api/users/admin", json={"admin": False})
    assert response.status_code == 409
    assert server.admin.delete("/api/users/admin").status_code == 409
    server.user_token("second", admin=True)
    assert server.admin.patch("/api/users/admin", json={"active": False}).status_code == 200
    assert server.admin.get("/api/user").status_code == 401  # blocked at once


def test_request_bodies_are_checked_with_a_message_naming_the_field(server: Harness) -> None:
    response = server.admin.post("/api/users", json={"login": "bob", "admn": True})
    assert response.status_code == 400
    assert response.json() == {"message": "body field admn: unknown field (check its spelling)"}
    bad = server.admin.post("/api/repos", json={"owner": "../etc", "name": "x"})
    assert bad.status_code == 400
    assert "body field owner" in bad.json()["message"]
    assert server.admin.get("/api/nope").json() == {"message": "Not Found"}


def _auth_kinds(dependant: Dependant) -> set[str]:
    kinds: set[str] = set()
    for dep in dependant.dependencies:
        kind = getattr(dep.call, "bastion_auth", None)
        if kind:
            kinds.add(str(kind))
        kinds |= _auth_kinds(dep)
    return kinds


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute with its full path, also inside included routers (recent FastAPI keeps
    an included router as one node instead of copying its routes into the app)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            include = getattr(route, "include_context", None)
            assert not getattr(include, "dependencies", None), "no router-wide dependencies"
            yield from _api_routes(inner.routes, prefix + str(getattr(include, "prefix", "")))


def test_every_route_declares_its_authorization(server: Harness) -> None:
    declared = {(r.method, r.path) for r in ROUTES}
    seen: set[tuple[str, str]] = set()
    found = list(_api_routes(server.live.app.routes))
    assert len(found) > 30
    for path, route in found:
        kinds = _auth_kinds(route.dependant)
        for method in route.methods:
            if path.startswith("/api"):
                assert kinds & {"user", "admin", "repo:read", "repo:write", "repo:admin"}, (
                    f"{method} {path} has no authorization dependency"
                )
                assert (method, path) in declared, f"{method} {path}: add it to ROUTES"
                seen.add((method, path))
            elif path.startswith("/rpc"):
                assert "runner" in kinds, f"{method} {path} does not authenticate runners"
            else:
                assert path in {
                    "/healthz",
                    "/version",
                    "/hook",
                    "/hook/local",
                    "/login",  # identity: OAuth start and callback, link login, logout
                    "/login/link",
                    "/logout",
                }, f"{method} {path}: an unexpected route outside /api and /rpc"
    assert seen == {(m, p) for m, p in declared if p.startswith("/api")}
