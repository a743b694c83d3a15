"""Compile one pipeline of a manifest, for one build, into a ``Plan``.

The compiler is where the security decisions become concrete values: it applies the trust
policy (refusing before any container starts), fixes every hardening value from
``Hardening``, resolves ``from_secret`` references against the secrets it was given (each
step receives only the secrets it references and, when the server sent per-step grants, only
those granted to it), builds the ``DRONE_*`` environment and turns ``commands`` into a shell
script. A reference the server denied (with its reason) or did not grant does not stop the
pipeline: that step's plan is marked ``refused`` with the reason, and the executor fails it
without creating its container, while the other steps run.

Variable substitution happens here, after parsing, and only into string values (image,
environment, settings). Commands are not substituted: ``${DRONE_BRANCH}`` in a command is
expanded by the step's shell from its environment, so a hostile branch name or commit
message is data to the shell, never code. Only Drone's ``$$`` escape is undone in commands.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from bastion.engine.hardening import Hardening
from bastion.engine.plan import (
    LABEL_MANAGED,
    LABEL_RUN,
    LABEL_STEP,
    ContainerSpec,
    FailurePolicy,
    Mount,
    MountKind,
    Plan,
    PullPolicy,
    StepKind,
    StepPlan,
    secrets_as_files,
)
from bastion.policy.trust import review_pipeline
from bastion.spec.context import BuildContext
from bastion.spec.dag import step_dependencies
from bastion.spec.diagnostics import Diagnostic, Kind
from bastion.spec.environ import (
    StageInfo,
    SubstitutionError,
    build_environ,
    step_environ,
    substitute,
    unescape_commands,
)
from bastion.spec.loader import YamlPath
from bastion.spec.model import PIPELINE_TYPES, RUNNABLE_TYPES, SecretRef, Step, settings_to_env
from bastion.spec.parse import Manifest


class CompileError(Exception):
    """The pipeline cannot run as written; ``diagnostics`` says where and why."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class CompileOptions:
    run_id: str
    hardening: Hardening = field(default_factory=Hardening)
    trusted: bool = False
    timeout: float = 3600.0
    stage_number: int = 1
    owner_labels: Mapping[str, str] = field(default_factory=dict)
    host_arch: str = "amd64"
    host_os: str = "linux"
    missing_secret_hint: str = ""  # how the caller can provide a secret, for the message
    # Per step (or service) name, the secrets it may use; None: every step may use every
    # secret given (``bastion exec``). A reference outside its step's grants fails that step.
    secret_grants: Mapping[str, Collection[str]] | None = None
    # Per step name, secrets refused to it with the reason (the server's rules): the step
    # fails with the reason, before its container exists; the other steps run.
    secret_denials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


_SHELLS = {"sh": "/bin/sh", "bash": "/bin/bash", "ash": "/bin/ash", "zsh": "/bin/zsh"}
_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def slug(name: str) -> str:
    """A name usable in container names and as a DNS alias: ``Unit Tests`` → ``unit-tests``."""
    out = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return out[:50] or "step"


def shell_script(commands: tuple[str, ...]) -> str:
    """The script a step's shell runs: stop at the first failing command, echo each one."""
    lines = ["set -e"]
    for command in commands:
        # printf with a quoted argument: the trace shows the command without running it.
        lines.append(f"printf '+ %s\\n' {shlex.quote(command)}")
        lines.append(unescape_commands(command))
    return "\n".join(lines) + "\n"


