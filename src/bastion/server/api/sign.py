"""``POST /api/repos/{owner}/{name}/sign``: sign a configuration, as ``drone sign`` asks Drone.

The body is ``{"data": "<the .drone.yml text>"}`` and the answer ``{"data": "<hex hmac>"}``
under the repository's own signing key, which never leaves the server
(``services.approvals``). Signing is approving a configuration to run in a protected
repository, so it needs administrator access to the repository. The text is not parsed:
the signature covers it byte for byte, whatever it says.
"""

from __future__ import annotations

from fastapi import APIRouter

from bastion.crypto.config_signature import compute_signature
from bastion.rpc.api import SignRequest, SignResponse
from bastion.server.auth import CtxDep, RepoAdmin

router = APIRouter(tags=["repos"])


@router.post("/api/repos/{owner}/{name}/sign")
def sign_config(body: SignRequest, access: RepoAdmin, ctx: CtxDep) -> SignResponse:
    key = ctx.store.repo_signing_key(access.repo.id)
    signature = compute_signature(body.data.encode("utf-8"), key)
    ctx.audit.record(
        "repo.config_signed",
        actor=access.principal.user.login,
        repo=access.repo.slug,
        detail={"bytes": len(body.data.encode("utf-8"))},
    )
    return SignResponse(data=signature)
