"""The ``bastion`` Typer application: command tree and the mapping of errors to exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from bastion import __version__
from bastion.cli.approval_cmds import sign_command
from bastion.cli.audit_cmds import REKEY_HELP, audit_app, rekey_command
from bastion.cli.client_cmds import build_app, info_command, repo_app, user_app
from bastion.cli.cron_cmds import cron_app
from bastion.cli.deploy_cmds import env_app
from bastion.cli.errors import CliError
from bastion.cli.exec_cmd import ExecOptions, run_exec
from bastion.cli.identity_cmds import perm_app  # also registers `user login-link`
from bastion.cli.lint_cmd import OutputFormat, run_lint
from bastion.cli.runner_cmd import runner_app, start_embedded_runner
from bastion.cli.secret_cmds import globalsecret_app, orgsecret_app, secret_app
from bastion.cli.token_cmds import token_app

app = typer.Typer(
    name="bastion",
    help="Bastion: secure-by-default, Drone-compatible CI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_EVENTS = ("push", "pull_request", "tag", "promote", "rollback", "cron", "custom")


@app.command("exec")
def exec_command(
    file: Annotated[Path, typer.Argument(help="pipeline file")] = Path(".drone.yml"),
    pipeline: Annotated[str | None, typer.Option(help="run only this pipeline")] = None,
    trusted: Annotated[
        bool, typer.Option(help="treat the repository as trusted (privileged, host volumes...)")
    ] = False,
    secret: Annotated[
        list[str] | None, typer.Option(help="a secret as NAME=VALUE; repeat for more")
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="a file of NAME=VALUE lines (dotenv syntax)")
    ] = None,
    event: Annotated[str, typer.Option(help="build event: " + ", ".join(_EVENTS))] = "push",
    branch: Annotated[
        str | None, typer.Option(help="branch (default: the checkout's, else main)")
    ] = None,
    ref: Annotated[str | None, typer.Option(help="git ref, e.g. refs/tags/v1.0.0")] = None,
    repo: Annotated[str | None, typer.Option(help="repository as OWNER/NAME")] = None,
    target: Annotated[str, typer.Option(help="deployment target (promote, rollback)")] = "",
    cron: Annotated[str, typer.Option(help="cron job name (event cron)")] = "",
    action: Annotated[str, typer.Option(help="event action, e.g. opened")] = "",
    tag: Annotated[str, typer.Option(help="tag name (event tag)")] = "",
    timeout: Annotated[float, typer.Option(help="pipeline timeout in seconds")] = 3600.0,
    explain: Annotated[
        bool, typer.Option(help="print the effective hardening and plan, run nothing")
    ] = False,
    cleanup: Annotated[
        bool, typer.Option(help="remove leftovers of crashed runs and exit")
    ] = False,
    secret_files: Annotated[
        bool,
        typer.Option(
            help="give steps their secrets as files in /run/secrets (a tmpfs), NAME_FILE in "
            "the environment, instead of variables (BASTION_SECRET_FILES)"
        ),
    ] = False,
) -> None:
    """Run a .drone.yml locally in hardened, ephemeral Docker containers."""
    if event not in _EVENTS:
        raise CliError(f"--event {event!r}: use one of {', '.join(_EVENTS)}")
    opts = ExecOptions(
        file=file,
        pipeline=pipeline,
        trusted=trusted,
        secrets=secret or [],
        secret_file=secret_file,
        event=event,
        branch=branch,
        ref=ref,
        repo=repo,
        target=target,
        cron=cron,
        action=action,
        tag=tag,
        timeout=timeout,
        explain=explain,
        cleanup=cleanup,
        secret_files=secret_files,
    )
    raise typer.Exit(run_exec(opts, Console(), Console(stderr=True)))


@app.command("lint")
def lint_command(
    file: Annotated[Path, typer.Argument(help="pipeline file")] = Path(".drone.yml"),
    trusted: Annotated[bool, typer.Option(help="lint as for a trusted repository")] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json")
    ] = OutputFormat.TEXT,
) -> None:
    """Print every problem of a .drone.yml; exit 2 if there is any."""
    raise typer.Exit(run_lint(file, trusted=trusted, output=output_format))


@app.command("version")
def version_command() -> None:
    """Print Bastion's version."""
    typer.echo(f"bastion {__version__}")


# -- the server and its clients ------------------------------------------------------------

app.command("info")(info_command)
app.command("sign")(sign_command)
app.add_typer(env_app, name="env")
app.add_typer(repo_app, name="repo")
repo_app.add_typer(perm_app, name="perm")
app.add_typer(build_app, name="build")
app.add_typer(cron_app, name="cron")
app.add_typer(secret_app, name="secret")
app.add_typer(orgsecret_app, name="orgsecret")
app.add_typer(globalsecret_app, name="globalsecret")
secret_app.command("rekey", help=REKEY_HELP)(rekey_command)
app.add_typer(audit_app, name="audit")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(runner_app, name="runner")


@app.command("server")
def server_command(
    host: Annotated[
        str | None,
        typer.Option(help="address to listen on [default: $BASTION_HOST or 127.0.0.1]"),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to listen on [default: $BASTION_PORT or 8080]")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="where the database, logs and local repositories live [default: $BASTION_DATA_DIR]"
        ),
    ] = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="generate strong secrets into the data directory")
    ] = False,
    with_runner: Annotated[
        bool, typer.Option("--with-runner", help="also run a runner in this process")
    ] = False,
) -> None:
    """Run the Bastion server (REST API, webhooks, runner channel)."""
    # Imported here: the server's dependencies (FastAPI, SQLAlchemy) load only for this
    # command, and `bastion exec` / the client commands start fast.
    from bastion.cli.server_cmd import server_command as run_server  # noqa: PLC0415

    run_server(
        host=host,
        port=port,
        data_dir=data_dir,
        dev=dev,
        with_runner=with_runner,
        start_runner=start_embedded_runner,
    )


def main() -> None:
    try:
        app(standalone_mode=True)
    except CliError as exc:
        # The message may quote user input: print it as plain text, never as Rich markup.
        Console(stderr=True).print(Text.assemble(("error: ", "red"), exc.message), soft_wrap=True)
        sys.exit(exc.code)


if __name__ == "__main__":  # pragma: no cover
    main()
