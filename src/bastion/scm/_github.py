"""GitHub webhook payloads → ``HookEvent``, the way Drone reads them.

Sources: GitHub's "Webhook events and payloads" documentation (``push``, ``pull_request``,
``create``, ``delete``, ``ping``) and what Drone reads of them: go-scm
``scm/driver/github/webhook.go`` (fields, action names) and Drone's
``service/hook/parser/parse.go`` (which hooks become builds).

* ``push`` of ``refs/heads/*`` → ``push``; of ``refs/tags/*`` → ``tag`` (GitHub sends a push
  for every new tag, and Drone builds tags from it); ``deleted: true`` or an all-zero
  ``after`` → ignored, as Drone ignores them.
* ``pull_request`` ``opened`` / ``synchronize`` / ``reopened`` / ``closed`` → ``pull_request``
  with Drone's action spelling (``synchronized``); every other action (``labeled``,
  ``edited``, ``assigned``, ...) → ignored.
* ``create`` and ``delete`` → ignored: Drone takes tags from the push event, which carries
  the commit, and a created branch arrives as a push as well.
* ``ping`` and everything else → ignored.
"""

from __future__ import annotations

from bastion.scm._payload import Obj, load_object
from bastion.scm._refs import (
    classify_push,
    require_branch_name,
    require_sha,
)
from bastion.scm.errors import IgnoredEvent, WebhookError
from bastion.scm.events import EVENT_PULL_REQUEST, HookEvent, is_zero_sha

FORGE = "github"

# GitHub action → Drone action. Anything else starts no build.
PR_ACTIONS = {
    "opened": "opened",
    "synchronize": "synchronized",
    "reopened": "reopened",
    "closed": "closed",
}


def repo_full_name(payload: Obj) -> tuple[str, str]:
    """``(owner, name)`` of ``repository``: ``full_name``, else ``owner.login`` + ``name``."""
    repo = payload.obj("repository")
    full_name = repo.opt_text("full_name")
    if full_name.count("/") == 1 and all(full_name.split("/")):
        owner, name = full_name.split("/")
        return owner, name
    owner_obj = repo.obj("owner")
    owner = owner_obj.opt_text("login") or owner_obj.text("name")
    return owner, repo.text("name")


def parse(event_name: str, delivery_id: str, body: bytes) -> HookEvent:
    what = f"{FORGE} {event_name or 'unnamed'} payload"
    payload = load_object(body, what)
    if event_name == "push":
        return _push(payload, delivery_id, what)
    if event_name == "pull_request":
        return _pull_request(payload, delivery_id, what)
    if event_name == "ping":
        raise IgnoredEvent("github ping: the webhook reached Bastion")
    if event_name in ("create", "delete"):
        raise IgnoredEvent(
            f"github {event_name} event: branches and tags are built from the push event"
        )
    raise IgnoredEvent(f"github event {event_name!r} does not start builds")


def _push(payload: Obj, delivery_id: str, what: str) -> HookEvent:
    ref = payload.text("ref")
    after = payload.opt_text("after")
    if payload.opt_bool("deleted") or is_zero_sha(after):
        raise IgnoredEvent(f"github push deleted {ref}: nothing to build")
    event, branch, tag = classify_push(ref, what)
    head = payload.opt_obj("head_commit")
    # An annotated tag's "after" is the tag object; the commit it points to is head_commit
    # (go-scm issue #8). Building the tag object's id would check out nothing.
    if tag and head is not None and head.has("id"):
        after = head.text("id")
    require_sha(after, "after", what)
    author = head.opt_obj("author") if head is not None else None
    sender = payload.opt_obj("sender")
    owner, name = repo_full_name(payload)
    repo = payload.obj("repository")
    return HookEvent(
        forge=FORGE,
        delivery_id=delivery_id,
        event=event,
        repo_owner=owner,
        repo_name=name,
        repo_forge_id=repo.opt_id("id"),
        clone_url=repo.opt_text("clone_url"),
        repo_link=repo.opt_text("html_url"),
        ref=ref,
        before=payload.opt_text("before"),
        after=after,
        branch=branch,
        source_branch=branch,
        message=head.opt_text("message") if head is not None else "",
        author_login=author.opt_text("username") if author is not None else "",
        author_name=author.opt_text("name") if author is not None else "",
        author_email=author.opt_text("email") if author is not None else "",
        # commit authors carry no avatar; Drone shows the sender's instead
        author_avatar=sender.opt_text("avatar_url") if sender is not None else "",
        sender=sender.opt_text("login") if sender is not None else "",
        tag=tag,
        link=payload.opt_text("compare"),
    )


def _pull_request(payload: Obj, delivery_id: str, what: str) -> HookEvent:
    raw_action = payload.text("action")
    action = PR_ACTIONS.get(raw_action)
    if action is None:
        raise IgnoredEvent(f"github pull request {raw_action}: does not start builds")
    pr = payload.obj("pull_request")
    number = payload.integer("number") if payload.has("number") else pr.integer("number")
    if number <= 0:
        raise WebhookError(400, f"{what}: number must be positive, got {number}")
    head = pr.obj("head")
    base = pr.obj("base")
    head_repo = head.opt_obj("repo")  # null when the fork has been deleted
    base_repo = base.opt_obj("repo") or payload.obj("repository")
    title = pr.opt_text("title")
    user = pr.opt_obj("user")
    sender = payload.opt_obj("sender")
    owner, name = repo_full_name(payload)
    repo = payload.obj("repository")
    before = base.opt_text("sha")
    if before:
        require_sha(before, "pull_request.base.sha", what)
    return HookEvent(
        forge=FORGE,
        delivery_id=delivery_id,
        event=EVENT_PULL_REQUEST,
        action=action,
        repo_owner=owner,
        repo_name=name,
        repo_forge_id=repo.opt_id("id"),
        clone_url=repo.opt_text("clone_url"),
        repo_link=repo.opt_text("html_url"),
        ref=f"refs/pull/{number}/head",
        before=before,
        after=require_sha(head.text("sha"), "pull_request.head.sha", what),
        branch=require_branch_name(base.text("ref"), "pull_request.base.ref", what),
        source_branch=require_branch_name(head.text("ref"), "pull_request.head.ref", what),
        source_repo=head_repo.opt_text("full_name") if head_repo is not None else "",
        message=title,
        title=title,
        author_login=user.opt_text("login") if user is not None else "",
        author_avatar=user.opt_text("avatar_url") if user is not None else "",
        sender=sender.opt_text("login") if sender is not None else "",
        pull_request=number,
        fork=is_fork(head_repo, base_repo),
        link=pr.opt_text("html_url"),
    )


def is_fork(head_repo: Obj | None, base_repo: Obj) -> bool:
    """The head repository is not the base repository. Compared by id when both have one
    (ids survive renames), else by full name. A missing head repository (a deleted fork)
    counts as a fork: when in doubt, the pull request gets the stricter treatment."""
    if head_repo is None:
        return True
    head_id, base_id = head_repo.opt_id("id"), base_repo.opt_id("id")
    if head_id and base_id:
        return head_id != base_id
    head_name, base_name = head_repo.opt_text("full_name"), base_repo.opt_text("full_name")
    return not head_name or head_name.lower() != base_name.lower()
