"""Tokens: format, randomness, hashing, constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from bastion.crypto import tokens
from bastion.crypto.tokens import hash_token, new_secret, new_token, tokens_equal


def test_new_token_has_prefix_kind_and_256_random_bits() -> None:
    token = new_token("api")
    assert re.fullmatch(r"bst_api_[A-Za-z0-9_-]{43}", token)


def test_new_tokens_differ() -> None:
    assert len({new_token("runner") for _ in range(200)}) == 200


@pytest.mark.parametrize("kind", ["", "API", "a-b", "a_b", "1abc", "x" * 17, "lease "])
def test_new_token_refuses_odd_kinds(kind: str) -> None:
    with pytest.raises(ValueError, match="token kind"):
        new_token(kind)


def test_hash_token_is_sha256_hex() -> None:
    token = new_token("api")
    digest = hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert token not in digest
    assert hash_token(token) == digest  # deterministic: looked up by hash


def test_tokens_equal() -> None:
    assert tokens_equal("abc", "abc")
    assert not tokens_equal("abc", "abd")
    assert not tokens_equal("abc", "abcd")
    assert not tokens_equal("", "a")
    # non-ASCII input must not raise (hmac.compare_digest refuses non-ASCII str)
    assert not tokens_equal("ä", "a")
    assert tokens_equal("ä", "ä")


def test_tokens_equal_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []

    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert tokens_equal("x", "x")
    assert calls == [(b"x", b"x")]


def test_new_secret() -> None:
    secret = new_secret()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert new_secret() != secret
    assert len(new_secret(48)) == 64


def test_new_secret_refuses_short() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        new_secret(8)
