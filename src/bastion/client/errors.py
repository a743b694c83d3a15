"""Errors of the client SDK. Every failure of a call surfaces as one of these::

    ClientError                 status: the HTTP status, 0 when no response came back
    ├── ServerURLError          the server URL or TLS settings are unusable (a usage error)
    ├── UnreachableError        no answer: connection refused, DNS, TLS handshake, timeout
    │   └── RetriesExhaustedError   a retried call kept failing until it gave up
    ├── UnauthorizedError       401: the token is unknown, expired or revoked
    └── LeaseLostError          runner calls: this runner holds no live lease on the stage

httpx exceptions never escape: they are translated at the boundary (``raise ... from exc``)
into a ``ClientError`` whose message names the server URL, so the CLI can print it as is.
Messages never contain the token or a lease id.
"""

from __future__ import annotations


class ClientError(Exception):
    """A call failed. ``status`` is the HTTP status (0: no response), ``message`` says why:
    the server's own ``{"message": ...}`` for 4xx/5xx answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class ServerURLError(ClientError):
    """The server URL is malformed, or plain HTTP to a host that is not loopback was asked
    for without ``insecure``; or the CA certificate cannot be read."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class UnreachableError(ClientError):
    """The server did not answer (connection refused, name not found, TLS failure, timeout)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(status, message)


class RetriesExhaustedError(UnreachableError):
    """A call retried on connection errors and 5xx answers until its time ran out.
    ``status`` is the last HTTP status seen (0 if the server never answered)."""


class UnauthorizedError(ClientError):
    """401: the token was refused."""


class LeaseLostError(ClientError):
    """The server says this runner does not hold a live lease on the stage (403, 404, 409 or
    410 on a stage call): the stage was given away, cancelled for good, or never ours."""
