"""AES-256-GCM secret box: round trip, tampering, wrong key, wrong owner, key parsing, key ids
and rotation (format 1 still readable, previous keys, rekey)."""

from __future__ import annotations

import base64
import os
import secrets

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.crypto import DecryptError, SecretBox, WeakKeyError, key_from_text, key_strength_ok
from bastion.crypto.secretbox import blob_key_id, key_id

KEY = bytes(range(32))
AAD = b"repo:1:docker_password"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(KEY)


def test_round_trip(box: SecretBox) -> None:
    blob = box.encrypt(b"hunter2", AAD)
    assert box.decrypt(blob, AAD) == b"hunter2"


def test_empty_plaintext(box: SecretBox) -> None:
    assert box.decrypt(box.encrypt(b"", AAD), AAD) == b""


def test_layout_version_nonce_and_no_plaintext(box: SecretBox) -> None:
    blob = box.encrypt(b"hunter2hunter2", AAD)
    assert blob[0] == 2
    assert blob[1:5] == key_id(KEY)
    assert len(blob) == 1 + 4 + 12 + len(b"hunter2hunter2") + 16
    assert b"hunter2" not in blob
    assert AAD not in blob  # authenticated, not stored


def test_fresh_nonce_each_time(box: SecretBox) -> None:
    blobs = {box.encrypt(b"same", AAD) for _ in range(50)}
    assert len(blobs) == 50
    assert len({b[5:17] for b in blobs}) == 50


@pytest.mark.parametrize("index", [0, 1, 4, 5, 16, 17, -1])
def test_tampered_byte_is_refused(box: SecretBox, index: int) -> None:
    blob = bytearray(box.encrypt(b"hunter2", AAD))
    blob[index] ^= 0x01
    with pytest.raises(DecryptError):
        box.decrypt(bytes(blob), AAD)


def test_truncated_is_refused(box: SecretBox) -> None:
    blob = box.encrypt(b"hunter2", AAD)
    for size in (0, 1, 5, 17, 32, len(blob) - 1):
        with pytest.raises(DecryptError):
            box.decrypt(blob[:size], AAD)


def test_unknown_version_is_refused(box: SecretBox) -> None:
    blob = box.encrypt(b"hunter2", AAD)
    with pytest.raises(DecryptError, match="unknown format version 3"):
        box.decrypt(b"\x03" + blob[1:], AAD)


@pytest.mark.parametrize(
    "other_aad", [b"repo:2:docker_password", b"repo:1:docker_username", b"", AAD + b"x"]
)
def test_moved_to_another_owner_is_refused(box: SecretBox, other_aad: bytes) -> None:
    blob = box.encrypt(b"hunter2", AAD)
    with pytest.raises(DecryptError, match="another owner") as info:
        box.decrypt(blob, other_aad)
    assert "hunter2" not in str(info.value)


def test_wrong_key_is_refused(box: SecretBox) -> None:
    blob = box.encrypt(b"hunter2", AAD)
    with pytest.raises(DecryptError, match="wrong key"):
        SecretBox(os.urandom(32)).decrypt(blob, AAD)


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33, 64])
def test_key_must_be_32_bytes(size: int) -> None:
    with pytest.raises(WeakKeyError, match="32-byte key"):
        SecretBox(os.urandom(size))


def test_repr_hides_key(box: SecretBox) -> None:
    assert "hidden" in repr(box)
    assert KEY.hex() not in repr(box)


def test_key_from_hex() -> None:
    key = os.urandom(32)
    assert key_from_text(key.hex()) == key
    assert key_from_text(key.hex().upper()) == key
    assert key_from_text(f"  {key.hex()}\n") == key


def test_key_from_base64_standard_urlsafe_and_unpadded() -> None:
    key = secrets.token_bytes(32)
    assert key_from_text(base64.b64encode(key).decode()) == key
    assert key_from_text(base64.urlsafe_b64encode(key).decode()) == key
    assert key_from_text(base64.b64encode(key).decode().rstrip("=")) == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hunter2", "has 5 bytes"),  # valid base64 of 5 bytes
        ("correct horse battery staple", "neither hex nor base64"),
        (os.urandom(16).hex(), "has 16 bytes"),  # 32 hex chars: AES-128 strength
        (base64.b64encode(os.urandom(24)).decode(), "has 24 bytes"),
        (base64.b64encode(os.urandom(48)).decode(), "has 48 bytes"),
        ("0" * 64, "distinct byte values"),
        ("ab" * 32, "distinct byte values"),
        ("0123456789abcdef" * 4, "distinct byte values"),
        (base64.b64encode(b"a" * 32).decode(), "distinct byte values"),
        ("!" + os.urandom(32).hex()[1:], "neither hex nor base64"),
    ],
)
def test_weak_or_malformed_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(WeakKeyError, match=message) as info:
        key_from_text(text)
    assert "openssl rand -hex 32" in str(info.value)
    if text.strip():
        assert text.strip() not in str(info.value)  # the text is never echoed
    assert not key_strength_ok(text)


