"""HTTP Signatures (draft-cavage, ``hmac-sha256``) as Drone's extensions use them, with
replay protection: a signer for requests Bastion sends, a verifier for whoever receives them.

Drone signs each extension request with a shared token: the headers ``accept``,
``accept-encoding``, ``content-type``, ``date`` and ``digest`` (``SHA-256=`` and the base64
SHA-256 of the body) are joined as ``name: value`` lines, the HMAC-SHA256 of those lines
under the token's bytes is base64-encoded and sent in a ``Signature`` header with
``keyId="hmac-key"``. ``(request-target)`` is left out, as Drone does, because reverse
proxies rewrite it. Extension servers built on drone-go verify exactly that, so they accept
Bastion's requests unchanged.

On top, each request carries a random nonce in ``X-Bastion-Nonce``, covered by the
signature (a draft-cavage verifier checks every header the ``headers`` parameter lists, so
Drone's extensions accept the extra line). :class:`RequestVerifier` refuses a request whose
signature, digest, date (outside a skew window) or nonce (already seen within that window)
is wrong: a captured request cannot be replayed, and a request without a nonce is refused
unless the verifier is told to accept Drone's own, nonce-less requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import formatdate, parsedate_to_datetime

ALGORITHM = "hmac-sha256"
KEY_ID = "hmac-key"  # the key id Drone sends; it names no key, the token is shared
NONCE_HEADER = "x-bastion-nonce"
DRONE_SIGNED_HEADERS = ("accept", "accept-encoding", "content-type", "date", "digest")
SIGNED_HEADERS = (*DRONE_SIGNED_HEADERS, NONCE_HEADER)
DEFAULT_MAX_SKEW = 300.0  # seconds a Date may differ from the receiver's clock

_PARAM = re.compile(r'(\w+)="([^"]*)"')
_MAX_CACHE = 1_000_000  # nonces remembered at most; only validly signed requests add one


class SignatureError(ValueError):
    """A request is refused; the message says why (never the token or the signature)."""


def body_digest(body: bytes) -> str:
    """The ``Digest`` header of ``body``: ``SHA-256=`` and its base64 SHA-256."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def _signing_string(names: tuple[str, ...], headers: Mapping[str, str]) -> bytes:
    lines = []
    for name in names:
        value = headers.get(name)
        if value is None or value == "":
            raise SignatureError(f"the signed header {name!r} is missing")
        lines.append(f"{name}: {value}")
    return "\n".join(lines).encode("utf-8")


def _hmac(key: bytes, data: bytes) -> bytes:
    if not key:
        # An empty key makes every signature forgeable: refuse rather than sign or verify.
        raise ValueError("an HTTP signature needs a non-empty key")
    return hmac.new(key, data, hashlib.sha256).digest()


def sign_request(
    key: bytes,
    body: bytes,
    *,
    accept: str = "application/json",
    content_type: str = "application/json",
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a signed POST of ``body``: Accept, Accept-Encoding (``identity``: a
    plain reply), Content-Type, Date, Digest, the nonce and the Signature."""
    headers = {
        "accept": accept,
        "accept-encoding": "identity",
        "content-type": content_type,
        "date": formatdate(time.time() if now is None else now, usegmt=True),
        "digest": body_digest(body),
        NONCE_HEADER: nonce or secrets.token_urlsafe(24),
    }
    signature = base64.b64encode(_hmac(key, _signing_string(SIGNED_HEADERS, headers)))
    headers["signature"] = (
        f'keyId="{KEY_ID}",algorithm="{ALGORITHM}",'
        f'headers="{" ".join(SIGNED_HEADERS)}",signature="{signature.decode("ascii")}"'
    )
    return headers


class ReplayCache:
    """Nonces seen, each until the moment its request would be refused as stale anyway.
    Thread-safe; one per receiving process (a verifier shared by its request handlers)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, nonce: str, keep_until: float, now: float) -> bool:
        """Remember ``nonce``; False when it is already remembered (a replay)."""
        with self._lock:
            if len(self._seen) >= _MAX_CACHE // 2:
                self._seen = {n: t for n, t in self._seen.items() if t >= now}
                if len(self._seen) >= _MAX_CACHE:
                    # Refusing is safe (the sender retries later); forgetting is not.
                    raise SignatureError("too many recent requests to check for replays")
            expires = self._seen.get(nonce)
            if expires is not None and expires >= now:
                return False
            self._seen[nonce] = keep_until
            return True


