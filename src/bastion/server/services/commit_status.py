"""Commit statuses: the state of each build reported to the forge it came from.

``BuildService`` calls :meth:`CommitStatusReporter.changed` with a build's id whenever the
build may have changed (created, started, a stage ended, approved, cancelled). That call only
puts the id in a queue: the forge is asked by one worker thread, never on the request path of
the state machine, so a slow or unreachable forge cannot hold up or fail a build.

The worker reads the build as it is *when it sends*, so the latest state wins: ten quick
changes of one build make at most a few calls, and a retry never sends a stale state. A
(state, description) already sent for a build is not sent again. A failed call is retried
after 1, 2, 4, 8, 16 s, then given up (logged at warning; the next change tries again).
Messages name the repository, build and forge, never a token (the clients keep tokens in
headers and their errors never contain one).

States, in GitHub's terms (``scm.commit_api`` maps them for GitLab):

* pending, waiting on dependencies → ``pending``; running → ``pending`` ("running");
  blocked → ``pending``, saying it waits for an approval;
* success → ``success``; failure, declined → ``failure``; error, killed → ``error``;
* skipped (no pipeline matched) → nothing: a status would claim a check ran.

The context is ``<status_context>/<event>`` (Drone's: ``pr`` for pull requests), the target
URL the build's page on this server (``<public url>/<owner>/<name>/<number>``). Local-forge
repositories have no one to report to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from bastion.scm.commit_api import (
    CommitAPI,
    CommitStatus,
    GiteaCommits,
    GitHubCommits,
    GitLabCommits,
)
from bastion.scm.errors import ForgeError
from bastion.server.settings import ServerSettings
from bastion.store.errors import StoreError
from bastion.store.repository import Store
from bastion.store.types import Build, Repo, Status

log = logging.getLogger("bastion.server.commit_status")

RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
_SENT_MEMORY = 10_000  # builds whose last sent status is remembered

_STATES: dict[Status, tuple[str, str]] = {
    Status.PENDING: ("pending", "the build is pending"),
    Status.WAITING: ("pending", "the build is pending"),
    Status.RUNNING: ("pending", "the build is running"),
    Status.BLOCKED: ("pending", "the build waits for an approval"),
    Status.SUCCESS: ("success", "the build succeeded"),
    Status.FAILURE: ("failure", "the build failed"),
    Status.DECLINED: ("failure", "the build was declined"),
    Status.ERROR: ("error", "the build ended with an error"),
    Status.KILLED: ("error", "the build was cancelled"),
}


def status_context(prefix: str, event: str) -> str:
    """Drone's context names: ``<prefix>/push``, ``<prefix>/pr``, ``<prefix>/cron``, ..."""
    return f"{prefix}/{'pr' if event == 'pull_request' else event}"


def commit_status_for(build: Build, repo: Repo, settings: ServerSettings) -> CommitStatus | None:
    """What to report for ``build`` as it is now; None when nothing is (skipped)."""
    state = _STATES.get(build.status)
    if state is None:
        return None
    return CommitStatus(
        state=state[0],
        context=status_context(settings.status_context, build.event),
        description=state[1],
        target_url=f"{settings.effective_public_url}/{repo.owner}/{repo.name}/{build.number}",
    )


class ForgeCommits:
    """One commit-API client per forge, made from the settings on first use (``clients``:
    ready-made ones, for tests). Shared by the status reporter and the cron jobs."""

    def __init__(self, settings: ServerSettings, clients: Mapping[str, CommitAPI] | None = None):
        self._settings = settings
        self._given = dict(clients or {})
        self._made: dict[str, CommitAPI] = {}
        self._lock = threading.Lock()

    def configured(self, forge: str) -> bool:
        """Whether the server has what it takes to call ``forge`` on its own behalf."""
        s = self._settings
        if forge in self._given:
            return True
        return {
            "github": bool(s.github_token.get_secret_value()),
            "gitea": bool(s.gitea_url and s.gitea_token.get_secret_value()),
            "gitlab": bool(s.gitlab_token.get_secret_value()),
        }.get(forge, False)

    def client(self, forge: str) -> CommitAPI:
        """The client of ``forge``; ``ForgeError`` when the server cannot call it."""
        if forge in self._given:
            return self._given[forge]
        with self._lock:
            made = self._made.get(forge)
            if made is None:
                made = self._make(forge)
                self._made[forge] = made
            return made

    def _make(self, forge: str) -> CommitAPI:
        s = self._settings
        if forge == "github":
            return GitHubCommits(s.github_api_url, s.github_token.get_secret_value())
        if forge == "gitea":
            if not s.gitea_url:
                raise ForgeError("gitea", "BASTION_GITEA_URL is not set on the server")
            return GiteaCommits(s.gitea_url, s.gitea_token.get_secret_value())
        if forge == "gitlab":
            return GitLabCommits(s.gitlab_url, s.gitlab_token.get_secret_value())
        raise ForgeError(forge, f"no commit API for forge {forge!r}")

    def close(self) -> None:
        with self._lock:
            for client in self._made.values():
                client.close()
            self._made.clear()


