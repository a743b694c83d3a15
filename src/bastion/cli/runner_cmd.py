"""``bastion runner``: run the runner daemon; ``bastion runner ls|add|rm``: manage runners.

Without a subcommand the group runs the daemon (``bastion.runner.run_runner``) until
SIGINT or SIGTERM, then cancels its stages, removes their containers and exits 0. Every
option has a ``BASTION_RUNNER_*`` variable (Drone's ``DRONE_RUNNER_NAME``, ``_CAPACITY`` and
``_LABELS`` work too). The token is best given as a file (``--token-file``): an option is
visible to every user of the machine in ``ps``.

Exit codes: 0 stopped by a signal; 1 the runner could not work (backend unusable, token
refused, invalid hardening setting); 2 invalid options.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.client_cmds import runner_add, runner_ls, runner_rm
from bastion.cli.errors import EXIT_FAILED, EXIT_INVALID
from bastion.cli.remote import fail

if TYPE_CHECKING:
    # The runner (engine, backends, httpx) loads only when a runner starts, so that
    # `bastion exec` and the client commands do not pay for it.
    from bastion.runner import RunnerSettings

runner_app = typer.Typer(
    help="Run a runner (no subcommand), or manage the server's runners (ls, add, rm).",
    invoke_without_command=True,
    no_args_is_help=False,
)
runner_app.command("ls")(runner_ls)
runner_app.command("add")(runner_add)
runner_app.command("rm")(runner_rm)

_BACKENDS = ("docker", "fake")  # bastion.backends.BACKEND_NAMES, without importing it


def run_runner(settings: RunnerSettings, stop: threading.Event) -> None:
    """``bastion.runner.run_runner``, imported when called (tests replace this function)."""
    from bastion.runner import run_runner as run  # noqa: PLC0415 - see TYPE_CHECKING

    run(settings, stop)


_LEVELS = ("debug", "info", "warning", "error")


@runner_app.callback()
def runner_command(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            help="the server's URL",
            envvar=["BASTION_RUNNER_SERVER", "BASTION_SERVER"],
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="the runner's token (prefer --token-file: options show in ps)",
            envvar="BASTION_RUNNER_TOKEN",
            show_default=False,
            show_envvar=True,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="file holding the runner's token",
            envvar="BASTION_RUNNER_TOKEN_FILE",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="the runner's name, on its containers and in logs [default: host name]",
            envvar=["BASTION_RUNNER_NAME", "DRONE_RUNNER_NAME"],
            show_default=False,
        ),
    ] = None,
    capacity: Annotated[
        int,
        typer.Option(
            help="stages run at the same time",
            envvar=["BASTION_RUNNER_CAPACITY", "DRONE_RUNNER_CAPACITY"],
        ),
    ] = 2,
    labels: Annotated[
        list[str] | None,
        typer.Option(
            "--labels",
            help="labels that stages may require, KEY=VALUE (repeat, or comma-separate)",
            envvar=["BASTION_RUNNER_LABELS", "DRONE_RUNNER_LABELS"],
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="where steps run: " + " or ".join(_BACKENDS),
            envvar="BASTION_RUNNER_BACKEND",
        ),
    ] = "docker",
    ca_cert: Annotated[
        str | None,
        typer.Option(
            help="CA certificate file to verify the server's TLS certificate",
            envvar="BASTION_RUNNER_CA_CERT",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="allow plain http:// to a server that is not on this machine",
            envvar="BASTION_RUNNER_INSECURE",
        ),
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="debug, info, warning or error", envvar="BASTION_LOG_LEVEL")
    ] = "info",
) -> None:
    """Run a runner: take stages from the server and run them in hardened containers.

    Stops on SIGINT / SIGTERM after cancelling its stages and removing their containers.
    Container hardening comes from the same settings as `bastion exec` (BASTION_CAP_ADD,
    BASTION_MEMORY_LIMIT, BASTION_PIDS_LIMIT, ...)."""
    if ctx.invoked_subcommand is not None:
        return
    from bastion.client import ServerURLError  # noqa: PLC0415 - see TYPE_CHECKING
    from bastion.runner import RunnerError, RunnerSettingsError  # noqa: PLC0415

    try:
        settings = _settings(
            server, token, token_file, name, capacity, labels, backend, ca_cert, insecure
        )
    except (RunnerSettingsError, ServerURLError) as exc:
        raise fail(str(exc), EXIT_INVALID) from None
    if log_level not in _LEVELS:
        raise fail(f"--log-level {log_level!r}: use one of {', '.join(_LEVELS)}", EXIT_INVALID)
    _configure_logging(log_level)
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            run_runner(settings, stop)
        except RunnerError as exc:
            raise fail(str(exc), EXIT_FAILED) from None


def _settings(
    server: str | None,
    token: str | None,
    token_file: Path | None,
    name: str | None,
    capacity: int,
    labels: list[str] | None,
    backend: str,
    ca_cert: str | None,
    insecure: bool,
) -> RunnerSettings:
    from bastion.backends import BACKEND_NAMES  # noqa: PLC0415 - see TYPE_CHECKING
    from bastion.client import check_server_url  # noqa: PLC0415
    from bastion.client.settings import read_token_file  # noqa: PLC0415
    from bastion.runner import RunnerSettings, RunnerSettingsError, parse_labels  # noqa: PLC0415
    from bastion.runner.settings import default_name  # noqa: PLC0415

    if not server:
        raise RunnerSettingsError(
            "no server: pass --server URL (or set BASTION_RUNNER_SERVER), e.g. "
            "https://ci.example.com"
        )
    if token and token_file:
        raise RunnerSettingsError("give the token once: --token or --token-file, not both")
    if token_file is not None:
        token = read_token_file(token_file)
    if backend not in BACKEND_NAMES:
        raise RunnerSettingsError(
            f"--backend {backend!r}: choose one of {', '.join(BACKEND_NAMES)}"
        )
    if ca_cert and not Path(ca_cert).is_file():
        raise RunnerSettingsError(f"--ca-cert {ca_cert}: no such file")
    check_server_url(server, insecure=insecure)
    return RunnerSettings(
        server=server,
        token=(token or "").strip(),
        name=name or default_name(),
        capacity=capacity,
        labels=parse_labels(labels or []),
        backend=backend,
        ca_cert=ca_cert or "",
        insecure=insecure,
    )


def start_embedded_runner(
    server_url: str, token: str, *, ca_cert: Path | None, stop: threading.Event
) -> None:
    """``bastion server --with-runner``: run a runner in a thread of the server's process.

    Its name, capacity, labels and backend come from the same ``BASTION_RUNNER_*``
    variables as a standalone runner's (defaults: ``embedded``, 2, none, docker). Returns
    at once; the runner stops when ``stop`` is set. If it cannot work (no Docker engine),
    the server keeps serving and the log says why.
    """
    from bastion.runner import (  # noqa: PLC0415 - see TYPE_CHECKING
        RunnerError,
        RunnerSettings,
        RunnerSettingsError,
        parse_labels,
    )

    env = os.environ
    log = logging.getLogger("bastion.runner")
    try:
        settings = RunnerSettings(
            server=server_url,
            token=token,
            name=env.get("BASTION_RUNNER_NAME") or "embedded",
            capacity=int(env.get("BASTION_RUNNER_CAPACITY") or 2),
            labels=parse_labels([env.get("BASTION_RUNNER_LABELS", "")]),
            backend=env.get("BASTION_RUNNER_BACKEND") or "docker",
            ca_cert=str(ca_cert) if ca_cert else "",
        )
    except (RunnerSettingsError, ValueError) as exc:
        log.error("the embedded runner cannot start: %s", exc)
        return

    # httpx logs every request at INFO: the runner's long polls would fill the server's log.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def run() -> None:
        try:
            run_runner(settings, stop)
        except RunnerError as exc:
            log.error("the embedded runner stopped: %s", exc)
        except Exception:  # the server must keep serving whatever happens to its runner
            log.exception("the embedded runner failed")

    threading.Thread(target=run, name="embedded-runner", daemon=True).start()


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: a long-polling runner would log one every few seconds.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First SIGINT / SIGTERM: stop. Later ones are noted, not obeyed: leaving containers
    behind would be worse than waiting a few seconds for the cleanup."""
    log = logging.getLogger("bastion.runner")

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("still stopping: cancelling stages and removing their containers")
            return
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread (tests run elsewhere)
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
