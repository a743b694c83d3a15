"""Organisation and global secrets (system administrators only).

Organisation secrets are on Drone's paths: ``GET`` / ``POST /api/secrets/{namespace}`` and
``GET`` / ``PATCH`` / ``DELETE /api/secrets/{namespace}/{secret}``; the namespace is the owner
part of repository slugs (``acme`` for ``acme/web``), and an organisation secret is offered to
the builds of that owner's repositories only. Global secrets, offered to every repository, are
at ``/api/admin/secrets[/{secret}]`` (Drone has no such scope; the ``admin`` prefix says who may
use it). A repository secret of the same name wins over an organisation one, which wins over a
global one (``services.secrets``). Bodies, answers and guarantees are those of the repository
routes (``api.secrets``): values in, never out, every change audited.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from bastion.rpc.api import SecretCreate, SecretOut, SecretUpdate
from bastion.server.api.secrets import (
    audit_change,
    checked_filters,
    checked_value,
    new_filters,
    secret_out,
    undecryptable,
)
from bastion.server.auth import AdminDep, CtxDep
from bastion.server.context import ServerContext
from bastion.server.errors import BadRequest, NotFound
from bastion.store.secret_store import UndecryptableSecret

log = logging.getLogger("bastion.server")

router = APIRouter(tags=["secrets"])

_ORG = "/api/secrets/{namespace}"
_GLOBAL = "/api/admin/secrets"


def _namespace(value: str) -> str:
    if not value or len(value) > 255 or "/" in value or value != value.strip():
        raise BadRequest(
            f"namespace {value!r}: an organisation is the owner part of repository slugs "
            "(1 to 255 characters, no '/')"
        )
    return value


def _where(scope: str, namespace: str) -> str:
    return f"organisation {namespace!r}" if scope == "org" else "the global scope"


def _list(ctx: ServerContext, scope: str, namespace: str) -> list[SecretOut]:
    return [secret_out(ctx, s) for s in ctx.store.describe_shared_secrets(scope, namespace)]


def _create(
    ctx: ServerContext, scope: str, namespace: str, body: SecretCreate, actor: str
) -> SecretOut:
    value = checked_value(body.data.get_secret_value())
    filters = new_filters(checked_filters(body))
    existed = ctx.store.describe_shared_secret(scope, namespace, body.name) is not None
    stored = ctx.store.set_shared_secret(scope, namespace, body.name, value, filters)
    ctx.secrets.secrets_changed()
    out = secret_out(ctx, stored)
    kind = "updated" if existed else "created"
    audit_change(ctx, kind, actor, out, scope=scope, namespace=namespace, secret=body.name)
    log.info("secret %s of %s %s by %s", body.name, _where(scope, namespace), kind, actor)
    return out


def _get(ctx: ServerContext, scope: str, namespace: str, name: str) -> SecretOut:
    found = ctx.store.describe_shared_secret(scope, namespace, name)
    if found is None:
        raise NotFound(f"{_where(scope, namespace)} has no secret {name!r}")
    return secret_out(ctx, found)


def _update(
    ctx: ServerContext, scope: str, namespace: str, name: str, body: SecretUpdate, actor: str
) -> SecretOut:
    value = None if body.data is None else checked_value(body.data.get_secret_value())
    changes = checked_filters(body)
    try:
        stored = ctx.store.update_shared_secret(
            scope,
            namespace,
            name,
            value=value,
            pull_request=changes.pull_request,
            branches=changes.branches,
            events=changes.events,
            images=changes.images,
        )
    except UndecryptableSecret as exc:
        raise undecryptable(exc.name) from None
    if stored is None:
        raise NotFound(f"{_where(scope, namespace)} has no secret {name!r}")
    ctx.secrets.secrets_changed()
    out = secret_out(ctx, stored)
    audit_change(ctx, "updated", actor, out, scope=scope, namespace=namespace, secret=name)
    log.info("secret %s of %s updated by %s", name, _where(scope, namespace), actor)
    return out


def _delete(ctx: ServerContext, scope: str, namespace: str, name: str, actor: str) -> Response:
    if not ctx.store.delete_shared_secret(scope, namespace, name):
        raise NotFound(f"{_where(scope, namespace)} has no secret {name!r}")
    ctx.secrets.secrets_changed()
    audit_change(ctx, "deleted", actor, None, scope=scope, namespace=namespace, secret=name)
    log.info("secret %s of %s deleted by %s", name, _where(scope, namespace), actor)
    return Response(status_code=204)


# -- organisation ----------------------------------------------------------------------------


@router.get(_ORG)
def list_org_secrets(namespace: str, admin: AdminDep, ctx: CtxDep) -> list[SecretOut]:
    return _list(ctx, "org", _namespace(namespace))


@router.post(_ORG)
def create_org_secret(
    namespace: str, body: SecretCreate, admin: AdminDep, ctx: CtxDep
) -> SecretOut:
    return _create(ctx, "org", _namespace(namespace), body, admin.user.login)


@router.get(_ORG + "/{secret}")
def get_org_secret(namespace: str, secret: str, admin: AdminDep, ctx: CtxDep) -> SecretOut:
    return _get(ctx, "org", _namespace(namespace), secret)


@router.patch(_ORG + "/{secret}")
def update_org_secret(
    namespace: str, secret: str, body: SecretUpdate, admin: AdminDep, ctx: CtxDep
) -> SecretOut:
    return _update(ctx, "org", _namespace(namespace), secret, body, admin.user.login)


@router.delete(_ORG + "/{secret}", status_code=204)
def delete_org_secret(namespace: str, secret: str, admin: AdminDep, ctx: CtxDep) -> Response:
    return _delete(ctx, "org", _namespace(namespace), secret, admin.user.login)


# -- global ----------------------------------------------------------------------------------


@router.get(_GLOBAL)
def list_global_secrets(admin: AdminDep, ctx: CtxDep) -> list[SecretOut]:
    return _list(ctx, "global", "")


@router.post(_GLOBAL)
def create_global_secret(body: SecretCreate, admin: AdminDep, ctx: CtxDep) -> SecretOut:
    return _create(ctx, "global", "", body, admin.user.login)


@router.get(_GLOBAL + "/{secret}")
def get_global_secret(secret: str, admin: AdminDep, ctx: CtxDep) -> SecretOut:
    return _get(ctx, "global", "", secret)


@router.patch(_GLOBAL + "/{secret}")
def update_global_secret(
    secret: str, body: SecretUpdate, admin: AdminDep, ctx: CtxDep
) -> SecretOut:
    return _update(ctx, "global", "", secret, body, admin.user.login)


@router.delete(_GLOBAL + "/{secret}", status_code=204)
def delete_global_secret(secret: str, admin: AdminDep, ctx: CtxDep) -> Response:
    return _delete(ctx, "global", "", secret, admin.user.login)
