"""Client commands for held builds: ``bastion sign`` and ``bastion build approve|decline``.

``bastion sign OWNER/NAME`` sends the configuration file (``--file``, default
``.drone.yml``) to the server, which signs it with the repository's key (the key never
leaves the server), and prints the signature; ``--save`` writes it into the file as a
``kind: signature`` document, replacing any there, as ``drone sign --save`` does.
``bastion build approve|decline OWNER/NAME NUMBER [STAGE]`` releases a blocked build.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from bastion.cli.client_cmds import NumberArg, RepoArg, _build, build_app, split_repo
from bastion.cli.errors import CliError
from bastion.cli.output import FormatOption, OutputFormat, dump, status, stdout
from bastion.cli.remote import CaCertOption, InsecureOption, ServerOption, connect, failures
from bastion.crypto.config_signature import with_signature

MAX_CONFIG_BYTES = 1024 * 1024  # what the server (and the config loader) accept

StageArg = Annotated[
    int | None,
    typer.Argument(metavar="[STAGE]", help="only this stage (number) of the build", min=1),
]


def _read_config(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read the configuration: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise CliError(f"{path}: {len(data)} bytes, more than a configuration may have (1 MiB)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return data


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path``'s content in one step, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sign_command(
    repo: RepoArg,
    file: Annotated[
        Path,
        typer.Option("--file", "-f", metavar="PATH", help="the configuration file to sign"),
    ] = Path(".drone.yml"),
    save: Annotated[bool, typer.Option("--save", help="write the signature into the file")] = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Sign a configuration for a protected repository (repository administrators).

    Any later edit to the file, comments included, breaks the signature.
    """
    with failures():
        owner, name = split_repo(repo)
        config = _read_config(file)
        with connect(server, insecure, ca_cert) as client:
            signature = client.sign(owner, name, config.decode("utf-8"))
        if not save:
            stdout().print(signature, highlight=False)
            return
        try:
            _write_atomically(file, with_signature(config, signature))
        except (OSError, ValueError) as exc:
            raise CliError(f"{file}: cannot write the signature: {exc}") from exc
        stdout().print(Text(f"signed {file} for {owner}/{name}"))


def _release(
    verb: str,
    repo: str,
    number: str,
    stage: int | None,
    server: str | None,
    insecure: bool,
    ca_cert: str | None,
    output: OutputFormat,
) -> None:
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            build = _build(client, owner, name, number)
            release = client.builds_approve if verb == "approve" else client.builds_decline
            after = release(owner, name, build.number, stage)
        if output is OutputFormat.JSON:
            dump(after)
            return
        which = f"stage {stage} of build" if stage is not None else "build"
        line = Text(f"{verb}d {which} #{after.number} of {owner}/{name}: ")
        line.append_text(status(after.status))
        stdout().print(line)


@build_app.command("approve")
def build_approve(
    repo: RepoArg,
    number: NumberArg,
    stage: StageArg = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Approve a blocked build (or one stage of it): it runs."""
    _release("approve", repo, number, stage, server, insecure, ca_cert, output)


@build_app.command("decline")
def build_decline(
    repo: RepoArg,
    number: NumberArg,
    stage: StageArg = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Decline a blocked build (or one stage of it): it ends as declined, nothing runs."""
    _release("decline", repo, number, stage, server, insecure, ca_cert, output)
