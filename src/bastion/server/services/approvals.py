"""Held builds: configuration signatures of protected repositories, and approving or
declining a blocked build.

**Protected repositories.** A repository marked ``protected`` runs only a configuration
carrying a valid ``kind: signature`` document (``bastion.crypto.config_signature``, the
format of ``drone sign``) made with the repository's own signing key. The check runs in
``TriggerService.plan``, the one path of every build — push, pull request, tag, restart,
custom, and whatever later triggers go through it — before any stage can be leased. A
missing, malformed or wrong signature does not fail the build: it is ``blocked`` with
``hold = "signature"`` and a reason saying what is wrong, and runs only when a repository
administrator approves it (having read the change), or ends ``declined``.

The signing key never leaves the server: ``POST /api/repos/{owner}/{name}/sign`` (what
``drone sign`` and ``bastion sign`` call) returns the HMAC of the text it is given. A
signature made for one repository does not verify in another (each has its own key), and
any edit to the signed text, comments included, breaks it.

**Approval modes.** Apart from signatures, a repository's ``approval_mode`` (or the
server's ``BASTION_APPROVAL_MODE``, default ``forks``) holds builds for review before they
run: ``none``; ``forks`` — pull requests from forks; ``pull_requests`` — every pull request;
``all_events`` — every build a forge event starts (push, tag, pull request, promote,
rollback). ``custom`` builds (started through the API by someone with write access) and
``cron`` builds (started by the server on a branch an administrator chose) are never held
for approval. Every build is its own approval: a new commit to a pull request makes a new
build, held again. Restarts are held again too.

**Deployments.** ``promote`` and ``rollback`` builds (``POST .../builds/{n}/promote``) name a
target. A target the repository defines as an environment (``environments`` table) adds
rules: the deployed build's branch must match one of its ``branches`` globs (checked when the
promotion is asked for, and again on restart), and with ``approval`` the deployment is held
(``hold = "deploy"``) for one of its ``approvers`` (or, if it names none, anyone with write
access) — never the person who asked for the promotion while ``prevent_self_approval`` is on.
A target without an environment promotes as in Drone: write access, no approval.

**Approving.** Who may release a held build depends on why it is held: a signature hold
needs repository administrator access (an unsigned configuration is exactly the change the
protection exists to review); an approval hold needs write access and, when the repository
names ``approvers``, to be one of them. With ``prevent_self_approval`` (the default) the
author or the sender of the change may not approve it, whatever their access — they may
still decline it. Approval and decline are compare-and-sets in the store
(``ApprovalStore.release_held_build``): of two racing approvals, or an approval racing a
decline or a cancel, one wins and the other gets 409. Each is an audit event
(``build.approved`` / ``build.declined``) naming who did it.
"""

from __future__ import annotations

import logging

from bastion.crypto.config_signature import embedded_signature, verify_signature
from bastion.server.errors import Conflict, Forbidden
from bastion.server.services.audit import AuditLog
from bastion.server.services.builds import BuildService
from bastion.server.services.signals import Wakeups
from bastion.spec.conditions import glob_match
from bastion.store.repository import Store
from bastion.store.types import Build, Environment, Repo, Scope

log = logging.getLogger("bastion.server")

HOLD_SIGNATURE = "signature"
HOLD_APPROVAL = "approval"
HOLD_DEPLOY = "deploy"
DEPLOY_EVENTS = frozenset({"promote", "rollback"})

# Who may release a build held for each reason.
_APPROVER_SCOPE = {
    HOLD_SIGNATURE: Scope.ADMIN,
    HOLD_APPROVAL: Scope.WRITE,
    HOLD_DEPLOY: Scope.WRITE,
}
# Started by someone with write access (custom) or by the server (cron): never held.
_NEVER_HELD_EVENTS = frozenset({"custom", "cron"})


def approval_mode(repo: Repo, server_default: str) -> str:
    """The approval mode in force for ``repo``."""
    return repo.approval_mode or server_default


def approval_problem(repo: Repo, server_default: str, *, event: str, fork: bool) -> str | None:
    """Why a build of ``event`` in ``repo`` waits for an approval; None when it does not."""
    mode = approval_mode(repo, server_default)
    if event in _NEVER_HELD_EVENTS or mode == "none":
        return None
    if mode == "forks" and not (event == "pull_request" and fork):
        return None
    if mode == "pull_requests" and event != "pull_request":
        return None
    what = {
        "forks": "pull requests from forks",
        "pull_requests": "pull requests",
        "all_events": f"every {event} build",
    }.get(mode, f"{event} builds")
    who = (
        "one of its approvers (" + ", ".join(repo.approvers) + ")"
        if repo.approvers
        else "someone with write access"
    )
    return (
        f"{repo.slug} holds {what} for approval (approval mode {mode}): {who} must approve "
        "this build before it runs"
    )


