"""Runner authentication and the lease check.

``require_runner``: ``Authorization: Bearer <runner token>`` (never a query parameter: runner
tokens must not end up in access logs), hashed and looked up; unknown or revoked → 401.
``require_lease``: the runner token as above and the stage's live lease, presented in
``X-Bastion-Lease``, checked together by ``store.authorize_lease`` (hash compared in constant
time; the stage must be running, leased to this runner, the lease not lapsed). Every failure
is the same 409 with the same message, so a runner asking about another runner's stage learns
neither its details nor why it was refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from bastion.crypto import hash_token
from bastion.rpc.messages import LEASE_HEADER
from bastion.server.context import ServerContext, get_ctx
from bastion.server.errors import Conflict, Unauthorized
from bastion.store.types import Runner, Stage

_MAX_TOKEN_CHARS = 512


async def _rpc_ctx(request: Request) -> ServerContext:
    # ``get_ctx`` as an async dependency: FastAPI runs a sync one in a worker thread, a
    # hand-off per request that the runner calls (the server's hottest path) need not pay.
    return get_ctx(request)


CtxDep = Annotated[ServerContext, Depends(_rpc_ctx)]


async def runner_token(request: Request) -> str:
    """The hash of the runner token presented (401 when there is none, or it is malformed).
    Not checked here: ``require_runner`` and ``require_lease``, which every runner endpoint
    depends on, look it up in the store and answer 401 for an unknown or revoked one."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or len(value) > _MAX_TOKEN_CHARS:
        raise Unauthorized("runner calls need Authorization: Bearer <runner token>")
    return hash_token(value.strip())


runner_token.bastion_auth = "runner"  # type: ignore[attr-defined]

RunnerTokenDep = Annotated[str, Depends(runner_token)]


def require_runner(token_hash: RunnerTokenDep, ctx: CtxDep) -> Runner:
    runner = ctx.store.find_runner_by_token(token_hash)
    if runner is None:
        raise Unauthorized("unknown or revoked runner token")
    return runner


require_runner.bastion_auth = "runner"  # type: ignore[attr-defined]

RunnerDep = Annotated[Runner, Depends(require_runner)]


@dataclass(frozen=True)
class LeasedStage:
    runner: Runner
    stage: Stage


def require_lease(
    stage_id: int, request: Request, token_hash: RunnerTokenDep, ctx: CtxDep
) -> LeasedStage:
    # The runner and its lease in one read (``store.authorize_lease``): this check runs for
    # every stage call, so it is worth one transaction rather than two.
    lease = request.headers.get(LEASE_HEADER, "")
    if not lease or len(lease) > _MAX_TOKEN_CHARS:
        lease = ""  # still look the runner up: a bad token is 401 whatever the lease
    runner, stage = ctx.store.authorize_lease(token_hash, stage_id, hash_token(lease))
    if runner is None:
        raise Unauthorized("unknown or revoked runner token")
    if stage is None or not lease:
        raise Conflict(f"stage {stage_id}: this runner holds no live lease on it")
    return LeasedStage(runner, stage)


require_lease.bastion_auth = "lease"  # type: ignore[attr-defined]

LeaseDep = Annotated[LeasedStage, Depends(require_lease)]
