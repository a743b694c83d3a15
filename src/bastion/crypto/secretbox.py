"""Encryption of secrets at rest: AES-256-GCM with a per-value random nonce and a binding to
the value's owner.

Blob layout (``SecretBox.encrypt``)::

    version (1 byte, 0x01) | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)

The associated data (AAD) passed by the caller names the owner of the value, for example
``repo:42:docker_password``. GCM authenticates it without storing it, so a ciphertext copied to
another repository or another secret name (by someone with write access to the database) fails
to decrypt instead of handing one repository's secret to another's pipeline. The version byte is
authenticated too, so a later format can be introduced without ambiguity.

A random 96-bit nonce per encryption is safe for far more values than a CI server stores
(NIST's limit for random GCM nonces is 2**32 messages per key).
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = 1
# A random 32-byte key has about 30 distinct byte values; fewer than 16 means it was typed or
# derived from something guessable ("0000…", "abcd" repeated), not generated.
MIN_DISTINCT_KEY_BYTES = 16

# Any even number of hex digits is read as hex, so that a short hex key is reported with its
# real size (16 bytes) rather than as a base64 text of another size.
_HEX_KEY = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_KEY_HELP = (
    "the secret key must be 32 random bytes, written as 64 hex characters or as base64; "
    "generate one with: openssl rand -hex 32"
)


class DecryptError(Exception):
    """A blob could not be decrypted: wrong key, tampered or truncated data, an unknown format,
    or a value moved to another owner than the one it was encrypted for. The message never
    contains key material or plaintext."""


class WeakKeyError(ValueError):
    """A key given as text is not 32 random bytes. The message never repeats the text."""


class SecretBox:
    """Authenticated encryption of small values with one 32-byte key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise WeakKeyError(f"AES-256-GCM needs a {KEY_BYTES}-byte key, not {len(key)} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` for the owner named by ``aad``; a fresh nonce every call."""
        nonce = os.urandom(NONCE_BYTES)
        header = bytes([VERSION])
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of ``blob``, which must have been encrypted with this key and the same
        ``aad``; otherwise ``DecryptError``."""
        if len(blob) < 1 + NONCE_BYTES + TAG_BYTES:
            raise DecryptError("encrypted value is truncated")
        if blob[0] != VERSION:
            raise DecryptError(f"encrypted value has unknown format version {blob[0]}")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_BYTES :], blob[:1] + aad)
        except InvalidTag as exc:
            raise DecryptError(
                "encrypted value does not decrypt: wrong key, tampered data, or a value that "
                "belongs to another owner"
            ) from exc


def key_from_text(text: str) -> bytes:
    """Parse a 32-byte key written as 64 hex characters or as (standard or URL-safe) base64.

    Raises ``WeakKeyError`` for anything else, including keys of the right length that are
    visibly not random (few distinct bytes), with a message that says how to make a good key.
    """
    value = text.strip()
    if not value:
        raise WeakKeyError(f"the secret key is empty: {_KEY_HELP}")
    key = bytes.fromhex(value) if _HEX_KEY.match(value) else _decode_base64(value)
    if key is None:
        # The text is never echoed: it may be a real key with a typo.
        raise WeakKeyError(f"the secret key is neither hex nor base64: {_KEY_HELP}")
    if len(key) != KEY_BYTES:
        raise WeakKeyError(f"the secret key has {len(key)} bytes, not {KEY_BYTES}: {_KEY_HELP}")
    distinct = len(set(key))
    if distinct < MIN_DISTINCT_KEY_BYTES:
        raise WeakKeyError(
            f"the secret key has only {distinct} distinct byte values, so it was not generated "
            f"randomly: {_KEY_HELP}"
        )
    return key


def key_strength_ok(text: str) -> bool:
    """True when ``key_from_text`` accepts ``text``."""
    try:
        key_from_text(text)
    except WeakKeyError:
        return False
    return True


def _decode_base64(value: str) -> bytes | None:
    alphabet = b"-_" if ("-" in value or "_" in value) else b"+/"
    padded = value + "=" * (-len(value) % 4)  # accept base64 with its padding stripped
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        return None