def signature_problem(store: Store, repo: Repo, config: bytes) -> str | None:
    """Why ``config`` may not run unreviewed in ``repo``; None when ``repo`` is not protected
    or the signature is valid."""
    if not repo.protected:
        return None
    path = repo.config_path
    if embedded_signature(config) is None:
        return (
            f"{repo.slug} is protected and {path} carries no valid signature (a single "
            "`kind: signature` document with a 64-digit hmac): a repository administrator must "
            f"approve this build, or sign the file with `bastion sign {repo.slug} --save`"
        )
    if not verify_signature(config, store.repo_signing_key(repo.id)):
        return (
            f"{repo.slug} is protected and the signature in {path} does not match its text "
            "(the file changed after it was signed, or it was signed for another repository): "
            "a repository administrator must approve this build, or sign the file again with "
            f"`bastion sign {repo.slug} --save`"
        )
    return None


def deploy_refusal(environment: Environment | None, *, branch: str) -> str | None:
    """Why a build of ``branch`` may not be deployed to ``environment``; None if it may."""
    if environment is None or not environment.branches:
        return None
    if any(glob_match(pattern, branch) for pattern in environment.branches):
        return None
    return (
        f"branch {branch or '(none)'!r} may not be deployed to {environment.name}: it takes "
        + ", ".join(environment.branches)
    )


def deploy_problem(environment: Environment | None) -> str | None:
    """Why a deployment to ``environment`` waits for an approval; None when it does not."""
    if environment is None or not environment.approval:
        return None
    who = (
        "one of its approvers (" + ", ".join(environment.approvers) + ")"
        if environment.approvers
        else "someone with write access"
    )
    return f"deployments to {environment.name} wait for an approval: {who} must approve it"


def approver_scope(build: Build) -> Scope:
    """The repository access needed to approve or decline ``build``."""
    return _APPROVER_SCOPE.get(build.hold, Scope.WRITE)


class ApprovalService:
    """Approve or decline blocked builds (see the module docstring)."""

    def __init__(
        self, store: Store, builds: BuildService, scheduler_wakeups: Wakeups, audit: AuditLog
    ) -> None:
        self._store = store
        self._builds = builds
        self._scheduler_wakeups = scheduler_wakeups
        self._audit = audit

    def approve(
        self, repo: Repo, build: Build, *, by: str, granted: frozenset[Scope], stage: int | None
    ) -> Build:
        return self._release(repo, build, by=by, granted=granted, stage=stage, approve=True)

    def decline(
        self, repo: Repo, build: Build, *, by: str, granted: frozenset[Scope], stage: int | None
    ) -> Build:
        return self._release(repo, build, by=by, granted=granted, stage=stage, approve=False)

    def _release(
        self,
        repo: Repo,
        build: Build,
        *,
        by: str,
        granted: frozenset[Scope],
        stage: int | None,
        approve: bool,
    ) -> Build:
        verb = "approve" if approve else "decline"
        needed = approver_scope(build)
        if needed not in granted:
            raise Forbidden(
                f"build #{build.number} of {repo.slug} is held ({build.hold or 'approval'}): "
                f"to {verb} it needs {needed.value} access to the repository"
            )
        if build.hold == HOLD_APPROVAL and repo.approvers and by not in repo.approvers:
            raise Forbidden(
                f"only the approvers of {repo.slug} may {verb} its held builds: "
                + ", ".join(repo.approvers)
            )
        if build.hold == HOLD_DEPLOY:
            environment = self._store.get_environment(repo.id, build.deploy_to)
            if (
                environment is not None
                and environment.approvers
                and (by not in environment.approvers)
            ):
                raise Forbidden(
                    f"only the approvers of {build.deploy_to} may {verb} deployments to it: "
                    + ", ".join(environment.approvers)
                )
        if approve and repo.prevent_self_approval and _is_author(by, build):
            raise Forbidden(
                f"you may not approve your own change (build #{build.number} of {repo.slug}, "
                "prevent_self_approval is on): someone else must review it"
            )
        error = f"declined by {by}"
        if not self._store.release_held_build(
            build.id, approve=approve, stage_number=stage, error=error
        ):
            which = f"stage {stage} of build" if stage is not None else "build"
            raise Conflict(
                f"{which} #{build.number} of {repo.slug} is not waiting for an approval "
                f"(it is {build.status.value}); nothing to {verb}"
            )
        log.info("build %s#%d %sd by %s", repo.slug, build.number, verb, by)
        self._audit.record(
            f"build.{verb}d",
            actor=by,
            repo=repo.slug,
            build=build.number,
            detail={"hold": build.hold, "stage": stage},
        )
        if approve:
            self._scheduler_wakeups.notify(None)
        return self._builds.advance(build.id)


def _is_author(login: str, build: Build) -> bool:
    """True when ``login`` wrote or sent the change ``build`` is for (case-insensitive, as
    forge logins are)."""
    who = login.casefold()
    return any(who == other.casefold() for other in (build.author_login, build.sender) if other)
