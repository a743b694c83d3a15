"""The REST API on Drone's paths (``/api/...``), plus ``/healthz`` and ``/version``.

One router module per resource; each route declares its authorization as a dependency
(``bastion.server.auth``) and answers with the models of ``bastion.rpc.api``.
"""

from __future__ import annotations

from fastapi import APIRouter

from bastion.server.api import (
    admin,
    audit,
    builds,
    cron,
    environments,
    login,
    org_secrets,
    permissions,
    repos,
    runners,
    secrets,
    sign,
    stream,
    system,
    tokens,
    users,
)


def api_router() -> APIRouter:
    router = APIRouter()
    for module in (system, users, repos, secrets, org_secrets, sign, builds, cron, runners, stream):
        router.include_router(module.router)
    router.include_router(tokens.router)
    router.include_router(login.router)  # /login, /logout, login links
    router.include_router(permissions.router)
    router.include_router(environments.router)
    for module in (audit, admin):  # system administrators only
        router.include_router(module.router)
    return router
