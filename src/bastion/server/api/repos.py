"""Repositories: list, register (admins), get, enable, disable, update.

``POST /api/repos`` registers a repository. ``forge: local`` creates a bare repository on
the server's local forge and answers with ``git_push_url`` (its path, for ``git push`` from
this machine); GitHub, Gitea and GitLab repositories get a generated webhook secret, stored
encrypted and shown once with the ``webhook_url`` to configure on the forge.

``POST /api/repos/{owner}/{name}`` enables and ``DELETE`` disables (Drone's verbs); both
need admin access to the repository. ``PATCH`` needs write access, and ``trusted`` needs a
system administrator whatever the repository grants (403).
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from fastapi import APIRouter

from bastion.crypto import new_secret
from bastion.rpc.api import RepoCreate, RepoCreated, RepoOut, RepoPatch
from bastion.scm.errors import ForgeError
from bastion.server.auth import (
    AdminDep,
    CtxDep,
    RepoAdmin,
    RepoRead,
    RepoWrite,
    UserDep,
    check_repo_access,
    repo_scopes,
)
from bastion.server.errors import BadRequest, Conflict, Forbidden, Unavailable
from bastion.server.identity.permissions import check_activation
from bastion.server.views import repo_out
from bastion.store.types import Scope

log = logging.getLogger("bastion.server")

router = APIRouter(tags=["repos"])


@router.get("/api/repos")
def list_repos(principal: UserDep, ctx: CtxDep) -> list[RepoOut]:
    return [
        repo_out(repo)
        for repo in ctx.store.list_repos()
        if Scope.READ in repo_scopes(principal.user, repo, principal.grants)
    ]


@router.post("/api/repos")
def create_repo(body: RepoCreate, admin: AdminDep, ctx: CtxDep) -> RepoCreated:
    check_activation(ctx.settings, body.owner, body.name)
    if ctx.store.get_repo(body.owner, body.name) is not None:
        raise Conflict(f"repository {body.owner}/{body.name} already exists")
    visibility = "private" if body.private else "public"
    if body.forge == "local":
        try:
            path = ctx.forges.local.create(
                body.owner, body.name, default_branch=body.default_branch
            )
        except FileExistsError:
            raise Conflict(
                f"a local-forge repository {body.owner}/{body.name} exists on disk already"
            ) from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        except ForgeError as exc:
            raise Unavailable(str(exc)) from exc
        try:
            repo = ctx.store.create_repo(
                body.owner,
                body.name,
                forge="local",
                default_branch=body.default_branch,
                private=body.private,
                visibility=visibility,
                link=f"{ctx.settings.effective_public_url}/{body.owner}/{body.name}",
            )
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # all or nothing
            raise
        log.info("repository %s created on the local forge by %s", repo.slug, admin.user.login)
        return RepoCreated(**_fields(repo_out(repo)), git_push_url=str(path))

    if not body.http_url.startswith(("https://", "http://")):
        raise BadRequest(
            f"body field http_url: the clone URL of the {body.forge} repository is required "
            "(https://...)"
        )
    repo = ctx.store.create_repo(
        body.owner,
        body.name,
        forge=body.forge,
        forge_id=body.forge_id,
        http_url=body.http_url,
        link=body.http_url.removesuffix(".git"),
        default_branch=body.default_branch,
        private=body.private,
        visibility=visibility,
    )
    secret = new_secret()
    ctx.store.set_webhook_secret(repo.id, secret)
    log.info("repository %s registered (%s) by %s", repo.slug, repo.forge, admin.user.login)
    return RepoCreated(
        **_fields(repo_out(repo)),
        webhook_url=f"{ctx.settings.effective_public_url}/hook?repo={repo.slug}",
        webhook_secret=secret,
    )


def _fields(out: RepoOut) -> dict[str, Any]:
    return {name: getattr(out, name) for name in type(out).model_fields}


@router.get("/api/repos/{owner}/{name}")
def get_repo(access: RepoRead, ctx: CtxDep) -> RepoOut:
    latest = ctx.store.latest_build(access.repo.id)
    return repo_out(access.repo, latest)


@router.post("/api/repos/{owner}/{name}")
def enable_repo(access: RepoAdmin, ctx: CtxDep) -> RepoOut:
    check_activation(ctx.settings, access.repo.owner, access.repo.name)
    return repo_out(ctx.store.update_repo(access.repo.id, active=True))


@router.delete("/api/repos/{owner}/{name}")
def disable_repo(access: RepoAdmin, ctx: CtxDep) -> RepoOut:
    return repo_out(ctx.store.update_repo(access.repo.id, active=False))


_PATCH_FIELDS = {
    "trusted": "trusted",
    "protected": "protected",
    "approval_mode": "approval_mode",
    "approvers": "approvers",
    "prevent_self_approval": "prevent_self_approval",
    "visibility": "visibility",
    "timeout": "timeout",
    "config_path": "config_path",
    "ignore_forks": "ignore_forks",
    "ignore_pull_requests": "ignore_pulls",
    "auto_cancel_pull_requests": "auto_cancel_pulls",
    "auto_cancel_pushes": "auto_cancel_pushes",
}


@router.patch("/api/repos/{owner}/{name}")
def update_repo(body: RepoPatch, access: RepoWrite, ctx: CtxDep) -> RepoOut:
    if body.trusted is not None and not access.principal.admin:
        raise Forbidden("only a system administrator may change trusted")
    reviewing = (
        body.protected is not None and body.protected != access.repo.protected,
        body.approval_mode is not None and body.approval_mode != access.repo.approval_mode,
        body.approvers is not None and tuple(body.approvers) != access.repo.approvers,
        body.prevent_self_approval is not None
        and body.prevent_self_approval != access.repo.prevent_self_approval,
    )
    too_long = body.timeout is not None and body.timeout > ctx.settings.timeout_max
    if too_long and not access.principal.admin:
        raise Forbidden(
            f"timeout {body.timeout} min is above the server's maximum of "
            f"{ctx.settings.timeout_max} min (BASTION_TIMEOUT_MAX): only a system "
            "administrator may set a longer one"
        )
    if any(reviewing):
        # These decide what runs unreviewed and who reviews it: the same access as approving
        # a configuration (repository administrators).
        check_repo_access(access.principal, access.repo, Scope.ADMIN)
    changes = {
        stored: getattr(body, field)
        for field, stored in _PATCH_FIELDS.items()
        if getattr(body, field) is not None
    }
    if body.visibility is not None:
        changes["private"] = body.visibility != "public"
    if not changes:
        return repo_out(access.repo)
    try:
        repo = ctx.store.update_repo(access.repo.id, **changes)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    if "trusted" in changes:
        log.info(
            "repository %s trusted=%s set by %s",
            repo.slug,
            repo.trusted,
            access.principal.user.login,
        )
    return repo_out(repo)
