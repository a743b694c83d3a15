"""GitLab webhook payloads → ``HookEvent``, the way Drone reads them (with one refinement).

Sources: GitLab's "Webhook events" documentation (push events: ``object_kind``, ``before``,
``after``, ``ref``, ``checkout_sha``, ``user_username`` / ``user_name`` / ``user_email`` /
``user_avatar``, ``project``, ``commits``; tag events: the same with ``object_kind:
tag_push``; merge request events: ``user``, ``project``, ``object_attributes`` with
``iid``, ``action``, ``oldrev``, ``source_branch``, ``target_branch``, ``source_project_id``,
``target_project_id``, ``last_commit``, ``source``, ``url``) and Drone's reading of them in
go-scm ``scm/driver/gitlab/webhook.go`` and ``service/hook/parser/parse.go``.

* ``Push Hook`` → ``push``; ``Tag Push Hook`` → ``tag``; an all-zero ``after`` (the ref was
  deleted) → ignored. The commit to build is ``checkout_sha`` (for an annotated tag
  ``after`` names the tag object).
* ``Merge Request Hook``: ``open`` → ``opened``, ``reopen`` → ``reopened``, ``close`` and
  ``merge`` → ``closed``, ``update`` → ``synchronized``. Refinement over Drone: GitLab sends
  ``update`` for every edit (title, labels, assignees, ...) and adds ``oldrev`` only when
  commits changed, so an ``update`` without ``oldrev`` is ignored instead of rebuilding the
  same commit. ``approved`` / ``unapproved`` / ... → ignored. A missing ``action`` (very old
  GitLab) counts as ``open``, as go-scm does.
* Every other hook (``Note Hook``, ``Issue Hook``, ``Pipeline Hook``, ``System Hook``, ...)
  → ignored.

Pushers: GitLab commits carry a name and e-mail but no user name, so ``author_login`` and
``author_avatar`` are the pusher's, while ``author_name`` / ``author_email`` are the head
commit's when the payload lists it (GitLab lists at most 20 commits), else the pusher's.
"""

from __future__ import annotations

from bastion.scm._payload import Obj, load_object
from bastion.scm._refs import classify_push, require_branch_name, require_sha
from bastion.scm.errors import IgnoredEvent, WebhookError
from bastion.scm.events import EVENT_PULL_REQUEST, HookEvent, is_zero_sha

FORGE = "gitlab"

MR_ACTIONS = {
    "open": "opened",
    "reopen": "reopened",
    "close": "closed",
    "merge": "closed",
    "update": "synchronized",
}


def project_path(payload: Obj) -> tuple[str, str]:
    """``(namespace, name)`` from ``project.path_with_namespace``; the namespace may hold
    subgroups (``group/sub``), the name is the last component."""
    path = payload.obj("project").text("path_with_namespace")
    namespace, _, name = path.rpartition("/")
    if not namespace or not name:
        raise WebhookError(
            400, f"gitlab payload: project.path_with_namespace {path!r} is not namespace/name"
        )
    return namespace, name


def parse(event_name: str, delivery_id: str, body: bytes) -> HookEvent:
    what = f"{FORGE} {event_name or 'unnamed'} payload"
    payload = load_object(body, what)
    if event_name in ("Push Hook", "Tag Push Hook"):
        return _push(payload, delivery_id, what, tag_hook=event_name == "Tag Push Hook")
    if event_name == "Merge Request Hook":
        return _merge_request(payload, delivery_id, what)
    raise IgnoredEvent(f"gitlab event {event_name!r} does not start builds")


