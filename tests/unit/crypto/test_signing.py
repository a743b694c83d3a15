"""HMAC request signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bastion.crypto import hmac_sign, hmac_verify, signing

KEY = b"k" * 32


def test_sign_is_hmac_sha256_hex() -> None:
    assert hmac_sign(KEY, b"body") == hmac.new(KEY, b"body", hashlib.sha256).hexdigest()


def test_verify_accepts_own_signature() -> None:
    assert hmac_verify(KEY, b"body", hmac_sign(KEY, b"body"))


@pytest.mark.parametrize(
    "signature",
    ["", "00", "ä" * 64, hmac.new(KEY, b"body", hashlib.sha256).hexdigest().upper()[:-1] + "X"],
)
def test_verify_refuses_garbage(signature: str) -> None:
    assert not hmac_verify(KEY, b"body", signature)


def test_verify_refuses_other_body_and_key() -> None:
    signature = hmac_sign(KEY, b"body")
    assert not hmac_verify(KEY, b"body!", signature)
    assert not hmac_verify(b"j" * 32, b"body", signature)


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        hmac_sign(b"short", b"body")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        hmac_verify(b"", b"body", "00")


def test_verify_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    assert hmac_verify(KEY, b"body", hmac_sign(KEY, b"body"))
    assert len(calls) == 1
