"""``KeyRotation``: one ``bastion secret rekey`` run at a time, audited (``ctx.rekey``).

The work itself is ``Store.rekey_encrypted`` (``bastion.store.encrypted``). This service adds
what belongs to the server: a run is refused while another is in progress in this server (two
runs would be correct, thanks to the compare-and-set, but would only compete), and every run
leaves audit events. A real run starts by writing ``secret.rekey.started`` with
``AuditLog.require``: if the audit log cannot be written, nothing is re-encrypted (an admin
action on every secret must not happen unrecorded, and it can simply be retried). The outcome
is then ``secret.rekey`` with the counts, or ``secret.rekey.interrupted`` with the error's
type; a dry run leaves ``secret.rekey.dry_run``. Events hold counts and key ids only.
"""

from __future__ import annotations

import threading

from bastion.server.services.audit import AuditLog
from bastion.store.repository import Store
from bastion.store.types import RekeyReport


class RekeyBusyError(Exception):
    """Another rekey run is in progress in this server."""


class KeyRotation:
    def __init__(self, store: Store, audit: AuditLog) -> None:
        self._store = store
        self._audit = audit
        self._running = threading.Lock()

    def run(self, actor: str, *, dry_run: bool = False, batch_size: int = 200) -> RekeyReport:
        """Census (``dry_run``) or re-encryption of every encrypted column; raises
        ``RekeyBusyError``, ``AuditUnavailableError`` (nothing done) or the store's error."""
        if not self._running.acquire(blocking=False):
            raise RekeyBusyError("a rekey is already running on this server; try again later")
        try:
            if dry_run:
                report = self._store.rekey_encrypted(dry_run=True, batch_size=batch_size)
                self._audit.record("secret.rekey.dry_run", actor=actor, detail=summary(report))
                return report
            key_id = self._store.current_key_id
            self._audit.require("secret.rekey.started", actor=actor, detail={"key_id": key_id})
            try:
                report = self._store.rekey_encrypted(batch_size=batch_size)
            except Exception as exc:
                self._audit.record(
                    "secret.rekey.interrupted",
                    actor=actor,
                    detail={"key_id": key_id, "error": type(exc).__name__},
                )
                raise
            self._audit.record("secret.rekey", actor=actor, detail=summary(report))
            return report
        finally:
            self._running.release()


def summary(report: RekeyReport) -> dict[str, object]:
    """The audit detail of a run: key ids and counts, never values."""
    return {
        "key_id": report.current_key_id,
        "rekeyed": report.total_rekeyed,
        "failed": report.total_failed,
        "remaining_before": report.remaining,
        "batches": report.batches,
        "columns": [
            f"{column} {kid}={n}"
            for column, per_key in sorted(report.keys.items())
            for kid, n in per_key.items()
        ],
    }