def _push(payload: Obj, delivery_id: str, what: str, *, tag_hook: bool) -> HookEvent:
    ref = payload.text("ref")
    if is_zero_sha(payload.opt_text("after")):
        raise IgnoredEvent(f"gitlab push deleted {ref}: nothing to build")
    event, branch, tag = classify_push(ref, what)
    if (event == "tag") != tag_hook:
        raise WebhookError(400, f"{what}: ref {ref} does not match the hook type")
    after = payload.opt_text("checkout_sha") or payload.opt_text("after")
    require_sha(after, "checkout_sha", what)
    commits = payload.objs("commits")
    # the head commit when listed (match by id), else the last one, which is Drone's choice
    head = next((c for c in commits if c.opt_text("id") == after), None)
    if head is None and commits:
        head = commits[-1]
    author = head.opt_obj("author") if head is not None else None
    project = payload.obj("project")
    owner, name = project_path(payload)
    message = head.opt_text("message") if head is not None else ""
    if not message and tag:
        message = payload.opt_text("message")  # an annotated tag's own message
    return HookEvent(
        forge=FORGE,
        delivery_id=delivery_id,
        event=event,
        repo_owner=owner,
        repo_name=name,
        repo_forge_id=project.opt_id("id"),
        clone_url=project.opt_text("git_http_url"),
        repo_link=project.opt_text("web_url"),
        ref=ref,
        before=payload.opt_text("before"),
        after=after,
        branch=branch,
        source_branch=branch,
        message=message,
        author_login=payload.opt_text("user_username"),
        author_name=(author.opt_text("name") if author else "") or payload.opt_text("user_name"),
        author_email=(author.opt_text("email") if author else "") or payload.opt_text("user_email"),
        author_avatar=payload.opt_text("user_avatar"),
        sender=payload.opt_text("user_username"),
        tag=tag,
        link=head.opt_text("url") if head is not None else "",
    )


def _merge_request(payload: Obj, delivery_id: str, what: str) -> HookEvent:
    attrs = payload.obj("object_attributes")
    raw_action = attrs.opt_text("action") or "open"
    action = MR_ACTIONS.get(raw_action)
    if action is None:
        raise IgnoredEvent(f"gitlab merge request {raw_action}: does not start builds")
    if raw_action == "update" and not attrs.has("oldrev"):
        raise IgnoredEvent("gitlab merge request update without new commits: nothing to build")
    number = attrs.integer("iid")
    if number <= 0:
        raise WebhookError(400, f"{what}: object_attributes.iid must be positive")
    last_commit = attrs.obj("last_commit")
    title = attrs.opt_text("title")
    user = payload.opt_obj("user")
    source = attrs.opt_obj("source")  # null when the source project was deleted
    project = payload.obj("project")
    owner, name = project_path(payload)
    source_id, target_id = attrs.opt_id("source_project_id"), attrs.opt_id("target_project_id")
    # a different (or unknown) source project is a fork: when in doubt, be strict
    fork = not source_id or not target_id or source_id != target_id
    return HookEvent(
        forge=FORGE,
        delivery_id=delivery_id,
        event=EVENT_PULL_REQUEST,
        action=action,
        repo_owner=owner,
        repo_name=name,
        repo_forge_id=project.opt_id("id"),
        clone_url=project.opt_text("git_http_url"),
        repo_link=project.opt_text("web_url"),
        # GitLab keeps each merge request's head in the target project under this ref
        ref=f"refs/merge-requests/{number}/head",
        after=require_sha(last_commit.text("id"), "object_attributes.last_commit.id", what),
        branch=require_branch_name(
            attrs.text("target_branch"), "object_attributes.target_branch", what
        ),
        source_branch=require_branch_name(
            attrs.text("source_branch"), "object_attributes.source_branch", what
        ),
        source_repo=source.opt_text("path_with_namespace") if source is not None else "",
        message=title,
        title=title,
        author_login=user.opt_text("username") if user is not None else "",
        author_name=user.opt_text("name") if user is not None else "",
        author_avatar=user.opt_text("avatar_url") if user is not None else "",
        sender=user.opt_text("username") if user is not None else "",
        pull_request=number,
        fork=fork,
        link=attrs.opt_text("url"),
    )
