"""``bastion secret add`` reads a value of bounded size: ``--data-file /dev/zero`` or an
endless pipe on ``--data -`` end with exit 2 and the limit instead of filling the memory;
a file is taken verbatim (CRLF line ends included). Against the in-memory API of
``tests.unit.client.fakeapi``; no request is sent for a refused value."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.client.fakeapi import SERVER, TOKEN, FakeApi
from typer.testing import CliRunner, Result

from bastion.cli import remote
from bastion.cli.app import app
from bastion.client import BastionClient, ClientSettings

REPO = ("--repository", "acme/web")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api = FakeApi()
    api.add_repo("acme/web", trusted=False)

    def factory(settings: ClientSettings) -> BastionClient:
        return BastionClient(settings.server, settings.token, transport=api.transport)

    monkeypatch.setattr(remote, "client_factory", factory)
    for name in ("DRONE_SERVER", "DRONE_TOKEN", "BASTION_TOKEN_FILE", "BASTION_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BASTION_SERVER", SERVER)
    monkeypatch.setenv("BASTION_TOKEN", TOKEN)
    return api


def run(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_an_endless_file_is_refused_with_the_limit(api: FakeApi) -> None:
    result = run("secret", "add", *REPO, "--name", "t", "--data-file", "/dev/zero")
    assert result.exit_code == 2
    assert "longer than 65536 characters" in result.output
    assert api.requests == []


def test_a_long_stdin_is_refused_with_the_limit(api: FakeApi) -> None:
    result = run("secret", "add", *REPO, "--name", "t", "--data", "-", stdin="x" * 200_000)
    assert result.exit_code == 2
    assert "longer than 65536 characters" in result.output
    assert "xxxx" not in result.output
    assert api.requests == []


def test_a_value_of_the_maximum_size_and_crlf_are_kept(api: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    value = "line-one\r\nline-two\r\n"
    path.write_bytes(value.encode())
    assert run("secret", "add", *REPO, "--name", "pem", "--data-file", str(path)).exit_code == 0
    full = tmp_path / "full"
    full.write_text("y" * 65536)
    assert run("secret", "add", *REPO, "--name", "big", "--data-file", str(full)).exit_code == 0
    sent = [body for method, _, _, body in api.requests if method == "POST"]
    assert [b["data"] for b in sent] == [value, "y" * 65536]
