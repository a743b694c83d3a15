"""``create_app(settings)``: the FastAPI application, its lifespan, and ``serve``.

The lifespan opens the store and migrates it, creates the bootstrap admin (and the embedded
runner's token), extends every running lease by ``lease_seconds`` (runners could not
heartbeat while the server was down), then runs background tasks until shutdown: the
lease reaper (every ``reaper_interval`` seconds), an hourly purge of old webhook delivery
ids, an hourly purge of audit events older than ``audit_retention_days``, and the cron loop
(every ``cron_interval`` seconds unless ``cron_disabled``). The commit status reporter's worker
thread is closed on shutdown. There is no module-level app: each ``create_app`` call builds an
independent server.

``serve(settings, on_ready)`` runs it under uvicorn (with TLS when configured) and calls
``on_ready()`` once, in a worker thread, as soon as the server accepts connections — the hook
``bastion server --with-runner`` uses to start its in-process runner.

Access logging is the server's own (method, path without the query string, status, time),
not uvicorn's: Drone clients may put ``?access_token=`` in URLs, and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion import __version__
from bastion.engine.hardening import Hardening, load_hardening
from bastion.engine.hardening import SettingsError as HardeningError
from bastion.server.api import api_router
from bastion.server.bootstrap import ensure_admin, ensure_embedded_runner
from bastion.server.context import ServerContext, build_context
from bastion.server.database_keys import load_database_keys
from bastion.server.errors import install_error_handlers
from bastion.server.forges import FileSource
from bastion.server.hooks import router as hooks_router
from bastion.server.rpc.endpoints import router as rpc_router
from bastion.server.settings import ServerSettings, SettingsError
from bastion.store.repository import Store

log = logging.getLogger("bastion.server")
access_log = logging.getLogger("bastion.server.access")

DELIVERY_MEMORY = 7 * 24 * 3600  # webhook delivery ids kept this long to catch redeliveries
_PURGE_INTERVAL = 3600.0


def create_app(
    settings: ServerSettings,
    *,
    clock: Callable[[], float] = time.time,
    hardening: Hardening | None = None,
    forge_clients: Mapping[str, FileSource] | None = None,
) -> FastAPI:
    """The server application. Raises :class:`SettingsError` for insecure settings.

    ``clock``, ``hardening`` and ``forge_clients`` (API clients by forge name) are for tests.
    """
    settings.validate_security()
    if hardening is None:
        try:
            hardening = load_hardening()
        except HardeningError as exc:
            raise SettingsError([str(exc)]) from None
    app = FastAPI(
        title="Bastion",
        version=__version__,
        description="Secure-by-default, Drone-compatible CI. REST API on Drone's paths.",
        lifespan=_lifespan(settings, hardening, clock, forge_clients),
    )
    app.state.settings = settings
    app.state.ctx = None
    app.state.should_stop = lambda: False  # serve() points it at uvicorn's exit flag
    install_error_handlers(app)
    # The runner channel first: routes are matched in order, and its calls are most of the
    # server's requests (a runner's poll need not be tried against every API route).
    app.include_router(rpc_router)
    app.include_router(api_router())
    app.include_router(hooks_router)
    app.add_middleware(AccessLog)
    return app


def open_store(settings: ServerSettings, clock: Callable[[], float]) -> Store:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = load_database_keys(settings)
    store = Store(
        settings.effective_database_url,
        secret_key=keys.current,
        previous_keys=keys.previous,
        clock=clock,
    )
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def _lifespan(
    settings: ServerSettings,
    hardening: Hardening,
    clock: Callable[[], float],
    forge_clients: Mapping[str, FileSource] | None,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await anyio.to_thread.run_sync(open_store, settings, clock)
        ctx = build_context(settings, store, hardening, clock=clock, forge_clients=forge_clients)
        ctx.bind(asyncio.get_running_loop())
        ctx.should_stop = lambda: bool(app.state.should_stop())
        tasks: list[asyncio.Task[None]] = []
        try:
            await anyio.to_thread.run_sync(_start, ctx)
            app.state.ctx = ctx
            tasks.append(
                asyncio.create_task(_every(settings.reaper_interval, ctx.scheduler.reap, "reaper"))
            )
            tasks.append(
                asyncio.create_task(
                    _every(
                        _PURGE_INTERVAL,
                        lambda: store.purge_deliveries(ctx.now() - DELIVERY_MEMORY),
                        "delivery purge",
                    )
                )
            )
            tasks.append(
                asyncio.create_task(
                    _every(_PURGE_INTERVAL, lambda: purge_audit(ctx), "audit retention purge")
                )
            )
            tasks.append(  # ended sessions and abandoned logins (server/identity)
                asyncio.create_task(
                    _every(
                        _PURGE_INTERVAL, lambda: store.purge_identity(ctx.now()), "session purge"
                    )
                )
            )
            if not settings.cron_disabled:
                tasks.append(
                    asyncio.create_task(_every(settings.cron_interval, ctx.cron.run_due, "cron"))
                )
            log.info("Bastion %s serving; data in %s", __version__, settings.data_dir)
            yield
        finally:
            if ctx.shutdown_event is not None:
                ctx.shutdown_event.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            app.state.ctx = None
            await anyio.to_thread.run_sync(ctx.statuses.close)
            ctx.forges.close()
            store.close()

    return lifespan


def purge_audit(ctx: ServerContext) -> int:
    """Delete the audit events older than ``audit_retention_days``; returns how many."""
    cutoff = ctx.now() - ctx.settings.audit_retention_days * 24 * 3600
    purged = ctx.store.purge_audit_events(cutoff)
    if purged:
        days = ctx.settings.audit_retention_days
        log.info("purged %d audit events older than %d days", purged, days)
    return purged


def _start(ctx: ServerContext) -> None:
    settings = ctx.settings
    ensure_admin(ctx.store, settings.data_dir, now=ctx.now())
    if settings.embedded_runner:
        ensure_embedded_runner(ctx.store, settings.data_dir)
    extended = ctx.store.extend_all_leases(ctx.now() + settings.lease_seconds)
    if extended:
        log.info(
            "extended %d running leases by %d s after the restart", extended, settings.lease_seconds
        )


async def _every(interval: float, job: Callable[[], Any], name: str) -> None:
    while True:
        await asyncio.sleep(interval)
        # Cancelling a task that waits for a thread does not stop the thread: on shutdown,
        # wait for the round to end, or the store is closed under a round that still holds a
        # database connection (found leaking PostgreSQL connections in the tests).
        round_ = asyncio.ensure_future(anyio.to_thread.run_sync(job))
        try:
            await asyncio.shield(round_)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await round_
            raise
        except Exception:  # a failed round must not stop the next one
            log.exception("%s failed; trying again in %.0f s", name, interval)


class AccessLog:
    """One line per request: method, path (never the query string), status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            access_log.info(
                "%s %s %d %.0fms",
                scope.get("method", ""),
                scope.get("path", ""),
                status or 500,
                (time.monotonic() - started) * 1000,
            )


def serve(settings: ServerSettings, on_ready: Callable[[], None] | None = None) -> None:
    """Run the server until it is stopped (SIGINT / SIGTERM). ``on_ready`` is called once,
    in a worker thread, when the server accepts connections."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    app.state.should_stop = lambda: server.should_exit
    asyncio.run(_serve(server, on_ready))


async def _serve(server: uvicorn.Server, on_ready: Callable[[], None] | None) -> None:
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if server.started and on_ready is not None:
        try:
            await anyio.to_thread.run_sync(on_ready)
        except Exception:
            log.exception("the on-ready hook failed; stopping the server")
            server.should_exit = True
    await serving