def compile_pipeline(
    manifest: Manifest,
    pipeline_index: int,
    context: BuildContext,
    secrets: Mapping[str, str],
    options: CompileOptions,
) -> Plan:
    """Compile ``manifest.pipelines[pipeline_index]``; raise ``CompileError`` if it may not run."""
    pipeline = manifest.pipelines[pipeline_index]
    problems: list[Diagnostic] = []

    def problem(path: YamlPath, message: str, kind: Kind) -> None:
        problems.append(manifest.diagnostic(pipeline_index, path, message, kind=kind))

    if pipeline.type not in RUNNABLE_TYPES:
        problem(
            ("type",),
            f"pipeline {pipeline.name!r} has type {pipeline.type}, which needs "
            f"{PIPELINE_TYPES.get(pipeline.type, 'an unknown runner')}; this runner runs "
            "type: docker",
            Kind.RUNTIME,
        )
        raise CompileError(problems)
    arch = _ARCH_ALIASES.get(options.host_arch, options.host_arch)
    if pipeline.platform.os != options.host_os or pipeline.platform.arch != arch:
        problem(
            ("platform",),
            f"pipeline {pipeline.name!r} is for {pipeline.platform.os}/{pipeline.platform.arch}"
            f", this runner is {options.host_os}/{arch}",
            Kind.RUNTIME,
        )

    for refusal in review_pipeline(
        pipeline,
        trusted=options.trusted,
        max_mem_limit=options.hardening.max_mem_limit,
        reserved_paths=options.hardening.runner_paths,
    ):
        problem(refusal.path, refusal.message, Kind.POLICY)

    run_id = options.run_id
    labels = {LABEL_MANAGED: "true", LABEL_RUN: run_id, **options.owner_labels}
    workspace = pipeline.workspace.full_path
    stage = StageInfo(
        name=pipeline.name,
        number=options.stage_number,
        type=pipeline.type,
        os=pipeline.platform.os,
        arch=pipeline.platform.arch,
        variant=pipeline.platform.variant,
        depends_on=pipeline.depends_on,
    )
    build_env = build_environ(
        context,
        stage,
        workspace_base=pipeline.workspace.base,
        workspace_path=workspace,
    )
    workspace_volume = f"bastion-{run_id}-workspace"
    volume_names = {
        v.name: f"bastion-{run_id}-vol-{slug(v.name)}"
        for v in pipeline.volumes
        if v.temp is not None and v.temp.medium != "memory"
    }
    hosts = {v.name: v.host.path for v in pipeline.volumes if v.host is not None}
    memory = {v.name for v in pipeline.volumes if v.temp is not None and v.temp.medium == "memory"}

    def resolve_env(
        env: Mapping[str, str | SecretRef],
        path: YamlPath,
        step: str,
        refusals: dict[str, str],
    ) -> tuple[dict[str, str], set[str], set[str]]:
        values: dict[str, str] = {}
        secret_env: set[str] = set()
        used: set[str] = set()
        for key, value in env.items():
            if isinstance(value, SecretRef):
                name = value.from_secret
                refusal = _refusal(name, step, options)
                if refusal:
                    refusals.setdefault(name, refusal)
                    continue
                if name not in secrets:
                    hint = (
                        f" ({options.missing_secret_hint})" if options.missing_secret_hint else ""
                    )
                    problem(
                        (*path, key),
                        f"step {step!r} references secret {name!r}, which was not provided" + hint,
                        Kind.RUNTIME,
                    )
                    continue
                values[key] = secrets[name]
                secret_env.add(key)
                used.add(name)
            else:
                try:
                    values[key] = substitute(value, build_env)
                except SubstitutionError as exc:
                    problem((*path, key), f"{key}: {exc}", Kind.SCHEMA)
        return values, secret_env, used

    def container_for(step: Step, kind: StepKind, index: int, number: int) -> StepPlan:
        section = "services" if kind is StepKind.SERVICE else "steps"
        where: YamlPath = (section, index)
        refusals: dict[str, str] = {}
        step_env, step_secret_env, used = resolve_env(
            step.environment, (*where, "environment"), step.name, refusals
        )
        settings_env = settings_to_env(step.settings)
        plugin_env, plugin_secret_env, plugin_used = resolve_env(
            settings_env, (*where, "settings"), step.name, refusals
        )
        # The pipeline's environment, resolved for this step's grants; keys the step sets
        # itself are not resolved at all (the step's value wins, as in the merge below).
        inherited = {
            k: v
            for k, v in pipeline.environment.items()
            if k not in step.environment and k not in settings_env
        }
        pipeline_env, pipeline_secret_env, pipeline_used = resolve_env(
            inherited, ("environment",), step.name, refusals
        )
        pull_names = tuple(
            n for n in pipeline.image_pull_secrets if _pull_granted(n, step.name, options, refusals)
        )
        env = {
            **build_env,
            **pipeline_env,
            **step_env,
            **plugin_env,
            **step_environ(step.name, number),
        }
        secret_env = frozenset(
            (pipeline_secret_env - step_env.keys()) | step_secret_env | plugin_secret_env
        )
        # Secrets as files on a tmpfs instead of variables (the hardening's secret_files).
        secret_files: dict[str, str] = {}
        if options.hardening.secret_files and secret_env:
            try:
                env, secret_files = secrets_as_files(env, secret_env)
            except ValueError as exc:
                problem((*where, "environment"), str(exc), Kind.POLICY)
        try:
            image = substitute(step.image, build_env)
        except SubstitutionError as exc:
            problem((*where, "image"), f"image: {exc}", Kind.SCHEMA)
            image = step.image
        if step.commands:
            shell = _SHELLS.get(step.shell or "sh", step.shell or "/bin/sh")
            entrypoint: tuple[str, ...] | None = (shell, "-c")
            command: tuple[str, ...] | None = (shell_script(step.commands),)
        else:
            entrypoint = step.entrypoint or None
            command = step.command or None
        mounts: list[Mount] = [Mount(MountKind.VOLUME, workspace, workspace_volume)]
        for mount in step.volumes:
            if mount.name in volume_names:
                mounts.append(Mount(MountKind.VOLUME, mount.path, volume_names[mount.name]))
            elif mount.name in memory:
                mounts.append(Mount(MountKind.TMPFS, mount.path))
            elif mount.name in hosts:
                mounts.append(Mount(MountKind.BIND, mount.path, hosts[mount.name]))
        h = options.hardening
        mem = min(step.mem_limit, h.max_mem_limit) if step.mem_limit else h.mem_limit
        read_only = h.read_only_rootfs
        return StepPlan(
            name=step.name,
            number=number,
            kind=kind,
            container=ContainerSpec(
                name=f"bastion-{run_id}-{slug(step.name)}-{number}",
                alias=slug(step.name),
                image=image,
                pull=_pull_policy(step.pull),
                entrypoint=entrypoint,
                command=command,
                env=env,
                working_dir=step.working_dir or workspace,
                user=step.user,
                labels={**labels, LABEL_STEP: step.name},
                privileged=step.privileged and options.trusted,
                cap_drop=("ALL",),
                cap_add=h.cap_add,
                security_opt=h.security_opt(),
                pids_limit=h.pids_limit,
                mem_limit=mem,
                memswap_limit=mem,
                nano_cpus=int(h.cpus * 1e9),
                read_only_rootfs=read_only,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={h.tmp_size}"} if read_only else {},  # noqa: S108
                mounts=tuple(mounts),
                devices=tuple(f"{d.name}:{d.path}" for d in step.devices),
                network_mode=step.network_mode,
                dns=step.dns,
                dns_search=step.dns_search,
                extra_hosts=step.extra_hosts,
                shm_size=step.shm_size or 0,
                pull_auth=_auth_for(image, _pull_auths(pull_names, secrets)),
                secret_files=secret_files,
            ),
            depends_on=(),
            detach=step.detach or kind is StepKind.SERVICE,
            failure=_failure(step.failure),
            when=step.when,
            secret_env=secret_env,
            secrets=tuple(sorted(used | plugin_used | pipeline_used)),
            refused="; ".join(refusals[n] for n in sorted(refusals)),
        )

    services = tuple(
        container_for(s, StepKind.SERVICE, i, i + 1) for i, s in enumerate(pipeline.services)
    )
    offset = len(services)
    names = [s.name for s in pipeline.steps]
    deps = step_dependencies(
        names,
        {s.name: s.depends_on for s in pipeline.steps},
        frozenset(s.name for s in pipeline.steps if s.detach),
    )
    service_names = {s.name for s in pipeline.services}
    steps = tuple(
        _with_deps(
            container_for(s, StepKind.STEP, i, offset + i + 1),
            tuple(d for d in deps.get(s.name, ()) if d not in service_names),
        )
        for i, s in enumerate(pipeline.steps)
    )
    if problems:
        raise CompileError(problems)
    return Plan(
        run_id=run_id,
        pipeline=pipeline.name,
        labels=labels,
        network=f"bastion-{run_id}",
        workspace_volume=workspace_volume,
        workspace_path=workspace,
        volumes=tuple(volume_names.values()),
        services=services,
        steps=steps,
        timeout=options.timeout,
    )


