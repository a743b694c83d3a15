"""External secret providers without a network: the provider settings (Drone's names, the
refusals), the request and reply shapes, and every unusable reply as a clear error."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.secret_provider import make_build, make_repo

from bastion.crypto.http_signatures import RequestVerifier
from bastion.server.services.secret_providers import (
    MAX_REPLY_BYTES,
    ExternalSecret,
    ExternalSecretRequest,
    HttpSecretProvider,
    SecretProviderError,
    drone_build,
    drone_repo,
    provider_from_settings,
)
from bastion.server.settings import ServerSettings, SettingsError

TOKEN = secrets.token_hex(32)


def settings(tmp_path: Path, **values: Any) -> ServerSettings:
    base: dict[str, Any] = {
        "data_dir": tmp_path,
        "rpc_secret": secrets.token_hex(32),
        "database_secret": secrets.token_hex(32),
    }
    return ServerSettings(**{**base, **values})


def problems(s: ServerSettings) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        s.validate_security()
    return caught.value.problems


# -- settings -----------------------------------------------------------------------------------


def test_drone_names_configure_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRONE_SECRET_PLUGIN_ENDPOINT", "https://vault-ext.example.com:3000")
    monkeypatch.setenv("DRONE_SECRET_PLUGIN_TOKEN", TOKEN)
    s = settings(tmp_path)
    s.validate_security()
    provider = provider_from_settings(s)
    assert isinstance(provider, HttpSecretProvider)
    assert TOKEN not in repr(provider)
    assert TOKEN not in repr(s)


def test_no_endpoint_no_provider(tmp_path: Path) -> None:
    assert provider_from_settings(settings(tmp_path)) is None


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:3000", "http://localhost/x", "http://[::1]:1"]
)
def test_plain_http_to_loopback_is_accepted(tmp_path: Path, endpoint: str) -> None:
    settings(
        tmp_path, secret_plugin_endpoint=endpoint, secret_plugin_token=TOKEN
    ).validate_security()


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://10.0.0.5:3000", "plain HTTP to 10.0.0.5"),
        ("http://vault-ext.internal", "plain HTTP to vault-ext.internal"),
        ("ftp://127.0.0.1", "must be an http:// or https:// URL"),
        ("vault-ext:3000", "must be an http:// or https:// URL"),
        ("https://", "must be an http:// or https:// URL"),
    ],
)
def test_unusable_endpoints_are_refused(tmp_path: Path, endpoint: str, why: str) -> None:
    found = problems(settings(tmp_path, secret_plugin_endpoint=endpoint, secret_plugin_token=TOKEN))
    assert len(found) == 1
    assert why in found[0]


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "is not set"),
        ("bea26a2221fd8090ea38720fc445eca6", "too short (16 bytes of hex"),  # Drone's example
        ("a" * 64, "low entropy"),
    ],
)
def test_weak_tokens_are_refused(tmp_path: Path, token: str, why: str) -> None:
    s = settings(tmp_path, secret_plugin_endpoint="https://ext", secret_plugin_token=token)
    (problem,) = problems(s)
    assert problem.startswith("BASTION_SECRET_PLUGIN_TOKEN (or DRONE_SECRET_PLUGIN_TOKEN)")
    assert why in problem
    assert token not in problem or not token


def test_dev_accepts_a_weak_token_and_says_so(tmp_path: Path) -> None:
    weak = "bea26a2221fd8090ea38720fc445eca6"
    s = settings(
        tmp_path, dev=True, secret_plugin_endpoint="http://127.0.0.1:3000", secret_plugin_token=weak
    )
    s.validate_security()
    assert any("secret provider's token is weak" in n for n in s.notices())
    empty = settings(tmp_path, dev=True, secret_plugin_endpoint="http://127.0.0.1:3000")
    assert "is not set" in problems(empty)[0]


def test_skip_verify_only_with_dev(tmp_path: Path) -> None:
    values: dict[str, Any] = {
        "secret_plugin_endpoint": "https://ext",
        "secret_plugin_token": TOKEN,
        "secret_plugin_skip_verify": True,
    }
    (problem,) = problems(settings(tmp_path, **values))
    assert "SKIP_VERIFY" in problem
    settings(tmp_path, dev=True, **values).validate_security()


def test_a_missing_ca_file_is_refused(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        secret_plugin_endpoint="https://ext",
        secret_plugin_token=TOKEN,
        secret_plugin_ca_cert=tmp_path / "nope.pem",
    )
    assert "BASTION_SECRET_PLUGIN_CA_CERT" in problems(s)[0]


@pytest.mark.parametrize("timeout", [0, -1, 21])
def test_the_timeout_is_bounded(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(ValueError, match="secret_plugin_timeout"):
        settings(tmp_path, secret_plugin_timeout=timeout)


# -- request and reply --------------------------------------------------------------------------


def request(**build: Any) -> ExternalSecretRequest:
    return ExternalSecretRequest(
        name="docker_password",
        path="secret/docker",
        key="password",
        repo=make_repo(),
        build=make_build(**build),
    )


def provider_answering(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> tuple[HttpSecretProvider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(status, stream=httpx.ByteStream(body), headers=headers)

    provider = HttpSecretProvider(
        "https://ext.example.com/s", TOKEN, transport=httpx.MockTransport(answer)
    )
    return provider, seen


def test_the_request_is_signed_for_the_token_and_shaped_like_drones() -> None:
    provider, seen = provider_answering(200, b'{"data": "v-123456"}')
    assert provider.find(request()) == ExternalSecret("v-123456", False, False)
    (sent,) = seen
    RequestVerifier(TOKEN.encode()).verify(dict(sent.headers.items()), sent.content)
    body = json.loads(sent.content)
    assert set(body) == {"path", "name", "repo", "build"}
    assert (body["path"], body["name"]) == ("secret/docker", "password")


def test_drone_field_names() -> None:
    repo = drone_repo(make_repo(ignore_pulls=True, default_branch="main"))
    assert repo["slug"] == "acme/web"
    assert repo["ignore_pull_requests"] is True
    assert repo["default_branch"] == "main"
    build = drone_build(make_build(source_repo="evil/web", deploy_to="prod"))
    assert build["source_repo"] == "evil/web"
    assert build["deploy_to"] == "prod"
    assert build["author_login"] == ""
    assert build["status"] == "running"
    json.dumps([repo, build])  # every value is JSON


def test_a_fork_is_never_sent() -> None:
    provider, seen = provider_answering(200, b'{"data": "v-123456", "fork": true}')
    assert provider.find(request(event="pull_request", fork=True)) is None
    assert seen == []


@pytest.mark.parametrize(
    ("status", "body", "headers", "why"),
    [
        (200, b"<html>", {}, "the reply is not JSON"),
        (200, b"[1, 2]", {}, "not a JSON object"),
        (200, b'{"data": 5}', {}, "data is not a string"),
        (200, b'{"data": "v-123456", "pull": "yes"}', {}, "are not booleans"),
        (200, b"\x00\x01", {"content-encoding": "aesgcm"}, "aesgcm-encoded"),
        (302, b"", {"location": "https://elsewhere/"}, "redirects are not followed"),
        (500, b"vault sealed", {}, "HTTP 500: vault sealed"),
        (400, b"Invalid Signature", {}, "same token"),
        (200, b" " * (MAX_REPLY_BYTES + 1), {}, "larger than"),
    ],
)
def test_unusable_replies_are_provider_failures(
    status: int, body: bytes, headers: dict[str, str], why: str
) -> None:
    provider, _ = provider_answering(status, body, headers)
    with pytest.raises(SecretProviderError) as caught:
        provider.find(request())
    assert caught.value.secret == "docker_password"
    assert caught.value.message.startswith(
        "secret 'docker_password': secret provider unavailable ("
    )
    assert why in str(caught.value)


@pytest.mark.parametrize("status", [404, 204])
def test_not_found_and_no_content_are_none(status: int) -> None:
    provider, _ = provider_answering(status, b"")
    assert provider.find(request()) is None


def test_a_bug_in_the_exchange_is_a_failure_not_a_hang() -> None:
    def explode(req: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    provider = HttpSecretProvider("https://ext", TOKEN, transport=httpx.MockTransport(explode))
    with pytest.raises(SecretProviderError, match="RuntimeError"):
        provider.find(request())


def test_the_value_never_shows_in_a_repr() -> None:
    assert "v-123456" not in repr(ExternalSecret("v-123456", True, False))


def test_a_provider_that_did_not_answer_is_not_asked_again_for_a_while() -> None:
    # A stage naming several external secrets must not wait one timeout per secret.
    calls: list[str] = []
    now = [100.0]

    def refuse(req: httpx.Request) -> httpx.Response:
        calls.append(str(req.url))
        raise httpx.ConnectError("connection refused")

    provider = HttpSecretProvider(
        "https://ext",
        TOKEN,
        transport=httpx.MockTransport(refuse),
        cool_down=10.0,
        clock=lambda: now[0],
    )
    with pytest.raises(SecretProviderError, match=r"^cannot connect$"):
        provider.find(request())
    now[0] += 4
    with pytest.raises(SecretProviderError) as caught:
        provider.find(request())
    assert str(caught.value) == "cannot connect, 4 s ago; asked again in 6 s"
    assert len(calls) == 1
    now[0] += 7  # past the cool-down (which the refused lookup did not extend)
    with pytest.raises(SecretProviderError, match=r"^cannot connect$"):
        provider.find(request())
    assert len(calls) == 2


def test_an_answer_even_an_error_ends_the_cool_down() -> None:
    replies = [httpx.ConnectError("refused"), 500, 200]
    now = [0.0]

    def answer(req: httpx.Request) -> httpx.Response:
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return httpx.Response(reply, stream=httpx.ByteStream(b'{"data": "v-123456"}'))

    provider = HttpSecretProvider(
        "https://ext", TOKEN, transport=httpx.MockTransport(answer), clock=lambda: now[0]
    )
    with pytest.raises(SecretProviderError, match="cannot connect"):
        provider.find(request())
    now[0] += 60
    with pytest.raises(SecretProviderError, match="HTTP 500"):
        provider.find(request())
    # A status is an answer: no cool-down, the next lookup is sent at once.
    assert provider.find(request()) == ExternalSecret("v-123456", False, False)
