"""Webhooks from GitHub, Gitea and GitLab: which forge, whose secret, authentic or not, what
it means.

The server handles a delivery in this order, and each step is a function here::

    forge = detect_forge(request.headers)                 # None → 400: not a forge webhook
    hint  = repo_hint(forge, body)                        # None → 400 (or 404 for the repo)
    secret = <the webhook secret of the repository named by hint>   # none → 404 / 401
    verify_signature(forge, request.headers, body, secret)          # WebhookError → 401
    event = parse_webhook(forge, request.headers, body)   # WebhookError → 400, IgnoredEvent → 204
    if (event.repo_owner, event.repo_name) != hint: refuse (the body changed its mind)

Why peeking at the body before the signature is checked is safe: every repository has its
own secret, so the server must know which repository a delivery claims to be for before it
can check it. ``repo_hint`` reads that one value and nothing else; the signature is then
checked with *that* repository's secret, so a forged hint can only select a secret the
forger does not have. ``parse_webhook`` re-reads the whole (now authenticated) body, and the
server compares the repository it names with the hint.

Signatures: GitHub ``X-Hub-Signature-256: sha256=<hex>`` and Gitea ``X-Gitea-Signature:
<hex>`` (also sent as ``X-Gogs-Signature`` / ``X-Forgejo-Signature``) are HMAC-SHA256 of the
raw body; GitLab sends the secret itself in ``X-Gitlab-Token``. Every comparison is constant
time. There is no "no secret configured, accept" path (Drone and go-scm skip the check when
the secret is empty): an empty secret refuses every delivery. GitHub's SHA-1
``X-Hub-Signature`` and Gitea's long-removed ``secret`` body field are not accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from bastion.scm import _gitea, _github, _gitlab
from bastion.scm._refs import lower_headers
from bastion.scm.errors import IgnoredEvent, WebhookError
from bastion.scm.events import HookEvent

__all__ = [
    "WEBHOOK_FORGES",
    "HookEvent",
    "IgnoredEvent",
    "WebhookError",
    "detect_forge",
    "parse_webhook",
    "repo_hint",
    "skip_ci",
    "verify_signature",
]

WEBHOOK_FORGES: tuple[str, ...] = ("github", "gitea", "gitlab")

# header (lower case) → forge. Gitea and Forgejo also send X-GitHub-Event for compatibility,
# so their own headers are looked at first.
_EVENT_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-gitea-event", "gitea"),
    ("x-forgejo-event", "gitea"),
    ("x-gogs-event", "gitea"),
    ("x-gitlab-event", "gitlab"),
    ("x-github-event", "github"),
)

_DELIVERY_HEADERS: dict[str, tuple[str, ...]] = {
    "github": ("x-github-delivery",),
    "gitea": ("x-gitea-delivery", "x-forgejo-delivery", "x-gogs-delivery"),
    # X-Gitlab-Event-UUID is one id per event; Idempotency-Key (GitLab 17.4+) is kept across
    # retries of one hook. Either recognises a redelivery.
    "gitlab": ("x-gitlab-event-uuid", "idempotency-key"),
}

_SKIP_MARKERS: tuple[str, ...] = ("[ci skip]", "[skip ci]", "***no_ci***")


def detect_forge(headers: Mapping[str, str]) -> str | None:
    """``github`` / ``gitea`` / ``gitlab`` by the forge's event header, ``None`` when the
    request carries none (it is not a forge webhook). Header names are case-insensitive."""
    lowered = lower_headers(headers)
    for header, forge in _EVENT_HEADERS:
        if lowered.get(header):
            return forge
    return None


def repo_hint(forge: str, body: bytes) -> tuple[str, str] | None:
    """``(owner, name)`` the body claims to be about, or ``None`` if it names none.

    Read *only* to choose which repository's secret to verify the signature with (see the
    module docstring); never trust it for anything else. Never raises.
    """
    _check_forge(forge)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if forge == "gitlab":
        project = data.get("project")
        path = project.get("path_with_namespace") if isinstance(project, dict) else None
        if not isinstance(path, str):
            return None
        owner, _, name = path.rpartition("/")
    else:
        repo = data.get("repository")
        full_name = repo.get("full_name") if isinstance(repo, dict) else None
        if not isinstance(full_name, str) or full_name.count("/") != 1:
            return None
        owner, name = full_name.split("/")
    return (owner, name) if owner and name else None


def verify_signature(forge: str, headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Return if ``body`` was signed with ``secret``; else ``WebhookError(401)``.

    A missing header, a malformed one, a wrong signature and an empty ``secret`` are all
    refusals. The message says which header was expected, never what it contained.
    """
    _check_forge(forge)
    if not secret:
        raise WebhookError(
            401, f"{forge} webhook refused: the repository has no webhook secret configured"
        )
    lowered = lower_headers(headers)
    if forge == "gitlab":
        token = lowered.get("x-gitlab-token")
        if not token:
            raise WebhookError(401, "gitlab webhook refused: no X-Gitlab-Token header")
        if not hmac.compare_digest(token.encode(), secret.encode()):
            raise WebhookError(401, "gitlab webhook refused: X-Gitlab-Token does not match")
        return
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if forge == "github":
        header = "X-Hub-Signature-256"
        provided = lowered.get("x-hub-signature-256", "")
        if provided and not provided.startswith("sha256="):
            raise WebhookError(401, "github webhook refused: X-Hub-Signature-256 is not sha256=")
        provided = provided.removeprefix("sha256=")
    else:
        header = "X-Gitea-Signature"
        provided = (
            lowered.get("x-gitea-signature")
            or lowered.get("x-forgejo-signature")
            or lowered.get("x-gogs-signature")
            or ""
        ).removeprefix("sha256=")
    if not provided:
        raise WebhookError(401, f"{forge} webhook refused: no {header} header")
    provided_bytes = provided.strip().lower().encode("ascii", errors="replace")
    if not hmac.compare_digest(expected.encode(), provided_bytes):
        raise WebhookError(401, f"{forge} webhook refused: {header} does not match the body")