def _with_deps(step: StepPlan, deps: tuple[str, ...]) -> StepPlan:
    return StepPlan(
        name=step.name,
        number=step.number,
        kind=step.kind,
        container=step.container,
        depends_on=deps,
        detach=step.detach,
        failure=step.failure,
        when=step.when,
        secret_env=step.secret_env,
        secrets=step.secrets,
        refused=step.refused,
    )


def _refusal(name: str, step: str, options: CompileOptions) -> str:
    """Why ``step`` may not use secret ``name`` ("" when it may): the server's denial, or
    no grant for it (the runner checks the grants again, whatever values it was sent)."""
    denied = options.secret_denials.get(step, {}).get(name)
    if denied:
        return denied
    grants = options.secret_grants
    if grants is not None and name not in grants.get(step, ()):
        hint = f" ({options.missing_secret_hint})" if options.missing_secret_hint else ""
        return f"secret {name!r} was not granted to step {step!r} by the server" + hint
    return ""


def _pull_granted(name: str, step: str, options: CompileOptions, refusals: dict[str, str]) -> bool:
    """Whether registry credentials ``name`` may pull ``step``'s image. A denial fails the
    step; a name merely absent from the grants is credentials for another registry."""
    denied = options.secret_denials.get(step, {}).get(name)
    if denied:
        refusals.setdefault(name, denied)
        return False
    grants = options.secret_grants
    return grants is None or name in grants.get(step, ())


