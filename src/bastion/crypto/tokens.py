"""Random tokens and their storage form: API tokens, runner tokens, lease ids, webhook secrets.

A token is shown to its owner once and only its hash is stored (``hash_token``); requests are
authenticated by hashing the presented token and looking the hash up, and any comparison of
secret strings goes through ``tokens_equal`` so that its timing says nothing about how many
leading characters matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "bst_"  # noqa: S105 - a public marker, not a secret
TOKEN_BYTES = 32  # 256 bits of randomness
MIN_SECRET_BYTES = 16  # 128 bits: below this a secret is guessable offline

_KIND = re.compile(r"^[a-z][a-z0-9]{0,15}$")


def new_token(kind: str) -> str:
    """A new random token: ``bst_<kind>_<43 URL-safe characters>`` (256 random bits).

    The prefix tells a leaked token's kind at a glance and lets secret scanners find it;
    ``kind`` is a short lowercase word such as ``api``, ``runner`` or ``lease``.
    """
    if not _KIND.match(kind):
        raise ValueError(
            f"token kind {kind!r} must be 1 to 16 lowercase letters or digits, starting with "
            "a letter"
        )
    return f"{TOKEN_PREFIX}{kind}_{secrets.token_urlsafe(TOKEN_BYTES)}"


def hash_token(token: str) -> str:
    """The form a token is stored in: SHA-256, as 64 lowercase hex characters.

    A fast, unsalted hash is right here, unlike for passwords: our tokens carry 256 random
    bits, so there is no dictionary to try and brute force needs 2**256 guesses whatever the
    hash costs, and salting would only prevent the lookup by hash that authentication needs.
    A slow hash (bcrypt, scrypt) would add tens of milliseconds to every API request for no
    security gain. Never use this for human-chosen secrets.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    """Compare two secret strings in constant time (for their length).

    ``==`` stops at the first differing character, which lets an attacker who can time
    responses find a secret one character at a time; ``hmac.compare_digest`` does not.
    """
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret of ``nbytes`` random bytes (for example a webhook secret)."""
    if nbytes < MIN_SECRET_BYTES:
        raise ValueError(f"a secret needs at least {MIN_SECRET_BYTES} random bytes, not {nbytes}")
    return secrets.token_urlsafe(nbytes)
