"""The commit status reporter with a scripted forge client (no network): what each build
state reports, a state sent once, retries that give up, the latest state after a failure,
and silence for builds nobody reports to."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bastion.scm.commit_api import BranchHead, CommitStatus
from bastion.scm.errors import ForgeError
from bastion.server.services.commit_status import CommitStatusReporter, ForgeCommits
from bastion.server.settings import ServerSettings
from bastion.store import Store
from bastion.store.types import NewBuild, Status

SHA = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"


class ScriptedForge:
    """A commit API whose next ``failures`` calls raise ``ForgeError``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, CommitStatus]] = []
        self.calls = 0
        self.failures = 0
        self.lock = threading.Lock()

    def branch_head(self, owner: str, name: str, branch: str) -> BranchHead | None:
        return None

    def post_status(self, owner: str, name: str, sha: str, status: CommitStatus) -> None:
        with self.lock:
            self.calls += 1
            if self.failures:
                self.failures -= 1
                raise ForgeError("github", "server error (HTTP 502) sending status")
            self.sent.append((owner, name, sha, status))

    def close(self) -> None:
        return


@pytest.fixture
def forge() -> ScriptedForge:
    return ScriptedForge()


@pytest.fixture
def reporter(store: Store, forge: ScriptedForge) -> Iterator[CommitStatusReporter]:
    settings = ServerSettings(server_host="ci.example.com", server_proto="https")
    made = CommitStatusReporter(
        settings,
        store,
        ForgeCommits(settings, {"github": forge}),
        retry_delays=(0.01, 0.01, 0.01),
    )
    yield made
    made.close()


def github_build(store: Store, event: str = "push") -> int:
    repo = store.create_repo("octo-org", "hello-world", forge="github", forge_id="1")
    build, _ = store.create_build(repo.id, NewBuild(event=event, after=SHA), [])
    return build.id


@pytest.mark.parametrize(
    ("status", "state", "words"),
    [
        (Status.PENDING, "pending", "pending"),
        (Status.RUNNING, "pending", "running"),
        (Status.BLOCKED, "pending", "approval"),
        (Status.SUCCESS, "success", "succeeded"),
        (Status.FAILURE, "failure", "failed"),
        (Status.DECLINED, "failure", "declined"),
        (Status.ERROR, "error", "error"),
        (Status.KILLED, "error", "cancelled"),
    ],
)
def test_each_state(
    store: Store,
    reporter: CommitStatusReporter,
    forge: ScriptedForge,
    status: Status,
    state: str,
    words: str,
) -> None:
    build_id = github_build(store, event="pull_request")
    store.update_build(build_id, status=status)
    reporter.changed(build_id)
    assert reporter.idle(10)
    [(owner, name, sha, sent)] = forge.sent
    assert (owner, name, sha) == ("octo-org", "hello-world", SHA)
    assert sent.state == state
    assert words in sent.description
    assert sent.context == "continuous-integration/bastion/pr"
    assert sent.target_url == "https://ci.example.com/octo-org/hello-world/1"


def test_a_skipped_build_reports_nothing(
    store: Store, reporter: CommitStatusReporter, forge: ScriptedForge
) -> None:
    build_id = github_build(store)
    store.update_build(build_id, status=Status.SKIPPED)
    reporter.changed(build_id)
    assert reporter.idle(10)
    assert forge.calls == 0


def test_a_state_is_sent_once(
    store: Store, reporter: CommitStatusReporter, forge: ScriptedForge
) -> None:
    build_id = github_build(store)
    for _ in range(5):
        reporter.changed(build_id)
        assert reporter.idle(10)
    assert [s.state for *_, s in forge.sent] == ["pending"]
    store.update_build(build_id, status=Status.SUCCESS)
    reporter.changed(build_id)
    assert reporter.idle(10)
    assert [s.state for *_, s in forge.sent] == ["pending", "success"]


def test_retries_give_up_and_the_next_change_tries_again(
    store: Store, reporter: CommitStatusReporter, forge: ScriptedForge
) -> None:
    build_id = github_build(store)
    forge.failures = 10
    reporter.changed(build_id)
    assert reporter.idle(10)
    assert forge.calls == 4  # the first call and three retries
    assert forge.sent == []
    forge.failures = 0
    store.update_build(build_id, status=Status.FAILURE)
    reporter.changed(build_id)
    assert reporter.idle(10)
    assert [s.state for *_, s in forge.sent] == ["failure"]  # the latest, not the lost pending


def test_local_and_tokenless_builds_are_silent(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServerSettings()  # no forge token at all
    reporter = CommitStatusReporter(settings, store, ForgeCommits(settings))
    try:
        local = store.create_repo("acme", "web")
        gitea = store.create_repo("infra", "tools", forge="gitea", forge_id="2")
        ids = [
            store.create_build(r.id, NewBuild(event="push", after=SHA), [])[0].id
            for r in (local, gitea)
        ]
        for build_id in ids * 3:
            reporter.changed(build_id)
            assert reporter.idle(10)
        assert "not reported" not in caplog.text  # never even tried
    finally:
        reporter.close()
