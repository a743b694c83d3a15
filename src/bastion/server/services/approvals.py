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

**Approving.** Who may release a held build depends on why it is held: a signature hold
needs repository administrator access (an unsigned configuration is exactly the change the
protection exists to review). Approval and decline are compare-and-sets in the store
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
from bastion.store.repository import Store
from bastion.store.types import Build, Repo, Scope

log = logging.getLogger("bastion.server")

HOLD_SIGNATURE = "signature"

# Who may release a build held for each reason.
_APPROVER_SCOPE = {HOLD_SIGNATURE: Scope.ADMIN}


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
