"""From "this commit changed" to a stored build: config, conditions, policy, stages.

``TriggerService.trigger(repo, request)`` is the one path for every build — webhook, local
push, custom build from the API, restart — so every build gets the same checks:

1. push / pull_request whose commit message or title says ``[ci skip]`` / ``[skip ci]``:
   no build. Pull requests of a repository that ignores them (or forks, when it ignores
   forks): no build.
2. The config file (``repo.config_path``) is read *at the commit being built*, from the
   local forge or the forge's API. Missing, unreadable or invalid: a build with status
   ``error`` whose error is the reason (for invalid YAML every diagnostic with its line), and
   no stages.
3. Pipelines in dependency order: the ``trigger`` conditions (without ``status``, which is
   decided when the dependencies finish) are matched against the build; a mismatch makes a
   ``skipped`` stage whose error says why. As in Drone, a skipped pipeline is bypassed: whoever
   depended on it depends on its dependencies instead. Then ``pending`` (no dependency left)
   or ``waiting_on_dependencies``.
4. The repository's trust policy reviews every pipeline that may run. Any refusal makes the
   build ``error`` with every reason (each names the pipeline and the step) and no stages:
   nothing of it runs.
5. A protected repository's config must carry a valid signature
   (``services.approvals.signature_problem``); otherwise the build and every stage that
   would run are ``blocked`` (``hold = "signature"``) until a repository administrator
   approves or declines it. The repository's approval mode may hold it too
   (``approval_problem``: by default, pull requests from forks; ``hold = "approval"``).
   Restarts and custom builds come through here too, so an old verdict is never reused.

A build started by a forge event may supersede earlier ones: with the repository's
``auto_cancel_pushes`` / ``auto_cancel_pulls``, unfinished builds of the same branch or pull
request are cancelled (``_supersede``).

Untrusted text (commit message, branch, title) is only ever compared and stored; the config
is parsed as it is in the repository, with nothing substituted into it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from bastion.engine.hardening import Hardening
from bastion.policy.trust import review_pipeline
from bastion.rpc.api import PARAM_NAME_PATTERN, TARGET_PATTERN
from bastion.scm.errors import ForgeError
from bastion.scm.events import HookEvent
from bastion.scm.webhooks import skip_ci
from bastion.server.errors import BadRequest, Conflict, Forbidden
from bastion.server.forges import ForgeAccess
from bastion.server.services.approvals import (
    DEPLOY_EVENTS,
    HOLD_APPROVAL,
    HOLD_DEPLOY,
    HOLD_SIGNATURE,
    approval_problem,
    deploy_problem,
    deploy_refusal,
    signature_problem,
)
from bastion.server.services.builds import BuildService
from bastion.server.settings import ServerSettings
from bastion.spec import dag
from bastion.spec.conditions import MatchContext, condition_matches, explain_mismatch
from bastion.spec.context import Build as CtxBuild
from bastion.spec.context import BuildContext, Commit, System
from bastion.spec.context import Repo as CtxRepo
from bastion.spec.model import Condition, Pipeline
from bastion.spec.parse import parse
from bastion.store.repository import Store
from bastion.store.types import Build, NewBuild, NewStage, Repo, Status

log = logging.getLogger("bastion.server")

_SKIP_CI_EVENTS = frozenset({"push", "pull_request"})
_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
_MAX_ERROR_CHARS = 8000
_TARGET = re.compile(TARGET_PATTERN)
_PARAM = re.compile(PARAM_NAME_PATTERN)
_MAX_PARAM = 4096
_RESERVED_PARAM_PREFIXES = ("DRONE_", "CI_")
_SUPERSEDE_WINDOW = 50  # how many recent builds auto-cancel looks at


@dataclass(frozen=True)
class BuildRequest:
    """What to build, in Drone's terms; every text field may be untrusted."""

    event: str
    sha: str
    action: str = ""
    ref: str = ""
    before: str = ""
    branch: str = ""  # pushes: the branch; pull requests: the target branch; tags: ""
    source_branch: str = ""
    source_repo: str = ""
    message: str = ""
    title: str = ""
    author_login: str = ""
    author_name: str = ""
    author_email: str = ""
    author_avatar: str = ""
    sender: str = ""
    link: str = ""
    pull_request: int = 0
    tag: str = ""
    fork: bool = False
    deploy_to: str = ""
    cron: str = ""
    trigger: str = "@hook"
    parent: int = 0
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hook(cls, event: HookEvent) -> BuildRequest:
        return cls(
            event=event.event,
            sha=event.after,
            action=event.action,
            ref=event.ref,
            before=event.before,
            branch=event.branch,
            source_branch=event.source_branch or event.branch,
            source_repo=event.source_repo,
            message=event.message,
            title=event.title,
            author_login=event.author_login,
            author_name=event.author_name,
            author_email=event.author_email,
            author_avatar=event.author_avatar,
            sender=event.sender,
            link=event.link,
            pull_request=event.pull_request,
            tag=event.tag,
            fork=event.fork,
            trigger="@hook",
        )

    @classmethod
    def from_build(cls, build: Build, *, trigger: str) -> BuildRequest:
        """The request that made ``build``, to run it again (restart)."""
        return cls(
            event=build.event,
            sha=build.after,
            action=build.action,
            ref=build.ref,
            before=build.before,
            branch=build.target,
            source_branch=build.source,
            source_repo=build.source_repo,
            message=build.message,
            title=build.title,
            author_login=build.author_login,
            author_name=build.author_name,
            author_email=build.author_email,
            author_avatar=build.author_avatar,
            sender=build.sender,
            link=build.link,
            pull_request=_pull_request_number(build.ref) if build.event == "pull_request" else 0,
            tag=build.ref.removeprefix("refs/tags/") if build.event == "tag" else "",
            fork=build.fork,
            deploy_to=build.deploy_to,
            cron=build.cron,
            trigger=trigger,
            parent=build.number,
            params=dict(build.params),
        )


