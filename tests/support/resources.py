"""Find and remove the Docker resources of a run by label, whatever a backend did.

Test fixtures use ``sweep`` at teardown so that a failing test leaves nothing behind, and
``leftovers`` to assert that ``destroy`` removed everything itself.
"""

from __future__ import annotations

import contextlib

import docker
import docker.errors

from bastion.engine.plan import LABEL_RUN


def leftovers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Every container, network and volume labelled with this run, as "kind name"."""
    run = {"label": f"{LABEL_RUN}={run_id}"}
    api = client.api
    found = [
        f"container {c['Names'][0].lstrip('/')}" for c in api.containers(all=True, filters=run)
    ]
    found += [f"network {n['Name']}" for n in api.networks(filters=run)]
    found += [f"volume {v['Name']}" for v in api.volumes(filters=run).get("Volumes") or []]
    return found


def sweep(client: docker.DockerClient, run_id: str, names: tuple[str, ...] = ()) -> None:
    """Remove everything labelled with the run, and volumes with these names (unlabelled
    volumes Docker may have created for a mount). Never raises for what is gone."""
    run = {"label": f"{LABEL_RUN}={run_id}"}
    api = client.api
    for c in api.containers(all=True, filters=run):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(c["Id"], force=True, v=True)
    for n in api.networks(filters=run):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_network(n["Id"])
    volumes = {v["Name"] for v in api.volumes(filters=run).get("Volumes") or []} | set(names)
    for name in volumes:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_volume(name, force=True)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): an owner that is gone."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
