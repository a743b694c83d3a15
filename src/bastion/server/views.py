"""Store dataclasses → the REST shapes of ``bastion.rpc.api`` (Drone's field names).

Nothing secret is a field of the store's types, so nothing secret can reach a response
through these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.rpc.api import (
    BuildOut,
    LogLineOut,
    RepoOut,
    RunnerOut,
    StageOut,
    StepOut,
    UserOut,
)
from bastion.store.types import Build, Repo, Runner, Stage, Step, User


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        login=user.login,
        email=user.email,
        machine=user.machine,
        admin=user.admin,
        active=user.active,
        created=user.created,
        updated=user.updated,
    )


def repo_out(repo: Repo, build: Build | None = None) -> RepoOut:
    return RepoOut(
        id=repo.id,
        uid=repo.forge_id,
        namespace=repo.owner,
        name=repo.name,
        slug=repo.slug,
        forge=repo.forge,
        git_http_url=repo.http_url,
        git_ssh_url=repo.ssh_url,
        link=repo.link,
        default_branch=repo.default_branch,
        private=repo.private,
        visibility=repo.visibility,
        active=repo.active,
        config_path=repo.config_path,
        trusted=repo.trusted,
        protected=repo.protected,
        ignore_forks=repo.ignore_forks,
        ignore_pull_requests=repo.ignore_pulls,
        auto_cancel_pull_requests=repo.auto_cancel_pulls,
        auto_cancel_pushes=repo.auto_cancel_pushes,
        timeout=repo.timeout,
        counter=repo.counter,
        created=repo.created,
        updated=repo.updated,
        build=build_out(build) if build is not None else None,
        approval_mode=repo.approval_mode,
        approvers=list(repo.approvers),
        prevent_self_approval=repo.prevent_self_approval,
    )


def step_out(step: Step) -> StepOut:
    return StepOut(
        id=step.id,
        step_id=step.stage_id,
        number=step.number,
        name=step.name,
        status=step.status.value,
        error=step.error,
        exit_code=step.exit_code,
        started=step.started,
        stopped=step.stopped,
        detached=step.detached,
        service=step.service,
    )


def stage_out(stage: Stage, steps: Sequence[Step] = ()) -> StageOut:
    return StageOut(
        id=stage.id,
        repo_id=stage.repo_id,
        build_id=stage.build_id,
        number=stage.number,
        name=stage.name,
        kind=stage.kind,
        type=stage.type,
        status=stage.status.value,
        error=stage.error,
        errignore=stage.errignore,
        exit_code=stage.exit_code,
        machine=stage.machine,
        os=stage.os,
        arch=stage.arch,
        variant=stage.variant,
        started=stage.started,
        stopped=stage.stopped,
        created=stage.created,
        updated=stage.updated,
        on_success=stage.on_success,
        on_failure=stage.on_failure,
        depends_on=list(stage.depends_on),
        labels=dict(stage.labels),
        steps=[step_out(s) for s in steps],
    )


def build_out(build: Build, stages: Sequence[StageOut] = ()) -> BuildOut:
    return BuildOut(
        id=build.id,
        repo_id=build.repo_id,
        trigger=build.trigger,
        number=build.number,
        parent=build.parent,
        status=build.status.value,
        error=build.error,
        event=build.event,
        action=build.action,
        link=build.link,
        timestamp=build.created,
        title=build.title,
        message=build.message,
        before=build.before,
        after=build.after,
        ref=build.ref,
        source_repo=build.source_repo,
        source=build.source,
        target=build.target,
        author_login=build.author_login,
        author_name=build.author_name,
        author_email=build.author_email,
        author_avatar=build.author_avatar,
        sender=build.sender,
        params=dict(build.params),
        cron=build.cron,
        deploy_to=build.deploy_to,
        started=build.started,
        finished=build.finished,
        created=build.created,
        updated=build.updated,
        stages=list(stages),
        hold=build.hold,
    )


def runner_out(runner: Runner) -> RunnerOut:
    return RunnerOut(
        id=runner.id,
        name=runner.name,
        os=runner.os,
        arch=runner.arch,
        labels=dict(runner.labels),
        capacity=runner.capacity,
        version=runner.version,
        created=runner.created,
        last_seen=runner.last_seen,
        revoked=runner.revoked,
    )


def log_line_out(n: int, t: float, text: str) -> LogLineOut:
    """Drone's log line: ``out`` ends with a newline, as Drone's CLI prints it as is."""
    return LogLineOut(pos=n, out=text if text.endswith("\n") else text + "\n", time=int(t))
