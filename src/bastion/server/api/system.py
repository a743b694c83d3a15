"""``/healthz`` and ``/version``: the only routes anonymous callers may use.

``/healthz`` answers 200 ``ok`` when the database answers, 503 otherwise; neither says more
than that (no versions of dependencies, no paths).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from bastion import __version__
from bastion.rpc.api import VersionOut
from bastion.rpc.messages import PROTOCOL_VERSION
from bastion.server.auth import CtxDep

router = APIRouter(tags=["system"])


@router.get("/healthz", response_class=PlainTextResponse)
def healthz(ctx: CtxDep) -> PlainTextResponse:
    if not ctx.store.ping():
        return PlainTextResponse("database unavailable", status_code=503)
    return PlainTextResponse("ok")


@router.get("/version")
def version() -> VersionOut:
    return VersionOut(version=__version__, protocol=PROTOCOL_VERSION)