@dataclass(frozen=True)
class TriggerOutcome:
    """The build created, or why none was (``[ci skip]``, ignored pull requests)."""

    build: Build | None
    reason: str = ""


class TriggerService:
    def __init__(
        self,
        settings: ServerSettings,
        forges: ForgeAccess,
        builds: BuildService,
        hardening: Hardening,
        store: Store,
        forge_head: Callable[[Repo, str], str | None] | None = None,
    ) -> None:
        """``forge_head(repo, branch)``: the head commit of a forge repository's branch
        (None: no such branch; ``ForgeError`` when the forge cannot be asked)."""
        self._settings = settings
        self._forges = forges
        self._builds = builds
        self._hardening = hardening
        self._store = store
        self._forge_head = forge_head

    def trigger(self, repo: Repo, request: BuildRequest) -> TriggerOutcome:
        reason = self._not_built(repo, request)
        if reason:
            log.info("no build for %s at %s: %s", repo.slug, request.sha[:12], reason)
            return TriggerOutcome(None, reason)
        new_build, stages = self.plan(repo, request)
        build = self._builds.create(repo, new_build, stages)
        self._supersede(repo, build)
        return TriggerOutcome(build)

    def _supersede(self, repo: Repo, build: Build) -> None:
        """Auto-cancel: with ``auto_cancel_pushes``, a push cancels the unfinished builds of
        earlier pushes to the same branch; with ``auto_cancel_pulls``, a pull request's new
        commit cancels its earlier unfinished builds. Held builds are cancelled too."""
        if build.event == "push" and repo.auto_cancel_pushes:
            key = ("push", build.target)
        elif build.event == "pull_request" and repo.auto_cancel_pulls:
            key = ("pull_request", build.ref)
        else:
            return
        for old in self._store.list_builds(repo.id, page=1, per_page=_SUPERSEDE_WINDOW):
            same = (old.event, old.target if old.event == "push" else old.ref) == key
            if old.number >= build.number or old.status.done or not same:
                continue
            try:
                self._builds.cancel(repo, old, by=f"auto-cancel (superseded by #{build.number})")
            except Conflict:
                continue  # it finished in the meantime
            log.info("build %s#%d superseded by #%d", repo.slug, old.number, build.number)

    def restart(self, repo: Repo, build: Build, by: str) -> Build:
        """A new build of the same commit and event, with ``parent`` = the old number. The
        config is read and checked again: what was refused stays refused, and a repository
        that lost its trust since does not run with the old verdict."""
        request = BuildRequest.from_build(build, trigger=by)
        new_build, stages = self.plan(repo, request)
        return self._builds.create(repo, new_build, stages)

    def promote(
        self,
        repo: Repo,
        build: Build,
        *,
        target: str,
        params: Mapping[str, str],
        by: str,
        event: str = "promote",
    ) -> Build:
        """A ``promote`` (or ``rollback``) build of ``build``'s commit to ``target``: a new
        build with ``parent`` = its number, the deploy target and parameters set. A target
        defined as an environment whose branches do not include the build's branch is refused
        (403) before anything is stored."""
        if event not in DEPLOY_EVENTS:
            raise BadRequest(f"event {event!r}: a deployment is promote or rollback")
        if not _TARGET.match(target):
            raise BadRequest(
                f"target {target[:80]!r}: 1 to 64 letters, digits, '.', '_' or '-' "
                "(e.g. production)"
            )
        for key, value in params.items():
            if not _PARAM.match(key) or len(value) > _MAX_PARAM:
                raise BadRequest(
                    f"parameter {key[:64]!r}: names are letters, digits and _ (not starting "
                    f"with a digit), values at most {_MAX_PARAM} characters"
                )
            if key.upper().startswith(_RESERVED_PARAM_PREFIXES):
                raise BadRequest(
                    f"parameter {key!r}: names starting with DRONE_ or CI_ are Bastion's own "
                    "variables; choose another name"
                )
        if build.event in DEPLOY_EVENTS or build.event == "pull_request":
            raise BadRequest(
                f"build #{build.number} is a {build.event} build: promote a build of a branch "
                "or tag"
            )
        environment = self._store.get_environment(repo.id, target)
        refused = deploy_refusal(environment, branch=build.target)
        if refused is not None:
            raise Forbidden(refused)
        request = replace(
            BuildRequest.from_build(build, trigger=by),
            event=event,
            deploy_to=target,
            params=dict(params),
            sender=by,
            parent=build.number,
            action="",
        )
        new_build, stages = self.plan(repo, request)
        return self._builds.create(repo, new_build, stages)

    def custom(self, repo: Repo, *, branch: str, commit: str, by: str) -> Build:
        """A ``custom`` build of ``commit`` (default: the head of ``branch``, default: the
        repository's default branch).

        An explicit commit must be on the branch as far as the server can see: on the local
        forge, the branch's head or an ancestor of it; on a forge, the branch's head (the
        forge's API). Otherwise anyone with write access could run any commit — another
        branch's, a fork's — as a build of ``main``, with the secrets limited to ``main``."""
        branch = branch or repo.default_branch
        if not _BRANCH.match(branch) or ".." in branch or branch.startswith(("-", "/")):
            raise BadRequest(f"query parameter branch: {branch[:100]!r} is not a branch name")
        if commit:
            if not _SHA.match(commit):
                raise BadRequest(
                    "query parameter commit: expected a full commit id (40 or 64 lower-case "
                    "hex digits)"
                )
            self._check_on_branch(repo, commit, branch)
            sha = commit
        elif repo.forge == "local":
            try:
                head = self._forges.branch_head(repo, branch)
            except ForgeError as exc:
                raise BadRequest(f"cannot read branch {branch} of {repo.slug}: {exc}") from exc
            if head is None:
                raise BadRequest(f"{repo.slug} has no branch {branch!r} (push to it first)")
            sha = head
        else:
            raise BadRequest(
                f"query parameter commit is required for {repo.forge} repositories: give the "
                "commit id to build"
            )
        message, author_name, author_email = "", "", ""
        try:
            info = self._forges.commit(repo, sha)
        except (ForgeError, ValueError) as exc:
            raise BadRequest(f"commit {sha[:12]} of {repo.slug}: {exc}") from exc
        if info is not None:
            sha, message = info.sha, info.message
            author_name, author_email = info.author_name, info.author_email
        request = BuildRequest(
            event="custom",
            sha=sha,
            ref=f"refs/heads/{branch}",
            branch=branch,
            source_branch=branch,
            message=message,
            author_login=by,
            author_name=author_name,
            author_email=author_email,
            sender=by,
            trigger=by,
        )
        new_build, stages = self.plan(repo, request)
        return self._builds.create(repo, new_build, stages)

    def _check_on_branch(self, repo: Repo, sha: str, branch: str) -> None:
        try:
            if repo.forge == "local":
                if not self._forges.on_branch(repo, sha, branch):
                    raise BadRequest(
                        f"commit {sha[:12]} is not on branch {branch!r} of {repo.slug}: give "
                        "the branch it is on, or leave commit out to build the branch's head"
                    )
                return
            if self._forge_head is None:
                raise BadRequest(
                    f"cannot check that commit {sha[:12]} is on branch {branch!r}: this server "
                    f"does not call {repo.forge}'s API"
                )
            head = self._forge_head(repo, branch)
        except (ForgeError, ValueError) as exc:
            raise BadRequest(
                f"cannot check that commit {sha[:12]} is on branch {branch!r} of {repo.slug}: {exc}"
            ) from exc
        if head != sha:
            raise BadRequest(
                f"commit {sha[:12]} is not the head of branch {branch!r} of {repo.slug} on "
                f"{repo.forge}: custom builds of a forge repository build a branch's head"
            )

    def _not_built(self, repo: Repo, request: BuildRequest) -> str:
        if request.event in _SKIP_CI_EVENTS and skip_ci(f"{request.message}\n{request.title}"):
            return "the commit message or title asks to skip CI ([ci skip] / [skip ci])"
        if request.event == "pull_request" and repo.ignore_pulls:
            return f"{repo.slug} ignores pull requests"
        if request.event == "pull_request" and request.fork and repo.ignore_forks:
            return f"{repo.slug} ignores pull requests from forks"
        return ""

    def plan(self, repo: Repo, request: BuildRequest) -> tuple[NewBuild, list[NewStage]]:
        """The build and stages ``request`` makes (nothing stored yet)."""
        base = _new_build(request)
        try:
            raw = self._forges.fetch_config(repo, request.sha)
        except (ForgeError, ValueError) as exc:
            return _errored(base, f"cannot read {repo.config_path} at {request.sha[:12]}: {exc}")
        if raw is None:
            return _errored(
                base,
                f"there is no {repo.config_path} at commit {request.sha[:12]}: add one to build "
                "this repository (or change the repository's config path)",
            )
        result = parse(raw, repo.config_path)
        if not result.ok:
            lines = [d.format() for d in result.diagnostics if d.is_error]
            return _errored(
                base, f"{repo.config_path} at {request.sha[:12]} is invalid:\n" + "\n".join(lines)
            )
        manifest = result.manifest
        ctx = self._context(repo, request)
        match = MatchContext.from_build(ctx)
        graph = {p.name: tuple(p.depends_on) for p in manifest.pipelines}
        try:
            order = dag.topological_order(graph)
        except ValueError as exc:  # parse reports cycles; this is a backstop
            return _errored(base, f"{repo.config_path}: {exc}")
        by_name = {p.name: p for p in manifest.pipelines}
        skipped: dict[str, str] = {}
        for name in order:
            pipeline = by_name[name]
            conditions = pipeline.trigger.model_copy(update={"status": Condition()})
            mismatch = explain_mismatch(conditions, match, for_step=False)
            if mismatch is not None:
                skipped[name] = f"trigger does not match: {mismatch}"
        deps = dag.bypass(graph, set(skipped))

        # A fork's pull request runs a stranger's config: never trusted, whatever the
        # repository is (the runner is told the same through StageDetails).
        trusted = repo.trusted and not request.fork
        refusals: list[str] = []
        for pipeline in manifest.pipelines:
            if pipeline.name in skipped:
                continue
            for refusal in review_pipeline(
                pipeline,
                trusted=trusted,
                max_mem_limit=self._hardening.max_mem_limit,
                reserved_paths=self._hardening.runner_paths,
            ):
                refusals.append(f"pipeline {pipeline.name!r}: {refusal.message}")
        if refusals:
            return _errored(
                base,
                f"{repo.slug} may not run this build ("
                + (
                    "trusted repository"
                    if trusted
                    else "a pull request from a fork is never trusted"
                    if repo.trusted
                    else "untrusted repository"
                )
                + "):\n"
                + "\n".join(refusals),
            )

        stages = [
            _stage(number, pipeline, skipped.get(pipeline.name, ""), deps[pipeline.name])
            for number, pipeline in enumerate(manifest.pipelines, start=1)
        ]
        if all(s.status == Status.SKIPPED for s in stages):
            return _replace_status(base, Status.SKIPPED), stages
        unsigned = signature_problem(self._store, repo, raw)
        unapproved = approval_problem(
            repo, self._settings.approval_mode, event=request.event, fork=request.fork
        )
        undeployed = None
        if request.event in DEPLOY_EVENTS:
            environment = self._store.get_environment(repo.id, request.deploy_to)
            refused = deploy_refusal(environment, branch=request.branch)
            if refused is not None:
                return _errored(base, refused)
            undeployed = deploy_problem(environment)
        reasons = [r for r in (unsigned, unapproved, undeployed) if r is not None]
        if reasons:
            held = [
                replace(s, status=Status.BLOCKED) if s.status != Status.SKIPPED else s
                for s in stages
            ]
            hold = (
                HOLD_SIGNATURE
                if unsigned is not None
                else HOLD_APPROVAL
                if unapproved is not None
                else HOLD_DEPLOY
            )
            return replace(base, status=Status.BLOCKED, error="\n".join(reasons), hold=hold), held
        return base, stages

    def _context(self, repo: Repo, request: BuildRequest) -> BuildContext:
        settings = self._settings
        return BuildContext(
            repo=CtxRepo(
                owner=repo.owner,
                name=repo.name,
                branch=repo.default_branch,
                private=repo.private,
                visibility=repo.visibility,
                link=repo.link,
                http_url=repo.http_url,
                ssh_url=repo.ssh_url,
                trusted=repo.trusted and not request.fork,
            ),
            commit=Commit(
                sha=request.sha,
                before=request.before,
                ref=request.ref,
                branch=request.branch,
                source_branch=request.source_branch,
                message=request.message,
                author=request.author_login,
                author_name=request.author_name,
                author_email=request.author_email,
                author_avatar=request.author_avatar,
                link=request.link,
            ),
            build=CtxBuild(
                parent=request.parent,
                event=request.event,
                action=request.action,
                trigger=request.trigger,
                tag=request.tag,
                pull_request=request.pull_request,
                pull_request_title=request.title,
                deploy_to=request.deploy_to,
                cron=request.cron,
                link=request.link,
                fork=request.fork,
            ),
            system=System(
                host=settings.link_host,
                hostname=settings.link_host,
                proto=settings.link_proto,
            ),
        )


