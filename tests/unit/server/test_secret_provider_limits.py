"""A provider that answers slowly must not hold a lookup's worker thread for long: the
reply is read until the lookup's deadline (its timeout from the start), then abandoned as
"no answer" — a reply trickling in below every per-read timeout included. A fake clock
measures time, so nothing here waits."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from tests.support.secret_provider import make_build, make_repo

from bastion.server.services.secret_providers import (
    ExternalSecretRequest,
    HttpSecretProvider,
    SecretProviderError,
)

TOKEN = secrets.token_hex(32)


def test_a_reply_that_trickles_in_is_abandoned_at_the_deadline() -> None:
    now = [0.0]
    sent: list[int] = []

    def trickle() -> Iterator[bytes]:
        # Each chunk arrives "a second" after the last: never a read timeout, never done
        # (a JSON string that does not end before the size limit).
        yield b'{"data": "'
        while True:
            now[0] += 1.0
            sent.append(1)
            yield b"x" * 64

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    provider = HttpSecretProvider(
        "https://ext",
        TOKEN,
        timeout=10.0,
        transport=httpx.MockTransport(answer),
        clock=lambda: now[0],
    )
    lookup = ExternalSecretRequest(
        name="docker_password",
        path="secret/data/docker",
        key="password",
        repo=make_repo(),
        build=make_build(),
    )
    with pytest.raises(SecretProviderError) as caught:
        provider.find(lookup)
    assert str(caught.value) == "no answer within 10 s"
    assert caught.value.no_answer
    # Stopped about when the deadline passed, not after a whole MiB of chunks.
    assert len(sent) <= 12


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (b'{"name": "admin_password", "data": "v-123456"}', "the reply is for secret"),
        (b'{"name": "password", "data": "v-123456"}', "v-123456"),
        (b'{"data": "v-123456"}', "v-123456"),  # Drone's providers need not name it
    ],
)
def test_a_reply_naming_another_secret_is_refused(reply: bytes, outcome: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(reply))

    provider = HttpSecretProvider("https://ext", TOKEN, transport=httpx.MockTransport(answer))
    lookup = ExternalSecretRequest(
        name="docker_password",
        path="secret/data/docker",
        key="password",
        repo=make_repo(),
        build=make_build(),
    )
    if outcome.startswith("v-"):
        found = provider.find(lookup)
        assert found is not None
        assert found.value == outcome
        return
    with pytest.raises(SecretProviderError) as caught:
        provider.find(lookup)
    assert str(caught.value) == "the reply is for secret 'admin_password', not 'password'"
    assert "v-123456" not in caught.value.message