def parse_webhook(forge: str, headers: Mapping[str, str], body: bytes) -> HookEvent:
    """The build event a verified delivery asks for.

    Call only after ``verify_signature``. ``WebhookError(400)`` names what is malformed or
    missing; ``IgnoredEvent`` says why a genuine delivery starts no build. The event mapping
    of each forge is documented in ``_github``, ``_gitea`` and ``_gitlab``.
    """
    _check_forge(forge)
    lowered = lower_headers(headers)
    event_name = next(
        (
            lowered[header]
            for header, owner in _EVENT_HEADERS
            if owner == forge and header in lowered
        ),
        "",
    ).strip()[:100]  # untrusted text that may end up in an IgnoredEvent reason
    if not event_name:
        raise WebhookError(400, f"{forge} webhook: no event header")
    delivery_id = _delivery_id(forge, lowered, body)
    if forge == "github":
        return _github.parse(event_name, delivery_id, body)
    if forge == "gitea":
        return _gitea.parse(event_name, delivery_id, body)
    return _gitlab.parse(event_name, delivery_id, body)


def skip_ci(message: str) -> bool:
    """True if ``message`` asks not to build: ``[ci skip]``, ``[skip ci]`` or ``***NO_CI***``
    anywhere, in any case (Drone's ``skipMessageEval``).

    Drone applies this to the commit message and the pull request title, and never to tag,
    cron, custom, promote or rollback builds; that choice is the caller's.
    """
    lowered = message.lower()
    return any(marker in lowered for marker in _SKIP_MARKERS)


def _check_forge(forge: str) -> None:
    if forge not in WEBHOOK_FORGES:
        # a caller bug, not bad input: detect_forge only ever returns these names
        raise ValueError(f"unknown webhook forge {forge!r}: one of {', '.join(WEBHOOK_FORGES)}")


def _delivery_id(forge: str, lowered: Mapping[str, str], body: bytes) -> str:
    for header in _DELIVERY_HEADERS[forge]:
        value = lowered.get(header, "").strip()
        if value:
            return value[:200]
    # no id from the forge: the body's digest still recognises a redelivery of the same body
    return hashlib.sha256(body).hexdigest()
