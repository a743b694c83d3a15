"""``bastion sign`` and ``bastion build approve|decline`` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration.server._support import PIPELINE, Harness, wait_for
from typer.testing import CliRunner, Result

from bastion.cli.app import app
from bastion.crypto.config_signature import embedded_signature, verify_signature


@pytest.fixture
def cli(server: Harness, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("BASTION_SERVER", server.url)
    monkeypatch.setenv("BASTION_TOKEN", server.admin_token)
    monkeypatch.setenv("COLUMNS", "200")
    return server


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_sign_save_writes_a_signature_the_server_accepts(cli: Harness, tmp_path: Path) -> None:
    checkout = cli.local_repo()
    cli.admin.patch("/api/repos/acme/web", json={"protected": True}).raise_for_status()
    config = checkout.path / ".drone.yml"
    config.write_bytes(PIPELINE)
    config.chmod(0o640)

    printed = run("sign", "acme/web", "--file", str(config))
    assert printed.exit_code == 0, printed.output
    assert len(printed.stdout.strip()) == 64
    assert config.read_bytes() == PIPELINE  # without --save the file is left alone

    saved = run("sign", "acme/web", "--file", str(config), "--save")
    assert saved.exit_code == 0, saved.output
    assert "signed" in saved.stdout
    text = config.read_bytes()
    assert embedded_signature(text) == printed.stdout.strip()
    assert config.stat().st_mode & 0o777 == 0o640
    key = cli.ctx.store.repo_signing_key(cli.ctx.store.get_repo("acme", "web").id)  # type: ignore[union-attr]
    assert verify_signature(text, key)

    checkout.git("add", ".drone.yml")
    checkout.git("commit", "--quiet", "-m", "signed")
    checkout.push()
    build = wait_for(cli.builds)[0]
    assert build["status"] == "pending", build["error"]


def test_approve_and_decline_from_the_cli(cli: Harness) -> None:
    checkout = cli.local_repo()
    cli.admin.patch("/api/repos/acme/web", json={"protected": True}).raise_for_status()
    checkout.commit({".drone.yml": PIPELINE}, "first")
    checkout.push()
    wait_for(cli.builds)
    checkout.commit({".drone.yml": PIPELINE + b"# second\n"}, "second")
    checkout.push()
    wait_for(lambda: len(cli.builds()) == 2)

    approved = run("build", "approve", "acme/web", "1")
    assert approved.exit_code == 0, approved.output
    assert "approved build #1 of acme/web: pending" in approved.stdout
    declined = run("build", "decline", "acme/web", "2", "--format", "json")
    assert declined.exit_code == 0, declined.output
    assert json.loads(declined.stdout)["status"] == "declined"

    again = run("build", "approve", "acme/web", "2")
    assert again.exit_code == 1
    assert "not waiting for an approval" in again.stderr


def test_bad_input_exits_2_with_the_file(cli: Harness, tmp_path: Path) -> None:
    missing = run("sign", "acme/web", "--file", str(tmp_path / "nope.yml"))
    assert missing.exit_code == 2
    assert "nope.yml: cannot read the configuration" in missing.stderr
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe")
    bad = run("sign", "acme/web", "--file", str(binary))
    assert bad.exit_code == 2
    assert "not UTF-8" in bad.stderr
    stage = run("build", "approve", "acme/web", "1", "0")
    assert stage.exit_code == 2
