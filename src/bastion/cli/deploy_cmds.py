"""Client commands for deployments: ``bastion build promote|rollback`` and ``bastion env``.

``bastion build promote OWNER/NAME NUMBER TARGET [--param KEY=VALUE]...`` starts a ``promote``
build of that build's commit to ``TARGET`` (``rollback`` likewise), as ``drone build
promote`` does. ``bastion env add|ls|info|rm`` manages the repository's environments: which
branches may be deployed to a target and who must approve a deployment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.text import Text

from bastion.cli.client_cmds import NumberArg, RepoArg, _build, build_app, split_repo
from bastion.cli.errors import CliError
from bastion.cli.output import (
    FormatOption,
    OutputFormat,
    dump,
    pairs,
    status,
    stdout,
    table,
    when,
    yes_no,
)
from bastion.cli.remote import CaCertOption, InsecureOption, ServerOption, connect, failures
from bastion.rpc.api import PARAM_NAME_PATTERN, TARGET_PATTERN, EnvironmentIn, EnvironmentOut

_TARGET = re.compile(TARGET_PATTERN)
# KEY=VALUE, KEY a parameter name (the pattern without its anchors).
_PARAM = re.compile(f"^({PARAM_NAME_PATTERN[1:-1]})=(.*)$", re.DOTALL)

env_app = typer.Typer(
    help="Deployment environments: which branches may be promoted to a target, who approves.",
    no_args_is_help=True,
)

TargetArg = Annotated[
    str, typer.Argument(metavar="TARGET", help="the environment, e.g. production")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="a parameter for the deployment (repeatable)",
        show_default=False,
    ),
]


def _target(value: str, what: str = "TARGET") -> str:
    if not _TARGET.match(value):
        raise CliError(
            f"{what} {value[:80]!r}: 1 to 64 letters, digits, '.', '_' or '-' (e.g. production)"
        )
    return value


def _params(values: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for value in values or []:
        match = _PARAM.match(value)
        if match is None:
            raise CliError(
                f"--param {value[:80]!r}: write KEY=VALUE, KEY made of letters, digits and _"
            )
        if match.group(1) == "target":
            raise CliError("--param target=...: give the target as the TARGET argument")
        params[match.group(1)] = match.group(2)
    return params


def _deploy(
    repo: str,
    number: str,
    target: str,
    param: list[str] | None,
    server: str | None,
    insecure: bool,
    ca_cert: str | None,
    output: OutputFormat,
    *,
    rollback: bool,
) -> None:
    with failures():
        owner, name = split_repo(repo)
        _target(target)
        params = _params(param)
        with connect(server, insecure, ca_cert) as client:
            build = _build(client, owner, name, number)
            deployed = client.builds_promote(
                owner, name, build.number, target, params, rollback=rollback
            )
        if output is OutputFormat.JSON:
            dump(deployed)
            return
        verb = "rolled back" if rollback else "promoted"
        line = Text(f"{verb} #{build.number} of {owner}/{name} to {target} as build ")
        line.append(f"#{deployed.number}: ")
        line.append_text(status(deployed.status))
        stdout().print(line)
        if deployed.status == "blocked":
            stdout().print(Text(f"  {deployed.error}"))


@build_app.command("promote")
def build_promote(
    repo: RepoArg,
    number: NumberArg,
    target: TargetArg,
    param: ParamOption = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Deploy a build's commit to an environment (a new promote build)."""
    _deploy(repo, number, target, param, server, insecure, ca_cert, output, rollback=False)


@build_app.command("rollback")
def build_rollback(
    repo: RepoArg,
    number: NumberArg,
    target: TargetArg,
    param: ParamOption = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Deploy an earlier build's commit to an environment again (a new rollback build)."""
    _deploy(repo, number, target, param, server, insecure, ca_cert, output, rollback=True)


# -- environments ------------------------------------------------------------------------------


def _env_rows(envs: list[EnvironmentOut]) -> Iterator[tuple[str | Text, ...]]:
    for env in envs:
        yield (
            env.name,
            ", ".join(env.branches) or "any",
            yes_no(env.approval),
            ", ".join(env.approvers) or ("anyone with write access" if env.approval else "-"),
        )


def _print_env(env: EnvironmentOut) -> None:
    rows = [
        ("environment", env.name),
        ("branches", ", ".join(env.branches) or "any"),
        ("approval", "required" if env.approval else "not required"),
        ("approvers", ", ".join(env.approvers) or "anyone with write access"),
        ("updated", when(env.updated)),
    ]
    stdout().print(pairs(rows))


def _list(value: str | None, option: str) -> list[str]:
    if value is None:
        return []
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise CliError(f"{option}: give a comma-separated list")
    return items


@env_app.command("add")
def env_add(
    repo: RepoArg,
    target: TargetArg,
    branches: Annotated[
        str | None,
        typer.Option(
            "--branches",
            metavar="GLOB,...",
            help="branches that may be deployed here (default: any)",
            show_default=False,
        ),
    ] = None,
    approval: Annotated[
        bool,
        typer.Option(
            "--approval/--no-approval", help="deployments wait for an approval (default: yes)"
        ),
    ] = True,
    approvers: Annotated[
        str | None,
        typer.Option(
            "--approvers",
            metavar="LOGIN,...",
            help="who may approve (default: anyone with write access but the promoter)",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create or replace an environment's rules (repository administrators)."""
    with failures():
        owner, name = split_repo(repo)
        env_in = EnvironmentIn(
            name=_target(target),
            branches=_list(branches, "--branches"),
            approval=approval,
            approvers=_list(approvers, "--approvers"),
        )
        with connect(server, insecure, ca_cert) as client:
            env = client.environment_put(owner, name, env_in)
        if output is OutputFormat.JSON:
            dump(env)
        else:
            _print_env(env)


@env_app.command("ls")
def env_ls(
    repo: RepoArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List a repository's environments."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            envs = client.environments_list(owner, name)
        if output is OutputFormat.JSON:
            dump(envs)
            return
        columns = ("environment", "branches", "approval", "approvers")
        stdout().print(table(f"{owner}/{name}", columns, _env_rows(envs)))


@env_app.command("info")
def env_info(
    repo: RepoArg,
    target: TargetArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show one environment's rules."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            env = client.environment_get(owner, name, _target(target))
        if output is OutputFormat.JSON:
            dump(env)
        else:
            _print_env(env)


@env_app.command("rm")
def env_rm(
    repo: RepoArg,
    target: TargetArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Remove an environment's rules (deployments to it then need no approval)."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            client.environment_rm(owner, name, _target(target))
        stdout().print(Text(f"removed environment {target} of {owner}/{name}"))
