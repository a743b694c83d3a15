"""Rows to the plain dataclasses of ``bastion.store.types``: the only place that knows both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.store.models import (
    BuildRow,
    RepoRow,
    RepoSecretRow,
    RunnerRow,
    StageRow,
    StepRow,
    TokenRow,
    UserRow,
)
from bastion.store.types import (
    Build,
    Repo,
    RepoSecret,
    Runner,
    Scope,
    Stage,
    Status,
    Step,
    Token,
    User,
)


def str_dict(value: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def user(row: UserRow) -> User:
    return User(
        id=row.id,
        login=row.login,
        email=row.email,
        admin=row.admin,
        active=row.active,
        machine=row.machine,
        created=row.created,
        updated=row.updated,
    )


def token(row: TokenRow) -> Token:
    return Token(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        scopes=tuple(Scope(s) for s in row.scopes or ()),
        created=row.created,
        expires=row.expires,
        last_used=row.last_used,
        revoked=row.revoked,
    )


def repo(row: RepoRow) -> Repo:
    return Repo(
        id=row.id,
        owner=row.owner,
        name=row.name,
        forge=row.forge,
        forge_id=row.forge_id,
        active=row.active,
        trusted=row.trusted,
        protected=row.protected,
        private=row.private,
        visibility=row.visibility,
        timeout=row.timeout,
        config_path=row.config_path,
        default_branch=row.default_branch,
        http_url=row.http_url,
        ssh_url=row.ssh_url,
        link=row.link,
        counter=row.counter,
        ignore_forks=row.ignore_forks,
        ignore_pulls=row.ignore_pulls,
        auto_cancel_pulls=row.auto_cancel_pulls,
        auto_cancel_pushes=row.auto_cancel_pushes,
        created=row.created,
        updated=row.updated,
        approval_mode=row.approval_mode,
        approvers=tuple(str(a) for a in row.approvers or ()),
        prevent_self_approval=row.prevent_self_approval,
    )


def repo_secret(row: RepoSecretRow) -> RepoSecret:
    return RepoSecret(
        id=row.id,
        repo_id=row.repo_id,
        name=row.name,
        pull_request=row.pull_request,
        created=row.created,
        updated=row.updated,
    )


def build(row: BuildRow) -> Build:
    return Build(
        id=row.id,
        repo_id=row.repo_id,
        number=row.number,
        parent=row.parent,
        status=Status(row.status),
        event=row.event,
        action=row.action,
        link=row.link,
        title=row.title,
        message=row.message,
        before=row.before,
        after=row.after,
        ref=row.ref,
        source_repo=row.source_repo,
        source=row.source,
        target=row.target,
        author_login=row.author_login,
        author_name=row.author_name,
        author_email=row.author_email,
        author_avatar=row.author_avatar,
        sender=row.sender,
        deploy_to=row.deploy_to,
        cron=row.cron,
        trigger=row.trigger,
        fork=row.fork,
        error=row.error,
        params=str_dict(row.params),
        created=row.created,
        updated=row.updated,
        started=row.started,
        finished=row.finished,
        hold=row.hold,
    )


def stage(row: StageRow) -> Stage:
    return Stage(
        id=row.id,
        build_id=row.build_id,
        repo_id=row.repo_id,
        number=row.number,
        name=row.name,
        kind=row.kind,
        type=row.type,
        status=Status(row.status),
        error=row.error,
        errignore=row.errignore,
        exit_code=row.exit_code,
        machine=row.machine,
        os=row.os,
        arch=row.arch,
        variant=row.variant,
        labels=str_dict(row.labels),
        depends_on=tuple(str(d) for d in row.depends_on or ()),
        on_success=row.on_success,
        on_failure=row.on_failure,
        runner_id=row.runner_id,
        lease_expires=row.lease_expires,
        started=row.started,
        stopped=row.stopped,
        created=row.created,
        updated=row.updated,
    )


def step(row: StepRow) -> Step:
    return Step(
        id=row.id,
        stage_id=row.stage_id,
        number=row.number,
        name=row.name,
        status=Status(row.status),
        error=row.error,
        exit_code=row.exit_code,
        started=row.started,
        stopped=row.stopped,
        detached=row.detached,
        service=row.service,
    )


def runner(row: RunnerRow) -> Runner:
    return Runner(
        id=row.id,
        name=row.name,
        os=row.os,
        arch=row.arch,
        labels=str_dict(row.labels),
        capacity=row.capacity,
        version=row.version,
        created=row.created,
        last_seen=row.last_seen,
        revoked=row.revoked,
    )
