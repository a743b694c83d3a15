"""Cron job commands, as Drone's CLI: ``bastion cron add|ls|info|update|enable|disable|rm|exec
OWNER/NAME``.

``add OWNER/NAME NAME EXPR [--branch B] [--disabled]`` creates a job (``EXPR``: six fields
with seconds first as in Drone, five minute-first fields, or ``@hourly``, ``@daily``, ...;
the branch defaults to the repository's default branch); ``ls`` lists them with their next
and previous runs and the last error; ``info`` shows one; ``update`` changes the expression,
the branch or switches it on or off (``enable`` / ``disable`` too, as in Drone); ``rm``
deletes it; ``exec`` runs it now and prints the build. Tables for people, ``--format json``
for scripts. Bad input exits 2 naming the argument and why, before anything is sent; the
server checks the expression (a 400 names the field).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from bastion.cli.client_cmds import RepoArg, split_repo
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

if TYPE_CHECKING:
    # At run time these load only when a command runs: `bastion exec` never needs them.
    from bastion.rpc.api import CronOut

cron_app = typer.Typer(
    help="Cron jobs (write access): builds of a branch's head on a schedule (UTC)."
)

# As bastion.rpc.api.CRON_NAME_PATTERN (not imported at module level).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="the cron job's name")]
ExprArg = Annotated[
    str,
    typer.Argument(
        metavar="EXPR",
        help="when it runs: '0 0 3 * * *' (seconds first, as Drone), '0 3 * * *' (minute "
        "first) or @hourly, @daily, @weekly, @monthly, @yearly",
    ),
]
BranchOption = Annotated[
    str | None,
    typer.Option(
        "--branch", metavar="BRANCH", help="the branch it builds (default: the repository's)"
    ),
]


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise CliError(
            f"NAME {value[:100]!r}: 1-100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return value


def _expr(value: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise CliError("EXPR: empty; give e.g. '0 0 3 * * *' or @daily")
    if not text.startswith("@") and len(text.split(" ")) not in (5, 6):
        raise CliError(
            f"EXPR {text[:80]!r}: {len(text.split(' '))} fields; give 6 (seconds first, as "
            "Drone) or 5 (minute first), or @hourly, @daily, ..."
        )
    return text


def _branch(value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value) or ".." in value:
        raise CliError(f"--branch {value[:100]!r}: not a branch name")
    return value


def _rows(crons: Sequence[CronOut]) -> list[list[str | Text]]:
    rows: list[list[str | Text]] = []
    for cron in crons:
        error = Text(cron.error, style="red") if cron.error else Text("")
        rows.append(
            [
                cron.name,
                cron.expr,
                cron.branch,
                "no" if cron.disabled else "yes",
                when(cron.next) if not cron.disabled else "-",
                when(cron.prev),
                error,
            ]
        )
    return rows


def _show(slug: str, cron: CronOut, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        dump(cron)
        return
    stdout().print(
        pairs(
            [
                ("repository", slug),
                ("name", cron.name),
                ("expr", cron.expr),
                ("branch", cron.branch),
                ("enabled", yes_no(not cron.disabled)),
                ("next", when(cron.next) if not cron.disabled else "-"),
                ("prev", when(cron.prev)),
                ("error", Text(cron.error or "-", style="red" if cron.error else "")),
                ("created", when(cron.created)),
                ("updated", when(cron.updated)),
            ]
        )
    )


@cron_app.command("ls")
def cron_ls(
    repo: RepoArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List a repository's cron jobs: schedule, branch, next and previous run, last error."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            crons = client.cron_list(owner, name)
        if output is OutputFormat.JSON:
            dump(crons)
            return
        if not crons:
            stdout().print(Text(f"{owner}/{name} has no cron jobs"))
            return
        columns = ["name", "expr", "branch", "enabled", "next", "prev", "error"]
        stdout().print(table(f"{owner}/{name}", columns, _rows(crons)))


@cron_app.command("info")
def cron_info(
    repo: RepoArg,
    cron: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show a cron job."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            found = client.cron_info(owner, name, _name(cron))
        _show(f"{owner}/{name}", found, output)


@cron_app.command("add")
def cron_add(
    repo: RepoArg,
    cron: NameArg,
    expr: ExprArg,
    branch: BranchOption = None,
    disabled: Annotated[
        bool, typer.Option("--disabled", help="create it switched off (see update --enable)")
    ] = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Add a cron job that builds the head of BRANCH when EXPR says (UTC)."""
    from bastion.rpc.api import CronCreate  # noqa: PLC0415 - see TYPE_CHECKING

    with failures():
        owner, name = split_repo(repo)
        body = CronCreate(
            name=_name(cron),
            expr=_expr(expr),
            branch=_branch(branch) if branch is not None else "",
            disabled=disabled,
        )
        with connect(server, insecure, ca_cert) as client:
            created = client.cron_add(owner, name, body)
        _show(f"{owner}/{name}", created, output)