def _stage(number: int, pipeline: Pipeline, skip_reason: str, deps: tuple[str, ...]) -> NewStage:
    status_cond = pipeline.trigger.status
    on_success = condition_matches(status_cond, "success")
    on_failure = not status_cond.empty and condition_matches(status_cond, "failure")
    if skip_reason:
        status, error = Status.SKIPPED, skip_reason
    elif deps:
        status, error = Status.WAITING, ""
    else:
        status, error = Status.PENDING, ""
    return NewStage(
        number=number,
        name=pipeline.name,
        status=status,
        kind=pipeline.kind,
        type=pipeline.type,
        os=pipeline.platform.os,
        arch=pipeline.platform.arch,
        variant=pipeline.platform.variant,
        labels=dict(pipeline.node),
        depends_on=deps,
        on_success=on_success,
        on_failure=on_failure,
        error=error,
    )


def _new_build(request: BuildRequest) -> NewBuild:
    return NewBuild(
        event=request.event,
        action=request.action,
        link=request.link,
        title=request.title,
        message=request.message,
        before=request.before,
        after=request.sha,
        ref=request.ref,
        source_repo=request.source_repo,
        source=request.source_branch or request.branch,
        target=request.branch,
        author_login=request.author_login,
        author_name=request.author_name,
        author_email=request.author_email,
        author_avatar=request.author_avatar,
        sender=request.sender,
        deploy_to=request.deploy_to,
        cron=request.cron,
        trigger=request.trigger,
        fork=request.fork,
        parent=request.parent,
        params=dict(request.params),
    )


def _errored(base: NewBuild, error: str) -> tuple[NewBuild, list[NewStage]]:
    if len(error) > _MAX_ERROR_CHARS:
        error = error[: _MAX_ERROR_CHARS - 1] + "…"
    return _replace_status(base, Status.ERROR, error), []


def _replace_status(base: NewBuild, status: Status, error: str = "") -> NewBuild:
    return replace(base, status=status, error=error or base.error)


def _pull_request_number(ref: str) -> int:
    for part in ref.split("/"):
        if part.isdigit():
            return int(part)
    return 0
