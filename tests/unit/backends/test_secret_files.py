"""``SecretFiles`` (the Docker backend's host side) on a directory that a test mountinfo calls
a tmpfs: layout and modes, rewriting, removal, and the stale cleanup (dead owners, other
hosts, half-made directories)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.plans import make_plan, make_step, new_run_id, run_labels
from tests.support.resources import dead_pid

from bastion.backends._secret_files import PREFIX, SecretFiles
from bastion.engine.plan import Plan

HOST = "test-host"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    shm = tmp_path / "shm"
    shm.mkdir()
    return shm


@pytest.fixture
def files(tmp_path: Path, base: Path) -> SecretFiles:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"30 22 0:27 / {base} rw - tmpfs tmpfs rw\n")
    return SecretFiles(HOST, (base,), mountinfo=mountinfo)


def plan_of(owner_pid: int | None = None, host: str = HOST) -> Plan:
    run_id = new_run_id()
    step = make_step("deploy", script="true", secret_files={"TOKEN": "v1", "KEY": "v2\n"})
    labels = run_labels(run_id, owner_pid=owner_pid, owner_host=host)
    return make_plan([step], run_id=run_id, labels=labels)


def test_layout_modes_and_content(files: SecretFiles, base: Path) -> None:
    plan = plan_of()
    spec = plan.step("deploy").container
    directory = files.write(plan, spec)
    run = base / f"{PREFIX}{plan.run_id}"
    assert directory == run / spec.name
    assert run.stat().st_mode & 0o777 == 0o700
    assert directory.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.read_text() for p in directory.iterdir()} == {"TOKEN": "v1", "KEY": "v2\n"}
    assert all(p.stat().st_mode & 0o777 == 0o444 for p in directory.iterdir())
    assert json.loads((run / "labels.json").read_text()) == dict(plan.labels)
    assert not [p for p in base.iterdir() if p.name.startswith(".")]  # no partial left
    # Written again (a container made twice): the same files, nothing more.
    files.write(plan, spec)
    assert sorted(p.name for p in directory.iterdir()) == ["KEY", "TOKEN"]


def test_remove_step_then_run(files: SecretFiles, base: Path) -> None:
    plan = plan_of()
    spec = plan.step("deploy").container
    directory = files.write(plan, spec)
    files.remove_step(plan, spec.name)
    assert not directory.exists()
    assert (base / f"{PREFIX}{plan.run_id}").exists()
    files.remove_run(plan)
    files.remove_run(plan)  # idempotent
    assert list(base.iterdir()) == []


def test_cleanup_stale_removes_dead_owners_only_of_this_host(
    files: SecretFiles, base: Path
) -> None:
    dead, live, elsewhere = plan_of(dead_pid()), plan_of(), plan_of(dead_pid(), host="other")
    for plan in (dead, live, elsewhere):
        files.write(plan, plan.step("deploy").container)
    partial = base / f".bastion-secrets-partial-{dead_pid()}-x1"
    partial.mkdir()
    unrelated = base / "something-else"
    unrelated.mkdir()
    assert files.cleanup_stale() == 2
    left = {p.name for p in base.iterdir()}
    assert left == {f"{PREFIX}{live.run_id}", f"{PREFIX}{elsewhere.run_id}", "something-else"}
    assert files.cleanup_stale(include_live=True) == 1
    assert {p.name for p in base.iterdir()} == {f"{PREFIX}{elsewhere.run_id}", "something-else"}
