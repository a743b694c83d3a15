"""Encryption of secrets at rest: AES-256-GCM with a per-value random nonce, a binding to the
value's owner, and a key id so that keys can be rotated.

Blob layouts::

    format 2 (written):  0x02 | key id (4 bytes) | nonce (12 bytes) | ciphertext | GCM tag (16)
    format 1 (read):     0x01 | nonce (12 bytes) | ciphertext | GCM tag (16)

The associated data (AAD) passed by the caller names the owner of the value, for example
``repo:42:docker_password``. GCM authenticates it without storing it, so a ciphertext copied to
another repository or another secret name (by someone with write access to the database) fails
to decrypt instead of handing one repository's secret to another's pipeline. The header
(version byte, and key id in format 2) is authenticated too: neither can be changed unnoticed.

Key rotation: a ``SecretBox`` holds the current key and any previous keys. It always encrypts
with the current key; it decrypts a format-2 blob with the key whose id the blob names, and a
format-1 blob (no id) by trying the current key and then each previous key. The key id is the
first 4 bytes of SHA-256 over a domain prefix and the key: enough to pick the key among a
handful, and saying nothing usable about the key itself. ``needs_rekey`` and ``rekey`` let the
store move old values to the current key (``bastion secret rekey``).

A random 96-bit nonce per encryption is safe for far more values than a CI server stores
(NIST's limit for random GCM nonces is 2**32 messages per key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = 2
VERSION_1 = 1
KEY_ID_BYTES = 4
_KEY_ID_DOMAIN = b"bastion secretbox key id\x00"
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
    """Authenticated encryption of small values with a current 32-byte key, and decryption
    with it or with previous keys (see the module docstring)."""

    __slots__ = ("_current", "_current_id", "_keys")

    def __init__(self, key: bytes, previous: Iterable[bytes] = ()) -> None:
        keys = [key, *previous]
        for each in keys:
            if len(each) != KEY_BYTES:
                raise WeakKeyError(
                    f"AES-256-GCM needs a {KEY_BYTES}-byte key, not {len(each)} bytes"
                )
        self._current = AESGCM(key)
        self._current_id = key_id(key)
        # (id, cipher) in order: current first, then previous keys as given, duplicates once.
        seen: set[bytes] = set()
        self._keys: list[tuple[bytes, AESGCM]] = []
        for each in keys:
            if each not in seen:
                seen.add(each)
                self._keys.append((key_id(each), AESGCM(each)))

    def __repr__(self) -> str:
        return f"SecretBox(<{len(self._keys)} key(s) hidden>, current id {self.key_id})"

    @property
    def key_id(self) -> str:
        """The id of the current key, in hex (8 characters)."""
        return self._current_id.hex()

    @property
    def key_ids(self) -> list[str]:
        """The ids of every key held, current first (hex)."""
        return [kid.hex() for kid, _ in self._keys]

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` for the owner named by ``aad`` under the current key (format
        2); a fresh nonce every call."""
        nonce = os.urandom(NONCE_BYTES)
        header = bytes([VERSION]) + self._current_id
        return header + nonce + self._current.encrypt(nonce, plaintext, header + aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of ``blob``, which must have been encrypted with one of this box's
        keys and the same ``aad``; otherwise ``DecryptError``."""
        header, nonce, sealed, candidates = self._parse(blob)
        for cipher in candidates:
            try:
                return cipher.decrypt(nonce, sealed, header + aad)
            except InvalidTag:
                continue
        raise DecryptError(
            "encrypted value does not decrypt: wrong key, tampered data, or a value that "
            "belongs to another owner"
        )

    def needs_rekey(self, blob: bytes) -> bool:
        """True unless ``blob`` is in format 2 under the current key (no decryption)."""
        return blob_key_id(blob) != self.key_id

    def rekey(self, blob: bytes, aad: bytes) -> bytes | None:
        """``blob`` re-encrypted under the current key, or None when it already is.
        ``DecryptError`` when no key held decrypts it."""
        if not self.needs_rekey(blob):
            return None
        return self.encrypt(self.decrypt(blob, aad), aad)

    def _parse(self, blob: bytes) -> tuple[bytes, bytes, bytes, list[AESGCM]]:
        if not blob:
            raise DecryptError("encrypted value is truncated")
        if blob[0] == VERSION:
            size = 1 + KEY_ID_BYTES
            if len(blob) < size + NONCE_BYTES + TAG_BYTES:
                raise DecryptError("encrypted value is truncated")
            kid = blob[1:size]
            candidates = [cipher for each, cipher in self._keys if each == kid]
            if not candidates:
                raise DecryptError(
                    f"encrypted value is under key id {kid.hex()}, which this server does not "
                    "hold: wrong key, or a previous key that is not configured"
                )
        elif blob[0] == VERSION_1:
            size = 1
            if len(blob) < size + NONCE_BYTES + TAG_BYTES:
                raise DecryptError("encrypted value is truncated")
            candidates = [cipher for _, cipher in self._keys]
        else:
            raise DecryptError(f"encrypted value has unknown format version {blob[0]}")
        header = blob[:size]
        return header, blob[size : size + NONCE_BYTES], blob[size + NONCE_BYTES :], candidates


def key_id(key: bytes) -> bytes:
    """The 4-byte id of ``key`` stored in format-2 blobs."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).digest()[:KEY_ID_BYTES]


def blob_key_id(blob: bytes) -> str | None:
    """The hex id of the key a format-2 blob names; None for format 1 (or anything else)."""
    if len(blob) >= 1 + KEY_ID_BYTES and blob[0] == VERSION:
        return blob[1 : 1 + KEY_ID_BYTES].hex()
    return None


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
