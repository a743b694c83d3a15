"""Cron jobs: a repository's builds on a schedule, each of the head of one branch.

Expressions are Drone's: six fields with seconds first (``0 0 * * * *``), or the usual five
(``0 * * * *``, minute first), or ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``,
``@daily``, ``@midnight``, ``@hourly``; times are UTC. They are checked on create and update,
and a bad one is a 400 naming the field.

The loop (:meth:`CronService.run_due`, every ``cron_interval`` seconds unless
``BASTION_CRON_DISABLED``) takes each enabled job whose ``next`` has come and *claims* it: a
compare-and-set moves ``next`` from the value read to the first time after now
(``CronStore.claim_cron``). Only the server whose update changed the row fires the job, so
two servers on one PostgreSQL never both run it; and since the new ``next`` is computed from
now, a server that was down for a day fires a missed hourly job once, not 24 times.

Firing reads the head of the job's branch (local forge: the bare repository; other forges:
their API) and hands a ``cron`` event with ``build.cron`` = the job's name to
``TriggerService.trigger``, the path of every build: signatures, the trust policy and
approvals apply as to any other. A failure (no such branch, forge down, inactive repository)
is stored on the job (``error``) and logged; it never stops the loop or other jobs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from croniter import CroniterError, croniter

from bastion.scm.errors import ForgeError
from bastion.server.errors import BadRequest, Conflict
from bastion.server.forges import ForgeAccess
from bastion.server.services.audit import AuditLog
from bastion.server.services.commit_status import ForgeCommits
from bastion.server.services.trigger import BuildRequest, TriggerService
from bastion.store.cron_store import Cron
from bastion.store.errors import Conflict as StoreConflict
from bastion.store.errors import StoreError
from bastion.store.repository import Store
from bastion.store.types import Build, Repo

log = logging.getLogger("bastion.server.cron")

CRON_TRIGGER = "@cron"  # DRONE_BUILD_TRIGGER of scheduled builds, as in Drone
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_EXPR_MAX = 255
_ERROR_MAX = 1000


class CronError(Exception):
    """Why a job made no build (stored on the job as ``error``)."""


def _schedule(expr: str, start: float) -> croniter:
    """A croniter for ``expr`` (Drone's syntax) from ``start``; ``ValueError`` saying why not."""
    text = " ".join(expr.split())
    if not text:
        raise ValueError("empty; expected 5 or 6 fields (seconds first) or @hourly, @daily, ...")
    if len(text) > _EXPR_MAX:
        raise ValueError(f"longer than {_EXPR_MAX} characters")
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise ValueError(f"{text[:40]!r} is not one of {', '.join(sorted(_MACROS))}")
        fields = 1
    else:
        fields = len(text.split(" "))
        if fields not in (5, 6):
            raise ValueError(
                f"{fields} fields; expected 6 (second minute hour day-of-month month "
                "day-of-week, as Drone) or 5 (minute first)"
            )
    try:
        return croniter(
            text.lower() if fields == 1 else text,
            datetime.fromtimestamp(start, UTC),
            second_at_beginning=fields == 6,
        )
    except (CroniterError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(str(exc).replace(f"[{text}] ", "") or "not a cron expression") from exc


def next_run(expr: str, after: float) -> int:
    """The first time strictly after ``after`` (Unix seconds) that ``expr`` names."""
    when = _schedule(expr, after).get_next(float)
    return int(when) if when > after else int(after) + 1


def check_expr(expr: str) -> str:
    """``expr`` with its spaces normalised, or ``BadRequest`` naming the field."""
    try:
        _schedule(expr, 0.0).get_next(float)
    except ValueError as exc:
        raise BadRequest(f"field expr: {expr[:80]!r} is not a cron expression: {exc}") from None
    return " ".join(expr.split())


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadRequest(
            f"field name: {name[:80]!r} is not a cron job name (1-100 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit)"
        )
    return name


def check_branch(branch: str) -> str:
    if (
        not _BRANCH.match(branch)
        or ".." in branch
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or "//" in branch
    ):
        raise BadRequest(f"field branch: {branch[:100]!r} is not a branch name")
    return branch


class CronService:
    def __init__(
        self,
        store: Store,
        forges: ForgeAccess,
        commits: ForgeCommits,
        trigger: TriggerService,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._forges = forges
        self._commits = commits
        self._trigger = trigger
        self._audit = audit
        self._clock = clock

    # -- management ----------------------------------------------------------------------------

    def create(
        self, repo: Repo, *, name: str, expr: str, branch: str, disabled: bool, actor: str
    ) -> Cron:
        name = check_name(name)
        expr = check_expr(expr)
        branch = check_branch(branch or repo.default_branch)
        try:
            cron = self._store.create_cron(
                repo.id,
                name=name,
                expr=expr,
                branch=branch,
                disabled=disabled,
                next_run=next_run(expr, self._clock()),
            )
        except StoreConflict:
            raise Conflict(f"{repo.slug} already has a cron job named {name!r}") from None
        self._audit.record(
            "cron.created",
            actor=actor,
            repo=repo.slug,
            detail={"cron": name, "expr": expr, "branch": branch, "disabled": disabled},
        )
        return cron

    def update(
        self,
        repo: Repo,
        cron: Cron,
        *,
        expr: str | None,
        branch: str | None,
        disabled: bool | None,
        actor: str,
    ) -> Cron:
        changes: dict[str, object] = {}
        if expr is not None:
            changes["expr"] = check_expr(expr)
        if branch is not None:
            changes["branch"] = check_branch(branch)
        if disabled is not None:
            changes["disabled"] = disabled
        if "expr" in changes or disabled is False:
            # A new schedule, or a job enabled again: from now on, not what was missed.
            changes["next"] = next_run(str(changes.get("expr", cron.expr)), self._clock())
        if not changes:
            return cron
        updated = self._store.update_cron(cron.id, **changes)
        self._audit.record(
            "cron.updated",
            actor=actor,
            repo=repo.slug,
            detail={"cron": cron.name, "fields": sorted(k for k in changes if k != "next")},
        )
        return updated

    def delete(self, repo: Repo, cron: Cron, *, actor: str) -> None:
        self._store.delete_cron(cron.id)
        self._audit.record("cron.deleted", actor=actor, repo=repo.slug, detail={"cron": cron.name})

    def execute(self, repo: Repo, cron: Cron, *, actor: str) -> Build:
        """Run ``cron`` now (``POST .../cron/{name}``); its schedule is unchanged."""
        try:
            build = self._fire(repo, cron, trigger=actor)
        except CronError as exc:
            self._record_error(cron, str(exc))
            raise BadRequest(f"cron job {cron.name!r} of {repo.slug}: {exc}") from None
        self._audit.record(
            "cron.executed",
            actor=actor,
            repo=repo.slug,
            build=build.number,
            detail={"cron": cron.name, "branch": cron.branch},
        )
        return build

    # -- the loop ------------------------------------------------------------------------------

    def run_due(self) -> int:
        """Fire every due job this server claims; returns how many builds it made."""
        now = self._clock()
        fired = 0
        for cron in self._store.due_crons(int(now)):
            try:
                fired += self._run_one(cron, now)
            except StoreError as exc:  # a database hiccup: this job is tried again next round
                log.warning("cron job %d: %s; trying again in the next round", cron.id, exc)
        return fired

    def _run_one(self, cron: Cron, now: float) -> int:
        """1 when this server claimed ``cron`` and made its build, else 0. Once claimed, a
        job is not retried before its next time, whatever happens: at most once per time."""
        try:
            new_next = next_run(cron.expr, now)
        except ValueError as exc:  # stored before a stricter check: park it, say why
            self._store.update_cron(cron.id, disabled=True, error=f"bad expression: {exc}")
            log.error("cron job %d disabled: bad expression %r: %s", cron.id, cron.expr, exc)
            return 0
        if not self._store.claim_cron(cron.id, seen_next=cron.next, new_next=new_next):
            return 0  # another server fired it, or it was changed meanwhile
        repo = self._store.get_repo_by_id(cron.repo_id)
        if repo is None:
            return 0
        try:
            build = self._fire(repo, cron, trigger=CRON_TRIGGER)
        except CronError as exc:
            log.warning("cron job %r of %s made no build: %s", cron.name, repo.slug, exc)
            self._record_error(cron, str(exc))
            return 0
        except Exception as exc:  # one job's surprise must not stop the others
            log.exception("cron job %r of %s failed", cron.name, repo.slug)
            self._record_error(cron, f"internal error: {type(exc).__name__}")
            return 0
        self._audit.record(
            "cron.fired",
            actor=CRON_TRIGGER,
            repo=repo.slug,
            build=build.number,
            detail={"cron": cron.name, "branch": cron.branch},
        )
        return 1

    def _fire(self, repo: Repo, cron: Cron, *, trigger: str) -> Build:
        if not repo.active:
            raise CronError(f"{repo.slug} is not active")
        request = self._request(repo, cron, trigger)
        outcome = self._trigger.trigger(repo, request)
        if outcome.build is None:
            raise CronError(f"no build: {outcome.reason}")
        if cron.error:
            self._record_error(cron, "")
        log.info(
            "cron job %r of %s: build #%d of %s at %s",
            cron.name,
            repo.slug,
            outcome.build.number,
            cron.branch,
            request.sha[:12],
        )
        return outcome.build

    def _request(self, repo: Repo, cron: Cron, trigger: str) -> BuildRequest:
        branch = cron.branch
        message = author_name = author_email = ""
        try:
            if repo.forge == "local":
                sha = self._forges.branch_head(repo, branch)
                info = self._forges.commit(repo, sha) if sha is not None else None
                if info is not None:
                    message, author_name, author_email = (
                        info.message,
                        info.author_name,
                        info.author_email,
                    )
            else:
                head = self._commits.client(repo.forge).branch_head(repo.owner, repo.name, branch)
                sha = head.sha if head is not None else None
                if head is not None:
                    message, author_name, author_email = (
                        head.message,
                        head.author_name,
                        head.author_email,
                    )
        except (ForgeError, ValueError) as exc:
            raise CronError(f"cannot read branch {branch!r}: {exc}") from exc
        if sha is None:
            raise CronError(f"{repo.slug} has no branch {branch!r}")
        return BuildRequest(
            event="cron",
            sha=sha,
            ref=f"refs/heads/{branch}",
            branch=branch,
            source_branch=branch,
            message=message,
            author_name=author_name,
            author_email=author_email,
            cron=cron.name,
            trigger=trigger,
            # who started it by hand (exec) is its sender, as for a custom build: the rules
            # on approving one's own change apply to them
            sender="" if trigger == CRON_TRIGGER else trigger,
        )

    def _record_error(self, cron: Cron, error: str) -> None:
        try:
            self._store.update_cron(cron.id, error=error[:_ERROR_MAX])
        except StoreError as exc:  # the job may be gone; the log line says what happened
            log.warning("cron job %d: cannot record its error: %s", cron.id, exc)
