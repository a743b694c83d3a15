"""``bastion.scm.accounts`` against GitLab- and Gitea-shaped APIs served on 127.0.0.1: the
user, organisations and repository permissions, and the refusals (bad token, redirect,
oversized or non-JSON answers). GitHub's shape is exercised by the login tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from tests.integration.server._support import free_socket

from bastion.scm.accounts import GiteaAccounts, GitLabAccounts
from bastion.scm.errors import ForgeError

TOKEN = "good-token"
GITLAB_PROJECTS: dict[str, dict[str, Any]] = {
    "acme/maintained": {"permissions": {"project_access": {"access_level": 40}}},
    "acme/developed": {"permissions": {"group_access": {"access_level": 30}}},
    "acme/reported": {"permissions": {"project_access": {"access_level": 20}}},
    "acme/guest": {"permissions": {"project_access": {"access_level": 10}}},
    "acme/public": {"visibility": "public", "permissions": {}},
}


def _authorised(request: Request) -> bool:
    return request.headers.get("authorization") == f"Bearer {TOKEN}"


async def gitlab_user(request: Request) -> Response:
    if not _authorised(request):
        return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
    return JSONResponse(
        {"id": 9, "username": "gina", "email": "g@x.y", "created_at": "2020-02-03T04:05:06.000Z"}
    )


async def gitlab_groups(request: Request) -> Response:
    return JSONResponse([{"full_path": "acme"}, {"full_path": "acme/sub"}])


async def gitlab_project(request: Request) -> Response:
    found = GITLAB_PROJECTS.get(request.path_params["project"])
    if found is None:
        return JSONResponse({"message": "404 Project Not Found"}, status_code=404)
    return JSONResponse(found)


async def gitea_user(request: Request) -> Response:
    return JSONResponse({"id": 3, "login": "gus", "email": "", "created": "2019-01-01T00:00:00Z"})


async def gitea_orgs(request: Request) -> Response:
    return JSONResponse([{"username": "acme"}])


async def gitea_repo(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "moved":
        return RedirectResponse("http://127.0.0.2/elsewhere")
    if name == "huge":
        return Response(b"[" + b"0," * (1 << 20) + b"0]", media_type="application/json")
    if name == "html":
        return Response(b"<html>", media_type="text/html")
    perms = {"writer": {"pull": True, "push": True, "admin": False}}.get(name)
    if perms is None:
        return JSONResponse({"message": "not found"}, status_code=404)
    return JSONResponse({"permissions": perms})


@pytest.fixture(scope="module")
def forge_url() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/api/v4/user", gitlab_user),
            Route("/api/v4/groups", gitlab_groups),
            Route("/api/v4/projects/{project:path}", gitlab_project),
            Route("/api/v1/user", gitea_user),
            Route("/api/v1/user/orgs", gitea_orgs),
            Route("/api/v1/repos/{owner}/{name}", gitea_repo),
        ]
    )
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=20)
    sock.close()


def test_gitlab_user_groups_and_access_levels(forge_url: str) -> None:
    gitlab = GitLabAccounts(forge_url)
    user = gitlab.user(TOKEN)
    assert (user.id, user.login, user.created) == ("9", "gina", 1580702706)
    assert gitlab.orgs(TOKEN) == ["acme", "acme/sub"]
    assert gitlab.permission(TOKEN, "acme", "maintained") == {"read", "write", "admin"}
    assert gitlab.permission(TOKEN, "acme", "developed") == {"read", "write"}
    assert gitlab.permission(TOKEN, "acme", "reported") == {"read"}
    assert gitlab.permission(TOKEN, "acme", "guest") == frozenset()
    assert gitlab.permission(TOKEN, "acme", "public") == {"read"}
    assert gitlab.permission(TOKEN, "acme", "unknown") == frozenset()
    with pytest.raises(ForgeError, match="answered 401"):
        gitlab.user("stolen")


def test_gitea_user_orgs_permissions_and_refusals(forge_url: str) -> None:
    gitea = GiteaAccounts(forge_url)
    assert gitea.user(TOKEN).login == "gus"
    assert gitea.orgs(TOKEN) == ["acme"]
    assert gitea.permission(TOKEN, "acme", "writer") == {"read", "write"}
    assert gitea.permission(TOKEN, "acme", "nothing") == frozenset()
    with pytest.raises(ForgeError, match="answered 307"):
        gitea.permission(TOKEN, "acme", "moved")  # the token is not sent elsewhere
    with pytest.raises(ForgeError, match="too big"):
        gitea.permission(TOKEN, "acme", "huge")
    with pytest.raises(ForgeError, match="JSON"):
        gitea.permission(TOKEN, "acme", "html")
