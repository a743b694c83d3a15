"""Repository secrets on Drone's paths: list, create or replace, inspect, delete (admins).

``GET /api/repos/{owner}/{name}/secrets`` lists them, ``POST`` there creates or replaces one
(``{"name", "data", "pull_request"}``), ``GET`` / ``DELETE .../secrets/{secret}`` inspect and
delete one. Only system administrators may call them (``require_admin_repo``), until
per-repository permissions arrive.

A value goes one way: into the store, encrypted (AES-256-GCM under the server key, bound to
the repository, the name and the ``pull_request`` flag). No answer of these routes carries it
— ``SecretOut`` has no field for it — and neither does an error message or a log line. A
value whose text without surrounding whitespace is shorter than the masker's minimum is
refused: it could not be masked in build logs. Which stages receive a secret is decided by
``services.secrets``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from bastion.engine.masking import MIN_SECRET_LENGTH
from bastion.rpc.api import SecretCreate, SecretOut
from bastion.server.auth import AdminRepo, CtxDep
from bastion.server.errors import BadRequest, NotFound
from bastion.store.types import RepoSecret

log = logging.getLogger("bastion.server")

router = APIRouter(tags=["secrets"])

_SECRETS = "/api/repos/{owner}/{name}/secrets"


def secret_out(secret: RepoSecret) -> SecretOut:
    return SecretOut(
        name=secret.name,
        pull_request=secret.pull_request,
        created=secret.created,
        updated=secret.updated,
    )


@router.get(_SECRETS)
def list_secrets(access: AdminRepo, ctx: CtxDep) -> list[SecretOut]:
    return [secret_out(s) for s in ctx.store.describe_repo_secrets(access.repo.id)]


@router.post(_SECRETS)
def create_secret(body: SecretCreate, access: AdminRepo, ctx: CtxDep) -> SecretOut:
    value = body.data.get_secret_value()
    if len(value.strip()) < MIN_SECRET_LENGTH:
        raise BadRequest(
            f"body field data: secrets shorter than {MIN_SECRET_LENGTH} characters cannot be "
            "masked in build logs (surrounding whitespace does not count): use a longer value"
        )
    stored = ctx.store.set_repo_secret(
        access.repo.id, body.name, value, pull_request=body.pull_request
    )
    ctx.secrets.repo_secrets_changed(access.repo.id)
    log.info(
        "secret %s of %s set by %s (pull requests: %s)",
        stored.name,
        access.repo.slug,
        access.principal.user.login,
        "yes" if stored.pull_request else "no",
    )
    return secret_out(stored)


@router.get(_SECRETS + "/{secret}")
def get_secret(secret: str, access: AdminRepo, ctx: CtxDep) -> SecretOut:
    found = ctx.store.describe_repo_secret(access.repo.id, secret)
    if found is None:
        raise NotFound(f"repository {access.repo.slug} has no secret {secret!r}")
    return secret_out(found)


@router.delete(_SECRETS + "/{secret}", status_code=204)
def delete_secret(secret: str, access: AdminRepo, ctx: CtxDep) -> Response:
    if not ctx.store.delete_repo_secret(access.repo.id, secret):
        raise NotFound(f"repository {access.repo.slug} has no secret {secret!r}")
    ctx.secrets.repo_secrets_changed(access.repo.id)
    log.info("secret %s of %s deleted by %s", secret, access.repo.slug, access.principal.user.login)
    return Response(status_code=204)
