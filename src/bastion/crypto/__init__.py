"""Cryptographic helpers: token generation and hashing, constant-time comparison, AES-256-GCM
encryption of secrets at rest, HMAC request signatures.

Imports no other Bastion package. Everything here is built on the standard library
(``secrets``, ``hashlib``, ``hmac``) and ``cryptography``'s AEAD; no primitive is hand-written.
"""

from __future__ import annotations

from bastion.crypto.secretbox import (
    DecryptError,
    SecretBox,
    WeakKeyError,
    key_from_text,
    key_strength_ok,
)
from bastion.crypto.signing import hmac_sign, hmac_verify
from bastion.crypto.tokens import hash_token, new_secret, new_token, tokens_equal

__all__ = [
    "DecryptError",
    "SecretBox",
    "WeakKeyError",
    "hash_token",
    "hmac_sign",
    "hmac_verify",
    "key_from_text",
    "key_strength_ok",
    "new_secret",
    "new_token",
    "tokens_equal",
]
