"""Which secrets each step of a pipeline refers to: the server and the compiler read it alike.

A step refers to a secret through ``from_secret`` in its own ``environment``, in its plugin
``settings`` (as ``PLUGIN_*`` variables), or in the pipeline's ``environment`` for a variable
the step does not set itself (the step's value wins, so the pipeline's secret never reaches
it), and to the pipeline's ``image_pull_secrets`` for pulling its image (the registry
credentials stay on the host; they never enter a container). The server decides per step
from this what to hand out (``server.services.secrets``); the runner's compiler resolves the
same references against the per-step grants it was sent (defense in depth). Pure: no I/O.

A step counts as a *plugin* (``StepRefs.plugin``) only when its container can run nothing but
the image's own program: no ``commands``, ``entrypoint`` or ``command``; no variable (its
own or inherited) that makes a loader, shell or interpreter run other code (``LD_PRELOAD``,
``BASH_ENV``, ``PATH``, ``NODE_OPTIONS``, ...); no volume and no workspace mounted over the
directories where images keep programs and libraries (``/bin``, ``/usr``, ``/etc``, ...),
which would swap the plugin's binary for files of the repository. ``not_plugin`` says which
of these the step does; the plugin-only rule of ``server.services.secret_rules`` quotes it.
A build's deployment parameters are variables of every step too: the server checks them
with :func:`code_variable` (they are not in the configuration).
Image-specific hooks cannot be known here: an image filter trusts the plugin it names, its
settings (a registry setting can send a password to another server) and whatever it reads
from the shared workspace, which earlier steps with commands may have written (a plugin
that runs git there runs the hooks and ``core.fsmonitor`` of ``.git/config``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from bastion.spec.model import Pipeline, SecretRef, Step, settings_to_env


@dataclass(frozen=True)
class StepRefs:
    """One step's (or service's) secret references."""

    name: str
    image: str  # as written: may hold ${...} the runner substitutes
    not_plugin: str  # why the container may run other code than the image's ("" if not)
    env: frozenset[str]  # names referenced by environment, settings or inherited pipeline env
    pull: frozenset[str]  # image_pull_secrets, for pulling this step's image

    @property
    def plugin(self) -> bool:
        """Only the image's own program runs (see the module docstring)."""
        return not self.not_plugin


# Variables that make the dynamic loader, a shell or an interpreter load code of the
# caller's choosing (the workspace is the repository's: its files are an attacker's).
_CODE_VARIABLES = frozenset(
    {
        "GCONV_PATH",
        "BASH_ENV",
        "ENV",
        "PATH",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "IFS",
        "NODE_OPTIONS",
        "NODE_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "GOFLAGS",
        "HOME",  # ~/.gitconfig (core.fsmonitor, core.sshCommand), ~/.npmrc, ... run commands
        "XDG_CONFIG_HOME",
    }
)
_CODE_PREFIXES = ("LD_", "BASH_FUNC_", "GIT_")
# Where images keep their programs and libraries (and /etc/ld.so.preload).
_PROGRAM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/opt")


def code_variable(name: str) -> bool:
    """Whether variable ``name`` can make a loader, shell or interpreter run other code than
    the image's program (``LD_PRELOAD``, ``BASH_ENV``, ``PATH``, ``NODE_OPTIONS``, ...)."""
    return name in _CODE_VARIABLES or name.startswith(_CODE_PREFIXES)


def _over_programs(path: str) -> bool:
    """Whether a mount at ``path`` hides or replaces files under one of ``_PROGRAM_DIRS``."""
    mount = posixpath.normpath("/" + path.lstrip("/"))
    return any(
        mount == top or mount.startswith(top + "/") or top.startswith(mount.rstrip("/") + "/")
        for top in _PROGRAM_DIRS
    )


def _not_plugin(pipeline: Pipeline, step: Step, env_keys: set[str]) -> str:
    if step.commands:
        return "the step sets commands"
    if step.entrypoint:
        return "the step sets an entrypoint"
    if step.command:
        return "the step sets command"
    for key in sorted(env_keys | set(pipeline.environment)):
        if code_variable(key):
            return f"the step sets the variable {key}, which can make it run other code"
    for mount in step.volumes:
        if _over_programs(mount.path):
            return f"the step mounts a volume at {mount.path} over the image's own programs"
    workspace = pipeline.workspace.full_path
    if _over_programs(workspace):
        return f"the workspace {workspace} is over the image's own programs"
    return ""


def _env_refs(env: Mapping[str, str | SecretRef]) -> dict[str, str]:
    return {k: v.from_secret for k, v in env.items() if isinstance(v, SecretRef)}


def step_refs(pipeline: Pipeline, step: Step) -> StepRefs:
    own = {**_env_refs(step.environment), **_env_refs(settings_to_env(step.settings))}
    keys = set(step.environment) | set(settings_to_env(step.settings))
    inherited = {k: n for k, n in _env_refs(pipeline.environment).items() if k not in keys}
    return StepRefs(
        name=step.name,
        image=step.image,
        not_plugin=_not_plugin(pipeline, step, keys),
        env=frozenset(own.values()) | frozenset(inherited.values()),
        pull=frozenset(pipeline.image_pull_secrets),
    )


def pipeline_refs(pipeline: Pipeline) -> tuple[StepRefs, ...]:
    """Every service's and step's references, services first (the compiler's order)."""
    return tuple(step_refs(pipeline, s) for s in (*pipeline.services, *pipeline.steps))
