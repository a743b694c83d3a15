"""Gitea (and Gogs, Forgejo) webhook payloads → ``HookEvent``, the way Drone reads them.

Sources: Gitea's ``modules/structs/hook.go`` (``PushPayload``: ``ref``, ``before``,
``after``, ``compare_url``, ``commits``, ``head_commit``, ``repository``, ``pusher``,
``sender``; ``PullRequestPayload``: ``action``, ``number``, ``pull_request``; the actions
``opened``, ``closed``, ``reopened``, ``synchronized``, ``edited``, ``label_updated``, ...),
``modules/structs/pull.go`` (``head`` / ``base``: ``ref``, ``sha``, ``repo_id``, ``repo``),
and Drone's reading of them in go-scm ``scm/driver/gitea/webhook.go`` and
``service/hook/parser/parse.go``.

* ``push`` of a branch → ``push``; of a tag → ``tag`` (Gitea sends a push for new tags too;
  Drone builds tags from it and ignores ``create``); deletions (all-zero ``after``) → ignored.
* ``pull_request`` ``opened`` / ``synchronized`` / ``reopened`` / ``closed`` →
  ``pull_request``; other actions (``edited``, ``label_updated``, ``assigned``, ...) →
  ignored. Gitea sends a merged pull request as ``closed``.
* ``create``, ``delete`` and every other event → ignored.
"""

from __future__ import annotations

from bastion.scm._github import repo_full_name
from bastion.scm._payload import Obj, load_object
from bastion.scm._refs import classify_push, require_branch_name, require_sha
from bastion.scm.errors import IgnoredEvent, WebhookError
from bastion.scm.events import EVENT_PULL_REQUEST, HookEvent, is_zero_sha

FORGE = "gitea"

PR_ACTIONS = {
    "opened": "opened",
    "synchronized": "synchronized",
    "synchronize": "synchronized",  # GitHub's spelling, which some Gitea-compatible forges send
    "reopened": "reopened",
    "closed": "closed",
}


def parse(event_name: str, delivery_id: str, body: bytes) -> HookEvent:
    what = f"{FORGE} {event_name or 'unnamed'} payload"
    payload = load_object(body, what)
    if event_name == "push":
        return _push(payload, delivery_id, what)
    if event_name == "pull_request":
        return _pull_request(payload, delivery_id, what)
    if event_name in ("create", "delete"):
        raise IgnoredEvent(
            f"gitea {event_name} event: branches and tags are built from the push event"
        )
    raise IgnoredEvent(f"gitea event {event_name!r} does not start builds")


def _head_commit(payload: Obj) -> Obj | None:
    """The pushed head commit: ``head_commit`` (Gitea ≥ 1.17), else the first entry of
    ``commits``, which Gitea lists newest first (what Drone reads)."""
    head = payload.opt_obj("head_commit")
    if head is not None:
        return head
    commits = payload.objs("commits")
    return commits[0] if commits else None


def _push(payload: Obj, delivery_id: str, what: str) -> HookEvent:
    ref = payload.text("ref")
    after = payload.opt_text("after")
    if is_zero_sha(after):
        raise IgnoredEvent(f"gitea push deleted {ref}: nothing to build")
    event, branch, tag = classify_push(ref, what)
    head = _head_commit(payload)
    # as on GitHub, an annotated tag's "after" may name the tag object, not the commit
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
        # Gitea's commit authors carry no avatar; Drone shows the sender's instead
        author_avatar=sender.opt_text("avatar_url") if sender is not None else "",
        sender=_login(sender),
        tag=tag,
        link=payload.opt_text("compare_url"),
    )


def _login(user: Obj | None) -> str:
    """Gitea users have ``login``; older versions and Gogs also (or only) ``username``."""
    if user is None:
        return ""
    return user.opt_text("login") or user.opt_text("username")


def _pull_request(payload: Obj, delivery_id: str, what: str) -> HookEvent:
    raw_action = payload.text("action")
    action = PR_ACTIONS.get(raw_action)
    if action is None:
        raise IgnoredEvent(f"gitea pull request {raw_action}: does not start builds")
    pr = payload.obj("pull_request")
    number = payload.integer("number") if payload.has("number") else pr.integer("number")
    if number <= 0:
        raise WebhookError(400, f"{what}: number must be positive, got {number}")
    head = pr.obj("head")
    base = pr.obj("base")
    head_repo = head.opt_obj("repo")
    title = pr.opt_text("title")
    user = pr.opt_obj("user")
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
        # Gitea keeps every pull request's head at refs/pull/N/head in the base repository
        ref=f"refs/pull/{number}/head",
        before=before,
        after=require_sha(head.text("sha"), "pull_request.head.sha", what),
        branch=require_branch_name(base.text("ref"), "pull_request.base.ref", what),
        source_branch=require_branch_name(head.text("ref"), "pull_request.head.ref", what),
        source_repo=head_repo.opt_text("full_name") if head_repo is not None else "",
        message=title,
        title=title,
        author_login=_login(user),
        author_name=user.opt_text("full_name") if user is not None else "",
        author_email=user.opt_text("email") if user is not None else "",
        author_avatar=user.opt_text("avatar_url") if user is not None else "",
        sender=_login(payload.opt_obj("sender")),
        pull_request=number,
        fork=_is_fork(head, base, head_repo, repo),
        link=pr.opt_text("html_url"),
    )


def _is_fork(head: Obj, base: Obj, head_repo: Obj | None, repo: Obj) -> bool:
    """Head and base live in different repositories: by ``repo_id`` (always sent by Gitea),
    else by the repository objects' ids or names. When nothing tells, it is a fork."""
    head_id, base_id = head.opt_id("repo_id"), base.opt_id("repo_id")
    if head_id and base_id and head_id != "0" and base_id != "0":
        return head_id != base_id
    if head_repo is None:
        return True
    base_repo = base.opt_obj("repo") or repo
    head_id, base_id = head_repo.opt_id("id"), base_repo.opt_id("id")
    if head_id and base_id:
        return head_id != base_id
    head_name, base_name = head_repo.opt_text("full_name"), base_repo.opt_text("full_name")
    return not head_name or head_name.lower() != base_name.lower()
