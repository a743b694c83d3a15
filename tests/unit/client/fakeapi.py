"""An in-memory stand-in for the server's REST API, served through ``httpx.MockTransport``.

It answers Drone's paths with the JSON shapes of ``bastion.rpc.api`` and records every
request, so client and CLI tests check what was sent as well as what came back. It is
deliberately small and strict: an unknown path is a 404 with a message, a wrong token a 401,
exactly as the real server is meant to answer (errors are ``{"message": ...}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bastion.rpc.api import (
    BuildOut,
    LogLineOut,
    RepoCreated,
    RepoOut,
    RunnerCreated,
    RunnerOut,
    SecretOut,
    StageOut,
    StepOut,
    TokenCreated,
    UserOut,
)

TOKEN = "admin-token-0123456789abcdef"
SERVER = "http://127.0.0.1:8080"

Handler = Callable[[httpx.Request, re.Match[str]], httpx.Response]


def _json(data: Any, status: int = 200) -> httpx.Response:
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    return httpx.Response(status, json=data)


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"message": message})


def sse(events: list[tuple[str, str]], *, pings: bool = True) -> bytes:
    """A text/event-stream body, with keep-alive comments as sse-starlette sends them."""
    out = []
    for name, data in events:
        if pings:
            out.append(": ping\r\n\r\n")
        out.append(f"event: {name}\r\n")
        for line in data.split("\n") if data else []:
            out.append(f"data: {line}\r\n")
        out.append("\r\n")
    return "".join(out).encode()


def make_step(number: int, name: str, status: str, *, started: int = 100) -> StepOut:
    return StepOut(
        id=number,
        step_id=1,
        number=number,
        name=name,
        status=status,
        started=started if status != "pending" else 0,
        stopped=started + 5 if status in ("success", "failure") else 0,
        exit_code=1 if status == "failure" else 0,
    )


def make_build(number: int, status: str, steps: list[StepOut]) -> BuildOut:
    return BuildOut(
        id=number,
        repo_id=1,
        number=number,
        status=status,
        event="push",
        ref="refs/heads/main",
        target="main",
        after="0123456789abcdef0123456789abcdef01234567",
        message="Fix the frobnicator\n\nlong text",
        author_login="alice",
        started=100,
        finished=160 if status in ("success", "failure", "killed", "error") else 0,
        stages=[
            StageOut(
                id=1,
                repo_id=1,
                build_id=number,
                number=1,
                name="default",
                status=status,
                steps=steps,
            )
        ],
    )


@dataclass
class FakeApi:
    """State and routes. ``requests`` records (method, path, query, json body) in order."""

    token: str = TOKEN
    users: dict[str, UserOut] = field(default_factory=dict)
    repos: dict[str, RepoOut] = field(default_factory=dict)
    builds: dict[tuple[str, int], BuildOut] = field(default_factory=dict)
    logs: dict[tuple[str, int, int, int], list[LogLineOut]] = field(default_factory=dict)
    streams: dict[tuple[str, int, int, int], bytes] = field(default_factory=dict)
    runners: dict[str, RunnerOut] = field(default_factory=dict)
    # (repository slug, secret name) -> (what the API shows, the value it keeps)
    secrets: dict[tuple[str, str], tuple[SecretOut, str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    # Called before a stream is answered (tests move a build forward while "it runs").
    on_stream: Callable[[str, int, int, int], None] | None = None

    def __post_init__(self) -> None:
        self.users.setdefault("admin", UserOut(id=1, login="admin", admin=True))
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        repo = r"/api/repos/(?P<o>[^/]+)/(?P<n>[^/]+)"
        for method, pattern, handler in (
            ("GET", r"/healthz", self._healthz),
            ("GET", r"/version", self._version),
            ("GET", r"/api/user", self._user_self),
            ("GET", r"/api/users", self._users_list),
            ("POST", r"/api/users", self._users_create),
            ("GET", r"/api/users/(?P<login>[^/]+)", self._users_get),
            ("PATCH", r"/api/users/(?P<login>[^/]+)", self._users_update),
            ("DELETE", r"/api/users/(?P<login>[^/]+)", self._users_delete),
            ("POST", r"/api/users/(?P<login>[^/]+)/token", self._user_token),
            ("GET", r"/api/repos", self._repos_list),
            ("POST", r"/api/repos", self._repos_create),
            ("GET", repo, self._repos_get),
            ("PATCH", repo, self._repos_update),
            ("POST", repo, self._repos_enable),
            ("DELETE", repo, self._repos_disable),
            ("GET", repo + r"/secrets", self._secrets_list),
            ("POST", repo + r"/secrets", self._secrets_add),
            ("GET", repo + r"/secrets/(?P<secret>[^/]+)", self._secrets_get),
            ("DELETE", repo + r"/secrets/(?P<secret>[^/]+)", self._secrets_rm),
            ("GET", repo + r"/builds", self._builds_list),
            ("POST", repo + r"/builds", self._builds_create),
            ("GET", repo + r"/builds/latest", self._builds_latest),
            ("GET", repo + r"/builds/(?P<b>\d+)", self._builds_get),
            ("POST", repo + r"/builds/(?P<b>\d+)", self._builds_restart),
            ("DELETE", repo + r"/builds/(?P<b>\d+)", self._builds_cancel),
            ("GET", repo + r"/builds/(?P<b>\d+)/logs/(?P<s>\d+)/(?P<t>\d+)", self._logs),
            (
                "GET",
                r"/api/stream/(?P<o>[^/]+)/(?P<n>[^/]+)/(?P<b>\d+)/(?P<s>\d+)/(?P<t>\d+)",
                self._stream,
            ),
            ("GET", r"/api/runners", self._runners_list),
            ("POST", r"/api/runners", self._runners_create),
            ("DELETE", r"/api/runners/(?P<name>[^/]+)", self._runners_revoke),
        ):
            self._routes.append((method, re.compile(pattern + "$"), handler))

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_repo(self, slug: str, **fields: Any) -> RepoOut:
        owner, name = slug.split("/")
        repo = RepoOut(
            id=len(self.repos) + 1, namespace=owner, name=name, slug=slug, active=True, **fields
        )
        self.repos[slug] = repo
        return repo

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, dict(request.url.params), body))
        public = request.url.path in ("/healthz", "/version")
        if not public and request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "invalid or missing token")
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.url.path)
            if match is None:
                continue
            allowed = True
            if method == request.method:
                return handler(request, match)
        if allowed:
            return _error(405, "method not allowed")
        return _error(404, f"no route {request.url.path}")

    # -- routes --------------------------------------------------------------------------------

    def _healthz(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        return httpx.Response(200, text="ok")

    def _version(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        return _json({"version": "0.1.0", "protocol": 1})

    def _user_self(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        return _json(self.users["admin"])

    def _users_list(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        return _json(list(self.users.values()))

    def _users_create(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content)
        if body["login"] in self.users:
            return _error(409, f"user {body['login']} exists")
        user = UserOut(id=len(self.users) + 1, **body)
        self.users[user.login] = user
        return _json(user)

    def _find_user(self, login: str) -> UserOut | httpx.Response:
        user = self.users.get(login)
        return user if user is not None else _error(404, f"no user {login}")

    def _users_get(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_user(m["login"])
        return found if isinstance(found, httpx.Response) else _json(found)

    def _users_update(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_user(m["login"])
        if isinstance(found, httpx.Response):
            return found
        updated = found.model_copy(update=json.loads(request.content))
        self.users[updated.login] = updated
        return _json(updated)

    def _users_delete(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        if self.users.pop(m["login"], None) is None:
            return _error(404, f"no user {m['login']}")
        return httpx.Response(204)

    def _user_token(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_user(m["login"])
        if isinstance(found, httpx.Response):
            return found
        return _json(TokenCreated(login=found.login, token="tok-" + found.login * 3))

    def _repos_list(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        return _json(list(self.repos.values()))

    def _repos_create(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content)
        slug = f"{body['owner']}/{body['name']}"
        if slug in self.repos:
            return _error(409, f"repository {slug} exists")
        repo = self.add_repo(slug, forge=body["forge"], default_branch=body["default_branch"])
        extra: dict[str, str] = {}
        if body["forge"] == "local":
            extra["git_push_url"] = f"{SERVER}/git/{slug}.git"
        else:
            extra["webhook_url"] = f"{SERVER}/hook"
            extra["webhook_secret"] = "whsec-" + "x" * 32
        return _json(RepoCreated(**repo.model_dump(), **extra))

    def _find_repo(self, m: re.Match[str]) -> RepoOut | httpx.Response:
        repo = self.repos.get(f"{m['o']}/{m['n']}")
        return repo if repo is not None else _error(404, "repository not found")

    def _repos_get(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        return found if isinstance(found, httpx.Response) else _json(found)

    def _repos_update(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        updated = found.model_copy(update=json.loads(request.content))
        self.repos[found.slug] = updated
        return _json(updated)

    def _repos_enable(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        self.repos[found.slug] = found.model_copy(update={"active": True})
        return _json(self.repos[found.slug])

    def _repos_disable(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        self.repos[found.slug] = found.model_copy(update={"active": False})
        return _json(self.repos[found.slug])

    def _secrets_list(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        mine = sorted(
            (n, out) for (slug, n), (out, _v) in self.secrets.items() if slug == found.slug
        )
        return _json([out for _n, out in mine])

    def _secrets_add(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        body = json.loads(request.content)
        if len(body["data"].strip()) < 4:
            return _error(
                400, "body field data: secrets shorter than 4 characters cannot be masked"
            )
        out = SecretOut(
            name=body["name"],
            pull_request=body.get("pull_request", False),
            created=100,
            updated=100,
        )
        self.secrets[(found.slug, out.name)] = (out, body["data"])
        return _json(out)

    def _find_secret(self, m: re.Match[str]) -> tuple[str, SecretOut] | httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        entry = self.secrets.get((found.slug, m["secret"]))
        if entry is None:
            return _error(404, f"repository {found.slug} has no secret {m['secret']!r}")
        return found.slug, entry[0]

    def _secrets_get(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_secret(m)
        return found if isinstance(found, httpx.Response) else _json(found[1])

    def _secrets_rm(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_secret(m)
        if isinstance(found, httpx.Response):
            return found
        del self.secrets[(found[0], found[1].name)]
        return httpx.Response(204)

    def _builds_of(self, slug: str) -> list[BuildOut]:
        return sorted(
            (b for (s, _), b in self.builds.items() if s == slug), key=lambda b: -b.number
        )

    def _builds_list(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        page = int(request.url.params.get("page", "1"))
        per_page = int(request.url.params.get("per_page", "25"))
        builds = self._builds_of(found.slug)
        return _json(builds[(page - 1) * per_page : page * per_page])

    def _builds_create(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_repo(m)
        if isinstance(found, httpx.Response):
            return found
        number = len(self._builds_of(found.slug)) + 1
        build = make_build(number, "pending", []).model_copy(
            update={
                "event": "custom",
                "target": request.url.params.get("branch", "main"),
                "after": request.url.params.get("commit", ""),
            }
        )
        self.builds[(found.slug, number)] = build
        return _json(build)

    def _builds_latest(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        builds = self._builds_of(f"{m['o']}/{m['n']}")
        return _json(builds[0]) if builds else _error(404, "no build yet")

    def _find_build(self, m: re.Match[str]) -> BuildOut | httpx.Response:
        build = self.builds.get((f"{m['o']}/{m['n']}", int(m["b"])))
        return build if build is not None else _error(404, "build not found")

    def _builds_get(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_build(m)
        return found if isinstance(found, httpx.Response) else _json(found)

    def _builds_restart(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_build(m)
        if isinstance(found, httpx.Response):
            return found
        slug = f"{m['o']}/{m['n']}"
        number = len(self._builds_of(slug)) + 1
        build = found.model_copy(
            update={"number": number, "status": "pending", "parent": found.number}
        )
        self.builds[(slug, number)] = build
        return _json(build)

    def _builds_cancel(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        found = self._find_build(m)
        if isinstance(found, httpx.Response):
            return found
        if found.status in ("success", "failure", "error", "killed"):
            return _error(409, f"build #{found.number} is already {found.status}")
        killed = found.model_copy(update={"status": "killed"})
        self.builds[(f"{m['o']}/{m['n']}", found.number)] = killed
        return _json(killed)

    def _key(self, m: re.Match[str]) -> tuple[str, int, int, int]:
        return (f"{m['o']}/{m['n']}", int(m["b"]), int(m["s"]), int(m["t"]))

    def _logs(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        key = self._key(m)
        if (key[0], key[1]) not in self.builds:
            return _error(404, "build not found")
        return _json(self.logs.get(key, []))

    def _stream(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        key = self._key(m)
        if self.on_stream is not None:
            self.on_stream(*key)
        body = self.streams.get(key)
        if body is None:
            lines = self.logs.get(key, [])
            body = sse([("line", ln.model_dump_json()) for ln in lines] + [("end", "")])
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    def _runners_list(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        return _json(list(self.runners.values()))

    def _runners_create(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        name = json.loads(request.content)["name"]
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", name):
            return _error(400, "name: must be letters, digits, _ . -")
        runner = RunnerCreated(id=len(self.runners) + 1, name=name, token="runner-tok-" + "z" * 32)
        self.runners[name] = RunnerOut(**runner.model_dump(exclude={"token"}))
        return _json(runner)

    def _runners_revoke(self, request: httpx.Request, m: re.Match[str]) -> httpx.Response:
        runner = self.runners.get(m["name"])
        if runner is None:
            return _error(404, f"no runner {m['name']}")
        self.runners[m["name"]] = runner.model_copy(update={"revoked": True})
        return httpx.Response(204)
