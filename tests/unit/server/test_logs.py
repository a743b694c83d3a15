"""``LogService``: masking on arrival, idempotency, the size limit, both backends, audit of
detected credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.engine.masking import SecretMasker
from bastion.rpc.messages import LogLine
from bastion.server.services.audit import AuditLog
from bastion.server.services.logs import (
    CREDENTIAL_EVENT,
    TRUNCATION_PREFIX,
    DatabaseLogBackend,
    FileLogBackend,
    LogBackend,
    LogService,
    credential_auditor,
)
from bastion.server.services.signals import Wakeups
from bastion.store import Store
from bastion.store.types import AuditQuery, NewBuild, NewStage, Stage, Status, Step

SECRET = "hunter2-the-password"


@pytest.fixture
def stage_and_step(store: Store) -> tuple[Stage, Step]:
    repo = store.create_repo("acme", "web")
    _build, [stage] = store.create_build(
        repo.id, NewBuild(event="push"), [NewStage(number=1, name="a", status=Status.PENDING)]
    )
    step = store.upsert_step(stage.id, 1, "test", status=Status.RUNNING)
    return stage, step


@pytest.fixture(params=["file", "database"])
def backend(request: pytest.FixtureRequest, store: Store, tmp_path: Path) -> LogBackend:
    if request.param == "file":
        return FileLogBackend(tmp_path / "logs")
    return DatabaseLogBackend(store)


def service(backend: LogBackend, limit: int = 10_000) -> LogService:
    return LogService(
        backend, limit_bytes=limit, wakeups=Wakeups(), masker_for=lambda _s: SecretMasker([SECRET])
    )


def lines(*texts: str, start: int = 0) -> list[LogLine]:
    return [LogLine(n=start + i, t=float(i), text=t) for i, t in enumerate(texts)]


def test_lines_are_masked_before_they_are_stored(
    backend: LogBackend, stage_and_step: tuple[Stage, Step], tmp_path: Path
) -> None:
    stage, step = stage_and_step
    logs = service(backend)
    logs.append(stage, step, lines(f"password={SECRET}", "plain"))
    assert [text for _n, _t, text in logs.read(stage, step)] == ["password=********", "plain"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()


def test_appends_are_idempotent_by_line_number(
    backend: LogBackend, stage_and_step: tuple[Stage, Step]
) -> None:
    stage, step = stage_and_step
    logs = service(backend)
    assert logs.append(stage, step, lines("a", "b")) == 2
    assert logs.append(stage, step, lines("a", "b", "c")) == 1
    # A fresh service (a restarted server) knows what is stored.
    assert service(backend).append(stage, step, lines("a", "b", "c", "d")) == 1
    assert [(n, text) for n, _t, text in logs.read(stage, step)] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
        (3, "d"),
    ]
    assert [n for n, _t, _text in logs.read(stage, step, after=1)] == [2, 3]


def test_the_limit_writes_one_marker(
    backend: LogBackend, stage_and_step: tuple[Stage, Step]
) -> None:
    stage, step = stage_and_step
    logs = service(backend, limit=1024)
    logs.append(stage, step, lines(*["y" * 300] * 3))
    logs.append(stage, step, lines("z" * 300, "more", start=3))
    logs.append(stage, step, lines("even more", start=5))
    assert service(backend, limit=1024).append(stage, step, lines("after restart", start=6)) == 0
    stored = logs.read(stage, step)
    assert [n for n, _t, _text in stored] == [0, 1, 2, 3]
    assert stored[-1][2].startswith(TRUNCATION_PREFIX)
    assert sum(text.startswith(TRUNCATION_PREFIX) for _n, _t, text in stored) == 1


def test_a_partial_line_left_by_a_crash_is_cut(
    tmp_path: Path, stage_and_step: tuple[Stage, Step]
) -> None:
    stage, step = stage_and_step
    backend = FileLogBackend(tmp_path / "logs")
    logs = service(backend)
    logs.append(stage, step, lines("whole"))
    path = backend.path(stage, step)
    assert path == tmp_path / "logs" / str(stage.build_id) / "1" / "1.log"
    with path.open("a") as fh:
        fh.write('{"n": 1, "t": 0, "te')
    assert service(backend).append(stage, step, lines("whole", "next")) == 1
    assert [text for _n, _t, text in logs.read(stage, step)] == ["whole", "next"]


# --- detected credentials -------------------------------------------------------------------

GITHUB_TOKEN = "ghp_" + "Zq9" * 12
KEY_LINES = [
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
    "QyNTUxOQAAACBzZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0AAAAkA==",
    "-----END OPENSSH PRIVATE KEY-----",
]


def detecting_service(backend: LogBackend, calls: list[tuple[int, str, str]]) -> LogService:
    return LogService(
        backend,
        limit_bytes=100_000,
        wakeups=Wakeups(),
        masker_for=lambda _s: SecretMasker([SECRET]),
        on_credential=lambda stage, step, kind: calls.append((stage.id, step.name, kind)),
    )


def test_runner_markers_are_audited_once_per_step_and_kind(
    backend: LogBackend, stage_and_step: tuple[Stage, Step]
) -> None:
    stage, step = stage_and_step
    calls: list[tuple[int, str, str]] = []
    logs = detecting_service(backend, calls)
    logs.append(stage, step, lines("token [masked: github-token]", "[masked: github-token] again"))
    logs.append(stage, step, lines("[masked: private-key]", "[masked: github-token]", start=2))
    logs.append(stage, step, lines("[masked: not-a-kind]", start=4))
    assert calls == [(stage.id, "test", "github-token"), (stage.id, "test", "private-key")]
    # The markers are stored as they came.
    assert logs.read(stage, step)[0][2] == "token [masked: github-token]"


def test_a_credential_the_runner_missed_is_masked_and_audited_by_the_server(
    backend: LogBackend, stage_and_step: tuple[Stage, Step], tmp_path: Path
) -> None:
    stage, step = stage_and_step
    calls: list[tuple[int, str, str]] = []
    logs = detecting_service(backend, calls)
    logs.append(stage, step, lines(f"remote: https://x:{GITHUB_TOKEN}@github.com/o/r"))
    assert logs.read(stage, step)[0][2] == "remote: https://x:[masked: github-token]@github.com/o/r"
    assert calls == [(stage.id, "test", "github-token")]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert GITHUB_TOKEN.encode() not in path.read_bytes()


def test_a_private_key_block_is_masked_over_lines_and_uploads(
    backend: LogBackend, stage_and_step: tuple[Stage, Step]
) -> None:
    stage, step = stage_and_step
    calls: list[tuple[int, str, str]] = []
    logs = detecting_service(backend, calls)
    logs.append(stage, step, lines("cat key", *KEY_LINES[:2]))
    # A resent line is skipped and does not disturb the block.
    logs.append(stage, step, lines(KEY_LINES[1], *KEY_LINES[2:], "done", start=2))
    stored = [text for _n, _t, text in logs.read(stage, step)]
    assert stored == ["cat key", *["[masked: private-key]"] * 4, "done"]
    assert calls == [(stage.id, "test", "private-key")]


def test_the_production_callback_records_an_audit_event_without_the_value(
    store: Store, stage_and_step: tuple[Stage, Step], tmp_path: Path
) -> None:
    stage, step = stage_and_step
    logs = LogService(
        FileLogBackend(tmp_path / "logs"),
        limit_bytes=100_000,
        wakeups=Wakeups(),
        masker_for=lambda _s: SecretMasker([]),
        on_credential=credential_auditor(store, AuditLog(store)),
    )
    logs.append(stage, step, lines(f"GITHUB_TOKEN={GITHUB_TOKEN}", f"again {GITHUB_TOKEN}"))
    events = store.list_audit_events(AuditQuery(kind=CREDENTIAL_EVENT))
    assert len(events) == 1
    event = events[0]
    build = store.get_build_by_id(stage.build_id)
    assert build is not None
    assert (event.repo, event.build, event.stage, event.step, event.runner) == (
        "acme/web",
        build.number,
        stage.number,
        "test",
        stage.machine,
    )
    assert event.detail == {"kind": "github-token", "step_number": step.number}
    assert GITHUB_TOKEN not in repr(event)
