"""Find and remove the containers, networks and volumes of stages this runner lost.

Two labels, besides the engine's own (``io.bastion.run``, owner pid and host), mark what a
runner creates, so that it can find a stage's resources again::

    io.bastion.runner = <runner name>
    io.bastion.stage  = <stage id>

Run ids are derived from the stage and its lease: ``s<stage id>-<8 hex digits of
sha256(lease id)>``, unique per lease (a stage leased again gets a new run) and revealing
nothing of the lease id, which is a secret of its holder, to whoever can list containers.

* Resources of a runner *process* that died are removed by ``Backend.cleanup_stale`` (their
  owner pid is gone).
* Resources of a stage whose lease lapsed while this process kept running (the server was
  unreachable, the stage was given away) are found by the two labels above and removed with
  ``Backend.destroy`` of the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from bastion.backends import FakeBackend
from bastion.engine.backend import Backend, BackendError
from bastion.engine.plan import LABEL_RUN, Plan

LABEL_RUNNER = "io.bastion.runner"
LABEL_STAGE = "io.bastion.stage"


def run_id_for(stage_id: int, lease_id: str) -> str:
    digest = hashlib.sha256(lease_id.encode()).hexdigest()[:8]
    return f"s{int(stage_id)}-{digest}"


def runs_labelled(backend: Backend, labels: Mapping[str, str]) -> set[str]:
    """Run ids of the resources carrying all of ``labels`` (Docker and fake backends)."""
    if isinstance(backend, FakeBackend):
        return {
            r.run_id
            for r in backend.live_resources
            if r.run_id and all(r.labels.get(k) == v for k, v in labels.items())
        }
    if backend.name == "docker":
        from bastion.backends.docker import DockerBackend  # noqa: PLC0415 - docker-py is heavy

        if isinstance(backend, DockerBackend):
            filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
            api = backend.client.api
            try:
                found = [c.get("Labels") or {} for c in api.containers(all=True, filters=filters)]
                found += [n.get("Labels") or {} for n in api.networks(filters=filters)]
                volumes = api.volumes(filters=filters).get("Volumes") or []
                found += [v.get("Labels") or {} for v in volumes]
            except Exception as exc:  # docker-py raises several unrelated types
                raise BackendError(f"cannot list the resources of lost stages: {exc}") from exc
            return {str(labels[LABEL_RUN]) for labels in found if labels.get(LABEL_RUN)}
    return set()


def destroy_run(backend: Backend, run_id: str) -> None:
    """Remove everything labelled with ``run_id`` (``Backend.destroy`` finds by label)."""
    backend.destroy(
        Plan(
            run_id=run_id,
            pipeline="",
            labels={LABEL_RUN: run_id},
            network=f"bastion-{run_id}",
            workspace_volume=f"bastion-{run_id}-workspace",
            workspace_path="/",
            volumes=(),
            services=(),
            steps=(),
            timeout=0.0,
        )
    )
