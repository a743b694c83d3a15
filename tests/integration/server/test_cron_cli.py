"""``bastion cron add|ls|info|update|rm|exec`` against a real server: tables, ``--format
json``, and exit 2 with a message naming the argument for bad input (nothing sent)."""

from __future__ import annotations

import json

import pytest
from tests.integration.server._support import PIPELINE, Harness
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


def test_add_ls_info_update_exec_rm(cli: Harness) -> None:
    checkout = cli.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "Pipeline")
    checkout.push("main")
    head = checkout.commit({"x.txt": b"x\n"}, "On release")
    checkout.push("release")

    added = run("cron", "add", "acme/web", "nightly", "0 0 3 * * *", "--branch", "release")
    assert added.exit_code == 0, added.output
    assert "release" in added.stdout
    assert run("cron", "add", "acme/web", "hourly", "@hourly").exit_code == 0

    listed = run("cron", "ls", "acme/web")
    assert listed.exit_code == 0, listed.output
    assert "nightly" in listed.stdout
    assert "0 0 3 * * *" in listed.stdout
    as_json = json.loads(run("cron", "ls", "acme/web", "--format", "json").stdout)
    assert [(c["name"], c["branch"]) for c in as_json] == [
        ("hourly", "main"),
        ("nightly", "release"),
    ]

    info = json.loads(run("cron", "info", "acme/web", "nightly", "--format", "json").stdout)
    assert info["expr"] == "0 0 3 * * *"
    off = json.loads(
        run("cron", "update", "acme/web", "hourly", "--disable", "--format", "json").stdout
    )
    assert off["disabled"] is True

    executed = run("cron", "exec", "acme/web", "nightly", "--format", "json")
    assert executed.exit_code == 0, executed.output
    build = json.loads(executed.stdout)
    assert (build["event"], build["cron"], build["after"]) == ("cron", "nightly", head)

    assert (
        json.loads(run("cron", "enable", "acme/web", "hourly", "--format", "json").stdout)[
            "disabled"
        ]
        is False
    )
    assert run("cron", "disable", "acme/web", "hourly").exit_code == 0
    assert cli.admin.get("/api/repos/acme/web/cron/hourly").json()["disabled"] is True
    removed = run("cron", "rm", "acme/web", "hourly")
    assert removed.exit_code == 0
    assert [c["name"] for c in cli.admin.get("/api/repos/acme/web/cron").json()] == ["nightly"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cron", "add", "acme/web", "bad name", "@daily"], "NAME"),
        (["cron", "add", "acme/web", "x", "* * *"], "EXPR"),
        (["cron", "add", "acme/web", "x", "@daily", "--branch", "a b"], "--branch"),
        (["cron", "add", "acme", "x", "@daily"], "OWNER/NAME"),
        (["cron", "update", "acme/web", "x"], "nothing to change"),
        (["cron", "update", "acme/web", "x", "--enable", "--disable"], "--enable"),
    ],
)
def test_bad_input_exits_2_before_anything_is_sent(
    cli: Harness, args: list[str], message: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_servers_refusals_are_shown(cli: Harness) -> None:
    cli.local_repo()
    result = run("cron", "add", "acme/web", "x", "61 * * * *")
    assert result.exit_code != 0
    assert "field expr" in result.output
    missing = run("cron", "exec", "acme/web", "nope")
    assert missing.exit_code != 0
    assert "no cron job 'nope'" in missing.output
