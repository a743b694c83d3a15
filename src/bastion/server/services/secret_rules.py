"""The rules that decide whether one step may receive one secret, each with its reason.

Pure functions over a secret's filters (``store.types.SecretFilters``), the build and the
step; ``services.secrets`` applies them to every reference of a stage. Checked in this order,
and the first rule that denies gives the message (which names the secret and the rule, never
the value):

1. a **fork** build never receives a secret;
2. a ``pull_request`` build only a secret that allows pull requests;
3. the build's **event** must be among the secret's events (none listed: any event);
4. the build's **target branch** must match one of its branch globs (none: any branch);
5. a secret with **images** is plugin-only: refused to a step that could run other code
   than the image's own program (``commands``, ``entrypoint``, ``command``, a loader or
   interpreter variable, a volume or the workspace over the image's programs: see
   ``engine.secret_refs``), and to a step whose image matches none of the globs. Image
   references are compared without a ``docker.io/`` / ``index.docker.io/`` / ``library/``
   prefix, and a glob without a tag or digest matches any tag of the image
   (``plugins/docker`` matches ``plugins/docker``, ``plugins/docker:20`` and
   ``docker.io/plugins/docker:latest``); a glob with a tag must match the tag too. An image
   computed at run time (``${...}``) cannot be checked here and is refused.

Registry credentials (``image_pull_secrets``) stay on the runner's host: rule 5's plugin-only
part does not apply to them, and an image mismatch only means "not for this registry".
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from bastion.store.types import Build, SecretFilters

EVENTS = ("push", "pull_request", "tag", "promote", "rollback", "cron", "custom")

_REGISTRY_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


def normal_image(reference: str) -> str:
    """``docker.io/library/alpine:latest`` → ``alpine:latest``: the form both sides of an
    image comparison are put in."""
    ref = reference.strip()
    for prefix in _REGISTRY_PREFIXES:
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    return ref.removeprefix("library/")


def _untagged(reference: str) -> str:
    """The repository part of an image reference: without ``@digest`` and ``:tag`` (a colon
    before the last slash belongs to a registry port)."""
    ref = reference.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def image_matches(image: str, patterns: tuple[str, ...]) -> bool:
    ref = normal_image(image)
    if "@" not in ref and _untagged(ref) == ref:
        ref += ":latest"  # no tag means latest, so "alpine:latest" matches "alpine"
    bare = _untagged(ref)
    for raw in patterns:
        pattern = normal_image(raw)
        tagged = "@" in pattern or _untagged(pattern) != pattern
        if fnmatchcase(ref if tagged else bare, pattern):
            return True
    return False


def build_denial(name: str, filters: SecretFilters, build: Build) -> str:
    """Why no step of ``build`` may receive secret ``name`` (rules 1-4); "" when allowed."""
    if build.fork:
        return (
            f"secret {name!r} is not available to builds of forks: a pull request from a fork "
            "never receives secrets"
        )
    if build.event == "pull_request" and not filters.pull_request:
        return (
            f"secret {name!r} is not available to pull_request builds: it does not allow pull "
            "requests (set allow_pull_request, e.g. bastion secret update "
            "--allow-pull-request)"
        )
    if filters.events and build.event not in filters.events:
        return (
            f"secret {name!r} is not available to {build.event} builds: it is limited to the "
            f"events {', '.join(filters.events)}"
        )
    if filters.branches and not any(fnmatchcase(build.target, b) for b in filters.branches):
        branch = build.target or "(none)"
        return (
            f"secret {name!r} is not available on branch {branch!r}: it is limited to the "
            f"branches {', '.join(filters.branches)}"
        )
    return ""


def step_denial(
    name: str,
    filters: SecretFilters,
    step: str,
    image: str,
    *,
    plugin: bool,
    not_plugin: str = "",
) -> str:
    """Why step ``step`` (of ``image``) may not receive secret ``name`` in its environment
    (rule 5); "" when allowed. ``not_plugin`` says why the step is not a plugin
    (``StepRefs.not_plugin``)."""
    if not filters.images:
        return ""
    allowed = ", ".join(filters.images)
    if not plugin:
        why = not_plugin or "the step sets commands or an entrypoint"
        return (
            f"secret {name!r} is not available to step {step!r}: it is limited to the plugin "
            f"images {allowed}, and {why}"
        )
    if "$" in image:
        return (
            f"secret {name!r} is not available to step {step!r}: it is limited to the images "
            f"{allowed}, and the step's image {image!r} is only known at run time"
        )
    if not image_matches(image, filters.images):
        return (
            f"secret {name!r} is not available to step {step!r}: it is limited to the images "
            f"{allowed}, not {image!r}"
        )
    return ""


def pull_applies(filters: SecretFilters, image: str) -> bool:
    """Whether registry credentials under these filters are for pulling ``image``."""
    if not filters.images:
        return True
    return "$" not in image and image_matches(image, filters.images)
