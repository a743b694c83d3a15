"""Client commands of identity: ``bastion user login-link`` and ``bastion repo perm``.

``bastion user login-link LOGIN`` prints a one-time login link for a user of the local forge
(administrators; it works once, for 15 minutes). ``bastion repo perm ls|grant|revoke
OWNER/NAME [LOGIN] [--scope read|write|admin]`` lists and sets who may do what on a
local-forge repository (system administrators; forge repositories take their permissions
from the forge). ``bastion.cli.app`` adds ``perm_app`` to the ``repo`` group; importing this
module registers ``login-link`` on the ``user`` group.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.text import Text

from bastion.cli.client_cmds import LoginArg, RepoArg, _login, split_repo, user_app
from bastion.cli.output import FormatOption, OutputFormat, dump, stdout, table
from bastion.cli.remote import CaCertOption, InsecureOption, ServerOption, connect, failures

perm_app = typer.Typer(help="Who may read, write or administer a local-forge repository.")


class ScopeChoice(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


ScopeOption = Annotated[
    ScopeChoice,
    typer.Option("--scope", help="read, write (implies read) or admin (implies both)"),
]


@user_app.command("login-link")
def login_link(
    login: LoginArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Print a one-time login link for a user (admins): it works once, for 15 minutes."""
    with failures():
        _login(login)
        with connect(server, insecure, ca_cert) as client:
            link = client.user_login_link(login)
        if output is OutputFormat.JSON:
            dump(link)
            return
        until = datetime.fromtimestamp(link.expires, UTC).strftime("%H:%M:%S UTC")
        out = stdout()
        out.print(Text(f"login link for {link.login} (once, until {until}):"))
        out.print(Text(link.url))


@perm_app.command("ls")
def perm_ls(
    repo: RepoArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List the stored permissions on a repository (system admins)."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            found = client.repo_permissions(owner, name)
        if output is OutputFormat.JSON:
            dump(found)
            return
        rows = [(p.login, ",".join(p.scopes), p.source) for p in found]
        stdout().print(table(f"{owner}/{name}", ["login", "scopes", "source"], rows))


@perm_app.command("grant")
def perm_grant(
    repo: RepoArg,
    login: LoginArg,
    scope: ScopeOption = ScopeChoice.READ,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Let a user read, write or administer a local-forge repository (system admins)."""
    with failures():
        owner, name = split_repo(repo)
        _login(login)
        with connect(server, insecure, ca_cert) as client:
            granted = client.repo_permission_set(owner, name, login, [scope.value])
        if output is OutputFormat.JSON:
            dump(granted)
            return
        stdout().print(Text(f"{login} may now {', '.join(granted.scopes)} {owner}/{name}"))


@perm_app.command("revoke")
def perm_revoke(
    repo: RepoArg,
    login: LoginArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Remove a user's grant on a local-forge repository (system admins)."""
    with failures():
        owner, name = split_repo(repo)
        _login(login)
        with connect(server, insecure, ca_cert) as client:
            client.repo_permission_delete(owner, name, login)
        if output is OutputFormat.JSON:
            dump({"repo": f"{owner}/{name}", "login": login, "revoked": True})
            return
        stdout().print(Text(f"{login} has no grant on {owner}/{name} any more"))
