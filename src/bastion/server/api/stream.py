"""Server-sent events: build events (``/api/stream``) and live log lines of one step.

``GET /api/stream`` sends each build snapshot (Drone's shape: the repository with ``build``
set, as unnamed ``data:`` events) for the repositories the caller may read. The log stream
``GET /api/stream/{owner}/{name}/{build}/{stage}/{step}`` first replays the stored lines,
then sends new ones as they are stored (``event: line``, data ``{pos, out, time}``), and ends
with ``event: end`` once the step (or its stage) is done. It re-reads the store on every
wake-up and at least once a second, so it also follows lines stored by another server
process. Comments are sent every 15 s as keep-alive. Streams end when the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from bastion.server.api.builds import find_step
from bastion.server.auth import CtxDep, RepoRead, UserDep
from bastion.server.context import ServerContext
from bastion.server.identity.permissions import StreamAccess
from bastion.server.views import log_line_out

router = APIRouter(tags=["stream"])

PING_SECONDS = 15
_REREAD_SECONDS = 1.0


def _response(ctx: ServerContext, content: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(
        content,
        ping=PING_SECONDS,
        shutdown_event=ctx.shutdown_event,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/api/stream")
async def stream_builds(principal: UserDep, ctx: CtxDep, request: Request) -> EventSourceResponse:
    # Only repositories the caller may read (identity.permissions), checked again every few
    # seconds: a blocked user's stream ends, a revoked grant stops the events.
    access = StreamAccess(ctx.store, principal.user, principal.grants, admin=principal.user.admin)

    async def events() -> AsyncIterator[ServerSentEvent]:
        with ctx.events.subscribe() as queue:
            while not ctx.should_stop() and not await request.is_disconnected():
                now = time.monotonic()
                if access.due(now) and not await anyio.to_thread.run_sync(access.refresh, now):
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), _REREAD_SECONDS)
                except TimeoutError:
                    continue
                visibility = str(event.payload.get("visibility", "private"))
                if access.allows(event.repo_id, event.repo_active, visibility):
                    yield ServerSentEvent(data=json.dumps(event.payload, separators=(",", ":")))

    return _response(ctx, events())


@router.get("/api/stream/{owner}/{name}/{number}/{stage}/{step}")
async def stream_logs(
    number: int,
    stage: int,
    step: int,
    access: RepoRead,
    ctx: CtxDep,
    request: Request,
) -> EventSourceResponse:
    _build, found_stage, found_step = await anyio.to_thread.run_sync(
        find_step, ctx, access.repo, number, stage, step
    )

    def done() -> bool:
        current_step = ctx.store.get_step(found_stage.id, found_step.number)
        current_stage = ctx.store.get_stage(found_stage.id)
        return (current_step is not None and current_step.status.done) or (
            current_stage is not None and current_stage.status.done
        )

    def read(after: int) -> list[tuple[int, float, str]]:
        return ctx.logs.read(found_stage, found_step, after)

    principal = access.principal
    watch = StreamAccess(ctx.store, principal.user, principal.grants, admin=principal.user.admin)
    repo = access.repo

    async def events() -> AsyncIterator[ServerSentEvent]:
        last = -1
        with ctx.log_wakeups.listen(found_stage.id) as listener:
            while not ctx.should_stop() and not await request.is_disconnected():
                now = time.monotonic()
                if watch.due(now) and (
                    not await anyio.to_thread.run_sync(watch.refresh, now)
                    or not watch.allows(repo.id, repo.active, repo.visibility)
                ):
                    return  # blocked, or no longer allowed to read the repository
                listener.clear()
                finished = await anyio.to_thread.run_sync(done)
                lines = await anyio.to_thread.run_sync(read, last)
                for n, t, text in lines:
                    last = max(last, n)
                    yield ServerSentEvent(
                        data=log_line_out(n, t, text).model_dump_json(), event="line"
                    )
                if finished:
                    yield ServerSentEvent(data="", event="end")
                    return
                await listener.wait(_REREAD_SECONDS)

    return _response(ctx, events())
