"""Secret commands (admins): ``secret``, ``orgsecret`` and ``globalsecret``, as Drone's CLI.

``bastion secret add|update|ls|info|rm --repository OWNER/NAME --name NAME`` manages a
repository's secrets; ``bastion orgsecret add|update|info|rm NAMESPACE NAME [DATA]`` and
``orgsecret ls NAMESPACE`` an organisation's (positional, as ``drone orgsecret``);
``bastion globalsecret`` the same without a namespace, for every repository. Values come from
``--data VALUE|-|@FILE`` (or a DATA argument) or ``--data-file FILE`` and are never shown
again: lists and ``info`` give filters, times, last use and the age against the server's
rotation period, flagging secrets overdue for rotation. Bad input exits 2 naming the option
and why, before anything is sent (the value is never quoted in a message).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from bastion.cli.client_cmds import split_repo
from bastion.cli.errors import CliError
from bastion.cli.output import (
    FormatOption,
    OutputFormat,
    dump,
    pairs,
    stderr,
    stdout,
    table,
    when,
    when_short,
    yes_no,
)
from bastion.cli.remote import CaCertOption, InsecureOption, ServerOption, connect, failures

if TYPE_CHECKING:
    # At run time these load only when a command runs: `bastion exec` never needs them.
    from bastion.rpc.api import SecretCreate, SecretOut, SecretUpdate

secret_app = typer.Typer(
    help="Repository secrets (admins): values go to the server and are never shown again."
)
orgsecret_app = typer.Typer(
    help="Organisation secrets (admins): offered to every repository of the namespace."
)
globalsecret_app = typer.Typer(help="Global secrets (admins): offered to every repository.")

# As bastion.rpc.api.SECRET_NAME_PATTERN / SECRET_EVENTS (not imported at module level).
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_EVENTS = ("push", "pull_request", "tag", "promote", "rollback", "cron", "custom")
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

RepositoryOption = Annotated[
    str, typer.Option("--repository", metavar="OWNER/NAME", help="the repository")
]
SecretNameOption = Annotated[
    str, typer.Option("--name", metavar="NAME", help="the secret's name, as from_secret uses it")
]
NamespaceArg = Annotated[
    str, typer.Argument(metavar="NAMESPACE", help="the organisation (owner of repositories)")
]
NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="the secret's name, as from_secret uses it")
]
DataArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[DATA]",
        help="the value, '-' for stdin or '@FILE' (prefer --data-file: an argument shows in "
        "`ps` and in your shell history)",
        show_default=False,
    ),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="VALUE|-|@FILE",
        help="the value. '-' reads it from stdin, '@FILE' from a file. A VALUE on the "
        "command line shows in `ps` and in your shell history: prefer --data-file or --data -",
        show_default=False,
    ),
]
DataFileOption = Annotated[
    Path | None,
    typer.Option(
        "--data-file",
        metavar="FILE",
        help="read the value from FILE (verbatim, a final newline included)",
        show_default=False,
    ),
]
EventOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        metavar="EVENT",
        help=f"only builds of this event (repeatable): {', '.join(_EVENTS)}",
        show_default=False,
    ),
]
BranchOption = Annotated[
    list[str] | None,
    typer.Option(
        "--branch",
        metavar="GLOB",
        help="only builds whose target branch matches (repeatable), e.g. main, release/*",
        show_default=False,
    ),
]
ImageOption = Annotated[
    list[str] | None,
    typer.Option(
        "--image",
        metavar="GLOB",
        help="only plugin steps of these images (repeatable): steps with commands or an "
        "entrypoint never receive it",
        show_default=False,
    ),
]


def _allow_pr_option(default: bool | None) -> object:
    return typer.Option(
        "--allow-pull-request/--deny-pull-request",
        help="pull_request builds may receive it (builds of forks never do)",
        show_default=default is not None,
    )


AllowPrAdd = Annotated[bool, _allow_pr_option(False)]
AllowPrUpdate = Annotated[bool | None, _allow_pr_option(None)]


def secret_name(value: str, where: str = "--name") -> str:
    if not _SECRET_NAME.match(value) or len(value) > 255:
        raise CliError(
            f"{where} {value!r}: a secret name starts with a letter or _ and holds letters, "
            "digits, _ . - (at most 255), like an environment variable's"
        )
    return value


def namespace(value: str) -> str:
    if not _NAMESPACE.match(value):
        raise CliError(
            f"NAMESPACE {value!r}: give the organisation as the owner part of repository "
            "names, e.g. acme for acme/web"
        )
    return value


def secret_data(data: str | None, data_file: Path | None, *, required: bool = True) -> str | None:
    """The value from exactly one of --data VALUE, --data - (stdin), --data @FILE (as Drone's
    CLI reads it) or --data-file FILE; taken verbatim, a trailing newline included. None when
    neither is given and the value is optional (``update``)."""
    if data_file is not None:
        if data is not None:
            raise CliError("give the value with --data (or DATA) or with --data-file, not both")
        value = _read_secret_file(data_file, "--data-file")
    elif data is None:
        if not required:
            return None
        raise CliError("give the value with --data-file FILE, --data - (stdin) or --data VALUE")
    elif data == "-":
        if sys.stdin.isatty():
            stderr().print(Text("reading the value from stdin; end it with Ctrl-D"))
        value = sys.stdin.read(_READ_LIMIT)
    elif data.startswith("@"):
        value = _read_secret_file(Path(data[1:]), "--data @FILE")
    else:
        value = data
    from bastion.engine.masking import MIN_SECRET_LENGTH  # noqa: PLC0415 - see TYPE_CHECKING
    from bastion.rpc.api import SECRET_DATA_MAX  # noqa: PLC0415

    # The messages give lengths, never the value.
    if len(value.strip()) < MIN_SECRET_LENGTH:
        raise CliError(
            f"the value is {len(value.strip())} characters long without surrounding whitespace: "
            f"secrets shorter than {MIN_SECRET_LENGTH} characters cannot be masked in build logs"
        )
    if len(value) > SECRET_DATA_MAX:
        raise CliError(
            f"the value is longer than {SECRET_DATA_MAX} characters (at most {SECRET_DATA_MAX})"
        )
    return value


# Characters read at most: one more than a value may have, so that the length check below
# refuses a longer one, and /dev/zero or an endless pipe does not fill the memory.
_READ_LIMIT = 64 * 1024 + 1  # rpc.api.SECRET_DATA_MAX + 1 (not imported at startup)


def _read_secret_file(path: Path, option: str) -> str:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return handle.read(_READ_LIMIT)
    except UnicodeDecodeError:
        raise CliError(
            f"{option} {path}: not UTF-8 text (encode binary data, e.g. base64)"
        ) from None
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot be read ({exc.strerror or exc})") from None


def _filters(
    option: str, values: Sequence[str] | None, *, allowed: Sequence[str] = ()
) -> list[str] | None:
    if values is None:
        return None
    out: list[str] = []
    for value in values:
        text = value.strip()
        if not text or len(text) > 255:
            raise CliError(f"{option} {value!r}: give 1 to 255 characters")
        if allowed and text not in allowed:
            raise CliError(f"{option} {text!r}: not an event; events are {', '.join(allowed)}")
        out.append(text)
    return out


def create_body(
    name: str,
    value: str,
    *,
    allow_pull_request: bool,
    events: Sequence[str] | None,
    branches: Sequence[str] | None,
    images: Sequence[str] | None,
) -> SecretCreate:
    from bastion.rpc.api import SecretCreate  # noqa: PLC0415 - see TYPE_CHECKING

    return SecretCreate(
        name=name,
        data=value,
        pull_request=allow_pull_request,
        events=_filters("--event", events, allowed=_EVENTS) or [],
        branches=_filters("--branch", branches) or [],
        images=_filters("--image", images) or [],
    )


def update_body(
    value: str | None,
    *,
    allow_pull_request: bool | None,
    events: Sequence[str] | None,
    branches: Sequence[str] | None,
    images: Sequence[str] | None,
) -> SecretUpdate:
    from bastion.rpc.api import SecretUpdate  # noqa: PLC0415 - see TYPE_CHECKING

    body = SecretUpdate(
        data=value,
        pull_request=allow_pull_request,
        events=_filters("--event", events, allowed=_EVENTS),
        branches=_filters("--branch", branches),
        images=_filters("--image", images),
    )
    if not body.wire():
        raise CliError(
            "nothing to change: give a new value (--data, --data-file) or --event, --branch, "
            "--image, --allow-pull-request / --deny-pull-request"
        )
    return body


def _listed(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "any"


def _age(s: SecretOut) -> Text:
    text = f"{s.age_days} d"
    return Text(text + " (rotate)", style="bold red") if s.rotation_due else Text(text)


def _rows(secrets: list[SecretOut]) -> Iterator[tuple[str | Text, ...]]:
    for s in secrets:
        yield (
            s.name,
            yes_no(s.pull_request),
            _listed(s.events),
            _listed(s.branches),
            _listed(s.images),
            _age(s),
            when_short(s.last_used),
        )


def print_list(secrets: list[SecretOut], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        dump(secrets)
        return
    columns = ("name", "pull requests", "events", "branches", "images", "age", "last used")
    stdout().print(table("", columns, _rows(secrets)))
    overdue = [s.name for s in secrets if s.rotation_due]
    if overdue:
        stderr().print(Text(f"overdue for rotation: {', '.join(overdue)}", style="bold red"))


def print_one(where: str, secret: SecretOut, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        dump(secret)
        return
    age: str | Text = _age(secret)
    rows: list[tuple[str, str | Text]] = [
        (secret.scope if secret.scope != "repo" else "repository", where),
        ("name", secret.name),
        ("pull requests", yes_no(secret.pull_request) + " (never forks')"),
        ("events", _listed(secret.events)),
        ("branches", _listed(secret.branches)),
        ("images", _listed(secret.images) + (" (plugin steps only)" if secret.images else "")),
        ("created", when(secret.created)),
        ("updated", when(secret.updated)),
        ("value set", when(secret.rotated)),
        ("age", age),
        (
            "last used",
            when(secret.last_used) + (f" by {secret.last_build}" if secret.last_build else ""),
        ),
    ]
    stdout().print(pairs(rows))


def print_saved(verb: str, where: str, saved: SecretOut, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        dump(saved)
    else:
        prs = "pull requests too" if saved.pull_request else "not for pull requests"
        stdout().print(Text(f"{verb} secret {saved.name} of {where} ({prs})"))


def print_deleted(where: str, name: str, output: OutputFormat, key: str, owner: str) -> None:
    if output is OutputFormat.JSON:
        dump({key: owner, "name": name, "deleted": True})
    else:
        stdout().print(Text(f"deleted secret {name} of {where}"))


# -- secret --------------------------------------------------------------------------------------


@secret_app.command("ls")
def secret_ls(
    repository: RepositoryOption,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List a repository's secrets: names, filters, age and last use, never values (admins)."""
    with failures():
        owner, name = split_repo(repository)
        with connect(server, insecure, ca_cert) as client:
            secrets = client.secrets_list(owner, name)
        print_list(secrets, output)


