"""Runners (administrators): list, register (the token is shown once), revoke.

A runner's token is its only credential on the RPC channel and is stored hashed; revoking a
runner stops its token at once (its stages end when their leases lapse).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from bastion.crypto import hash_token, new_token
from bastion.rpc.api import RunnerCreate, RunnerCreated, RunnerOut
from bastion.server.auth import AdminDep, CtxDep
from bastion.server.views import runner_out

log = logging.getLogger("bastion.server")

router = APIRouter(tags=["runners"])


@router.get("/api/runners")
def list_runners(_admin: AdminDep, ctx: CtxDep) -> list[RunnerOut]:
    return [runner_out(r) for r in ctx.store.list_runners()]


@router.post("/api/runners")
def create_runner(body: RunnerCreate, admin: AdminDep, ctx: CtxDep) -> RunnerCreated:
    token = new_token("runner")
    runner = ctx.store.create_runner(body.name, hash_token(token))
    log.info("runner %s registered by %s", runner.name, admin.user.login)
    return RunnerCreated(**runner_out(runner).model_dump(), token=token)


@router.delete("/api/runners/{name}", status_code=204)
def revoke_runner(name: str, admin: AdminDep, ctx: CtxDep) -> Response:
    ctx.store.revoke_runner(name)
    log.info("runner %s revoked by %s", name, admin.user.login)
    return Response(status_code=204)
