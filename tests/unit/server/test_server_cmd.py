"""``bastion server`` (``bastion.cli.server_cmd``): refusals exit 2 with every problem, ``--dev``
generates and reuses its secrets, ``--with-runner`` starts the runner once the server is up."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import typer

from bastion.cli import server_cmd
from bastion.server import ServerSettings


class Served:
    def __init__(self) -> None:
        self.settings: ServerSettings | None = None

    def __call__(self, settings: ServerSettings, on_ready: Any = None) -> None:
        self.settings = settings
        if on_ready is not None:
            on_ready()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    fake = Served()
    monkeypatch.setattr(server_cmd, "serve", fake)
    return fake


def test_insecure_settings_exit_2_with_every_problem(
    tmp_path: Path, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as caught:
        server_cmd.server_command("0.0.0.0", 8080, tmp_path, dev=False, with_runner=False)
    assert caught.value.exit_code == 2
    err = capsys.readouterr().err
    assert "refuses to start" in err
    assert "BASTION_RPC_SECRET" in err
    assert "BASTION_DATABASE_SECRET" in err
    assert "plain HTTP on 0.0.0.0" in err
    assert "Traceback" not in err
    assert served.settings is None


def test_dev_generates_then_reuses_and_says_where(
    tmp_path: Path, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    server_cmd.server_command(None, 8123, tmp_path, dev=True, with_runner=False)
    first = capsys.readouterr()
    assert "dev mode: generated" in first.err
    assert f"admin token:    {tmp_path / 'admin.token'}" in first.out
    assert served.settings is not None
    rpc = served.settings.rpc_secret.get_secret_value()
    assert rpc == (tmp_path / "rpc-secret").read_text().strip()
    assert rpc not in first.out + first.err
    server_cmd.server_command(None, 8123, tmp_path, dev=True, with_runner=False)
    assert "dev mode: reusing" in capsys.readouterr().err
    assert served.settings.rpc_secret.get_secret_value() == rpc


def test_dev_still_refuses_a_public_address_without_tls(
    tmp_path: Path, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit):
        server_cmd.server_command("0.0.0.0", 8080, tmp_path, dev=True, with_runner=False)
    assert "plain HTTP" in capsys.readouterr().err


def test_with_runner_starts_it_once_the_server_is_up(tmp_path: Path, served: Served) -> None:
    (tmp_path / "embedded-runner.token").write_text("bst_runner_x\n")
    calls: list[tuple[str, str, Path | None, threading.Event]] = []

    def start(server_url: str, token: str, *, ca_cert: Path | None, stop: threading.Event) -> None:
        calls.append((server_url, token, ca_cert, stop))

    server_cmd.server_command(None, 8124, tmp_path, dev=True, with_runner=True, start_runner=start)
    assert served.settings is not None
    assert served.settings.embedded_runner is True
    [(url, token, ca_cert, stop)] = calls
    assert (url, token, ca_cert) == ("http://127.0.0.1:8124", "bst_runner_x", None)
    assert stop.is_set()  # the server stopped, so the runner is told to stop


def test_with_runner_needs_a_runner(tmp_path: Path, served: Served) -> None:
    with pytest.raises(typer.Exit) as caught:
        server_cmd.server_command(None, None, tmp_path, dev=True, with_runner=True)
    assert caught.value.exit_code == 2


def test_bad_options_exit_2(tmp_path: Path, served: Served) -> None:
    with pytest.raises(typer.Exit) as caught:
        server_cmd.server_command(None, 70000, tmp_path, dev=False, with_runner=False)
    assert caught.value.exit_code == 2
