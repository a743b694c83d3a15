"""Repository secrets on Drone's paths: list, create or replace, inspect, update, delete (admins).

``GET /api/repos/{owner}/{name}/secrets`` lists them, ``POST`` there creates or replaces one
(``{"name", "data", "pull_request", "events", "branches", "images"}``), ``GET`` / ``PATCH`` /
``DELETE .../secrets/{secret}`` inspect, change and delete one. Only system administrators
may call them (``require_admin_repo``), until per-repository permissions arrive.
Organisation and global secrets have the same shapes on their own paths (``org_secrets``).

A value goes one way: into the store, encrypted (AES-256-GCM under the server key, bound to
the repository, the name, the ``pull_request`` flag and the filters). No answer of these
routes carries it — ``SecretOut`` has no field for it — and neither does an error message, a
log line or an audit event. A value whose text without surrounding whitespace is shorter than
the masker's minimum is refused: it could not be masked in build logs. Answers carry the
metadata (filters, created, updated, last used and by which build) and the age against the
rotation period. Which steps receive a secret is decided by ``services.secrets``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Response

from bastion.engine.masking import MIN_SECRET_LENGTH
from bastion.rpc.api import SECRET_EVENTS, SecretCreate, SecretOut, SecretUpdate
from bastion.server.auth import AdminRepo, CtxDep
from bastion.server.context import ServerContext
from bastion.server.errors import BadRequest, Conflict, NotFound
from bastion.store.secret_store import UndecryptableSecret
from bastion.store.types import RepoSecret, SecretFilters, SharedSecret

log = logging.getLogger("bastion.server")

router = APIRouter(tags=["secrets"])

_SECRETS = "/api/repos/{owner}/{name}/secrets"
_DAY = 86400


@dataclass(frozen=True)
class FilterChanges:
    """The filters of a request body, checked; None for a field a PATCH leaves alone."""

    pull_request: bool | None
    events: tuple[str, ...] | None
    branches: tuple[str, ...] | None
    images: tuple[str, ...] | None


def undecryptable(name: str) -> Conflict:
    """The answer to changing only the filters of a secret the server cannot decrypt (its
    row was edited or moved, or the key changed): the value must come with the change."""
    return Conflict(
        f"secret {name!r} cannot be decrypted on the server (edited in the database, moved, "
        "or the server key changed), so its filters cannot be changed alone: give it a new "
        "value (data) with the change"
    )


def _require_unicode(field: str, text: str) -> None:
    """JSON can carry half a UTF-16 pair (``\\ud800``): no Unicode text, and nothing the
    database or the encryption could store (it would end in a 500)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            f"body field {field}: not valid Unicode text (it holds a lone UTF-16 surrogate "
            "escape such as \\ud800)"
        ) from None


def checked_value(value: str) -> str:
    _require_unicode("data", value)
    if len(value.strip()) < MIN_SECRET_LENGTH:
        raise BadRequest(
            f"body field data: secrets shorter than {MIN_SECRET_LENGTH} characters cannot be "
            "masked in build logs (surrounding whitespace does not count): use a longer value"
        )
    return value


