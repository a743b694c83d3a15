"""The HTTP secret provider against a provider these tests start on 127.0.0.1, which
verifies every request as a real one would: lookups, Drone's request and reply shapes, fork
builds never asked, failures (wrong token, error status, timeout, provider down) as clear
errors, and attacks on the provider (replayed, tampered, stale, unsigned requests) refused."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest
from tests.support.secret_provider import TOKEN, make_build, make_repo, running_provider

from bastion.crypto.http_signatures import NONCE_HEADER, sign_request
from bastion.server.services.secret_providers import (
    DRONE_SECRET_V1,
    ExternalSecret,
    ExternalSecretRequest,
    HttpSecretProvider,
    SecretProviderError,
)

VALUE = "vault-Pw9Xq2Zr7Lk4Mn"
SECRETS: dict[tuple[str, str], dict[str, Any]] = {
    ("secret/data/docker", "password"): {"name": "password", "data": VALUE},
    ("secret/data/npm", "token"): {"data": "npm-Hx6Tq1", "pull": True},
    ("secret/data/pr", "token"): {"data": "pr-Kd8Wm3", "pull_request": True, "fork": True},
    ("secret/data/empty", "token"): {"data": ""},
}


def lookup(path: str, key: str, *, name: str = "docker_password", **build: Any) -> Any:
    return ExternalSecretRequest(
        name=name, path=path, key=key, repo=make_repo(), build=make_build(**build)
    )


class Recording(httpx.HTTPTransport):
    """A transport that keeps what was sent (for the attack tests to replay it)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[dict[str, str], bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((dict(request.headers.items()), request.read()))
        return super().handle_request(request)


def test_a_secret_is_found_with_drones_request_shape() -> None:
    with running_provider(SECRETS) as provider:
        found = HttpSecretProvider(provider.url, TOKEN).find(
            lookup("secret/data/docker", "password")
        )
    assert found == ExternalSecret(value=VALUE, pull_request=False, fork=False)
    assert provider.refused == []
    (sent,) = provider.received
    assert sent["path"] == "secret/data/docker"
    assert sent["name"] == "password"  # Drone sends get.name, not the document's name
    assert sent["repo"]["slug"] == "acme/web"
    assert sent["repo"]["namespace"] == "acme"
    assert sent["build"]["event"] == "push"
    assert sent["build"]["target"] == "main"


def test_the_request_carries_drones_headers() -> None:
    transport = Recording()
    with running_provider(SECRETS) as provider:
        HttpSecretProvider(provider.url, TOKEN, transport=transport).find(
            lookup("secret/data/docker", "password")
        )
    (headers, body) = transport.sent[0]
    assert headers["accept"] == DRONE_SECRET_V1
    assert headers["content-type"] == "application/json"
    assert headers["accept-encoding"] == "identity"
    assert 'algorithm="hmac-sha256"' in headers["signature"]
    assert 'keyId="hmac-key"' in headers["signature"]
    assert json.loads(body)["path"] == "secret/data/docker"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("secret/data/npm", ExternalSecret("npm-Hx6Tq1", pull_request=True, fork=False)),
        ("secret/data/pr", ExternalSecret("pr-Kd8Wm3", pull_request=True, fork=True)),
    ],
)
def test_the_replys_pull_and_fork_flags_are_passed_on(path: str, expected: Any) -> None:
    with running_provider(SECRETS) as provider:
        assert HttpSecretProvider(provider.url, TOKEN).find(lookup(path, "token")) == expected


@pytest.mark.parametrize(
    ("path", "key"), [("secret/data/missing", "x"), ("secret/data/empty", "token")]
)
def test_no_such_secret_is_none(path: str, key: str) -> None:
    with running_provider(SECRETS) as provider:
        assert HttpSecretProvider(provider.url, TOKEN).find(lookup(path, key)) is None
    assert len(provider.received) == 1


def test_a_fork_build_never_asks_the_provider() -> None:
    with running_provider(SECRETS) as provider:
        found = HttpSecretProvider(provider.url, TOKEN).find(
            lookup("secret/data/pr", "token", event="pull_request", fork=True)
        )
    assert found is None
    assert provider.received == []
    assert provider.refused == []


