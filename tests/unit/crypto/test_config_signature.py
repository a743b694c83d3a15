"""Configuration signatures in ``drone sign``'s format: what is covered, what breaks them."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bastion.crypto.config_signature import (
    SignatureKeyError,
    compute_signature,
    embedded_signature,
    sign_config,
    signed_payload,
    split_documents,
    verify_signature,
)

KEY = b"k" * 16 + b"0123456789abcdef"  # 32 bytes, as Drone requires

CONFIG = b"""kind: pipeline
name: build

steps:
- name: test
  image: bastion/busybox:latest
  commands:
  - echo hello   # a comment is signed too
---
kind: pipeline
name: deploy
depends_on: [build]
steps:
- name: ship
  image: plugins/rsync
"""


def test_the_payload_is_every_documents_lines_without_separators() -> None:
    # Written out by hand from Drone's rules: separator lines belong to no document, every
    # other line contributes its text and a newline.
    first, second = CONFIG.split(b"---\n")
    assert signed_payload(CONFIG) == first + second
    expected = hmac.new(KEY, first + second, hashlib.sha256).hexdigest()
    assert compute_signature(CONFIG, KEY) == expected


def test_a_signed_file_verifies_and_keeps_its_documents() -> None:
    signed = sign_config(CONFIG, KEY)
    assert verify_signature(signed, KEY)
    assert signed.endswith(
        b"---\nkind: signature\nhmac: " + compute_signature(CONFIG, KEY).encode() + b"\n\n...\n"
    )
    assert signed_payload(signed) == signed_payload(CONFIG)
    # Signing again replaces the signature rather than adding a second one.
    again = sign_config(signed, KEY)
    assert again == signed
    assert sum(doc.is_signature for doc in split_documents(again)) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s.replace(b"echo hello", b"echo hullo"),
        lambda s: s.replace(b"# a comment is signed too", b"# another comment"),
        lambda s: s.replace(b"  commands:\n", b"  privileged: true\n  commands:\n"),
        lambda s: s.replace(
            b"---\nkind: signature", b"---\nkind: pipeline\nname: x\n---\nkind: signature"
        ),
    ],
    ids=["command", "comment", "privileged", "new-document"],
)
def test_any_edit_to_a_signed_file_breaks_the_signature(tamper: object) -> None:
    signed = sign_config(CONFIG, KEY)
    tampered = tamper(signed)  # type: ignore[operator]
    assert tampered != signed
    assert not verify_signature(tampered, KEY)


def test_a_signature_made_with_another_key_does_not_verify() -> None:
    signed = sign_config(CONFIG, b"x" * 32)
    assert not verify_signature(signed, KEY)


def test_an_unsigned_file_does_not_verify() -> None:
    assert embedded_signature(CONFIG) is None
    assert not verify_signature(CONFIG, KEY)


def test_two_signature_documents_are_refused() -> None:
    signed = sign_config(CONFIG, KEY)
    doubled = signed.replace(b"\n...\n", b"") + b"---\nkind: signature\nhmac: " + b"0" * 64 + b"\n"
    assert embedded_signature(doubled) is None
    assert not verify_signature(doubled, KEY)


@pytest.mark.parametrize("value", [b"", b"abc", b"z" * 64, b"0" * 63])
def test_a_malformed_hmac_is_no_signature(value: bytes) -> None:
    config = CONFIG + b"---\nkind: signature\nhmac: " + value + b"\n"
    assert embedded_signature(config) is None
    assert not verify_signature(config, KEY)


def test_text_after_the_end_marker_is_not_covered_and_not_read() -> None:
    signed = sign_config(CONFIG, KEY)
    assert verify_signature(signed + b"kind: pipeline\nname: sneaky\n", KEY)
    # ... and the loader stops at the same marker, so that text never runs either.


def test_crlf_line_endings_sign_like_lf() -> None:
    crlf = CONFIG.replace(b"\n", b"\r\n")
    assert compute_signature(crlf, KEY) == compute_signature(CONFIG, KEY)


def test_quoted_kind_and_hmac_are_recognised() -> None:
    signature = compute_signature(CONFIG, KEY)
    config = CONFIG + b"---\nkind: 'signature'\nhmac: \"" + signature.upper().encode() + b'"\n'
    assert verify_signature(config, KEY)


def test_a_nested_kind_key_is_not_a_signature_document() -> None:
    config = CONFIG + b"---\nkind: pipeline\nname: x\nenvironment:\n  kind: signature\n"
    assert not any(doc.is_signature for doc in split_documents(config))


def test_a_short_key_is_refused() -> None:
    with pytest.raises(SignatureKeyError, match="at least 32 bytes"):
        compute_signature(CONFIG, b"short")
    with pytest.raises(SignatureKeyError):
        sign_config(CONFIG, b"x" * 31)


def test_the_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.crypto.config_signature as module

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(module.hmac, "compare_digest", spy)
    signed = sign_config(CONFIG, KEY)
    assert verify_signature(signed, KEY)
    assert calls == [(compute_signature(CONFIG, KEY).encode(),) * 2]
