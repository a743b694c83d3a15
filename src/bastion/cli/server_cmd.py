"""``bastion server``: build the settings, refuse insecure ones, say where things are, serve.

Options given on the command line win over ``BASTION_*`` variables and the config file. With
``--dev`` the RPC secret, the database key and the admin token are generated into the data
directory (mode 0600) on the first start and reused afterwards; the command prints where.
Insecure or unusable settings end the command with exit code 2 and every problem listed.

``--with-runner`` also runs a runner in this process. The server may not import the runner,
so the caller passes ``start_runner`` (a :class:`RunnerStarter`), which is called once the
server accepts connections, with the server's loopback URL, the embedded runner's token and a
``stop`` event that is set when the server has stopped.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Protocol

import typer

from bastion.cli.errors import EXIT_INVALID
from bastion.server import SettingsError, dev_defaults, load_settings, serve
from bastion.server.settings import ADMIN_TOKEN_FILE, EMBEDDED_RUNNER_TOKEN_FILE


class RunnerStarter(Protocol):
    def __call__(
        self, server_url: str, token: str, *, ca_cert: Path | None, stop: threading.Event
    ) -> None:
        """Start a runner for ``server_url`` in a background thread and return at once; the
        runner stops when ``stop`` is set."""


def _fail(problems: list[str], what: str) -> typer.Exit:
    typer.echo(f"error: {what}:", err=True)
    for problem in problems:
        typer.echo(f"  - {problem}", err=True)
    return typer.Exit(EXIT_INVALID)


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


def server_command(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    dev: bool,
    with_runner: bool,
    *,
    start_runner: RunnerStarter | None = None,
) -> None:
    """Run the Bastion server until it is stopped (see the module docstring)."""
    try:
        settings = load_settings(
            host=host,
            port=port,
            data_dir=data_dir,
            dev=True if dev else None,
            embedded_runner=True if with_runner else None,
        )
    except SettingsError as exc:
        raise _fail(exc.problems, "the server settings are invalid") from None
    if settings.embedded_runner and start_runner is None:
        raise _fail(["--with-runner: this build of bastion has no runner"], "cannot start")

    if settings.dev:
        try:
            generated = dev_defaults(settings.data_dir)
        except OSError as exc:
            raise _fail([f"{settings.data_dir}: {exc.strerror}"], "--dev cannot write") from None
        settings = settings.with_dev_defaults(generated)
        verb = "generated" if generated.created else "reusing"
        typer.echo(
            f"dev mode: {verb} the RPC secret, database key and admin token in "
            f"{settings.data_dir} (mode 0600)",
            err=True,
        )
    for notice in settings.notices():
        typer.echo(f"warning: {notice}", err=True)
    try:
        settings.validate_security()
    except SettingsError as exc:
        raise _fail(exc.problems, "bastion server refuses to start with these settings") from None

    _configure_logging()
    typer.echo(
        f"Bastion server: {settings.internal_url} (public URL {settings.effective_public_url})"
    )
    typer.echo(f"data directory: {settings.data_dir}")
    typer.echo(
        f"admin token:    {settings.data_dir / ADMIN_TOKEN_FILE} "
        "(mode 0600; written when the admin has no token yet)"
    )
    typer.echo(f"API:            {settings.effective_public_url}/api  (docs at /docs)")

    stop = threading.Event()
    on_ready = None
    if settings.embedded_runner and start_runner is not None:
        starter = start_runner

        def on_ready() -> None:
            token_file = settings.data_dir / EMBEDDED_RUNNER_TOKEN_FILE
            token = token_file.read_text(encoding="utf-8").strip()
            starter(settings.internal_url, token, ca_cert=settings.local_ca_cert, stop=stop)
            typer.echo("embedded runner started", err=True)

    try:
        serve(settings, on_ready)
    except SettingsError as exc:
        raise _fail(exc.problems, "bastion server refuses to start with these settings") from None
    finally:
        stop.set()