def test_a_wrong_token_is_refused_by_the_provider_and_reported() -> None:
    other = "c2d4e6f8a0b1c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1"
    with running_provider(SECRETS) as provider, pytest.raises(SecretProviderError) as caught:
        HttpSecretProvider(provider.url, other).find(lookup("secret/data/docker", "password"))
    message = caught.value.message
    assert "'docker_password'" in message
    assert "provider unavailable" in message
    assert "HTTP 400" in message
    assert "same token" in message
    assert provider.received == []
    assert provider.refused == ["the signature does not match (wrong key or altered headers)"]


def test_an_error_status_is_a_provider_failure() -> None:
    with running_provider(SECRETS) as provider:
        provider.status = 503
        with pytest.raises(SecretProviderError, match=r"^HTTP 503"):
            HttpSecretProvider(provider.url, TOKEN).find(lookup("secret/data/docker", "password"))


def test_a_provider_that_hangs_fails_the_lookup_at_the_timeout() -> None:
    with running_provider(SECRETS) as provider:
        provider.delay = 120.0
        with pytest.raises(SecretProviderError, match=r"^no answer within 0.3 s$"):
            HttpSecretProvider(provider.url, TOKEN, timeout=0.3).find(
                lookup("secret/data/docker", "password")
            )
        # The provider got the request and is still holding it: the lookup returned without
        # its answer (the provider is released when the block ends).
        assert len(provider.received) == 1
        assert not provider.release.is_set()


def test_a_provider_that_is_down_is_a_clear_failure() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = HttpSecretProvider(f"http://127.0.0.1:{port}/", TOKEN, timeout=5)
    with pytest.raises(SecretProviderError) as caught:
        provider.find(lookup("secret/data/docker", "password"))
    assert str(caught.value) == "cannot connect"
    assert caught.value.message == (
        "secret 'docker_password': secret provider unavailable (cannot connect)"
    )


# -- attacks on the provider: what its verifier refuses ------------------------------------------


def captured_request(provider_url: str) -> tuple[dict[str, str], bytes]:
    transport = Recording()
    HttpSecretProvider(provider_url, TOKEN, transport=transport).find(
        lookup("secret/data/docker", "password")
    )
    return transport.sent[0]


def test_a_replayed_request_is_refused() -> None:
    with running_provider(SECRETS) as provider:
        headers, body = captured_request(provider.url)
        replay = httpx.post(provider.url, content=body, headers=headers)
    assert replay.status_code == 400
    assert VALUE not in replay.text
    assert provider.refused == ["this request was already received (replayed nonce)"]


def test_a_tampered_body_is_refused() -> None:
    with running_provider(SECRETS) as provider:
        headers, body = captured_request(provider.url)
        forged = body.replace(b"secret/data/docker", b"secret/data/prod!!")
        reply = httpx.post(provider.url, content=forged, headers=headers)
    assert reply.status_code == 400
    assert provider.refused == ["the body does not match its Digest header (altered body)"]


def test_a_stale_request_is_refused() -> None:
    body = json.dumps({"path": "secret/data/docker", "name": "password"}).encode()
    headers = sign_request(TOKEN.encode(), body, now=time.time() - 3600)
    with running_provider(SECRETS) as provider:
        reply = httpx.post(provider.url, content=body, headers=headers)
    assert reply.status_code == 400
    (why,) = provider.refused
    assert why.endswith("(at most 300 s allowed): a stale or replayed request")


def test_an_unsigned_or_nonce_less_request_is_refused() -> None:
    body = json.dumps({"path": "secret/data/docker", "name": "password"}).encode()
    headers = sign_request(TOKEN.encode(), body)
    stripped = {k: v for k, v in headers.items() if k != NONCE_HEADER}
    with running_provider(SECRETS) as provider:
        unsigned = httpx.post(provider.url, content=body, headers={"content-type": "x"})
        no_nonce = httpx.post(provider.url, content=body, headers=stripped)
    assert (unsigned.status_code, no_nonce.status_code) == (400, 400)
    assert provider.refused == [
        "the request is not signed (no Signature header)",
        "the signed header 'x-bastion-nonce' is missing",
    ]
    assert provider.received == []
