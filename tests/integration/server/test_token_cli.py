"""``bastion token ...`` against a real server: create (shown once), ls (never the secret),
rotate, revoke one, ``revoke --user X --all``, the emergency ``revoke-all``, and bad options
(exit 2 naming the option, no request sent)."""

from __future__ import annotations

import json

import pytest
from tests.integration.server._support import Harness
from typer.testing import CliRunner, Result

from bastion.cli.app import app


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


def test_token_lifecycle_from_the_cli(cli: Harness) -> None:
    made = run(
        "token", "create", "deploy", "--scope", "write", "--scope", "read", "--format", "json"
    )
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    assert (created["name"], created["scopes"]) == ("deploy", ["read", "write"])
    secret = created["token"]
    assert cli.client(secret).get("/api/user").status_code == 200

    listed = run("token", "ls")
    assert listed.exit_code == 0, listed.output
    assert "deploy" in listed.stdout
    assert "read,write" in listed.stdout
    assert secret not in listed.stdout

    rotated = run("token", "rotate", "deploy")
    assert rotated.exit_code == 0, rotated.output
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret != secret
    assert cli.client(secret).get("/api/user").status_code == 401
    assert cli.client(new_secret).get("/api/user").status_code == 200

    revoked = run("token", "revoke", "deploy")
    assert revoked.exit_code == 0, revoked.output
    assert cli.client(new_secret).get("/api/user").status_code == 401
    missing = run("token", "revoke", "deploy")
    assert missing.exit_code == 1
    assert "deploy" in missing.output


def test_revoke_a_users_tokens_and_everyones(cli: Harness) -> None:
    alice = cli.client(cli.user_token("alice"))
    made = run(
        "token", "create", "second", "--user", "alice", "--expires", "2w", "--format", "json"
    )
    assert made.exit_code == 0, made.output
    listed = run("token", "ls", "--user", "alice", "--format", "json")
    assert [t["name"] for t in json.loads(listed.stdout)] == ["cli", "second"]

    gone = run("token", "revoke", "--user", "alice", "--all")
    assert gone.exit_code == 0, gone.output
    assert "revoked 2 token(s) of alice" in gone.stdout
    assert alice.get("/api/user").status_code == 401

    bob = cli.client(cli.user_token("bob"))
    kept = run("token", "revoke-all", "--yes", "--keep-mine")
    assert kept.exit_code == 0, kept.output
    assert bob.get("/api/user").status_code == 401
    assert cli.admin.get("/api/user").status_code == 200
    unlocked = run("token", "unlock", "--format", "json")
    assert unlocked.exit_code == 0, unlocked.output
    assert json.loads(unlocked.stdout) == {"lifted": 0}
    everyone = run("token", "revoke-all", "--yes")
    assert everyone.exit_code == 0, everyone.output
    assert cli.admin.get("/api/user").status_code == 401


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("token", "create", "bad/name"), "token name"),
        (("token", "create", "x", "--scope", "root"), "--scope 'root'"),
        (("token", "create", "x", "--expires", "soon"), "--expires 'soon'"),
        (("token", "create", "x", "--expires", "3", "--never"), "--never and --expires"),
        (("token", "revoke", "--all"), "--all needs --user"),
        (("token", "revoke", "x", "--user", "alice", "--all"), "give no NAME"),
        (("token", "revoke"), "give the NAME"),
        (("token", "revoke-all"), "--yes"),
        (("token", "ls", "--user", "a b"), "--user 'a b'"),
    ],
)
def test_bad_options_exit_2_naming_them(cli: Harness, args: tuple[str, ...], says: str) -> None:
    before = len(cli.ctx.store.list_tokens(1))
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert len(cli.ctx.store.list_tokens(1)) == before
