"""The pieces of the backends that need no engine: the shared rules, the pids watcher on a
fake cgroup tree, the factory, and the Docker backend's message when there is no engine."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from tests.support.plans import make_plan, make_step
from tests.support.resources import dead_pid

from bastion.backends import BACKEND_NAMES, FakeBackend, create_backend
from bastion.backends._common import exit_detail, format_size, is_stale
from bastion.backends.docker import DockerBackend, PidsWatcher
from bastion.engine.backend import Backend, BackendError
from bastion.engine.hardening import GIB, MIB
from bastion.engine.plan import LABEL_MANAGED, LABEL_OWNER_HOST, LABEL_OWNER_PID


@pytest.mark.parametrize(
    ("n", "text"),
    [(256 * MIB, "256 MiB"), (2 * GIB, "2 GiB"), (1536 * MIB, "1536 MiB"), (5, "5 bytes")],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


def test_exit_detail_says_everything_learnt() -> None:
    detail = exit_detail(
        oom_killed=True, mem_limit=256 * MIB, pids_events=3, pids_limit=64, killed=False
    )
    assert detail == (
        "killed: out of memory (limit 256 MiB); fork failed 3 times: pids limit 64 reached"
    )
    assert (
        exit_detail(oom_killed=False, mem_limit=0, pids_events=0, pids_limit=0, killed=False) == ""
    )


def _labels(pid: str, host: str = "here") -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_OWNER_PID: pid, LABEL_OWNER_HOST: host}


@pytest.mark.parametrize(
    ("labels", "include_live", "stale"),
    [
        (_labels(str(os.getpid())), False, False),
        (_labels(str(os.getpid())), True, True),
        (_labels(str(dead_pid())), False, True),
        (_labels("not-a-pid"), False, True),
        (_labels(str(dead_pid()), host="elsewhere"), True, False),
        ({LABEL_OWNER_HOST: "here", LABEL_OWNER_PID: "1"}, True, False),  # not managed
    ],
)
def test_is_stale(labels: dict[str, str], include_live: bool, stale: bool) -> None:
    assert is_stale(labels, "here", include_live=include_live) is stale


def test_create_backend() -> None:
    assert set(BACKEND_NAMES) == {"docker", "fake"}
    assert isinstance(create_backend("fake"), FakeBackend)
    docker_backend = create_backend("docker")  # no engine contacted until first use
    assert isinstance(docker_backend, DockerBackend)
    assert isinstance(docker_backend, Backend)
    with pytest.raises(ValueError, match="unknown backend 'k8s'"):
        create_backend("k8s")


def test_the_pids_watcher_reads_the_cgroup_counter(tmp_path: Path) -> None:
    cgroup = tmp_path / "pids" / "docker" / "abc"
    cgroup.mkdir(parents=True)
    (cgroup / "pids.events").write_text("max 3\n")
    (cgroup / "pids.current").write_text("5\n")
    (cgroup / "pids.max").write_text("64\n")
    watcher = PidsWatcher(tmp_path, "abc")
    watcher.start()
    watcher.sample()

    assert watcher.stop() == 3
    assert watcher.found == cgroup


def test_the_pids_watcher_reports_nothing_without_a_cgroup(tmp_path: Path) -> None:
    watcher = PidsWatcher(tmp_path, "nothing-here")
    watcher.FIND_TIMEOUT = 0.05
    watcher.start()
    assert watcher.stop() == 0
    assert watcher.found is None


# docker-py does not close the socket of a connection that failed; it is collected below,
# inside this test, so that its ResourceWarning is not blamed on whichever test runs next.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_unreachable_engine_is_reported_with_the_way_out(tmp_path: Path) -> None:
    socket_path = tmp_path / "no-engine.sock"
    backend = DockerBackend(base_url=f"unix://{socket_path}")

    with pytest.raises(BackendError) as info:
        backend.setup(make_plan([make_step("a")]))

    message = str(info.value)
    del info
    gc.collect()
    assert f"cannot reach the Docker engine at unix://{socket_path}" in message
    assert "is dockerd running? scripts/docker-engine.sh starts one" in message