def _pull_policy(value: str) -> PullPolicy:
    if value == "always":
        return PullPolicy.ALWAYS
    if value == "never":
        return PullPolicy.NEVER
    return PullPolicy.IF_NOT_EXISTS


def _failure(value: str) -> FailurePolicy:
    if value == "ignore":
        return FailurePolicy.IGNORE
    if value == "fast":
        return FailurePolicy.FAST
    return FailurePolicy.FAIL


def _pull_auths(names: tuple[str, ...], secrets: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Registry credentials from ``image_pull_secrets`` (Docker config.json documents)."""
    auths: dict[str, dict[str, str]] = {}
    for name in names:
        raw = secrets.get(name)
        if not raw:
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        # A secret is whatever its owner typed: anything but {"auths": {...}} gives nothing.
        found = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(found, dict):
            continue
        for registry, entry in found.items():
            if not isinstance(entry, dict):
                continue
            user, password = entry.get("username", ""), entry.get("password", "")
            if not isinstance(user, str) or not isinstance(password, str):
                continue
            if "auth" in entry and not user:
                try:
                    user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
            host = re.sub(r"^https?://", "", str(registry)).split("/")[0]
            auths[host] = {"username": user, "password": password}
    return auths


def _auth_for(image: str, auths: Mapping[str, dict[str, str]]) -> dict[str, str] | None:
    if not auths:
        return None
    first = image.split("/", maxsplit=1)[0]
    host = (
        first
        if ("." in first or ":" in first or first == "localhost") and "/" in image
        else ("index.docker.io")
    )
    for candidate in (host, "docker.io" if host == "index.docker.io" else host):
        if candidate in auths:
            return auths[candidate]
    return None
