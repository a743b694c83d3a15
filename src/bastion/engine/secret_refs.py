"""Which secrets each step of a pipeline refers to: the server and the compiler read it alike.

A step refers to a secret through ``from_secret`` in its own ``environment``, in its plugin
``settings`` (as ``PLUGIN_*`` variables), or in the pipeline's ``environment`` for a variable
the step does not set itself (the step's value wins, so the pipeline's secret never reaches
it), and to the pipeline's ``image_pull_secrets`` for pulling its image (the registry
credentials stay on the host; they never enter a container). The server decides per step
from this what to hand out (``server.services.secrets``); the runner's compiler resolves the
same references against the per-step grants it was sent (defense in depth). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bastion.spec.model import Pipeline, SecretRef, Step, settings_to_env


@dataclass(frozen=True)
class StepRefs:
    """One step's (or service's) secret references."""

    name: str
    image: str  # as written: may hold ${...} the runner substitutes
    plugin: bool  # neither commands nor entrypoint: the image's own program runs
    env: frozenset[str]  # names referenced by environment, settings or inherited pipeline env
    pull: frozenset[str]  # image_pull_secrets, for pulling this step's image


def _env_refs(env: Mapping[str, str | SecretRef]) -> dict[str, str]:
    return {k: v.from_secret for k, v in env.items() if isinstance(v, SecretRef)}


def step_refs(pipeline: Pipeline, step: Step) -> StepRefs:
    own = {**_env_refs(step.environment), **_env_refs(settings_to_env(step.settings))}
    keys = set(step.environment) | set(settings_to_env(step.settings))
    inherited = {k: n for k, n in _env_refs(pipeline.environment).items() if k not in keys}
    return StepRefs(
        name=step.name,
        image=step.image,
        plugin=not step.commands and not step.entrypoint,
        env=frozenset(own.values()) | frozenset(inherited.values()),
        pull=frozenset(pipeline.image_pull_secrets),
    )


def pipeline_refs(pipeline: Pipeline) -> tuple[StepRefs, ...]:
    """Every service's and step's references, services first (the compiler's order)."""
    return tuple(step_refs(pipeline, s) for s in (*pipeline.services, *pipeline.steps))
