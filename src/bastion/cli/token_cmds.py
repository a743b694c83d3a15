"""``bastion token ls|create|rotate|revoke|revoke-all``: API tokens over the REST API.

Your own tokens by default; ``--user LOGIN`` acts on another user's (administrators).
A new or rotated token is printed once, on stdout alone with ``--format json`` or as the last
line otherwise, so it can be piped into a file; the server keeps only its hash. ``revoke
--user X --all`` revokes every token of X; ``revoke-all`` is the emergency switch that
revokes every token of every user, the caller's own too unless ``--keep-mine``, and asks for
``--yes`` because it logs everyone out. ``unlock`` lifts the lockouts of failed logins and bad
tokens. Bad options exit 2 naming the option; the server's refusals exit 1 with its message.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.text import Text

from bastion.cli.errors import CliError
from bastion.cli.output import FormatOption, OutputFormat, dump, stdout, table, when
from bastion.cli.remote import CaCertOption, InsecureOption, ServerOption, connect, failures
from bastion.rpc.api import TOKEN_NAME_PATTERN, TokenCreate, TokenCreated

token_app = typer.Typer(help="API tokens: yours, or (admins) another user's; rotate and revoke.")

_NAME = re.compile(TOKEN_NAME_PATTERN)
_LOGIN = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_DURATION = re.compile(r"^(\d+)\s*([dw])?$")
_SCOPES = ("read", "write", "admin")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="the token's name")]
UserOption = Annotated[
    str | None, typer.Option("--user", metavar="LOGIN", help="another user's tokens (admins)")
]


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise CliError(
            f"token name {value!r}: letters, digits, . _ - (starting with a letter or digit), "
            "at most 100"
        )
    return value


def _user(value: str | None) -> str | None:
    if value is not None and not _LOGIN.match(value):
        raise CliError(f"--user {value!r}: a login holds letters, digits, _ . - (at most 100)")
    return value


def _days(value: str) -> int:
    match = _DURATION.match(value.strip())
    if match is None or int(match.group(1)) < 1:
        raise CliError(f"--expires {value!r}: give days (30, 30d) or weeks (4w), at least 1")
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)


def _show_created(created: TokenCreated, output: OutputFormat, verb: str) -> None:
    if output is OutputFormat.JSON:
        dump(created)
        return
    out = stdout()
    expiry = f"expires {when(created.expires)}" if created.expires else "never expires"
    scopes = ",".join(created.scopes) or "-"
    out.print(
        Text(
            f"token {created.name} of {created.login} {verb} (scopes {scopes}, {expiry}); "
            "shown once, store it now:"
        )
    )
    out.print(Text(created.token))


@token_app.command("ls")
def token_ls(
    user: UserOption = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List live tokens: name, scopes, created, expires, last use (never the secret)."""
    with failures():
        login = _user(user)
        with connect(server, insecure, ca_cert) as client:
            tokens = client.tokens_list(login)
        if output is OutputFormat.JSON:
            dump(tokens)
            return
        rows = [
            (
                t.name,
                ",".join(t.scopes),
                when(t.created),
                ("expired " if t.expired else "") + (when(t.expires) if t.expires else "never"),
                when(t.last_used),
            )
            for t in tokens
        ]
        columns = ("name", "scopes", "created", "expires", "last used")
        stdout().print(table("", columns, rows))


@token_app.command("create")
def token_create(
    name: NameArg,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="read, write or admin; repeat for several (default read)"),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option("--expires", metavar="DAYS", help="lifetime: 30, 30d or 4w (server default)"),
    ] = None,
    never: Annotated[
        bool, typer.Option("--never", help="no expiry (only if the server allows it)")
    ] = False,
    user: UserOption = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create a named token, shown once (never more scopes or life than the caller's)."""
    with failures():
        scopes = scope or ["read"]
        for item in scopes:
            if item not in _SCOPES:
                raise CliError(f"--scope {item!r}: one of read, write, admin")
        if never and expires is not None:
            raise CliError("--never and --expires: give one of them")
        body = TokenCreate(
            name=_name(name),
            scopes=sorted(set(scopes), key=_SCOPES.index),
            expires_in_days=_days(expires) if expires is not None else None,
            never=never,
        )
        login = _user(user)
        with connect(server, insecure, ca_cert) as client:
            created = client.tokens_create(body, login)
        _show_created(created, output, "created")


@token_app.command("rotate")
def token_rotate(
    name: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """New secret for one of your tokens (same name and scopes); the old one dies at once."""
    with failures():
        with connect(server, insecure, ca_cert) as client:
            created = client.tokens_rotate(_name(name))
        _show_created(created, output, "rotated")


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="the token's name")] = None,
    user: UserOption = None,
    all_tokens: Annotated[
        bool, typer.Option("--all", help="every token of --user (admins)")
    ] = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Revoke a token by name, or with --user LOGIN --all every token of that user."""
    with failures():
        login = _user(user)
        if all_tokens:
            if name is not None:
                raise CliError("--all revokes every token of --user: give no NAME with it")
            if login is None:
                raise CliError("--all needs --user LOGIN (revoke-all is the emergency switch)")
            with connect(server, insecure, ca_cert) as client:
                count = client.tokens_revoke_user(login)
            result = {"user": login, "revoked": count}
            message = f"revoked {count} token(s) of {login}"
        else:
            if name is None:
                raise CliError("give the NAME of the token to revoke (or --user LOGIN --all)")
            with connect(server, insecure, ca_cert) as client:
                client.tokens_revoke(_name(name), login)
            result = {"user": login or "", "name": name, "revoked": 1}
            message = f"revoked token {name}" + (f" of {login}" if login else "")
        if output is OutputFormat.JSON:
            dump(result)
        else:
            stdout().print(Text(message))


@token_app.command("revoke-all")
def token_revoke_all(
    yes: Annotated[bool, typer.Option("--yes", help="confirm: every user is logged out")] = False,
    keep_mine: Annotated[
        bool, typer.Option("--keep-mine", help="keep the token this command runs with")
    ] = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Emergency (admins): revoke every user's API tokens, yours too unless --keep-mine."""
    with failures():
        if not yes:
            raise CliError("revoke-all revokes every token of every user: add --yes to confirm")
        with connect(server, insecure, ca_cert) as client:
            count = client.tokens_revoke_everyone(keep_mine=keep_mine)
        if output is OutputFormat.JSON:
            dump({"revoked": count, "kept_mine": keep_mine})
        else:
            kept = "; yours was kept" if keep_mine else "; yours too"
            stdout().print(Text(f"revoked {count} token(s){kept}"))


@token_app.command("unlock")
def token_unlock(
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Lift every lockout of failed logins and bad tokens (admins; from an unlocked address)."""
    with failures(), connect(server, insecure, ca_cert) as client:
        count = client.lockouts_lift()
        if output is OutputFormat.JSON:
            dump({"lifted": count})
        else:
            stdout().print(Text(f"lifted {count} lockout(s)"))