@cron_app.command("update")
def cron_update(
    repo: RepoArg,
    cron: NameArg,
    expr: Annotated[
        str | None, typer.Option("--expr", metavar="EXPR", help="a new schedule")
    ] = None,
    branch: BranchOption = None,
    enable: Annotated[bool, typer.Option("--enable", help="switch it on")] = False,
    disable: Annotated[bool, typer.Option("--disable", help="switch it off")] = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Change a cron job's schedule or branch, or switch it on or off."""
    from bastion.rpc.api import CronPatch  # noqa: PLC0415 - see TYPE_CHECKING

    with failures():
        owner, name = split_repo(repo)
        if enable and disable:
            raise CliError("--enable and --disable: give one of them")
        if expr is None and branch is None and not (enable or disable):
            raise CliError("nothing to change: give --expr, --branch, --enable or --disable")
        patch = CronPatch(
            expr=_expr(expr) if expr is not None else None,
            branch=_branch(branch) if branch is not None else None,
            disabled=True if disable else (False if enable else None),
        )
        with connect(server, insecure, ca_cert) as client:
            updated = client.cron_update(owner, name, _name(cron), patch)
        _show(f"{owner}/{name}", updated, output)


def _switch(
    repo: str,
    cron: str,
    disabled: bool,
    server: str | None,
    insecure: bool,
    ca_cert: str | None,
    output: OutputFormat,
) -> None:
    from bastion.rpc.api import CronPatch  # noqa: PLC0415 - see TYPE_CHECKING

    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            updated = client.cron_update(owner, name, _name(cron), CronPatch(disabled=disabled))
        _show(f"{owner}/{name}", updated, output)


@cron_app.command("enable")
def cron_enable(
    repo: RepoArg,
    cron: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Switch a cron job on (as drone cron enable): it runs next at its next time from now."""
    _switch(repo, cron, False, server, insecure, ca_cert, output)


@cron_app.command("disable")
def cron_disable(
    repo: RepoArg,
    cron: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Switch a cron job off (as drone cron disable); exec still runs it by hand."""
    _switch(repo, cron, True, server, insecure, ca_cert, output)


@cron_app.command("rm")
def cron_rm(
    repo: RepoArg,
    cron: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Delete a cron job."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            client.cron_rm(owner, name, _name(cron))
        stdout().print(Text(f"deleted cron job {cron} of {owner}/{name}"))


@cron_app.command("exec")
def cron_exec(
    repo: RepoArg,
    cron: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Run a cron job now (its schedule does not change); prints the build it made."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            build = client.cron_exec(owner, name, _name(cron))
        if output is OutputFormat.JSON:
            dump(build)
            return
        line = Text(f"build #{build.number} of {owner}/{name} ({build.target} at ")
        line.append(f"{build.after[:12]}): ")
        line.append_text(status(build.status))
        stdout().print(line)
