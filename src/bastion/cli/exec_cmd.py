"""``bastion exec``: run a ``.drone.yml`` on this machine in hardened Docker containers.

Order of work, so that nothing starts unless everything is valid: read and parse the file;
read the secrets and refuse short ones; choose the pipelines (``--pipeline``, trigger
conditions, ``depends_on`` order); compile *every* chosen pipeline (policy refusals end the
command here with exit 2, before any container exists); only then connect to Docker, remove
leftovers of crashed runs, and run the pipelines one after another. Ctrl-C (and SIGTERM) stop
the running containers and clean up; the command then exits 130.
"""

from __future__ import annotations

import gc
import os
import platform
import secrets as pysecrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bastion.cli.console import ConsoleReporter
from bastion.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
)
from bastion.cli.sources import (
    build_context,
    parse_secret_args,
    read_pipeline_file,
    read_secret_file,
    workspace_archive,
)
from bastion.engine.backend import Backend, BackendError
from bastion.engine.compiler import CompileError, CompileOptions, compile_pipeline
from bastion.engine.executor import Executor, RunResult
from bastion.engine.hardening import Hardening, SettingsError, load_hardening
from bastion.engine.masking import SecretMasker, SecretTooShortError, validate_secrets
from bastion.engine.plan import LABEL_OWNER_HOST, LABEL_OWNER_PID, Plan
from bastion.engine.status import State
from bastion.spec.conditions import MatchContext, explain_mismatch, trigger_matches
from bastion.spec.context import BuildContext
from bastion.spec.dag import topological_order
from bastion.spec.diagnostics import Diagnostic
from bastion.spec.model import PIPELINE_TYPES, RUNNABLE_TYPES
from bastion.spec.parse import Manifest, parse


@dataclass
class ExecOptions:
    file: Path
    pipeline: str | None = None
    trusted: bool = False
    secrets: list[str] = field(default_factory=list)
    secret_file: Path | None = None
    event: str = "push"
    branch: str | None = None
    ref: str | None = None
    repo: str | None = None
    target: str = ""
    cron: str = ""
    action: str = ""
    tag: str = ""
    timeout: float = 3600.0
    explain: bool = False
    cleanup: bool = False
    secret_files: bool = False  # secrets as files on a tmpfs (as BASTION_SECRET_FILES)


@dataclass
class Selected:
    index: int
    plan: Plan | None = None
    skip_reason: str = ""


