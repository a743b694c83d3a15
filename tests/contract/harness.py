"""``Harness``: one backend under contract test, the plans it ran, and what they left.

The harness builds plans owned by a host name unique to the test, so that ``cleanup_stale``
in a test only ever sees that test's resources; ``leftovers`` lists what exists of a run
(by label, and by the run's names), whichever backend it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from tests.support.plans import make_plan, new_run_id, run_labels
from tests.support.resources import leftovers

from bastion.backends.fake import FakeBackend
from bastion.engine.backend import Backend
from bastion.engine.plan import Plan, StepPlan


@dataclass
class Harness:
    kind: str
    backend: Backend
    hostname: str
    client: docker.DockerClient | None = None
    plans: list[Plan] = field(default_factory=list)

    def plan(
        self,
        steps: Sequence[StepPlan],
        services: Sequence[StepPlan] = (),
        *,
        owner_pid: int | None = None,
        **plan_args: Any,
    ) -> Plan:
        run_id = new_run_id()
        labels = run_labels(run_id, owner_pid=owner_pid, owner_host=self.hostname)
        plan = make_plan(steps, services, run_id=run_id, labels=labels, **plan_args)
        self.plans.append(plan)
        return plan

    def leftovers(self, plan: Plan) -> list[str]:
        """What exists of the run: labelled with it, or carrying one of its names."""
        names = {plan.network, plan.workspace_volume, *plan.volumes}
        names |= {s.container.name for s in plan.all_steps()}
        if isinstance(self.backend, FakeBackend):
            return sorted(
                f"{r.kind} {r.name}"
                for r in self.backend.live_resources
                if r.run_id == plan.run_id or r.name in names
            )
        assert self.client is not None
        found = set(leftovers(self.client, plan.run_id))
        for name in names:
            for kind, collection in (
                ("container", self.client.containers),
                ("network", self.client.networks),
                ("volume", self.client.volumes),
            ):
                with contextlib.suppress(docker.errors.NotFound):
                    collection.get(name)
                    found.add(f"{kind} {name}")
        return sorted(found)
