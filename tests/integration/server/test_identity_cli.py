"""``bastion user login-link`` and ``bastion repo perm`` against a real server."""

from __future__ import annotations

import json

import httpx
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


def test_login_link_prints_a_link_that_works(cli: Harness) -> None:
    cli.admin.post("/api/users", json={"login": "bob"}).raise_for_status()
    printed = run("user", "login-link", "bob")
    assert printed.exit_code == 0, printed.output
    url = printed.stdout.strip().splitlines()[-1]
    assert url.startswith(cli.url + "/login/link?code=")
    page = httpx.get(url)
    assert page.status_code == 200
    as_json = run("user", "login-link", "bob", "--format", "json")
    assert json.loads(as_json.stdout)["login"] == "bob"
    missing = run("user", "login-link", "nobody")
    assert missing.exit_code != 0
    assert "nobody" in missing.output
    bad = run("user", "login-link", "../x")
    assert bad.exit_code == 2


def test_repo_perm_grant_ls_revoke(cli: Harness) -> None:
    cli.local_repo()
    bob = cli.client(cli.user_token("bob"))
    assert bob.get("/api/repos/acme/web").status_code == 404
    granted = run("repo", "perm", "grant", "acme/web", "bob", "--scope", "write")
    assert granted.exit_code == 0, granted.output
    assert "read, write" in granted.stdout
    assert bob.get("/api/repos/acme/web").status_code == 200
    listed = run("repo", "perm", "ls", "acme/web", "--format", "json")
    assert json.loads(listed.stdout)[0]["scopes"] == ["read", "write"]
    assert "bob" in run("repo", "perm", "ls", "acme/web").stdout
    assert run("repo", "perm", "revoke", "acme/web", "bob").exit_code == 0
    assert bob.get("/api/repos/acme/web").status_code == 404
    wrong = run("repo", "perm", "grant", "acme/web", "bob", "--scope", "root")
    assert wrong.exit_code == 2
    assert run("repo", "perm", "ls", "not-a-slug").exit_code == 2