def _print_diagnostics(console: Console, diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        style = "red" if d.is_error else "yellow"
        console.print(Text(d.format(), style=style), soft_wrap=True)


def _docker_backend() -> Backend:
    # Imported here so that lint, --explain and invalid input never need docker-py or an engine.
    from bastion.backends.docker import DockerBackend  # noqa: PLC0415

    try:
        return DockerBackend()
    except BackendError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


def run_exec(opts: ExecOptions, out: Console, err: Console) -> int:
    if opts.cleanup:
        backend = _docker_backend()
        try:
            report = backend.cleanup_stale()
        except BackendError as exc:
            raise CliError(str(exc), EXIT_UNAVAILABLE) from None
        out.print(
            f"removed {report.containers} containers, {report.networks} networks and "
            f"{report.volumes} volumes left behind by runs that no longer exist"
        )
        return EXIT_OK
    if opts.timeout <= 0:
        raise CliError(
            f"--timeout {opts.timeout:g}: the timeout must be a positive number of seconds"
        )

    result = parse(read_pipeline_file(opts.file), filename=str(opts.file))
    _print_diagnostics(err, result.diagnostics)
    if not result.ok:
        raise CliError(f"{opts.file}: fix the errors above; nothing was run")
    manifest = result.manifest

    secret_values: dict[str, str] = {}
    if opts.secret_file is not None:
        secret_values.update(read_secret_file(opts.secret_file))
    secret_values.update(parse_secret_args(opts.secrets))
    try:
        validate_secrets(secret_values)
    except SecretTooShortError as exc:
        raise CliError(str(exc)) from None

    directory = opts.file.resolve().parent
    context = build_context(
        directory,
        event=opts.event,
        branch=opts.branch,
        ref=opts.ref,
        repo=opts.repo,
        target=opts.target,
        cron=opts.cron,
        action=opts.action,
        tag=opts.tag,
        trusted=opts.trusted,
        now=int(time.time()),
    )
    hardening = _hardening()
    if opts.secret_files:
        hardening = replace(hardening, secret_files=True)
    selected = _select(manifest, opts, context)
    _compile_all(manifest, selected, context, secret_values, hardening, opts)

    if opts.explain:
        _explain(out, manifest, selected, hardening)
        return EXIT_OK

    runnable = [s for s in selected if s.plan is not None]
    if not runnable:
        for s in selected:
            out.print(Text(f"– pipeline {manifest.pipelines[s.index].name}: {s.skip_reason}"))
        out.print("no pipeline to run")
        return EXIT_OK

    backend = _docker_backend()
    try:
        stale = backend.cleanup_stale()
    except BackendError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    if stale.total:
        err.print(f"removed {stale.total} leftovers of earlier runs that had crashed")

    # Whatever exists now (the imports: pydantic's schemas, docker-py, rich ...) lives until
    # the process exits. Frozen, the cyclic GC no longer walks it during the run nor at exit
    # (≈ 50 ms of CPU per `bastion exec`). Objects made from here on are collected as usual.
    gc.freeze()
    masker = SecretMasker(secret_values.values())
    cancel = threading.Event()
    results: dict[str, RunResult] = {}
    with _cancel_on_signals(cancel, err):
        for s in selected:
            pipeline = manifest.pipelines[s.index]
            if s.plan is None:
                out.print(
                    Text(f"– pipeline {pipeline.name}: skipped ({s.skip_reason})", style="dim")
                )
                continue
            failed_deps = [
                d
                for d in pipeline.depends_on
                if d in results and results[d].state is not State.SUCCESS
            ]
            status = "failure" if failed_deps else "success"
            match = MatchContext.from_build(context, status=status)
            if failed_deps and not trigger_matches(pipeline.trigger, match):
                out.print(
                    Text(
                        f"– pipeline {pipeline.name}: skipped, {', '.join(failed_deps)} did not "
                        "succeed",
                        style="dim",
                    )
                )
                continue
            if cancel.is_set():
                break
            out.print(Text(f"pipeline {pipeline.name}", style="bold underline"))
            reporter = ConsoleReporter(out, s.plan)
            archive = None if pipeline.clone.disable else workspace_archive(directory)
            executor = Executor(backend, masker, reporter)
            run = executor.run(s.plan, match, workspace=archive, cancel=cancel)
            results[pipeline.name] = run
            reporter.summary(run)

    if cancel.is_set():
        err.print("interrupted: containers, networks and volumes of the run were removed")
        return EXIT_INTERRUPTED
    if any(r.state is not State.SUCCESS for r in results.values()):
        return EXIT_FAILED
    return EXIT_OK


def _select(manifest: Manifest, opts: ExecOptions, context: BuildContext) -> list[Selected]:
    names = [p.name for p in manifest.pipelines]
    if opts.pipeline is not None:
        if opts.pipeline not in names:
            raise CliError(
                f"{opts.file}: no pipeline named {opts.pipeline!r}; "
                f"the file has: {', '.join(names)}"
            )
        index = names.index(opts.pipeline)
        if manifest.pipelines[index].type not in RUNNABLE_TYPES:
            kind = manifest.pipelines[index].type
            raise CliError(
                f"{opts.file}: pipeline {opts.pipeline!r} has type {kind}, which needs "
                f"{PIPELINE_TYPES[kind]}; bastion exec runs type: docker"
            )
        order = [index]
    else:
        order = [
            names.index(n)
            for n in topological_order({p.name: p.depends_on for p in manifest.pipelines})
        ]
    selected: list[Selected] = []
    match = MatchContext.from_build(context)
    for index in order:
        pipeline = manifest.pipelines[index]
        if pipeline.type not in RUNNABLE_TYPES:
            selected.append(
                Selected(
                    index, skip_reason=f"type {pipeline.type} needs {PIPELINE_TYPES[pipeline.type]}"
                )
            )
            continue
        # Pipelines that depend on others are judged once those have finished (trigger.status).
        if not pipeline.depends_on and not trigger_matches(pipeline.trigger, match):
            reason = explain_mismatch(pipeline.trigger, match, for_step=False) or "trigger"
            selected.append(Selected(index, skip_reason=f"trigger does not match: {reason}"))
            continue
        selected.append(Selected(index))
    return selected


def _compile_all(
    manifest: Manifest,
    selected: list[Selected],
    context: BuildContext,
    secret_values: dict[str, str],
    hardening: Hardening,
    opts: ExecOptions,
) -> None:
    problems: list[Diagnostic] = []
    owner = {LABEL_OWNER_PID: str(os.getpid()), LABEL_OWNER_HOST: os.uname().nodename}
    for stage, s in enumerate(selected, start=1):
        if s.skip_reason:
            continue
        options = CompileOptions(
            run_id=pysecrets.token_hex(5),
            hardening=hardening,
            trusted=opts.trusted,
            timeout=opts.timeout,
            stage_number=stage,
            owner_labels=owner,
            host_arch=platform.machine(),
            missing_secret_hint="pass it with --secret NAME=VALUE or --secret-file FILE",  # noqa: S106
        )
        try:
            s.plan = compile_pipeline(manifest, s.index, context, secret_values, options)
        except CompileError as exc:
            problems.extend(exc.diagnostics)
    if problems:
        problems.sort(key=lambda d: (d.file, d.line, d.column))
        raise CliError(
            "\n".join(d.format() for d in problems) + "\nnothing was run: no container was started"
        )


def _explain(
    out: Console, manifest: Manifest, selected: list[Selected], hardening: Hardening
) -> None:
    table = Table(title="effective hardening (every step and service)", title_justify="left")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("changed by")
    for name, value, env in hardening.explain():
        table.add_row(name, value, env)
    out.print(table)
    for s in selected:
        pipeline = manifest.pipelines[s.index]
        if s.plan is None:
            out.print(Text(f"pipeline {pipeline.name}: skipped ({s.skip_reason})"))
            continue
        plan = s.plan
        steps = Table(
            title=f"pipeline {pipeline.name} (timeout {plan.timeout:g} s)", title_justify="left"
        )
        for column in ("#", "step", "image", "after", "secrets", "memory", "pids", "mounts"):
            steps.add_column(column)
        for step in plan.all_steps():
            c = step.container
            steps.add_row(
                str(step.number),
                f"{step.name}{' (service)' if step.kind.value == 'service' else ''}"
                f"{' (detached)' if step.detach and step.kind.value == 'step' else ''}",
                c.image,
                ", ".join(step.depends_on) or "-",
                ", ".join(step.secrets) or "-",
                f"{c.mem_limit >> 20} MiB",
                str(c.pids_limit),
                ", ".join(f"{m.target} ({m.kind.value})" for m in c.mounts),
            )
        out.print(steps)


@contextmanager
def _cancel_on_signals(cancel: threading.Event, err: Console) -> Iterator[None]:
    """First Ctrl-C / SIGTERM: stop the run and clean up. Later ones are reported but not
    obeyed, because leaving containers behind is worse than waiting a few seconds."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            err.print("still cleaning up, please wait")
            return
        err.print("\ninterrupted: stopping the containers and cleaning up")
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _hardening() -> Hardening:
    try:
        return load_hardening()
    except SettingsError as exc:
        raise CliError(f"invalid setting: {exc}") from None
