"""``GET /api/audit``: the audit events, for system administrators only.

Filters: ``kind`` (a prefix of the dotted kind: ``secret.`` is every secret event), ``repo``
(``owner/name``), ``build`` (number), ``secret`` (name), ``since`` / ``until`` (Unix seconds,
``until`` excluded). Newest first, ``limit`` per page (at most 1000); the next page is asked
with ``before`` = the id of the last event received, which stays right while new events
arrive (an offset would shift).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bastion.rpc.api import AuditEventOut
from bastion.server.auth import AdminDep, CtxDep
from bastion.server.errors import BadRequest
from bastion.store.audit_store import MAX_AUDIT_PAGE
from bastion.store.types import AuditEvent, AuditQuery

router = APIRouter(tags=["audit"])


@router.get("/api/audit")
def list_audit(
    _admin: AdminDep,
    ctx: CtxDep,
    kind: Annotated[str, Query(max_length=64)] = "",
    repo: Annotated[str, Query(max_length=511)] = "",
    build: Annotated[int | None, Query(ge=1)] = None,
    secret: Annotated[str, Query(max_length=255)] = "",
    since: Annotated[int | None, Query(ge=0)] = None,
    until: Annotated[int | None, Query(ge=0)] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
) -> list[AuditEventOut]:
    if since is not None and until is not None and until <= since:
        raise BadRequest(f"query parameter until ({until}) must be after since ({since})")
    query = AuditQuery(
        kind=kind,
        repo=repo,
        build=build,
        secret=secret,
        since=since,
        until=until,
        before_id=before,
        limit=limit,
    )
    return [audit_event_out(e) for e in ctx.store.list_audit_events(query)]


def audit_event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.id,
        created=event.created,
        kind=event.kind,
        actor=event.actor,
        repo=event.repo,
        build=event.build,
        stage=event.stage,
        step=event.step,
        runner=event.runner,
        secret=event.secret,
        detail=dict(event.detail),
    )
