"""External secrets: the interface a secret provider implements, and what a lookup returns.

A pipeline configuration may hold ``kind: secret`` documents whose ``get: {path, name}``
names a secret kept outside Bastion (Vault, Kubernetes, a company's own store). When a step
refers to such a document through ``from_secret``, :class:`~bastion.server.services.secrets`
asks the configured :class:`SecretProvider` with an :class:`ExternalSecretRequest` and
applies the same rules as to stored secrets: a fork build never receives one (it is not
even asked for), a pull request build only when the provider's reply allows it.

``find`` returns ``None`` when the provider has no such secret, and raises
:class:`SecretProviderError` when the provider cannot answer (unreachable, timed out, an
error status, an unusable reply): the caller fails the steps that reference the secret with
a message naming it, saying the provider is unavailable and why ("secret 'x': the secret
provider is unavailable: no answer within 10 s"), rather than running them without it. A
lookup never takes longer than the provider's timeout, so neither does the stage's start.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

import httpx

from bastion.crypto.http_signatures import sign_request
from bastion.server.settings import ServerSettings
from bastion.store.types import Build, Repo


class SecretProviderError(Exception):
    """The provider could not answer. ``str()`` is the reason alone (the caller's message
    names the secret, as ``services.secrets`` does); :attr:`message` is a complete sentence
    naming the secret. Neither ever holds a value."""

    def __init__(self, secret: str, reason: str) -> None:
        super().__init__(reason)
        self.secret = secret
        self.reason = reason
        self.no_answer = False  # the provider did not answer at all (timeout, no connection)

    @property
    def message(self) -> str:
        return f"secret {self.secret!r}: secret provider unavailable ({self.reason})"


@dataclass(frozen=True)
class ExternalSecretRequest:
    """One lookup: ``name`` is the ``kind: secret`` document's name, ``path`` and ``key``
    its ``get.path`` and ``get.name``; the repository and build say who is asking."""

    name: str
    path: str
    key: str
    repo: Repo
    build: Build


@dataclass(frozen=True)
class ExternalSecret:
    """A provider's answer: the value and whether pull request / fork builds may have it
    (``fork`` is reported for completeness: Bastion never hands a secret to a fork build)."""

    value: str
    pull_request: bool
    fork: bool

    def __repr__(self) -> str:
        # The value must never reach a log line through a repr.
        return f"ExternalSecret(value=***, pull_request={self.pull_request}, fork={self.fork})"


class SecretProvider(Protocol):
    """Where external secrets come from."""

    def find(self, request: ExternalSecretRequest) -> ExternalSecret | None:
        """The secret, ``None`` when the provider has none; :class:`SecretProviderError`
        when it cannot answer."""
        ...


# -- the HTTP provider: Drone's secret extension protocol ---------------------------------------

DRONE_SECRET_V1 = "application/vnd.drone.secret.v1+json"  # noqa: S105 - a media type
DEFAULT_COOL_DOWN = 10.0  # seconds a provider that did not answer is not asked again
MAX_REPLY_BYTES = 1 << 20  # a reply holds one secret; more is a broken or hostile provider
_ERROR_TEXT_CHARS = 200


class HttpSecretProvider:
    """Asks an HTTP endpoint compatible with Drone's secret extensions (drone-vault,
    drone-kubernetes-secrets, anything built on drone-go's ``plugin/secret``).

    One signed ``POST`` per lookup (:func:`bastion.crypto.http_signatures.sign_request`:
    Drone's signature plus a nonce) with the JSON body ``{"path", "name", "repo", "build"}``
    — ``name`` is the document's ``get.name``, as Drone sends it; ``repo`` and ``build``
    have Drone's field names. The reply is Drone's secret object: ``data`` (the value),
    ``pull`` / ``pull_request`` and ``fork``. 404, 204 and an empty ``data`` mean "no such
    secret"; anything else that is not a 200 with a usable body is a
    :class:`SecretProviderError`. Redirects are not followed, and the process's proxy
    variables are ignored (the endpoint is asked directly).

    ``timeout`` bounds the whole lookup as the caller sees it: the exchange runs in a
    daemon thread that the caller stops waiting for when the time is up (the thread itself
    stops reading at the same deadline, a reply trickling in included). A provider that
    did not answer (timed out, refused the connection) is not asked again for
    ``cool_down`` seconds: lookups fail at once with the same reason, so a stage that names
    several external secrets waits one timeout, not one per secret — its details must
    reach the runner before the runner's request times out. A fork build's lookup is never
    sent.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        timeout: float = 10.0,
        verify: bool | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
        cool_down: float = DEFAULT_COOL_DOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token:
            raise ValueError("the secret provider needs a token to sign its requests")
        self._endpoint = endpoint
        self._key = token.encode("utf-8")  # Drone signs with the token's bytes as given
        self._timeout = timeout
        self._verify = verify
        self._transport = transport
        self._cool_down = cool_down
        self._clock = clock
        self._lock = threading.Lock()
        self._down: tuple[float, str] | None = None  # (since, reason) of the last no-answer

    def __repr__(self) -> str:
        return f"HttpSecretProvider({self._endpoint!r})"

    def find(self, request: ExternalSecretRequest) -> ExternalSecret | None:
        if request.build.fork:
            # Never even ask: the request would tell the provider a fork wants the secret.
            return None
        body = json.dumps(
            {
                "path": request.path,
                "name": request.key,
                "repo": drone_repo(request.repo),
                "build": drone_build(request.build),
            },
            separators=(",", ":"),
        ).encode("utf-8")
        self._check_down(request.name)
        outcome: list[ExternalSecret | SecretProviderError | None] = []

        def run() -> None:
            try:
                outcome.append(self._exchange(request.name, request.key, body))
            except SecretProviderError as exc:
                outcome.append(exc)
            except Exception as exc:  # a bug must not leave the caller waiting
                outcome.append(_unavailable(request.name, type(exc).__name__))

        worker = threading.Thread(target=run, name="secret-provider", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if not outcome:
            outcome.append(
                _unavailable(request.name, f"no answer within {self._timeout:g} s", no_answer=True)
            )
        result = outcome[0]
        with self._lock:
            if isinstance(result, SecretProviderError) and result.no_answer:
                self._down = (self._clock(), result.reason)
            else:
                self._down = None  # it answered (even an error status): it is up
        if isinstance(result, SecretProviderError):
            raise result
        return result

    def _check_down(self, name: str) -> None:
        with self._lock:
            down = self._down
        if down is None:
            return
        since, reason = down
        ago = self._clock() - since
        if ago < self._cool_down:
            raise _unavailable(
                name,
                f"{reason}, {ago:.0f} s ago; asked again in {self._cool_down - ago:.0f} s",
            )  # not "no answer" itself: the cool-down must not extend itself

    def _exchange(self, name: str, key: str, body: bytes) -> ExternalSecret | None:
        headers = sign_request(self._key, body, accept=DRONE_SECRET_V1)
        # httpx's timeouts are per read: a reply trickling in would keep this thread busy
        # long after the caller gave up. The whole exchange ends at this deadline.
        deadline = self._clock() + self._timeout
        try:
            with (
                httpx.Client(
                    verify=self._verify,
                    timeout=self._timeout,
                    follow_redirects=False,
                    transport=self._transport,
                    # Not HTTP(S)_PROXY, ALL_PROXY, .netrc or SSL_CERT_* of the process: a
                    # proxy set for other traffic would see the replies' values (over plain
                    # HTTP to a loopback provider); the CA is BASTION_SECRET_PLUGIN_CA_CERT.
                    trust_env=False,
                ) as client,
                client.stream("POST", self._endpoint, content=body, headers=headers) as reply,
            ):
                data = _read_limited(reply, lambda: self._clock() > deadline)
                status = reply.status_code
                encoding = reply.headers.get("content-encoding", "identity").lower()
        except httpx.TimeoutException:
            reason = f"no answer within {self._timeout:g} s"
            raise _unavailable(name, reason, no_answer=True) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise _unavailable(name, _transport_reason(exc), no_answer=True) from None
        except httpx.HTTPError as exc:
            raise _unavailable(name, _transport_reason(exc)) from None
        if status in {HTTPStatus.NOT_FOUND, HTTPStatus.NO_CONTENT}:
            return None
        if status != HTTPStatus.OK:
            text = _printable(data.decode("utf-8", "replace"))
            raise _status_error(name, status, text)
        if encoding not in {"identity", ""}:
            raise _unavailable(name, f"the reply is {encoding}-encoded, not plain JSON")
        return _parse_reply(name, key, data)


def provider_from_settings(settings: ServerSettings) -> SecretProvider | None:
    """The HTTP provider the settings configure, None when no endpoint is set (settings are
    validated first: ``ServerSettings.validate_security`` refuses weak or plain values)."""
    endpoint = settings.secret_plugin_endpoint.strip()
    if not endpoint:
        return None
    verify: bool | ssl.SSLContext = True
    if settings.secret_plugin_skip_verify:
        verify = False
    elif settings.secret_plugin_ca_cert is not None:
        verify = ssl.create_default_context(cafile=str(settings.secret_plugin_ca_cert))
    return HttpSecretProvider(
        endpoint,
        settings.secret_plugin_token.get_secret_value(),
        timeout=settings.secret_plugin_timeout,
        verify=verify,
    )


def drone_repo(repo: Repo) -> dict[str, object]:
    """``repo`` with the field names of Drone's repository object."""
    return {
        "id": repo.id,
        "uid": repo.forge_id,
        "namespace": repo.owner,
        "name": repo.name,
        "slug": repo.slug,
        "scm": "git",
        "git_http_url": repo.http_url,
        "git_ssh_url": repo.ssh_url,
        "link": repo.link,
        "default_branch": repo.default_branch,
        "private": repo.private,
        "visibility": repo.visibility,
        "active": repo.active,
        "config_path": repo.config_path,
        "trusted": repo.trusted,
        "protected": repo.protected,
        "ignore_forks": repo.ignore_forks,
        "ignore_pull_requests": repo.ignore_pulls,
        "auto_cancel_pull_requests": repo.auto_cancel_pulls,
        "auto_cancel_pushes": repo.auto_cancel_pushes,
        "timeout": repo.timeout,
        "counter": repo.counter,
        "created": repo.created,
        "updated": repo.updated,
    }


def drone_build(build: Build) -> dict[str, object]:
    """``build`` with the field names of Drone's build object."""
    return {
        "id": build.id,
        "repo_id": build.repo_id,
        "trigger": build.trigger,
        "number": build.number,
        "parent": build.parent,
        "status": str(build.status),
        "error": build.error,
        "event": build.event,
        "action": build.action,
        "link": build.link,
        "timestamp": build.created,
        "title": build.title,
        "message": build.message,
        "before": build.before,
        "after": build.after,
        "ref": build.ref,
        "source_repo": build.source_repo,
        "source": build.source,
        "target": build.target,
        "author_login": build.author_login,
        "author_name": build.author_name,
        "author_email": build.author_email,
        "author_avatar": build.author_avatar,
        "sender": build.sender,
        "params": dict(build.params),
        "cron": build.cron,
        "deploy_to": build.deploy_to,
        "started": build.started,
        "finished": build.finished,
        "created": build.created,
        "updated": build.updated,
    }


def _unavailable(name: str, reason: str, *, no_answer: bool = False) -> SecretProviderError:
    error = SecretProviderError(name, reason)
    error.no_answer = no_answer
    return error


def _status_error(name: str, status: int, text: str) -> SecretProviderError:
    detail = f"HTTP {status}" + (f": {text}" if text else "")
    if status == HTTPStatus.BAD_REQUEST:
        # drone-go's handler answers 400 to a signature it does not accept.
        detail += "; check that both sides have the same token"
    elif 300 <= status < 400:
        detail += "; redirects are not followed, set the final URL"
    return _unavailable(name, detail)


def _read_limited(reply: httpx.Response, late: Callable[[], bool]) -> bytes:
    """The raw reply, at most ``MAX_REPLY_BYTES``; ``httpx.ReadTimeout`` once ``late()``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in reply.iter_raw():
        if late():
            raise httpx.ReadTimeout("the reply did not arrive in time")
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise httpx.DecodingError(f"the reply is larger than {MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_reply(name: str, key: str, data: bytes) -> ExternalSecret | None:
    try:
        reply = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise _unavailable(name, "the reply is not JSON") from None
    if not isinstance(reply, dict):
        raise _unavailable(name, "the reply is not a JSON object")
    value = reply.get("data", "")
    if not isinstance(value, str):
        raise _unavailable(name, "the reply's data is not a string")
    if value == "":
        return None
    answered = reply.get("name")
    if isinstance(answered, str) and answered and answered != key:
        # Drone's secret object names the secret; a reply naming another one is a confused
        # (or hostile) provider: its value must not go out under this name.
        raise _unavailable(
            name, f"the reply is for secret {_printable(answered)[:64]!r}, not {key!r}"
        )
    flags = {key: reply.get(key, False) for key in ("pull", "pull_request", "fork")}
    if not all(isinstance(flag, bool) for flag in flags.values()):
        raise _unavailable(name, "the reply's pull / pull_request / fork are not booleans")
    return ExternalSecret(
        value=value,
        pull_request=bool(flags["pull"] or flags["pull_request"]),
        fork=bool(flags["fork"]),
    )


def _transport_reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.DecodingError):
        return str(exc)
    return type(exc).__name__


def _printable(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return clean[:_ERROR_TEXT_CHARS]