def _checked_list(field: str, values: Sequence[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    out: list[str] = []
    for value in values:
        _require_unicode(field, value)
        text = value.strip()
        if not text or len(text) > 255 or any(ord(c) < 32 for c in text):
            raise BadRequest(
                f"body field {field}: {value!r} is not a usable entry (1 to 255 printable "
                "characters)"
            )
        if field == "events" and text not in SECRET_EVENTS:
            raise BadRequest(
                f"body field events: {text!r} is not an event; events are "
                + ", ".join(SECRET_EVENTS)
            )
        out.append(text)
    return tuple(out)


def checked_filters(body: SecretCreate | SecretUpdate) -> FilterChanges:
    return FilterChanges(
        pull_request=body.pull_request,
        events=_checked_list("events", body.events),
        branches=_checked_list("branches", body.branches),
        images=_checked_list("images", body.images),
    )


def new_filters(changes: FilterChanges) -> SecretFilters:
    return SecretFilters(
        branches=changes.branches or (),
        events=changes.events or (),
        images=changes.images or (),
        pull_request=bool(changes.pull_request),
    )


def secret_out(
    ctx: ServerContext, secret: RepoSecret | SharedSecret, *, namespace: str = ""
) -> SecretOut:
    if isinstance(secret, RepoSecret):
        filters = SecretFilters(secret.branches, secret.events, secret.images, secret.pull_request)
        scope = "repo"
    else:
        filters, scope, namespace = secret.filters, secret.scope, secret.namespace
    age = max(0, ctx.now() - (secret.rotated or secret.updated)) // _DAY
    return SecretOut(
        name=secret.name,
        scope=scope,
        namespace=namespace,
        pull_request=filters.pull_request,
        events=list(filters.events),
        branches=list(filters.branches),
        images=list(filters.images),
        created=secret.created,
        updated=secret.updated,
        last_used=secret.last_used,
        last_build=secret.last_build,
        rotated=secret.rotated or secret.updated,
        age_days=age,
        rotation_due=age >= ctx.settings.secret_rotation_days,
    )


def audit_change(
    ctx: ServerContext, kind: str, actor: str, out: SecretOut | None, **where: str
) -> None:
    """Record ``secret.created|updated|deleted``: names and filters, never the value."""
    detail: dict[str, object] = {"scope": where.get("scope", "repo")}
    if where.get("namespace"):
        detail["namespace"] = where["namespace"]
    if out is not None:
        detail.update(
            pull_request=out.pull_request,
            events=out.events,
            branches=out.branches,
            images=out.images,
        )
    ctx.audit.record(
        f"secret.{kind}",
        actor=actor,
        repo=where.get("repo", ""),
        secret=where["secret"],
        detail=detail,
    )


@router.get(_SECRETS)
def list_secrets(access: AdminRepo, ctx: CtxDep) -> list[SecretOut]:
    slug = access.repo.slug
    return [
        secret_out(ctx, s, namespace=slug) for s in ctx.store.describe_repo_secrets(access.repo.id)
    ]


@router.post(_SECRETS)
def create_secret(body: SecretCreate, access: AdminRepo, ctx: CtxDep) -> SecretOut:
    value = checked_value(body.data.get_secret_value())
    filters = new_filters(checked_filters(body))
    existed = ctx.store.describe_repo_secret(access.repo.id, body.name) is not None
    stored = ctx.store.set_repo_secret(
        access.repo.id,
        body.name,
        value,
        pull_request=filters.pull_request,
        branches=filters.branches,
        events=filters.events,
        images=filters.images,
    )
    ctx.secrets.repo_secrets_changed(access.repo.id)
    out = secret_out(ctx, stored, namespace=access.repo.slug)
    actor = access.principal.user.login
    kind = "updated" if existed else "created"
    audit_change(ctx, kind, actor, out, repo=access.repo.slug, secret=stored.name)
    log.info("secret %s of %s %s by %s", stored.name, access.repo.slug, kind, actor)
    return out


@router.get(_SECRETS + "/{secret}")
def get_secret(secret: str, access: AdminRepo, ctx: CtxDep) -> SecretOut:
    found = ctx.store.describe_repo_secret(access.repo.id, secret)
    if found is None:
        raise NotFound(f"repository {access.repo.slug} has no secret {secret!r}")
    return secret_out(ctx, found, namespace=access.repo.slug)


@router.patch(_SECRETS + "/{secret}")
def update_secret(secret: str, body: SecretUpdate, access: AdminRepo, ctx: CtxDep) -> SecretOut:
    value = None if body.data is None else checked_value(body.data.get_secret_value())
    changes = checked_filters(body)
    try:
        stored = ctx.store.update_repo_secret(
            access.repo.id,
            secret,
            value=value,
            pull_request=changes.pull_request,
            branches=changes.branches,
            events=changes.events,
            images=changes.images,
        )
    except UndecryptableSecret as exc:
        raise undecryptable(exc.name) from None
    if stored is None:
        raise NotFound(f"repository {access.repo.slug} has no secret {secret!r}")
    ctx.secrets.repo_secrets_changed(access.repo.id)
    out = secret_out(ctx, stored, namespace=access.repo.slug)
    actor = access.principal.user.login
    audit_change(ctx, "updated", actor, out, repo=access.repo.slug, secret=secret)
    log.info("secret %s of %s updated by %s", secret, access.repo.slug, actor)
    return out


@router.delete(_SECRETS + "/{secret}", status_code=204)
def delete_secret(secret: str, access: AdminRepo, ctx: CtxDep) -> Response:
    if not ctx.store.delete_repo_secret(access.repo.id, secret):
        raise NotFound(f"repository {access.repo.slug} has no secret {secret!r}")
    ctx.secrets.repo_secrets_changed(access.repo.id)
    actor = access.principal.user.login
    audit_change(ctx, "deleted", actor, None, repo=access.repo.slug, secret=secret)
    log.info("secret %s of %s deleted by %s", secret, access.repo.slug, actor)
    return Response(status_code=204)
