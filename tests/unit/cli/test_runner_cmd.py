"""``bastion runner``: options and variables become ``RunnerSettings``; bad ones exit 2;
a runner that cannot work exits 1; subcommands never start the daemon."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bastion.cli import runner_cmd
from bastion.cli.app import app
from bastion.runner import RunnerError, RunnerSettings

SERVER = "http://127.0.0.1:8080"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[RunnerSettings]:
    calls: list[RunnerSettings] = []

    def fake_run(settings: RunnerSettings, stop: threading.Event) -> None:
        calls.append(settings)

    monkeypatch.setattr(runner_cmd, "run_runner", fake_run)
    for name in (
        "BASTION_RUNNER_SERVER",
        "BASTION_SERVER",
        "BASTION_RUNNER_TOKEN",
        "BASTION_RUNNER_TOKEN_FILE",
        "BASTION_RUNNER_NAME",
        "DRONE_RUNNER_NAME",
        "BASTION_RUNNER_LABELS",
        "DRONE_RUNNER_LABELS",
        "BASTION_RUNNER_CAPACITY",
        "DRONE_RUNNER_CAPACITY",
    ):
        monkeypatch.delenv(name, raising=False)
    return calls


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, ["runner", *args])
    assert "Traceback" not in result.output
    return result


def test_options_become_settings(tmp_path: Path, started: list[RunnerSettings]) -> None:
    token = tmp_path / "runner.token"
    token.write_text("tok-" + "a" * 32 + "\n")
    result = run(
        "--server",
        SERVER,
        "--token-file",
        str(token),
        "--name",
        "r1",
        "--capacity",
        "3",
        "--labels",
        "gpu=yes",
        "--labels",
        "zone=eu",
        "--backend",
        "fake",
    )
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.server, settings.token, settings.name, settings.capacity) == (
        SERVER,
        "tok-" + "a" * 32,
        "r1",
        3,
    )
    assert dict(settings.labels) == {"gpu": "yes", "zone": "eu"}
    assert settings.backend == "fake"


def test_variables_with_drone_aliases(
    monkeypatch: pytest.MonkeyPatch, started: list[RunnerSettings]
) -> None:
    monkeypatch.setenv("BASTION_RUNNER_SERVER", SERVER)
    monkeypatch.setenv("BASTION_RUNNER_TOKEN", "t" * 32)
    monkeypatch.setenv("DRONE_RUNNER_NAME", "drone-name")
    monkeypatch.setenv("DRONE_RUNNER_CAPACITY", "4")
    monkeypatch.setenv("DRONE_RUNNER_LABELS", "os:linux,disk:ssd")
    assert run().exit_code == 0
    (settings,) = started
    assert (settings.name, settings.capacity) == ("drone-name", 4)
    assert dict(settings.labels) == {"os": "linux", "disk": "ssd"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "no server"),
        (("--server", SERVER), "no runner token"),
        (("--server", SERVER, "--token", "t" * 32, "--labels", "oops"), "KEY=VALUE"),
        (("--server", SERVER, "--token", "t" * 32, "--backend", "k8s"), "--backend"),
        (("--server", SERVER, "--token", "t" * 32, "--capacity", "0"), "capacity"),
        (("--server", SERVER, "--token", "t" * 32, "--name", "a b"), "runner name"),
        (("--server", "http://ci.example.com", "--token", "t" * 32), "plain HTTP"),
        (("--server", SERVER, "--token", "t" * 32, "--ca-cert", "/nope.pem"), "/nope.pem"),
        (("--server", SERVER, "--token", "t" * 32, "--log-level", "loud"), "--log-level"),
        (("--server", SERVER, "--token-file", "/nonexistent/token"), "cannot read"),
    ],
)
def test_invalid_options_exit_2(
    started: list[RunnerSettings], args: tuple[str, ...], needle: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert started == []


def test_token_and_token_file_together(tmp_path: Path, started: list[RunnerSettings]) -> None:
    token = tmp_path / "t"
    token.write_text("x" * 32)
    result = run("--server", SERVER, "--token", "y" * 32, "--token-file", str(token))
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_a_runner_that_cannot_work_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(settings: RunnerSettings, stop: threading.Event) -> None:
        raise RunnerError("the docker backend cannot be used: no engine")

    monkeypatch.setattr(runner_cmd, "run_runner", failing)
    result = run("--server", SERVER, "--token", "t" * 32)
    assert result.exit_code == 1
    assert "no engine" in result.stderr


def test_subcommands_do_not_start_the_daemon(
    started: list[RunnerSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_SERVER", raising=False)
    monkeypatch.delenv("BASTION_TOKEN", raising=False)
    result = run("ls")
    assert result.exit_code == 2  # no server for the client: the client's message
    assert "BASTION_SERVER" in result.stderr
    assert started == []


def test_the_help_lists_every_backend() -> None:
    from bastion.backends import BACKEND_NAMES

    assert runner_cmd._BACKENDS == BACKEND_NAMES
