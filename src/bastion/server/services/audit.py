"""``AuditLog``: the one way server code records an audit event (``ctx.audit``).

Kinds are dotted names, the first part naming the subject: ``secret.created``,
``secret.delivered``, ``secret.rekey``, ``credential.detected``, ``build.approved``,
``auth.lockout``... Events carry names and numbers, never a secret value: ``detail``
accepts only short scalars (and lists of them), and strings longer than ``MAX_DETAIL_TEXT``
are cut, so a value passed by mistake is at least not stored whole (callers must still never
pass one; the tests grep the table for values).

Failure policy. ``record`` never raises for a database failure: it logs the event's metadata
at ERROR on the ``bastion.audit`` logger (so the event survives in the server log) and returns.
An audit write failing must not turn a database hiccup into a failed log upload or a lost
build. ``require`` is the fail-closed variant, raising ``AuditUnavailableError``: for actions
whose whole point is to leave a trace and that can simply be retried, such as an admin's key
rotation, or a delivery of secrets a caller prefers to refuse rather than hand out unrecorded.
Invalid arguments (an empty or over-long kind, a non-scalar detail) are programming errors
and raise ``ValueError`` from both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence

from bastion.store.errors import StoreError
from bastion.store.repository import Store
from bastion.store.types import AuditEvent

log = logging.getLogger("bastion.audit")

MAX_DETAIL_TEXT = 500
MAX_DETAIL_ITEMS = 50
_Scalar = str | int | float | bool | None


class AuditUnavailableError(Exception):
    """The event could not be stored (``require`` only); the action should not proceed."""


class AuditLog:
    """Records audit events in the store (see the module docstring for the failure policy)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self,
        kind: str,
        *,
        actor: str = "",
        repo: str = "",
        build: int | None = None,
        stage: int | None = None,
        step: str = "",
        runner: str = "",
        secret: str = "",
        detail: Mapping[str, object] | None = None,
    ) -> None:
        """Store one event; a database failure is logged, never raised."""
        with contextlib.suppress(AuditUnavailableError):  # require logged it
            self.require(
                kind,
                actor=actor,
                repo=repo,
                build=build,
                stage=stage,
                step=step,
                runner=runner,
                secret=secret,
                detail=detail,
            )

    def require(
        self,
        kind: str,
        *,
        actor: str = "",
        repo: str = "",
        build: int | None = None,
        stage: int | None = None,
        step: str = "",
        runner: str = "",
        secret: str = "",
        detail: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        """Store one event and return it; ``AuditUnavailableError`` when the database fails."""
        clean = clean_detail(detail)
        try:
            return self._store.add_audit_event(
                kind,
                actor=actor,
                repo=repo,
                build=build,
                stage=stage,
                step=step,
                runner=runner,
                secret=secret,
                detail=clean,
            )
        except StoreError as exc:
            # The event in the server log instead: metadata only, like the table.
            log.error(
                "audit event not stored (%s): kind=%s actor=%s repo=%s build=%s stage=%s "
                "step=%s runner=%s secret=%s detail=%s",
                exc,
                kind,
                actor,
                repo,
                build,
                stage,
                step,
                runner,
                secret,
                clean,
            )
            raise AuditUnavailableError(f"the audit log cannot be written: {exc}") from exc


def clean_detail(detail: Mapping[str, object] | None) -> dict[str, object]:
    """``detail`` as JSON-ready metadata: string keys, scalar values or short lists of them,
    long strings cut. Raises ``ValueError`` for anything else (a nested structure is where a
    whole secret document could slip in)."""
    if not detail:
        return {}
    if len(detail) > MAX_DETAIL_ITEMS:
        raise ValueError(f"audit detail has {len(detail)} entries; at most {MAX_DETAIL_ITEMS}")
    clean: dict[str, object] = {}
    for key, value in detail.items():
        if not isinstance(key, str) or not key:
            raise ValueError("audit detail keys must be non-empty strings")
        if isinstance(value, _Scalar):
            clean[key] = _short(value)
        elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
            items = list(value)[:MAX_DETAIL_ITEMS]
            if not all(isinstance(item, _Scalar) for item in items):
                raise ValueError(f"audit detail {key!r} must hold scalars only")
            clean[key] = [_short(item) for item in items]
        else:
            raise ValueError(
                f"audit detail {key!r} must be a string, number, boolean, null or a list of them"
            )
    return clean


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT:
        return value[:MAX_DETAIL_TEXT] + "…"
    return value