class RequestVerifier:
    """Checks signed requests for one shared key.

    ``require_nonce`` (default) refuses requests without a signed nonce; turn it off only to
    accept Drone's own requests, which are then protected by the date window alone.
    ``clock`` returns Unix seconds (tests pass their own).

    A provider written in Python keeps one verifier for its lifetime (the replay cache is in
    it) and, for each request, calls ``verify(request_headers, raw_body)`` before it parses
    the body, answering 400 with the error's message on :class:`SignatureError`.
    """

    def __init__(
        self,
        key: bytes,
        *,
        max_skew: float = DEFAULT_MAX_SKEW,
        require_nonce: bool = True,
        clock: Callable[[], float] = time.time,
        cache: ReplayCache | None = None,
    ) -> None:
        if not key:
            raise ValueError("an HTTP signature verifier needs a non-empty key")
        if max_skew <= 0:
            raise ValueError("max_skew must be positive")
        self._key = key
        self._max_skew = max_skew
        self._require_nonce = require_nonce
        self._clock = clock
        self._cache = cache or ReplayCache()

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise :class:`SignatureError` unless the request (its headers, any case, and its
        raw body) is signed with the key, matches its digest, is recent and is new."""
        lowered = {name.lower(): value for name, value in headers.items()}
        params = _signature_params(lowered)
        if params.get("algorithm", "").lower() != ALGORITHM:
            raise SignatureError(f"the signature algorithm must be {ALGORITHM}")
        names = tuple(params.get("headers", "date").lower().split())
        required = {"date", "digest"} | ({NONCE_HEADER} if self._require_nonce else set())
        missing = sorted(required - set(names))
        if missing:
            raise SignatureError(f"the signature does not cover {', '.join(missing)}")
        if "(request-target)" in names:
            # Not supported (Drone leaves it out too): refusing beats guessing the target.
            raise SignatureError("signatures over (request-target) are not supported")
        try:
            given = base64.b64decode(params.get("signature", ""), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("the signature is not base64") from None
        expected = _hmac(self._key, _signing_string(names, lowered))
        if not hmac.compare_digest(given, expected):
            raise SignatureError("the signature does not match (wrong key or altered headers)")
        if not _digest_matches(lowered["digest"], body):
            raise SignatureError("the body does not match its Digest header (altered body)")
        now = self._clock()
        sent = _parse_date(lowered["date"])
        if abs(now - sent) > self._max_skew:
            raise SignatureError(
                f"the Date header is {abs(now - sent):.0f} s away from this clock (at most "
                f"{self._max_skew:.0f} s allowed): a stale or replayed request"
            )
        nonce = lowered.get(NONCE_HEADER)
        if (
            nonce
            and NONCE_HEADER in names
            and not self._cache.add(nonce, sent + self._max_skew, now)
        ):
            raise SignatureError("this request was already received (replayed nonce)")


def _signature_params(headers: Mapping[str, str]) -> dict[str, str]:
    raw = headers.get("signature")
    if raw is None:
        auth = headers.get("authorization", "")
        if auth[:10].lower() == "signature ":
            raw = auth[10:]
    if not raw:
        raise SignatureError("the request is not signed (no Signature header)")
    params = dict(_PARAM.findall(raw))
    if "signature" not in params:
        raise SignatureError("the Signature header has no signature parameter")
    return params


def _digest_matches(header: str, body: bytes) -> bool:
    expected = body_digest(body).encode("ascii")
    for part in header.split(","):
        algorithm, _, value = part.strip().partition("=")
        if algorithm.upper() == "SHA-256":
            return hmac.compare_digest(f"SHA-256={value}".encode(), expected)
    return False


def _parse_date(value: str) -> float:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise SignatureError("the Date header is not an HTTP date") from None
    if parsed.tzinfo is None:
        raise SignatureError("the Date header has no time zone")
    return parsed.timestamp()
