"""A standards-compliant OAuth2 authorization server for the login tests, on 127.0.0.1.

Built from Authlib's server components (``AuthorizationServer``, ``AuthorizationCodeGrant``,
RFC 7636 ``CodeChallenge``) behind a small Starlette app served by uvicorn in a thread, so the
server under test talks to it over real HTTP exactly as to GitHub: ``/login/oauth/authorize``
(the "browser" is logged in at the forge as ``signed_in`` and consents), ``/login/oauth/
access_token`` (client_secret_post or basic; codes single use, bound to the client, the
redirect URI and the PKCE challenge), and GitHub-shaped API routes under ``/api/v3``: ``/user``,
``/user/orgs``, ``/repos/{owner}/{name}`` with ``permissions``; the same under ``/api/v1`` as
Gitea, and GitLab's ``/oauth/*`` and ``/api/v4`` (``username``, groups, access levels).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.integration.server._support import free_socket


@dataclass
class Account:
    id: int
    login: str
    email: str = ""
    created_at: str = "2015-01-01T00:00:00Z"
    orgs: list[str] = field(default_factory=list)
    # "owner/name" -> GitHub's permissions object
    repos: dict[str, dict[str, bool]] = field(default_factory=dict)


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    login: str
    code_challenge: str | None
    code_challenge_method: str | None
    issued: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, client_id: str, secret: str, redirect_uri: str) -> None:
        self.client_id = client_id
        self.secret = secret
        self.redirect_uri = redirect_uri

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint != "token" or method in {"client_secret_post", "client_secret_basic"}

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: list[tuple[str, str]]) -> None:
        self._pairs = values

    @property
    def data(self) -> dict[str, str]:
        return dict(self._pairs)

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        out: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in self._pairs:
            out[key].append(value)
        return out


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(
        self,
        method: str,
        uri: str,
        headers: dict[str, str],
        args: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = dict(args)
        self._form = dict(form)
        self.payload = _Payload(args + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class OAuthProvider:
    """The provider; ``start()`` serves it, ``stop()`` ends it."""

    def __init__(self) -> None:
        self.client_id = "bastion-test-client"
        self.client_secret = secrets.token_hex(16)
        self.redirect_uri = ""  # set by the test: the Bastion server's /login
        self.accounts: dict[str, Account] = {}
        self.signed_in: str | None = None
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, str] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.token_errors: list[str] = []
        self._sock = free_socket()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.server = self._authorization_server()
        app = Starlette(
            routes=[
                # GitHub's and Gitea's paths, and GitLab's.
                Route("/login/oauth/authorize", self._authorize),
                Route("/login/oauth/access_token", self._token, methods=["POST"]),
                Route("/oauth/authorize", self._authorize),
                Route("/oauth/token", self._token, methods=["POST"]),
                # GitHub (API root /api/v3, as GitHub Enterprise) and Gitea (/api/v1).
                Route("/api/v3/user", self._user),
                Route("/api/v3/user/orgs", self._orgs),
                Route("/api/v3/repos/{owner}/{name}", self._repo),
                Route("/api/v1/user", self._user),
                Route("/api/v1/user/orgs", self._gitea_orgs),
                Route("/api/v1/repos/{owner}/{name}", self._repo),
                # GitLab (/api/v4): username, groups, access levels.
                Route("/api/v4/user", self._gitlab_user),
                Route("/api/v4/groups", self._gitlab_groups),
                Route("/api/v4/projects/{project:path}", self._gitlab_project),
            ]
        )
        self._uvicorn = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._uvicorn.serve(sockets=[self._sock])), daemon=True
        )

    def add(self, account: Account) -> Account:
        self.accounts[account.login] = account
        return account

    # -- Authlib's server --------------------------------------------------------------------

    def _authorization_server(self) -> AuthorizationServer:
        provider = self

        class Server(AuthorizationServer):  # type: ignore[misc]
            def query_client(self, client_id: str) -> Client | None:
                if client_id != provider.client_id:
                    return None
                return Client(provider.client_id, provider.client_secret, provider.redirect_uri)

            def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
                provider.tokens[token["access_token"]] = request.user.login

            def create_oauth2_request(self, request: Any) -> OAuth2Request:
                return request

            def create_json_request(self, request: Any) -> Any:
                raise NotImplementedError

            def handle_response(self, status: int, body: Any, headers: Any) -> Response:
                if isinstance(body, dict):
                    return JSONResponse(body, status_code=status, headers=dict(headers))
                return Response(body or b"", status_code=status, headers=dict(headers))

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                return None

        class Grant(AuthorizationCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]  # noqa: RUF012

            def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
                data = request.payload.data
                provider.codes[code] = Code(
                    code,
                    request.client.get_client_id(),
                    request.payload.redirect_uri,
                    request.payload.scope or "",
                    request.user.login,
                    data.get("code_challenge"),
                    data.get("code_challenge_method"),
                    time.time(),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                if found is None or found.client_id != client.get_client_id():
                    return None
                if time.time() - found.issued > 600:
                    return None
                return found

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)  # single use

            def authenticate_user(self, authorization_code: Code) -> Account:
                return provider.accounts[authorization_code.login]

        server = Server()
        server.register_grant(Grant, [CodeChallenge(required=True)])
        server.register_token_generator(
            "default", BearerTokenGenerator(lambda *a, **k: secrets.token_urlsafe(24))
        )
        return server

    # -- routes ------------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        args = list(request.query_params.multi_items())
        self.authorize_requests.append(dict(args))
        if self.signed_in is None:
            return Response("not logged in at the forge", status_code=401)
        account = self.accounts[self.signed_in]
        oauth = _Request("GET", str(request.url), dict(request.headers), args, [])
        grant = self.server.get_consent_grant(oauth, end_user=account)
        result: Response = self.server.create_authorization_response(
            oauth, grant_user=account, grant=grant
        )
        return result

    async def _token(self, request: Request) -> Response:
        form = parse_qsl((await request.body()).decode())
        self.token_requests.append(dict(form))
        oauth = _Request("POST", str(request.url), dict(request.headers), [], form)
        result: Response = self.server.create_token_response(oauth)
        if result.status_code != 200:
            self.token_errors.append(result.body.decode())
        return result

    def _account(self, request: Request) -> Account | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        login = self.tokens.get(token) if scheme.lower() == "bearer" else None
        return self.accounts.get(login) if login else None

    async def _user(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse(
            {
                "id": account.id,
                "login": account.login,
                "email": account.email,
                "created_at": account.created_at,
            }
        )

    async def _orgs(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse([{"login": org} for org in account.orgs])

    async def _repo(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        slug = f"{request.path_params['owner']}/{request.path_params['name']}"
        perms = account.repos.get(slug)
        if perms is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return JSONResponse({"full_name": slug, "permissions": perms})

    async def _gitea_orgs(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse([{"username": org} for org in account.orgs])

    async def _gitlab_user(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
        return JSONResponse(
            {
                "id": account.id,
                "username": account.login,
                "email": account.email,
                "created_at": account.created_at,
            }
        )

    async def _gitlab_groups(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
        return JSONResponse([{"full_path": org} for org in account.orgs])

    async def _gitlab_project(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
        perms = account.repos.get(request.path_params["project"])
        if perms is None:
            return JSONResponse({"message": "404 Project Not Found"}, status_code=404)
        level = 40 if perms.get("admin") else 30 if perms.get("push") else 20
        return JSONResponse({"permissions": {"project_access": {"access_level": level}}})

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the OAuth provider did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()
