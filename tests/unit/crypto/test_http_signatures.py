"""HTTP Signatures as Drone's extensions use them: the signer's format, and a verifier that
refuses a wrong key, an altered header or body, a stale date and a replayed request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from email.utils import formatdate

import pytest

from bastion.crypto.http_signatures import (
    DRONE_SIGNED_HEADERS,
    NONCE_HEADER,
    SIGNED_HEADERS,
    ReplayCache,
    RequestVerifier,
    SignatureError,
    body_digest,
    sign_request,
)

KEY = b"7f3c0c1e9b8a4d2f6e5a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e"
BODY = b'{"path":"secret/docker","name":"password"}'
NOW = 1_764_000_000.0


def verifier(**kwargs: object) -> RequestVerifier:
    return RequestVerifier(KEY, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def signed(body: bytes = BODY, **kwargs: object) -> dict[str, str]:
    return sign_request(KEY, body, now=NOW, **kwargs)  # type: ignore[arg-type]


def resign(headers: dict[str, str], names: tuple[str, ...]) -> None:
    """Sign ``headers`` again over ``names`` with the right key (what a client with another
    header set, or one that signs garbage, would send)."""
    lines = "\n".join(f"{n}: {headers[n]}" for n in names).encode()
    sig = base64.b64encode(hmac.new(KEY, lines, hashlib.sha256).digest()).decode()
    headers["signature"] = (
        f'keyId="hmac-key",algorithm="hmac-sha256",headers="{" ".join(names)}",signature="{sig}"'
    )


def test_drone_known_answer() -> None:
    # A request signed by Drone's own signer (published as a test fixture of a Drone
    # extension): key "webhook-secret", headers "date digest". The verifier accepts its
    # signature; the body is not published, so the digest check is what refuses it.
    headers = {
        "Signature": 'keyId="hmac-key",algorithm="hmac-sha256",'
        'signature="nMQOWQSyloFPh3ZB8Uoh/D9QyzCtnVf0tk/jemJm058=",headers="date digest"',
        "Date": "Fri, 12 Nov 2021 23:33:47 GMT",
        "Digest": "SHA-256=kCit1zUa+1aDpnZhDSBCa0iVYPTeF6k2jCjHwE2lnQY=",
    }
    check = RequestVerifier(b"webhook-secret", require_nonce=False, clock=lambda: 1636760027.0)
    with pytest.raises(SignatureError, match="body does not match"):
        check.verify(headers, b"{}")
    headers["Date"] = "Fri, 12 Nov 2021 23:33:48 GMT"
    with pytest.raises(SignatureError, match="signature does not match"):
        check.verify(headers, b"{}")


def test_signature_format_is_drones_plus_a_nonce() -> None:
    headers = signed(nonce="n-1")
    assert headers["accept-encoding"] == "identity"
    assert headers["date"] == formatdate(NOW, usegmt=True)
    assert (
        headers["digest"] == "SHA-256=" + base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    )
    assert (*DRONE_SIGNED_HEADERS, NONCE_HEADER) == SIGNED_HEADERS
    lines = "\n".join(f"{name}: {headers[name]}" for name in SIGNED_HEADERS).encode()
    expected = base64.b64encode(hmac.new(KEY, lines, hashlib.sha256).digest()).decode()
    assert headers["signature"] == (
        'keyId="hmac-key",algorithm="hmac-sha256",'
        f'headers="{" ".join(SIGNED_HEADERS)}",signature="{expected}"'
    )


def test_a_fresh_request_is_accepted_once() -> None:
    check = verifier()
    headers = signed()
    check.verify(headers, BODY)
    with pytest.raises(SignatureError, match="replayed nonce"):
        check.verify(headers, BODY)


def test_header_names_are_case_insensitive_and_authorization_works() -> None:
    headers = {name.title(): value for name, value in signed().items()}
    headers["Authorization"] = "Signature " + headers.pop("Signature")
    verifier().verify(headers, BODY)


def test_each_request_gets_its_own_nonce() -> None:
    assert signed()[NONCE_HEADER] != signed()[NONCE_HEADER]


def test_wrong_key_is_refused() -> None:
    other = sign_request(b"another key of some length entirely", BODY, now=NOW)
    with pytest.raises(SignatureError, match="signature does not match"):
        verifier().verify(other, BODY)


def test_tampered_body_is_refused() -> None:
    with pytest.raises(SignatureError, match="altered body"):
        verifier().verify(signed(), BODY.replace(b"docker", b"prod"))


def test_tampered_body_with_a_matching_digest_is_refused() -> None:
    headers = signed()
    forged = BODY.replace(b"docker", b"prod")
    headers["digest"] = body_digest(forged)
    with pytest.raises(SignatureError, match="signature does not match"):
        verifier().verify(headers, forged)


@pytest.mark.parametrize("name", SIGNED_HEADERS)
def test_any_altered_signed_header_is_refused(name: str) -> None:
    headers = signed()
    headers[name] = headers[name] + "x"
    with pytest.raises(SignatureError):
        verifier().verify(headers, BODY)


@pytest.mark.parametrize("offset", [-301.0, 301.0, -86_400.0])
def test_stale_or_future_dates_are_refused(offset: float) -> None:
    headers = sign_request(KEY, BODY, now=NOW + offset)
    with pytest.raises(SignatureError, match="stale or replayed"):
        verifier().verify(headers, BODY)


def test_a_date_inside_the_window_is_accepted() -> None:
    verifier().verify(sign_request(KEY, BODY, now=NOW - 299), BODY)


def test_replay_after_the_window_is_still_refused_by_the_date() -> None:
    moments = [NOW]
    check = RequestVerifier(KEY, clock=lambda: moments[0])
    headers = signed()
    check.verify(headers, BODY)
    moments[0] = NOW + 10_000  # the nonce may be forgotten by now; the date is not accepted
    with pytest.raises(SignatureError, match="stale"):
        check.verify(headers, BODY)


def test_a_request_without_a_nonce_is_refused_unless_drone_mode() -> None:
    headers = signed()
    names = " ".join(DRONE_SIGNED_HEADERS)
    lines = "\n".join(f"{n}: {headers[n]}" for n in DRONE_SIGNED_HEADERS).encode()
    sig = base64.b64encode(hmac.new(KEY, lines, hashlib.sha256).digest()).decode()
    headers["signature"] = (
        f'keyId="hmac-key",algorithm="hmac-sha256",headers="{names}",signature="{sig}"'
    )
    del headers[NONCE_HEADER]
    with pytest.raises(SignatureError, match="does not cover x-bastion-nonce"):
        verifier().verify(headers, BODY)
    verifier(require_nonce=False).verify(headers, BODY)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.pop("signature"), "not signed"),
        (lambda h: h.update(signature='keyId="hmac-key"'), "no signature parameter"),
        (
            lambda h: h.update(signature=h["signature"].replace("hmac-sha256", "hmac-sha1")),
            "algorithm",
        ),
        (
            lambda h: h.update(signature=h["signature"].replace(" digest ", " ")),
            "does not cover digest",
        ),
        (lambda h: h.update(signature=h["signature"][:-3] + '!!"'), "not base64"),
        (lambda h: h.pop("digest"), "'digest' is missing"),
        (lambda h: h.update(date="yesterday"), "signature does not match"),
    ],
)
def test_malformed_requests_are_refused(mutate: object, message: str) -> None:
    headers = signed()
    mutate(headers)  # type: ignore[operator]
    with pytest.raises(SignatureError, match=message):
        verifier().verify(headers, BODY)


def test_an_unparseable_date_is_refused_even_when_signed() -> None:
    headers = signed()
    headers["date"] = "not a date"
    resign(headers, SIGNED_HEADERS)
    with pytest.raises(SignatureError, match="not an HTTP date"):
        verifier().verify(headers, BODY)


def test_request_target_is_refused_rather_than_guessed() -> None:
    headers = signed()
    headers["signature"] = headers["signature"].replace('headers="', 'headers="(request-target) ')
    with pytest.raises(SignatureError, match="request-target"):
        verifier().verify(headers, BODY)


def test_empty_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty key"):
        sign_request(b"", BODY)
    with pytest.raises(ValueError, match="non-empty key"):
        RequestVerifier(b"")


def test_replay_cache_is_safe_under_concurrency() -> None:
    # Many threads present the same request at once: exactly one is accepted.
    check = verifier()
    headers = signed()
    accepted: list[int] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            check.verify(headers, BODY)
        except SignatureError:
            return
        accepted.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted == [1]


def test_replay_cache_forgets_expired_nonces_only() -> None:
    cache = ReplayCache()
    assert cache.add("a", keep_until=10.0, now=0.0)
    assert not cache.add("a", keep_until=10.0, now=5.0)
    assert cache.add("a", keep_until=30.0, now=11.0)
