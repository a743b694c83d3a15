"""HMAC-SHA256 signatures of request bodies, for requests between Bastion's own processes.

The signature is hex so it fits an HTTP header; verification compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

MIN_KEY_BYTES = 16


def hmac_sign(key: bytes, body: bytes) -> str:
    """The HMAC-SHA256 of ``body`` under ``key``, as 64 lowercase hex characters."""
    if len(key) < MIN_KEY_BYTES:
        # An empty or short key makes the signature forgeable; refuse rather than sign.
        raise ValueError(f"an HMAC key needs at least {MIN_KEY_BYTES} bytes, not {len(key)}")
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def hmac_verify(key: bytes, body: bytes, signature: str) -> bool:
    """True when ``signature`` is ``hmac_sign(key, body)``; compared in constant time."""
    expected = hmac_sign(key, body)
    # Encoded first: compare_digest refuses non-ASCII str, and a forged header may contain any.
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))
