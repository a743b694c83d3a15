"""``BastionClient``: the REST API of a Bastion server (Drone's paths), as typed methods.

Every method returns the response models of ``bastion.rpc.api`` and raises a
``ClientError`` (see ``bastion.client.errors``) for anything else: a 4xx/5xx answer carries
the server's message, a connection failure names the server URL. Requests carry the token as
``Authorization: Bearer``; redirects are not followed, so the token is never replayed to
another host.

Live logs come from server-sent events (``stream_logs``): ``line`` events carry a
``LogLineOut`` as JSON, an ``end`` event closes the stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from bastion.client._http import (
    USER_AGENT,
    check_server_url,
    raise_for_status,
    segment,
    tls_verify,
    unreachable,
)
from bastion.client.errors import ClientError
from bastion.client.sse import SSEEvent, iter_events
from bastion.rpc.api import (
    AuditEventOut,
    BuildOut,
    CronCreate,
    CronOut,
    CronPatch,
    EnvironmentIn,
    EnvironmentOut,
    LockoutsLifted,
    LoginLinkOut,
    LogLineOut,
    PermissionOut,
    RekeyOut,
    RekeyRequest,
    RepoCreate,
    RepoCreated,
    RepoOut,
    RepoPatch,
    RevokeAllTokens,
    RunnerCreate,
    RunnerCreated,
    RunnerOut,
    SecretCreate,
    SecretOut,
    SecretUpdate,
    SignRequest,
    SignResponse,
    TokenCreate,
    TokenCreated,
    TokenOut,
    TokensRevoked,
    UserCreate,
    UserOut,
    UserPatch,
    VersionOut,
)

M = TypeVar("M", bound=BaseModel)

# Live streams may be quiet for a long time (a step that prints nothing); the server sends
# keep-alive comments well within this.
_STREAM_READ_TIMEOUT = 120.0


class BastionClient:
    """A client of one server, authenticated by one token. Thread-safe (httpx.Client is).

    ``verify``: True (system CAs), False (no TLS checks: tests only), or the path of a CA
    bundle. ``insecure``: allow plain HTTP to a host that is not loopback. ``transport``:
    an httpx transport to use instead of the network (tests: ``httpx.MockTransport``).
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = check_server_url(server, insecure=insecure)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            verify=tls_verify(verify),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise unreachable(self.server, exc) from exc
        raise_for_status(response)
        return response

    def _parse(self, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._bad_answer(response, exc) from None

    def _parse_list(self, response: httpx.Response, model: type[M]) -> list[M]:
        try:
            return TypeAdapter(list[model]).validate_json(response.content)  # type: ignore[valid-type]
        except ValidationError as exc:
            raise self._bad_answer(response, exc) from None

    def _bad_answer(self, response: httpx.Response, exc: ValidationError) -> ClientError:
        first = exc.errors()[0] if exc.errors() else {"msg": "unexpected shape"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return ClientError(
            response.status_code,
            f"server {self.server} sent an answer this client does not understand for "
            f"{response.request.method} {response.request.url.path} "
            f"({where + ': ' if where else ''}{first['msg']}); is it a Bastion server of a "
            "compatible version?",
        )

    @staticmethod
    def _repo(owner: str, name: str) -> str:
        return f"/api/repos/{segment(owner)}/{segment(name)}"

    # -- system --------------------------------------------------------------------------------

    def healthz(self) -> str:
        """The health check's answer (raises if the server is not healthy)."""
        return self._request("GET", "/healthz").text

    def version(self) -> VersionOut:
        return self._parse(self._request("GET", "/version"), VersionOut)

    # -- users ---------------------------------------------------------------------------------

    def user_self(self) -> UserOut:
        return self._parse(self._request("GET", "/api/user"), UserOut)

    def users_list(self) -> list[UserOut]:
        return self._parse_list(self._request("GET", "/api/users"), UserOut)

    def users_create(self, user: UserCreate) -> UserOut:
        body = user.model_dump(mode="json")
        return self._parse(self._request("POST", "/api/users", json=body), UserOut)

    def users_get(self, login: str) -> UserOut:
        return self._parse(self._request("GET", f"/api/users/{segment(login)}"), UserOut)

    def users_update(self, login: str, patch: UserPatch) -> UserOut:
        body = patch.model_dump(mode="json", exclude_none=True)
        response = self._request("PATCH", f"/api/users/{segment(login)}", json=body)
        return self._parse(response, UserOut)

    def users_delete(self, login: str) -> None:
        self._request("DELETE", f"/api/users/{segment(login)}")

    def user_token(self, login: str) -> TokenCreated:
        response = self._request("POST", f"/api/users/{segment(login)}/token")
        return self._parse(response, TokenCreated)

    # -- identity: login links, repository permissions ------------------------------------------

    def user_login_link(self, login: str) -> LoginLinkOut:
        response = self._request("POST", f"/api/users/{segment(login)}/login-link")
        return self._parse(response, LoginLinkOut)

    def repo_permissions(self, owner: str, name: str) -> list[PermissionOut]:
        path = f"/api/repos/{segment(owner)}/{segment(name)}/permissions"
        return self._parse_list(self._request("GET", path), PermissionOut)

    def repo_permission_set(
        self, owner: str, name: str, login: str, scopes: list[str]
    ) -> PermissionOut:
        path = f"/api/repos/{segment(owner)}/{segment(name)}/permissions/{segment(login)}"
        response = self._request("PUT", path, json={"scopes": scopes})
        return self._parse(response, PermissionOut)

    def repo_permission_delete(self, owner: str, name: str, login: str) -> None:
        path = f"/api/repos/{segment(owner)}/{segment(name)}/permissions/{segment(login)}"
        self._request("DELETE", path)

    # -- API tokens ----------------------------------------------------------------------------

    @staticmethod
    def _tokens(login: str | None) -> str:
        return "/api/user/tokens" if login is None else f"/api/users/{segment(login)}/tokens"

    def tokens_list(self, login: str | None = None) -> list[TokenOut]:
        """Your tokens, or (admins) those of ``login``."""
        return self._parse_list(self._request("GET", self._tokens(login)), TokenOut)

    def tokens_create(self, token: TokenCreate, login: str | None = None) -> TokenCreated:
        body = token.model_dump(mode="json", exclude_none=True)
        response = self._request("POST", self._tokens(login), json=body)
        return self._parse(response, TokenCreated)

    def tokens_rotate(self, name: str) -> TokenCreated:
        response = self._request("POST", f"/api/user/tokens/{segment(name)}/rotate")
        return self._parse(response, TokenCreated)

    def tokens_revoke(self, name: str, login: str | None = None) -> None:
        self._request("DELETE", f"{self._tokens(login)}/{segment(name)}")

    def tokens_revoke_user(self, login: str) -> int:
        """Revoke every token of ``login`` (admins); how many were live."""
        response = self._request("DELETE", self._tokens(login))
        return self._parse(response, TokensRevoked).revoked

    def lockouts_lift(self) -> int:
        """Lift every authentication lockout (admins); how many there were."""
        response = self._request("DELETE", "/api/admin/lockouts")
        return self._parse(response, LockoutsLifted).lifted

    def tokens_revoke_everyone(self, *, keep_mine: bool = False) -> int:
        """The emergency switch (admins): revoke every token of every user."""
        body = RevokeAllTokens(keep_mine=keep_mine).model_dump(mode="json")
        response = self._request("POST", "/api/admin/tokens/revoke-all", json=body)
        return self._parse(response, TokensRevoked).revoked

    # -- repositories --------------------------------------------------------------------------

    def repos_list(self) -> list[RepoOut]:
        return self._parse_list(self._request("GET", "/api/repos"), RepoOut)

    def repos_get(self, owner: str, name: str) -> RepoOut:
        return self._parse(self._request("GET", self._repo(owner, name)), RepoOut)

    def repos_create(self, repo: RepoCreate) -> RepoCreated:
        body = repo.model_dump(mode="json")
        return self._parse(self._request("POST", "/api/repos", json=body), RepoCreated)

    def repos_update(self, owner: str, name: str, patch: RepoPatch) -> RepoOut:
        body = patch.model_dump(mode="json", exclude_none=True)
        return self._parse(self._request("PATCH", self._repo(owner, name), json=body), RepoOut)

    def repos_enable(self, owner: str, name: str) -> RepoOut:
        return self._parse(self._request("POST", self._repo(owner, name)), RepoOut)

    def repos_disable(self, owner: str, name: str) -> None:
        self._request("DELETE", self._repo(owner, name))

    # -- secrets (admins): repository, organisation, global -----------------------------------
    # Values go to the server and never come back: SecretOut has no field for one.

    def _secrets(self, owner: str, name: str) -> str:
        return f"{self._repo(owner, name)}/secrets"

    def secrets_list(self, owner: str, name: str) -> list[SecretOut]:
        return self._parse_list(self._request("GET", self._secrets(owner, name)), SecretOut)

    def secret_add(self, owner: str, name: str, secret: SecretCreate) -> SecretOut:
        """Create or replace a secret of the repository."""
        response = self._request("POST", self._secrets(owner, name), json=secret.wire())
        return self._parse(response, SecretOut)

    def secret_update(self, owner: str, name: str, secret: str, changes: SecretUpdate) -> SecretOut:
        path = f"{self._secrets(owner, name)}/{segment(secret)}"
        return self._parse(self._request("PATCH", path, json=changes.wire()), SecretOut)

    def secret_info(self, owner: str, name: str, secret: str) -> SecretOut:
        path = f"{self._secrets(owner, name)}/{segment(secret)}"
        return self._parse(self._request("GET", path), SecretOut)

    def secret_rm(self, owner: str, name: str, secret: str) -> None:
        self._request("DELETE", f"{self._secrets(owner, name)}/{segment(secret)}")

    @staticmethod
    def _shared(namespace: str | None) -> str:
        """Organisation secrets of ``namespace``; global secrets when None."""
        return "/api/admin/secrets" if namespace is None else f"/api/secrets/{segment(namespace)}"

    def shared_secrets_list(self, namespace: str | None) -> list[SecretOut]:
        return self._parse_list(self._request("GET", self._shared(namespace)), SecretOut)

    def shared_secret_add(self, namespace: str | None, secret: SecretCreate) -> SecretOut:
        response = self._request("POST", self._shared(namespace), json=secret.wire())
        return self._parse(response, SecretOut)

    def shared_secret_update(
        self, namespace: str | None, secret: str, changes: SecretUpdate
    ) -> SecretOut:
        path = f"{self._shared(namespace)}/{segment(secret)}"
        return self._parse(self._request("PATCH", path, json=changes.wire()), SecretOut)

    def shared_secret_info(self, namespace: str | None, secret: str) -> SecretOut:
        path = f"{self._shared(namespace)}/{segment(secret)}"
        return self._parse(self._request("GET", path), SecretOut)

    def shared_secret_rm(self, namespace: str | None, secret: str) -> None:
        self._request("DELETE", f"{self._shared(namespace)}/{segment(secret)}")

    # -- builds --------------------------------------------------------------------------------

    def builds_list(
        self, owner: str, name: str, page: int = 1, per_page: int = 25
    ) -> list[BuildOut]:
        response = self._request(
            "GET",
            f"{self._repo(owner, name)}/builds",
            params={"page": page, "per_page": per_page},
        )
        return self._parse_list(response, BuildOut)

    def builds_get(self, owner: str, name: str, number: int) -> BuildOut:
        response = self._request("GET", f"{self._repo(owner, name)}/builds/{int(number)}")
        return self._parse(response, BuildOut)

    def builds_latest(self, owner: str, name: str, branch: str | None = None) -> BuildOut:
        params = {"branch": branch} if branch else None
        response = self._request("GET", f"{self._repo(owner, name)}/builds/latest", params=params)
        return self._parse(response, BuildOut)

    def builds_create(
        self, owner: str, name: str, *, branch: str | None = None, commit: str | None = None
    ) -> BuildOut:
        params = {k: v for k, v in (("branch", branch), ("commit", commit)) if v}
        response = self._request("POST", f"{self._repo(owner, name)}/builds", params=params)
        return self._parse(response, BuildOut)

    def builds_restart(self, owner: str, name: str, number: int) -> BuildOut:
        response = self._request("POST", f"{self._repo(owner, name)}/builds/{int(number)}")
        return self._parse(response, BuildOut)

    def builds_cancel(self, owner: str, name: str, number: int) -> BuildOut | None:
        """Cancel a build; the build as it is now if the server sends it back."""
        response = self._request("DELETE", f"{self._repo(owner, name)}/builds/{int(number)}")
        if not response.content.strip():
            return None
        return self._parse(response, BuildOut)

    def builds_approve(
        self, owner: str, name: str, number: int, stage: int | None = None
    ) -> BuildOut:
        """Approve a blocked build (or only its stage ``stage``)."""
        return self._release("approve", owner, name, number, stage)

    def builds_decline(
        self, owner: str, name: str, number: int, stage: int | None = None
    ) -> BuildOut:
        """Decline a blocked build (or only its stage ``stage``)."""
        return self._release("decline", owner, name, number, stage)

    def _release(
        self, verb: str, owner: str, name: str, number: int, stage: int | None
    ) -> BuildOut:
        path = f"{self._repo(owner, name)}/builds/{int(number)}/{verb}"
        if stage is not None:
            path += f"/{int(stage)}"
        return self._parse(self._request("POST", path), BuildOut)

    def builds_promote(
        self,
        owner: str,
        name: str,
        number: int,
        target: str,
        params: Mapping[str, str] | None = None,
        *,
        rollback: bool = False,
    ) -> BuildOut:
        """Deploy build ``number``'s commit to ``target`` (a new promote / rollback build)."""
        verb = "rollback" if rollback else "promote"
        query: dict[str, str | int] = {**(params or {}), "target": target}
        response = self._request(
            "POST", f"{self._repo(owner, name)}/builds/{int(number)}/{verb}", params=query
        )
        return self._parse(response, BuildOut)

    def environments_list(self, owner: str, name: str) -> list[EnvironmentOut]:
        response = self._request("GET", f"{self._repo(owner, name)}/environments")
        return self._parse_list(response, EnvironmentOut)

    def environment_put(self, owner: str, name: str, env: EnvironmentIn) -> EnvironmentOut:
        response = self._request(
            "POST", f"{self._repo(owner, name)}/environments", json=env.model_dump()
        )
        return self._parse(response, EnvironmentOut)

    def environment_get(self, owner: str, name: str, env: str) -> EnvironmentOut:
        response = self._request("GET", f"{self._repo(owner, name)}/environments/{segment(env)}")
        return self._parse(response, EnvironmentOut)

    def environment_rm(self, owner: str, name: str, env: str) -> None:
        self._request("DELETE", f"{self._repo(owner, name)}/environments/{segment(env)}")

    def sign(self, owner: str, name: str, config: str) -> str:
        """The signature (hex HMAC) of ``config`` under the repository's signing key."""
        response = self._request(
            "POST", f"{self._repo(owner, name)}/sign", json=SignRequest(data=config).model_dump()
        )
        return self._parse(response, SignResponse).data

    # -- logs ----------------------------------------------------------------------------------

    def _logs_path(self, owner: str, name: str, build: int, stage: int, step: int) -> str:
        return f"{self._repo(owner, name)}/builds/{int(build)}/logs/{int(stage)}/{int(step)}"

    def logs(self, owner: str, name: str, build: int, stage: int, step: int) -> list[LogLineOut]:
        response = self._request("GET", self._logs_path(owner, name, build, stage, step))
        return self._parse_list(response, LogLineOut)

    @contextmanager
    def _stream(self, path: str) -> Iterator[Iterator[SSEEvent]]:
        timeout = httpx.Timeout(self._http.timeout.connect, read=_STREAM_READ_TIMEOUT)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_status(response)
                yield iter_events(response.iter_lines())
        except httpx.TransportError as exc:
            raise unreachable(self.server, exc) from exc

    def stream_logs(
        self, owner: str, name: str, build: int, stage: int, step: int
    ) -> Iterator[LogLineOut]:
        """Live lines of one step until the server ends the stream (the step is done)."""
        path = f"/api/stream/{segment(owner)}/{segment(name)}/{int(build)}/{int(stage)}/{int(step)}"
        with self._stream(path) as events:
            for event in events:
                if event.event == "end":
                    return
                if event.event != "line":
                    continue
                try:
                    yield LogLineOut.model_validate_json(event.data)
                except ValidationError:
                    raise ClientError(
                        0, f"server {self.server} sent a log line this client cannot read"
                    ) from None

    def stream_events(self) -> Iterator[SSEEvent]:
        """Build events (``GET /api/stream``), as they come, until the server closes."""
        with self._stream("/api/stream") as events:
            yield from events

    # -- runners -------------------------------------------------------------------------------

    def runners_list(self) -> list[RunnerOut]:
        return self._parse_list(self._request("GET", "/api/runners"), RunnerOut)

    def runners_create(self, name: str) -> RunnerCreated:
        # Not validated here: the server's 400 says what is wrong with the name.
        body = RunnerCreate.model_construct(name=name).model_dump(mode="json")
        return self._parse(self._request("POST", "/api/runners", json=body), RunnerCreated)

    def runners_revoke(self, name: str) -> None:
        self._request("DELETE", f"/api/runners/{segment(name)}")

    # -- audit and key rotation (admins) -------------------------------------------------------

    def audit_list(
        self,
        *,
        kind: str = "",
        repo: str = "",
        build: int | None = None,
        secret: str = "",
        since: int | None = None,
        until: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditEventOut]:
        """Audit events, newest first; the next page: ``before=<id of the last one>``."""
        params: dict[str, str | int] = {"limit": limit}
        for key, value in (("kind", kind), ("repo", repo), ("secret", secret)):
            if value:
                params[key] = value
        for key, number in (("build", build), ("since", since), ("until", until)):
            if number is not None:
                params[key] = number
        if before is not None:
            params["before"] = before
        return self._parse_list(self._request("GET", "/api/audit", params=params), AuditEventOut)

    def admin_rekey(
        self, *, dry_run: bool = False, batch_size: int = 200, timeout: float = 3600.0
    ) -> RekeyOut:
        """Re-encrypt secrets at rest under the server's current key (``dry_run``: count rows
        per key id). Waits up to ``timeout`` seconds: the server answers when it is done."""
        body = RekeyRequest(dry_run=dry_run, batch_size=batch_size).model_dump()
        try:
            response = self._http.request("POST", "/api/admin/rekey", json=body, timeout=timeout)
        except httpx.TransportError as exc:
            raise unreachable(self.server, exc) from exc
        raise_for_status(response)
        return self._parse(response, RekeyOut)

    # -- cron jobs (write access) ------------------------------------------------------------

    def _cron(self, owner: str, name: str, cron: str | None = None) -> str:
        base = f"{self._repo(owner, name)}/cron"
        return base if cron is None else f"{base}/{segment(cron)}"

    def cron_list(self, owner: str, name: str) -> list[CronOut]:
        return self._parse_list(self._request("GET", self._cron(owner, name)), CronOut)

    def cron_add(self, owner: str, name: str, cron: CronCreate) -> CronOut:
        body = cron.model_dump(exclude_defaults=True)
        return self._parse(self._request("POST", self._cron(owner, name), json=body), CronOut)

    def cron_info(self, owner: str, name: str, cron: str) -> CronOut:
        return self._parse(self._request("GET", self._cron(owner, name, cron)), CronOut)

    def cron_update(self, owner: str, name: str, cron: str, patch: CronPatch) -> CronOut:
        response = self._request(
            "PATCH", self._cron(owner, name, cron), json=patch.model_dump(exclude_defaults=True)
        )
        return self._parse(response, CronOut)

    def cron_rm(self, owner: str, name: str, cron: str) -> None:
        self._request("DELETE", self._cron(owner, name, cron))

    def cron_exec(self, owner: str, name: str, cron: str) -> BuildOut:
        """Run the job now; the build it made."""
        return self._parse(self._request("POST", self._cron(owner, name, cron)), BuildOut)
