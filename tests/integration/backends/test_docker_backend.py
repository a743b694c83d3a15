"""What only the Docker backend can show: the hardening as the kernel applies it, limits
that really bite, and cleanup of what Docker itself left.

The behaviour both backends share is in ``tests/contract``. Every test here tracks its plans
with ``docker_sweeper``, so a failing test still leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import docker
import docker.errors
import pytest
from tests.support.plans import (
    PYTHON,
    make_plan,
    make_step,
    new_run_id,
    workspace_mount,
    workspace_tar,
)
from tests.support.resources import dead_pid, leftovers, sweep
from tests.support.running import OutputReader, StepOutput, run_step

from bastion.backends.docker import DockerBackend
from bastion.engine.backend import BackendError, StepExit
from bastion.engine.hardening import (
    DEFAULT_CAPABILITIES,
    DROPPED_FROM_DOCKER_DEFAULT,
    MIB,
    Hardening,
)
from bastion.engine.plan import (
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_RUN,
    Mount,
    MountKind,
    Plan,
)

# A broken backend hangs rather than fails: keep each case short.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

# Bit numbers of the capabilities in /proc/<pid>/status (linux/capability.h).
CAPABILITY_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}

PROMPTLY = 10.0
EVENTUALLY = 60.0

Track = Callable[[Plan], Plan]


@pytest.fixture
def backend(docker_client: docker.DockerClient) -> DockerBackend:
    return DockerBackend(docker_client)


@pytest.fixture
def run(backend: DockerBackend, docker_sweeper: Track) -> Iterator[Callable[[Plan], Plan]]:
    """``run(plan)``: set the plan up now (the network too: ``ready``), destroy it (and sweep
    by label) at teardown."""
    plans: list[Plan] = []

    def setup(plan: Plan) -> Plan:
        plans.append(docker_sweeper(plan))
        backend.setup(plan)
        backend.ready(plan)
        return plan

    yield setup
    for plan in plans:
        with contextlib.suppress(BackendError):
            backend.destroy(plan)


def _status_fields(output: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def test_a_running_container_has_every_hardening_value(
    backend: DockerBackend, docker_client: docker.DockerClient, run: Track
) -> None:
    h = Hardening()
    plan = run(
        make_plan(
            [
                make_step(
                    "probe",
                    script="grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
                    "echo ready; exec sleep 1000",
                )
            ]
        )
    )
    step = plan.step("probe")
    backend.start(plan, step)
    reader = OutputReader(backend, plan, step)
    assert reader.wait_for("ready", timeout=EVENTUALLY), reader.text()

    attrs: dict[str, Any] = docker_client.api.inspect_container(step.container.name)
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert sorted(c.removeprefix("CAP_") for c in host["CapAdd"]) == sorted(h.cap_add)
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert not any("unconfined" in opt for opt in host["SecurityOpt"])
    assert host["PidsLimit"] == h.pids_limit
    assert host["Memory"] == h.mem_limit
    assert host["MemorySwap"] == h.mem_limit
    assert host["NanoCpus"] == int(h.cpus * 1e9)
    assert not host["Binds"]
    assert host["NetworkMode"] == plan.network
    assert host["LogConfig"]["Type"] == "none"
    assert attrs["LogPath"] == ""  # nothing written to disk by dockerd
    assert host["PidMode"] == ""
    assert host["IpcMode"] in ("private", "shareable")
    assert not host["Devices"]
    assert attrs["Config"]["Hostname"] == "probe"
    assert "probe" in attrs["NetworkSettings"]["Networks"][plan.network]["Aliases"]
    assert [(m["Type"], m["Name"]) for m in attrs["Mounts"]] == [("volume", plan.workspace_volume)]
    assert attrs["Config"]["Labels"].items() >= plan.labels.items()

    status = _status_fields(reader.text())
    expected = sum(1 << CAPABILITY_BITS[c] for c in DEFAULT_CAPABILITIES)
    assert int(status["CapEff"], 16) == expected
    for name in (*DROPPED_FROM_DOCKER_DEFAULT, "DAC_READ_SEARCH"):
        assert not int(status["CapEff"], 16) & (1 << CAPABILITY_BITS[name]), name
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode: Docker's default profile is on

    backend.stop(plan, step)
    assert reader.join(PROMPTLY)
    assert backend.wait(plan, step).killed


def test_a_fork_bomb_hits_the_pids_limit_and_the_host_survives(
    backend: DockerBackend, docker_client: docker.DockerClient, run: Track
) -> None:
    bomb = "i=0; while [ $i -lt 2000 ]; do sleep 60 & i=$((i+1)); done"
    plan = run(make_plan([make_step("bomb", script=bomb, pids_limit=64)]))

    output, exit = run_step(backend, plan, plan.step("bomb"))

    assert exit.exit_code != 0, output.both
    assert exit.pids_limit_hit or "pids limit" in exit.detail, (exit, output)
    assert "pids limit 64 reached" in exit.detail
    assert docker_client.info()["ID"]  # the engine still answers


def test_a_memory_hog_is_oom_killed_and_reported(backend: DockerBackend, run: Track) -> None:
    limit = 128 * MIB
    hog = make_step(
        "hog",
        image=PYTHON,
        entrypoint=("python3", "-c", "b = bytearray(1 << 30); print('survived')"),
        mem_limit=limit,
        memswap_limit=limit,
    )
    plan = run(make_plan([hog]))

    output, exit = run_step(backend, plan, plan.step("hog"))

    assert b"survived" not in output.both
    assert exit.oom_killed
    assert exit.exit_code == 137
    assert not exit.killed
    assert "out of memory (limit 128 MiB)" in exit.detail


def test_read_only_root_with_a_writable_tmp(backend: DockerBackend, run: Track) -> None:
    h = Hardening(read_only_rootfs=True, tmp_size=16 * MIB)
    script = (
        "touch /oops 2>&1 || echo root-refused; "
        "touch /tmp/ok && echo tmp-writable; "
        "touch /drone/src/ok && echo workspace-writable"
    )
    plan = run(make_plan([make_step("ro", script=script, hardening=h)]))

    output, exit = run_step(backend, plan, plan.step("ro"))

    text = output.stdout.decode()
    assert "Read-only file system" in text
    assert "root-refused" in text
    assert "tmp-writable" in text
    assert "workspace-writable" in text
    assert exit == StepExit(exit_code=0)


def test_tmpfs_mounts_and_named_volumes_are_mounted(backend: DockerBackend, run: Track) -> None:
    mounts = (
        workspace_mount(),
        Mount(kind=MountKind.VOLUME, target="/cache", source="cache"),
        Mount(kind=MountKind.TMPFS, target="/scratch", tmpfs_size=8 * MIB),
    )
    write = make_step("write", script="echo kept > /cache/f; echo gone > /scratch/f", mounts=mounts)
    read = make_step(
        "read",
        script="cat /cache/f; cat /scratch/f 2>/dev/null || echo no-scratch; "
        "grep ' /scratch ' /proc/mounts | grep -o 'size=[0-9]*k'",
        mounts=mounts,
    )
    plan = run(make_plan([write, read], volumes=("cache",)))

    run_step(backend, plan, plan.step("write"))
    output, _ = run_step(backend, plan, plan.step("read"))

    assert output.stdout == b"kept\nno-scratch\nsize=8192k\n"
    assert output.stderr == b""


@pytest.mark.slow
def test_output_survives_a_silence_longer_than_the_client_timeout(run: Track) -> None:
    # docker-py's socket timeout (2 s here, 60 s by default) must not cut a quiet step's
    # stream, nor its wait.
    client = docker.from_env(timeout=2)
    try:
        backend = DockerBackend(client)
        plan = run(make_plan([make_step("quiet", script="echo before; sleep 4; echo after")]))
        backend.setup(plan)
        output, exit = run_step(backend, plan, plan.step("quiet"))
        assert (output.stdout, exit) == (b"before\nafter\n", StepExit(exit_code=0))
        backend.destroy(plan)
    finally:
        client.close()


def test_heavy_output_on_both_streams_at_once_stays_apart_and_complete(
    backend: DockerBackend, run: Track
) -> None:
    # Two writers at once, 1 MiB each: every frame must land on its own stream, whole.
    size = 1 << 20
    script = f"yes out | head -c {size} & yes err | head -c {size} >&2; wait"
    plan = run(make_plan([make_step("both", script=script)]))

    output, exit = run_step(backend, plan, plan.step("both"))

    assert exit == StepExit(exit_code=0)
    assert output.stdout == (b"out\n" * (size // 4 + 1))[:size]
    assert output.stderr == (b"err\n" * (size // 4 + 1))[:size]
    assert {c.stream for c in output.chunks} == {"stdout", "stderr"}


def test_wait_without_reading_the_output_does_not_block(backend: DockerBackend, run: Track) -> None:
    # 4 MiB is far more than the pipes between the process and dockerd hold: without
    # draining, the process would block on write and wait() would never return.
    plan = run(make_plan([make_step("chatty", script="yes | head -c 4194304; echo done")]))
    step = plan.step("chatty")
    backend.start(plan, step)

    assert backend.wait(plan, step) == StepExit(exit_code=0)
    assert list(backend.output(plan, step)) == []  # already drained by wait()
    backend.remove(plan, step)


def test_everything_is_labelled_and_the_workspace_helper_is_gone(
    backend: DockerBackend, docker_client: docker.DockerClient, run: Track
) -> None:
    plan = run(make_plan([make_step("ls", script="ls /drone/src")], volumes=("cache",)))
    backend.populate_workspace(plan, workspace_tar({"a.txt": "a"}))
    backend.start(plan, plan.step("ls"))

    found = leftovers(docker_client, plan.run_id)

    assert sorted(found) == sorted(
        [
            f"container {plan.step('ls').container.name}",  # not the populate helper
            f"network {plan.network}",
            f"volume {plan.workspace_volume}",
            f"volume {plan.volumes[0]}",
        ]
    )
    network = docker_client.networks.get(plan.network)
    assert network.attrs["Labels"].items() >= plan.labels.items()
    assert network.attrs["Driver"] == "bridge"
    for name in (plan.workspace_volume, *plan.volumes):
        assert docker_client.volumes.get(name).attrs["Labels"].items() >= plan.labels.items()
    output = StepOutput.of(backend.output(plan, plan.step("ls")))
    assert (output.stdout, output.stderr) == (b"a.txt\n", b"")


def test_destroy_removes_a_volume_docker_created_unlabelled(
    backend: DockerBackend, docker_client: docker.DockerClient, run: Track
) -> None:
    mounts = (workspace_mount(), Mount(kind=MountKind.VOLUME, target="/cache", source="cache"))
    plan = run(make_plan([make_step("a", script="true", mounts=mounts)], volumes=("cache",)))
    docker_client.volumes.get(plan.volumes[0]).remove()
    run_step(backend, plan, plan.step("a"))  # Docker re-creates the volume, without labels
    assert not docker_client.volumes.get(plan.volumes[0]).attrs["Labels"]

    backend.destroy(plan)

    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(plan.volumes[0])


def test_setup_refuses_a_network_of_another_run(
    backend: DockerBackend, run: Track, docker_sweeper: Track
) -> None:
    first = run(make_plan([make_step("a", script="true")]))
    second = make_plan([make_step("a", script="true")])
    clash = docker_sweeper(replace(second, network=first.network))

    with pytest.raises(BackendError, match="does not belong to run"):
        backend.setup(clash)
    backend.destroy(clash)  # removes only what is labelled with the second run

    assert backend.client.networks.get(first.network)


def test_cleanup_stale_removes_leftovers_of_dead_owners_only(
    docker_client: docker.DockerClient,
) -> None:
    host = f"bastion-test-{uuid.uuid4().hex[:8]}"
    runs = {"dead": new_run_id(), "live": new_run_id(), "elsewhere": new_run_id()}
    owners = {
        "dead": (str(dead_pid()), host),
        "live": (str(os.getpid()), host),
        "elsewhere": (str(dead_pid()), host + "-other"),  # another host's: never ours
    }
    try:
        for key, run_id in runs.items():
            pid, owner_host = owners[key]
            labels = {
                LABEL_MANAGED: "true",
                LABEL_RUN: run_id,
                LABEL_OWNER_PID: pid,
                LABEL_OWNER_HOST: owner_host,
            }
            docker_client.networks.create(f"bastion-{run_id}", driver="bridge", labels=labels)
            docker_client.volumes.create(f"bastion-{run_id}-workspace", labels=labels)
            docker_client.containers.create(
                "bastion/busybox:latest", ["true"], name=f"bastion-{run_id}-a", labels=labels
            )
        backend = DockerBackend(docker_client, hostname=host)

        report = backend.cleanup_stale()

        assert (report.containers, report.networks, report.volumes) == (1, 1, 1)
        assert leftovers(docker_client, runs["dead"]) == []
        assert len(leftovers(docker_client, runs["live"])) == 3
        assert len(leftovers(docker_client, runs["elsewhere"])) == 3

        assert backend.cleanup_stale(include_live=True).total == 3
        assert leftovers(docker_client, runs["live"]) == []
        assert len(leftovers(docker_client, runs["elsewhere"])) == 3
    finally:
        for run_id in runs.values():
            sweep(docker_client, run_id)
