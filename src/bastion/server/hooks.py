"""Webhook receivers: ``POST /hook`` (GitHub, Gitea, GitLab) and ``POST /hook/local``.

Forge webhooks, in this order (``bastion.scm.webhooks`` explains why peeking at the body's
repository name before the signature check is safe):

1. the forge, from its event header (none: 400); the body is read up to 10 MB (413 beyond);
2. the repository: ``?repo=owner/name`` (Drone's ``/hook`` URL as ``POST /api/repos`` prints
   it), else the name the body claims;
3. the secret: the repository's own webhook secret, else the server-wide
   ``BASTION_WEBHOOK_SECRET``; with neither, 401 — the same answer for an unknown repository
   and for a known one without a secret, so a caller without a valid signature learns
   nothing about which repositories exist;
4. the signature, checked in constant time: 401 on any mismatch, **before** anything is
   parsed or stored (no build, no delivery record, no change of any kind);
5. only now: an unknown or inactive repository is 404 (the caller proved it holds the
   secret), the body is parsed (malformed: 400; an event that builds nothing: 204), and the
   repository it names must be the one the secret belongs to (400 otherwise);
6. the delivery id is recorded; a redelivery answers 200 "duplicate delivery" and builds
   nothing;
7. the trigger service decides the build.

``POST /hook/local`` is the local forge's post-receive hook: signed with a per-repository
key derived from the RPC secret, checked by ``bastion.scm.local.parse_local_hook`` before it
parses anything; one build per pushed branch or tag.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bastion.scm.errors import ForgeError, IgnoredEvent, WebhookError
from bastion.scm.events import HookEvent
from bastion.scm.local import parse_local_hook
from bastion.scm.webhooks import detect_forge, parse_webhook, repo_hint, verify_signature
from bastion.server.context import ServerContext, get_ctx
from bastion.server.errors import BadRequest, NotFound, ServerError, Unauthorized
from bastion.server.forges import LOCAL_HOOK_PATH, hook_key
from bastion.server.services.trigger import BuildRequest, TriggerOutcome
from bastion.store.types import Repo

log = logging.getLogger("bastion.server")

MAX_BODY_BYTES = 10_000_000  # as go-scm and bastion.scm: larger bodies are refused

router = APIRouter(tags=["hooks"])


class PayloadTooLarge(ServerError):  # noqa: N818
    status_code = 413


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (never read further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _webhook_error(exc: WebhookError) -> ServerError:
    error = ServerError(exc.message)
    error.status_code = exc.status_code
    return error


def _split_slug(slug: str) -> tuple[str, str]:
    owner, sep, name = slug.strip().partition("/")
    if not sep or not owner or not name or "/" in name:
        raise BadRequest("query parameter repo: expected owner/name")
    return owner, name


def _answer(message: str, *, status_code: int = 200, number: int | None = None) -> Response:
    body: dict[str, object] = {"message": message}
    if number is not None:
        body["number"] = number
    return JSONResponse(body, status_code=status_code)


def _same_repo(event: HookEvent, repo: Repo) -> bool:
    if repo.forge_id and event.repo_forge_id:
        return repo.forge_id == event.repo_forge_id
    return event.slug.lower() == repo.slug.lower()


def handle_forge_hook(
    ctx: ServerContext, headers: Mapping[str, str], body: bytes, repo_param: str | None
) -> Response:
    """Steps 1-7 of the module docstring (blocking: runs in a worker thread)."""
    forge = detect_forge(headers)
    if forge is None:
        raise BadRequest(
            "not a forge webhook: expected an X-GitHub-Event, X-Gitea-Event or X-Gitlab-Event "
            "header"
        )
    if repo_param:
        owner, name = _split_slug(repo_param)
    else:
        hint = repo_hint(forge, body)
        if hint is None:
            raise BadRequest(
                f"{forge} webhook: cannot tell which repository it is for; add "
                "?repo=owner/name to the webhook URL"
            )
        owner, name = hint
    repo = ctx.store.get_repo(owner, name)
    secret = ctx.store.get_webhook_secret(repo.id) if repo is not None else None
    if not secret:
        secret = ctx.settings.webhook_secret.get_secret_value()
    if not secret:
        raise Unauthorized(f"{forge} webhook refused: no webhook secret to verify it with")
    try:
        verify_signature(forge, headers, body, secret)
    except WebhookError as exc:
        log.warning("%s webhook for %s/%s refused: %s", forge, owner, name, exc.message)
        raise _webhook_error(exc) from None

    if repo is None:
        raise NotFound(f"repository {owner}/{name} is not registered")
    if not repo.active:
        raise NotFound(f"repository {repo.slug} is not active")
    if repo.forge != forge:
        raise BadRequest(f"{repo.slug} is a {repo.forge} repository, this webhook is from {forge}")
    try:
        event = parse_webhook(forge, headers, body)
    except IgnoredEvent as exc:
        return Response(status_code=204, headers={"X-Bastion-Ignored": _header_safe(exc.reason)})
    except WebhookError as exc:
        raise _webhook_error(exc) from None
    if not _same_repo(event, repo):
        raise BadRequest(f"the payload is about {event.slug}, not {repo.slug}")
    if not ctx.store.record_delivery(forge, event.delivery_id, ctx.now()):
        return _answer(f"duplicate delivery {event.delivery_id}: handled already, nothing done")
    outcome = ctx.trigger.trigger(repo, BuildRequest.from_hook(event))
    return _outcome(repo, outcome)


def _outcome(repo: Repo, outcome: TriggerOutcome) -> Response:
    if outcome.build is None:
        return _answer(f"no build: {outcome.reason}")
    build = outcome.build
    return _answer(
        f"build #{build.number} of {repo.slug} created ({build.status.value})", number=build.number
    )


def _header_safe(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:200]


def handle_local_hook(ctx: ServerContext, headers: Mapping[str, str], body: bytes) -> Response:
    try:
        events = parse_local_hook(headers, body, hook_key(ctx.settings))
    except WebhookError as exc:
        log.warning("local hook refused: %s", exc.message)
        raise _webhook_error(exc) from None
    messages: list[str] = []
    for event in events:
        repo = ctx.store.get_repo(event.repo_owner, event.repo_name)
        if repo is None or repo.forge != "local":
            raise NotFound(f"repository {event.slug} is not a local-forge repository here")
        if not repo.active:
            messages.append(f"{event.ref}: {repo.slug} is not active, nothing built")
            continue
        if not ctx.store.record_delivery("local", event.delivery_id, ctx.now()):
            messages.append(f"{event.ref}: duplicate delivery, nothing done")
            continue
        enriched = event
        try:
            enriched = ctx.forges.local.enrich(event)
        except (ForgeError, ValueError) as exc:
            log.warning("local hook for %s: cannot read commit details: %s", repo.slug, exc)
        outcome = ctx.trigger.trigger(repo, BuildRequest.from_hook(enriched))
        if outcome.build is None:
            messages.append(f"{event.ref}: no build ({outcome.reason})")
        else:
            messages.append(f"{event.ref}: build #{outcome.build.number}")
    if not messages:
        return Response(status_code=204)
    return _answer("; ".join(messages))


@router.post("/hook")
async def forge_hook(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_body(request)
    headers = dict(request.headers)
    repo_param = request.query_params.get("repo")
    return await anyio.to_thread.run_sync(handle_forge_hook, ctx, headers, body, repo_param)


@router.post(LOCAL_HOOK_PATH)
async def local_hook(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_body(request, limit=1 << 20)
    headers = dict(request.headers)
    return await anyio.to_thread.run_sync(handle_local_hook, ctx, headers, body)