@secret_app.command("info")
def secret_info(
    repository: RepositoryOption,
    name: SecretNameOption,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show a secret's filters, times and last use; its value is never shown (admins)."""
    with failures():
        owner, repo_name = split_repo(repository)
        secret_name(name)
        with connect(server, insecure, ca_cert) as client:
            secret = client.secret_info(owner, repo_name, name)
        print_one(f"{owner}/{repo_name}", secret, output)


@secret_app.command("add")
def secret_add(
    repository: RepositoryOption,
    name: SecretNameOption,
    data: DataOption = None,
    data_file: DataFileOption = None,
    event: EventOption = None,
    branch: BranchOption = None,
    image: ImageOption = None,
    allow_pull_request: AllowPrAdd = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create or replace a repository secret (admins). Steps receive it with
    `from_secret: NAME`; it is masked in their logs.

    Examples: bastion secret add --repository acme/web --name token --data-file token.txt;
    printf '%s' "$TOKEN" | bastion secret add --repository acme/web --name token --data -"""
    with failures():
        owner, repo_name = split_repo(repository)
        secret_name(name)
        value = secret_data(data, data_file)
        assert value is not None  # required
        body = create_body(
            name,
            value,
            allow_pull_request=allow_pull_request,
            events=event,
            branches=branch,
            images=image,
        )
        with connect(server, insecure, ca_cert) as client:
            saved = client.secret_add(owner, repo_name, body)
        print_saved("saved", f"{owner}/{repo_name}", saved, output)


@secret_app.command("update")
def secret_update(
    repository: RepositoryOption,
    name: SecretNameOption,
    data: DataOption = None,
    data_file: DataFileOption = None,
    event: EventOption = None,
    branch: BranchOption = None,
    image: ImageOption = None,
    allow_pull_request: AllowPrUpdate = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Change a repository secret's value and/or filters; what is not given stays (admins).
    A filter option replaces that filter's list."""
    with failures():
        owner, repo_name = split_repo(repository)
        secret_name(name)
        value = secret_data(data, data_file, required=False)
        body = update_body(
            value,
            allow_pull_request=allow_pull_request,
            events=event,
            branches=branch,
            images=image,
        )
        with connect(server, insecure, ca_cert) as client:
            saved = client.secret_update(owner, repo_name, name, body)
        print_saved("updated", f"{owner}/{repo_name}", saved, output)


@secret_app.command("rm")
def secret_rm(
    repository: RepositoryOption,
    name: SecretNameOption,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Delete a repository secret (admins)."""
    with failures():
        owner, repo_name = split_repo(repository)
        secret_name(name)
        with connect(server, insecure, ca_cert) as client:
            client.secret_rm(owner, repo_name, name)
        slug = f"{owner}/{repo_name}"
        print_deleted(slug, name, output, "repository", slug)


# -- orgsecret and globalsecret ------------------------------------------------------------------


def _where(ns: str | None) -> str:
    return f"organisation {ns}" if ns is not None else "the global scope"


def _shared_ls(
    ns: str | None, server: str | None, insecure: bool, ca: str | None, out: OutputFormat
) -> None:
    with connect(server, insecure, ca) as client:
        secrets = client.shared_secrets_list(ns)
    print_list(secrets, out)


@orgsecret_app.command("ls")
def orgsecret_ls(
    ns: NamespaceArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List an organisation's secrets: names, filters, age and last use (admins)."""
    with failures():
        _shared_ls(namespace(ns), server, insecure, ca_cert, output)


@globalsecret_app.command("ls")
def globalsecret_ls(
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List the global secrets: names, filters, age and last use (admins)."""
    with failures():
        _shared_ls(None, server, insecure, ca_cert, output)


def _shared_info(
    ns: str | None,
    name: str,
    server: str | None,
    insecure: bool,
    ca: str | None,
    out: OutputFormat,
) -> None:
    secret_name(name, "NAME")
    with connect(server, insecure, ca) as client:
        secret = client.shared_secret_info(ns, name)
    print_one(ns if ns is not None else "every repository", secret, out)


@orgsecret_app.command("info")
def orgsecret_info(
    ns: NamespaceArg,
    name: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show an organisation secret's filters, times and last use (admins)."""
    with failures():
        _shared_info(namespace(ns), name, server, insecure, ca_cert, output)


@globalsecret_app.command("info")
def globalsecret_info(
    name: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show a global secret's filters, times and last use (admins)."""
    with failures():
        _shared_info(None, name, server, insecure, ca_cert, output)


@orgsecret_app.command("add")
def orgsecret_add(
    ns: NamespaceArg,
    name: NameArg,
    data_arg: DataArg = None,
    data: DataOption = None,
    data_file: DataFileOption = None,
    event: EventOption = None,
    branch: BranchOption = None,
    image: ImageOption = None,
    allow_pull_request: AllowPrAdd = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create or replace an organisation secret (admins): every repository of NAMESPACE may
    receive it, unless one has its own secret of that name.

    Example: bastion orgsecret add acme docker_password --data-file pw.txt --image plugins/docker"""
    with failures():
        ns_ = namespace(ns)
        _shared_add(
            ns_,
            name,
            data_arg,
            data,
            data_file,
            event,
            branch,
            image,
            allow_pull_request,
            server,
            insecure,
            ca_cert,
            output,
        )


@globalsecret_app.command("add")
def globalsecret_add(
    name: NameArg,
    data_arg: DataArg = None,
    data: DataOption = None,
    data_file: DataFileOption = None,
    event: EventOption = None,
    branch: BranchOption = None,
    image: ImageOption = None,
    allow_pull_request: AllowPrAdd = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create or replace a global secret (admins): every repository may receive it, unless
    it or its organisation has a secret of that name."""
    with failures():
        _shared_add(
            None,
            name,
            data_arg,
            data,
            data_file,
            event,
            branch,
            image,
            allow_pull_request,
            server,
            insecure,
            ca_cert,
            output,
        )


def _one_data(data_arg: str | None, data: str | None) -> str | None:
    if data_arg is not None and data is not None:
        raise CliError("give the value once: as DATA or with --data, not both")
    return data if data is not None else data_arg


def _shared_add(
    ns: str | None,
    name: str,
    data_arg: str | None,
    data: str | None,
    data_file: Path | None,
    event: list[str] | None,
    branch: list[str] | None,
    image: list[str] | None,
    allow_pull_request: bool,
    server: str | None,
    insecure: bool,
    ca: str | None,
    out: OutputFormat,
) -> None:
    secret_name(name, "NAME")
    value = secret_data(_one_data(data_arg, data), data_file)
    assert value is not None  # required
    body = create_body(
        name,
        value,
        allow_pull_request=allow_pull_request,
        events=event,
        branches=branch,
        images=image,
    )
    with connect(server, insecure, ca) as client:
        saved = client.shared_secret_add(ns, body)
    print_saved("saved", _where(ns), saved, out)


@orgsecret_app.command("update")
def orgsecret_update(
    ns: NamespaceArg,
    name: NameArg,
    data_arg: DataArg = None,
    data: DataOption = None,
    data_file: DataFileOption = None,
    event: EventOption = None,
    branch: BranchOption = None,
    image: ImageOption = None,
    allow_pull_request: AllowPrUpdate = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Change an organisation secret's value and/or filters; the rest stays (admins)."""
    with failures():
        ns_ = namespace(ns)
        _shared_update(
            ns_,
            name,
            data_arg,
            data,
            data_file,
            event,
            branch,
            image,
            allow_pull_request,
            server,
            insecure,
            ca_cert,
            output,
        )


@globalsecret_app.command("update")
def globalsecret_update(
    name: NameArg,
    data_arg: DataArg = None,
    data: DataOption = None,
    data_file: DataFileOption = None,
    event: EventOption = None,
    branch: BranchOption = None,
    image: ImageOption = None,
    allow_pull_request: AllowPrUpdate = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Change a global secret's value and/or filters; the rest stays (admins)."""
    with failures():
        _shared_update(
            None,
            name,
            data_arg,
            data,
            data_file,
            event,
            branch,
            image,
            allow_pull_request,
            server,
            insecure,
            ca_cert,
            output,
        )


def _shared_update(
    ns: str | None,
    name: str,
    data_arg: str | None,
    data: str | None,
    data_file: Path | None,
    event: list[str] | None,
    branch: list[str] | None,
    image: list[str] | None,
    allow_pull_request: bool | None,
    server: str | None,
    insecure: bool,
    ca: str | None,
    out: OutputFormat,
) -> None:
    secret_name(name, "NAME")
    value = secret_data(_one_data(data_arg, data), data_file, required=False)
    body = update_body(
        value, allow_pull_request=allow_pull_request, events=event, branches=branch, images=image
    )
    with connect(server, insecure, ca) as client:
        saved = client.shared_secret_update(ns, name, body)
    print_saved("updated", _where(ns), saved, out)


@orgsecret_app.command("rm")
def orgsecret_rm(
    ns: NamespaceArg,
    name: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Delete an organisation secret (admins)."""
    with failures():
        ns_ = namespace(ns)
        secret_name(name, "NAME")
        with connect(server, insecure, ca_cert) as client:
            client.shared_secret_rm(ns_, name)
        print_deleted(_where(ns_), name, output, "namespace", ns_)


@globalsecret_app.command("rm")
def globalsecret_rm(
    name: NameArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Delete a global secret (admins)."""
    with failures():
        secret_name(name, "NAME")
        with connect(server, insecure, ca_cert) as client:
            client.shared_secret_rm(None, name)
        print_deleted(_where(None), name, output, "scope", "global")