class CommitStatusReporter:
    """The queue and worker thread that report builds' states (see the module docstring)."""

    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        commits: ForgeCommits,
        *,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._store = store
        self._commits = commits
        self._delays = retry_delays
        self._monotonic = monotonic
        self._cond = threading.Condition()
        # build id -> (not before, failed attempts so far); insertion order is arrival order
        self._due: dict[int, tuple[float, int]] = {}
        self._sent: OrderedDict[int, tuple[str, str, str]] = OrderedDict()
        # Builds there is nobody to report to (local forge, no token): their many changes
        # (every step update) are dropped at once instead of each costing two reads.
        self._silent: OrderedDict[int, None] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False

    def changed(self, build_id: int) -> None:
        """Note that ``build_id`` may have changed; returns at once."""
        with self._cond:
            if self._closed or build_id in self._silent:
                return
            if build_id not in self._due:
                self._due[build_id] = (0.0, 0)
            else:  # a fresh change: send it now, keep the count of failed attempts
                self._due[build_id] = (0.0, self._due[build_id][1])
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bastion-commit-status", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent (tests and shutdown); True if so."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._due or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self) -> None:
        """Stop the worker (what is queued is dropped: the forge keeps the last state sent)
        and close the forge clients."""
        with self._cond:
            self._closed = True
            self._due.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(5)
        self._commits.close()

    # -- worker --------------------------------------------------------------------------------

    def _next(self) -> tuple[int, int] | None:
        with self._cond:
            while not self._closed:
                now = self._monotonic()
                ready = [(bid, tries) for bid, (at, tries) in self._due.items() if at <= now]
                if ready:
                    build_id, tries = ready[0]
                    del self._due[build_id]
                    self._busy = True
                    return build_id, tries
                waits = [at - now for at, _ in self._due.values()]
                self._cond.wait(min(waits) if waits else None)
            return None

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            build_id, tries = item
            try:
                failed = not self._report(build_id)
            except Exception:  # never let one build stop the reporting of others
                log.exception("commit status of build %d: unexpected failure", build_id)
                failed = False
            with self._cond:
                self._busy = False
                if failed and not self._closed and build_id not in self._due:
                    if tries < len(self._delays):
                        at = self._monotonic() + self._delays[tries]
                        self._due[build_id] = (at, tries + 1)
                    else:
                        log.warning(
                            "commit status of build %d: giving up after %d attempts",
                            build_id,
                            tries + 1,
                        )
                self._cond.notify_all()

    def _report(self, build_id: int) -> bool:
        """Send the build's current status if it is new; False when the call failed."""
        try:
            build = self._store.get_build_by_id(build_id)
            repo = self._store.get_repo_by_id(build.repo_id) if build is not None else None
        except StoreError as exc:
            log.warning("commit status of build %d: cannot read it: %s", build_id, exc)
            return False
        if build is None or repo is None:
            return True
        if repo.forge == "local" or not self._commits.configured(repo.forge):
            self._silence(build_id)
            return True
        status = commit_status_for(build, repo, self._settings)
        if status is None or not build.after:
            return True
        key = (status.state, status.description, status.context)
        with self._cond:
            if self._sent.get(build_id) == key:
                return True
        try:
            self._commits.client(repo.forge).post_status(repo.owner, repo.name, build.after, status)
        except (ForgeError, ValueError) as exc:
            log.warning(
                "commit status %s of %s#%d (%s) not reported: %s",
                status.state,
                repo.slug,
                build.number,
                build.after[:12],
                exc,
            )
            return isinstance(exc, ValueError)  # a malformed name will not get better
        log.info(
            "commit status %s of %s#%d reported to %s",
            status.state,
            repo.slug,
            build.number,
            repo.forge,
        )
        with self._cond:
            self._sent[build_id] = key
            self._sent.move_to_end(build_id)
            while len(self._sent) > _SENT_MEMORY:
                self._sent.popitem(last=False)
        return True

    def _silence(self, build_id: int) -> None:
        with self._cond:
            self._silent[build_id] = None
            while len(self._silent) > _SENT_MEMORY:
                self._silent.popitem(last=False)
