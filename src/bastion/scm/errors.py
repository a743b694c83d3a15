"""Errors of the forge drivers, each carrying what the server needs to answer.

::

    ScmError
    ├── WebhookError   a delivery that must be refused: status_code 401 (signature) or 400
    │                  (malformed body, missing field) or 413 (body too large)
    ├── IgnoredEvent   a genuine delivery that starts no build (ping, issue, deletion, ...):
    │                  the server answers 204 with ``reason``
    └── ForgeError     a forge could not be asked (unreachable, 5xx, authentication refused,
                       git failed, file over the size limit); ``forge`` names which one

Messages never contain a secret, a token or a signature: they may end up in an HTTP answer,
a log line or an audit event.
"""

from __future__ import annotations


class ScmError(Exception):
    """Base class of every error raised by ``bastion.scm``."""


class WebhookError(ScmError):
    """The delivery is refused. ``status_code`` is the HTTP answer the server should give."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class IgnoredEvent(ScmError):  # noqa: N818 - the name says what happened, it is not a failure
    """The delivery is genuine (its signature was checked) but starts no build."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ForgeError(ScmError):
    """A forge (or the local git repository) could not answer. ``forge`` is ``github``,
    ``gitea``, ``gitlab`` or ``local``."""

    def __init__(self, forge: str, message: str) -> None:
        super().__init__(f"{forge}: {message}")
        self.forge = forge
        self.message = message
