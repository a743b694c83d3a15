"""``POST /api/admin/rekey``: re-encrypt secrets at rest under the current database key
(system administrators only; ``bastion secret rekey``).

Only the running server holds the keys, so the rotation is asked of it rather than done by the
CLI against the database. The run is synchronous (a CI server holds thousands of encrypted
values, not millions: seconds of work) and audited (``bastion.server.services.rekey``). The
answer holds counts and key ids, never a value. 409 while another run is in progress, 503 when
the audit log cannot be written (then nothing was re-encrypted) or the database fails during
the run (the batches committed stay done; running again finishes).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter

from bastion.rpc.api import RekeyOut, RekeyRequest
from bastion.server.auth import AdminDep, CtxDep
from bastion.server.errors import Conflict, Unavailable
from bastion.server.services.audit import AuditUnavailableError
from bastion.server.services.rekey import RekeyBusyError
from bastion.store.errors import StoreError
from bastion.store.types import RekeyReport

log = logging.getLogger("bastion.server")

router = APIRouter(tags=["admin"])


@router.post("/api/admin/rekey")
def rekey(admin: AdminDep, ctx: CtxDep, body: RekeyRequest | None = None) -> RekeyOut:
    request = body or RekeyRequest()
    try:
        report = ctx.rekey.run(
            admin.user.login, dry_run=request.dry_run, batch_size=request.batch_size
        )
    except RekeyBusyError as exc:
        raise Conflict(str(exc)) from None
    except AuditUnavailableError as exc:
        raise Unavailable(f"{exc}; nothing was re-encrypted") from None
    except StoreError as exc:
        # Batches already committed stay done; every value is readable with a configured key.
        raise Unavailable(
            f"the rekey stopped: {exc}; nothing is lost, run it again to finish"
        ) from None
    if not report.dry_run:
        log.info(
            "rekey by %s: %d re-encrypted, %d undecryptable, key id %s",
            admin.user.login,
            report.total_rekeyed,
            report.total_failed,
            report.current_key_id,
        )
    return rekey_out(report)


def rekey_out(report: RekeyReport) -> RekeyOut:
    return RekeyOut(
        current_key_id=report.current_key_id,
        dry_run=report.dry_run,
        keys=report.keys,
        rekeyed=report.rekeyed,
        failed=report.failed,
        batches=report.batches,
        total_rekeyed=report.total_rekeyed,
        total_failed=report.total_failed,
        remaining=report.remaining,
    )