def test_key_strength_ok() -> None:
    assert key_strength_ok(os.urandom(32).hex())
    assert key_strength_ok(base64.b64encode(os.urandom(32)).decode())
    assert not key_strength_ok("0" * 64)


# -- key ids and rotation -----------------------------------------------------------------------

OLD = bytes(range(100, 132))
OLDER = bytes(range(200, 232))


def format_1(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """A blob as the first release wrote it: 0x01 | nonce | ciphertext+tag, header in the AAD."""
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(key).encrypt(nonce, plaintext, b"\x01" + aad)


def test_key_id_is_short_stable_and_not_the_key() -> None:
    assert key_id(KEY) == key_id(bytes(KEY))
    assert len(key_id(KEY)) == 4
    assert key_id(KEY) != key_id(OLD)
    assert key_id(KEY) not in KEY
    assert SecretBox(KEY, [OLD]).key_id == key_id(KEY).hex()
    assert SecretBox(KEY, [OLD, KEY, OLD]).key_ids == [key_id(KEY).hex(), key_id(OLD).hex()]


def test_format_1_blobs_stay_readable_with_current_or_previous_key() -> None:
    assert SecretBox(KEY).decrypt(format_1(KEY, b"v1", AAD), AAD) == b"v1"
    assert SecretBox(KEY, [OLDER, OLD]).decrypt(format_1(OLD, b"v1-old", AAD), AAD) == b"v1-old"
    with pytest.raises(DecryptError, match="wrong key"):
        SecretBox(KEY).decrypt(format_1(OLD, b"v1-old", AAD), AAD)
    with pytest.raises(DecryptError, match="another owner"):
        SecretBox(KEY).decrypt(format_1(KEY, b"v1", AAD), AAD + b"x")
    assert blob_key_id(format_1(KEY, b"v1", AAD)) is None


def test_previous_key_decrypts_but_never_encrypts() -> None:
    old_blob = SecretBox(OLD).encrypt(b"under-old", AAD)
    rotated = SecretBox(KEY, [OLD])
    assert rotated.decrypt(old_blob, AAD) == b"under-old"
    assert blob_key_id(rotated.encrypt(b"new", AAD)) == key_id(KEY).hex()
    with pytest.raises(DecryptError, match="does not hold"):
        SecretBox(KEY).decrypt(old_blob, AAD)


def test_key_id_is_authenticated() -> None:
    """A blob relabelled with another held key's id fails instead of being tried elsewhere."""
    box = SecretBox(KEY, [OLD])
    blob = bytearray(box.encrypt(b"x", AAD))
    blob[1:5] = key_id(OLD)
    with pytest.raises(DecryptError, match="wrong key"):
        box.decrypt(bytes(blob), AAD)


def test_rekey_moves_old_values_and_leaves_current_ones() -> None:
    box = SecretBox(KEY, [OLD])
    current = box.encrypt(b"cur", AAD)
    assert not box.needs_rekey(current)
    assert box.rekey(current, AAD) is None
    for old in (
        SecretBox(OLD).encrypt(b"old", AAD),
        format_1(OLD, b"old", AAD),
        format_1(KEY, b"old", AAD),
    ):
        assert box.needs_rekey(old)
        new = box.rekey(old, AAD)
        assert new is not None
        assert blob_key_id(new) == box.key_id
        assert SecretBox(KEY).decrypt(new, AAD) == b"old"  # no previous key needed any more
    with pytest.raises(DecryptError):
        box.rekey(SecretBox(OLDER).encrypt(b"lost", AAD), AAD)


def test_previous_keys_must_be_32_bytes_too() -> None:
    with pytest.raises(WeakKeyError, match="32-byte key"):
        SecretBox(KEY, [b"short"])
