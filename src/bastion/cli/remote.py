"""How client commands reach the server, and how their failures become exit codes.

``connect`` reads the settings (options, else ``BASTION_*`` / ``DRONE_*``; see
``bastion.client.settings``) and makes a ``BastionClient`` with ``client_factory``: tests
and embedders replace that one module attribute to hand the commands a client on an
``httpx.MockTransport`` or an in-process server, without touching the network.

``failures()`` maps errors to exit codes, printing one line on stderr and never a traceback:

====  ==================================================================================
 1    the server refused or failed: its own message (``ClientError`` with a 4xx/5xx)
 2    invalid arguments or settings (``CliError``, ``ServerURLError`` / ``SettingsError``)
 3    the server could not be reached (``UnreachableError``)
====  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from bastion.cli.errors import EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, CliError
from bastion.cli.output import stderr

if TYPE_CHECKING:
    # Loaded when a client command runs, not for `bastion exec` (httpx takes a while).
    from bastion.client import BastionClient, ClientSettings

ClientFactory = Callable[["ClientSettings"], "BastionClient"]


def default_client(settings: ClientSettings) -> BastionClient:
    from bastion.client import BastionClient  # noqa: PLC0415 - see TYPE_CHECKING

    return BastionClient(
        settings.server, settings.token, verify=settings.verify, insecure=settings.insecure
    )


client_factory: ClientFactory = default_client


ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="server URL [default: $BASTION_SERVER or $DRONE_SERVER]",
        show_default=False,
    ),
]
InsecureOption = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="allow plain http:// to a server that is not on this machine "
        "(BASTION_INSECURE=true); the token then crosses the network unencrypted",
    ),
]
CaCertOption = Annotated[
    str | None,
    typer.Option(
        "--ca-cert",
        help="CA certificate file for a server with a private CA [default: $BASTION_CA_CERT]",
        show_default=False,
    ),
]


@contextmanager
def connect(
    server: str | None = None, insecure: bool = False, ca_cert: str | None = None
) -> Iterator[BastionClient]:
    from bastion.client import ClientSettings  # noqa: PLC0415 - see TYPE_CHECKING

    settings = ClientSettings.load(server=server, insecure=insecure or None, ca_cert=ca_cert)
    client = client_factory(settings)
    try:
        yield client
    finally:
        client.close()


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr (as plain text, never markup); the Exit to raise."""
    stderr().print(Text.assemble(("error: ", "red"), message), soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def failures() -> Iterator[None]:
    """Turn the errors of a client command into a message and an exit code."""
    from bastion.client import ClientError, ServerURLError, UnreachableError  # noqa: PLC0415

    try:
        yield
    except CliError as exc:
        raise fail(exc.message, exc.code) from None
    except ServerURLError as exc:
        raise fail(exc.message, EXIT_INVALID) from None
    except UnreachableError as exc:
        raise fail(exc.message, EXIT_UNAVAILABLE) from None
    except ClientError as exc:
        prefix = f"{exc.status}: " if exc.status else ""
        raise fail(f"{prefix}{exc.message}", EXIT_FAILED) from None
