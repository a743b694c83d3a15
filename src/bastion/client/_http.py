"""What the REST client and the runner client share: the server URL rule, TLS, error mapping.

**Plain HTTP only to loopback.** A token sent over plain HTTP can be read by anyone on the
path, so ``http://`` is accepted only for 127.0.0.0/8, ``::1`` and ``localhost`` unless the
caller says ``insecure`` (``--insecure`` / ``BASTION_INSECURE=true``). ``insecure`` never
turns TLS certificate checks off: a private CA is given with ``BASTION_CA_CERT``.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from urllib.parse import quote, urlsplit

import httpx

from bastion import __version__
from bastion.client.errors import (
    ClientError,
    ServerURLError,
    UnauthorizedError,
    UnreachableError,
)

USER_AGENT = f"bastion/{__version__}"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_MAX_ERROR_TEXT = 500


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_url(url: str, *, insecure: bool = False) -> str:
    """The server's base URL without a trailing slash, or ``ServerURLError`` saying why not."""
    raw = url.strip()
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ServerURLError(f"server URL {raw!r} is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ServerURLError(
            f"server URL {raw!r} is not valid: write it as https://HOST[:PORT] "
            "(or http://127.0.0.1:PORT for a server on this machine)"
        )
    if parts.username or parts.password:
        raise ServerURLError(
            f"server URL for {host}: credentials do not belong in the URL; use a token "
            "(BASTION_TOKEN)"
        )
    if parts.query or parts.fragment:
        raise ServerURLError(f"server URL {raw!r}: remove the query string or fragment")
    if parts.scheme == "http" and not insecure and not is_loopback(host):
        raise ServerURLError(
            f"server URL {raw!r} uses plain HTTP to {host}, which is not this machine: the "
            "token would cross the network unencrypted. Use https://, or pass --insecure "
            "(BASTION_INSECURE=true) if the network path is protected some other way"
        )
    return raw.rstrip("/")


def tls_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for a bool or the path of a CA bundle (a private CA)."""
    if isinstance(verify, bool):
        return verify
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise ServerURLError(f"CA certificate {verify}: cannot be used ({exc})") from None


def segment(value: str | int) -> str:
    """One URL path segment: owner, name, login or number, never able to add a ``/``."""
    return quote(str(value), safe="")


def error_message(response: httpx.Response) -> str:
    """The server's explanation: ``{"message": ...}``, FastAPI's ``{"detail": ...}``, or the
    start of the body, or the status phrase."""
    text = ""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        message = body.get("message")
        detail = body.get("detail")
        if isinstance(message, str) and message:
            text = message
        elif isinstance(detail, str) and detail:
            text = detail
        elif isinstance(detail, list):
            text = "; ".join(_validation_item(item) for item in detail)
    if not text:
        try:
            text = response.text.strip()[:_MAX_ERROR_TEXT]
        except (UnicodeDecodeError, httpx.ResponseNotRead):
            text = ""
    return text or response.reason_phrase or f"HTTP {response.status_code}"


def _validation_item(item: object) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
    message = str(item.get("msg", "invalid"))
    return f"{where}: {message}" if where else message


def raise_for_status(response: httpx.Response) -> None:
    """``ClientError`` (``UnauthorizedError`` for 401) for any status from 400 up, and for
    redirects, which are not followed (the token must not travel to another URL)."""
    if 300 <= response.status_code < 400:
        where = response.headers.get("location", "another URL")
        raise ClientError(
            response.status_code,
            f"the server redirects {response.request.url.path} to {where}; "
            "check the server URL (BASTION_SERVER)",
        )
    if response.status_code < 400:
        return
    message = error_message(response)
    if response.status_code == 401:
        raise UnauthorizedError(401, f"{message} (check the token: BASTION_TOKEN)")
    raise ClientError(response.status_code, message)


def unreachable(server: str, exc: httpx.TransportError) -> UnreachableError:
    """An ``UnreachableError`` naming the server and, for TLS failures, what to do."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return UnreachableError(f"server {server} did not answer in time ({reason})")
    if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason:
        return UnreachableError(
            f"cannot connect to {server}: its TLS certificate is not trusted ({reason}); "
            "for a private CA set BASTION_CA_CERT to the CA's certificate file"
        )
    return UnreachableError(f"cannot connect to {server}: {reason}")
