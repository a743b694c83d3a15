"""``bastion audit ls`` and ``bastion secret rekey`` against a canned server: the query sent,
the tables printed, exit 1 when a value decrypts with no key, exit 2 for bad options (named),
and ``parse_time``'s forms."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from typer.testing import CliRunner, Result

from bastion.cli import remote
from bastion.cli.app import app
from bastion.cli.audit_cmds import parse_time
from bastion.cli.errors import CliError
from bastion.client import BastionClient, ClientSettings

SERVER = "http://127.0.0.1:9"
REKEY = {
    "current_key_id": "aaaaaaaa",
    "dry_run": False,
    "keys": {"repo_secrets.value": {"aaaaaaaa": 1, "bbbbbbbb": 3, "v1": 2}, "repos.x": {}},
    "rekeyed": {"repo_secrets.value": 4, "repos.x": 0},
    "failed": {"repo_secrets.value": [17]},
    "batches": 1,
    "total_rekeyed": 4,
    "total_failed": 1,
    "remaining": 5,
}
EVENT = {
    "id": 41,
    "created": 1_764_115_200,
    "kind": "secret.delivered",
    "actor": "",
    "repo": "acme/web",
    "build": 7,
    "stage": 1,
    "step": "deploy",
    "runner": "r1",
    "secret": "token",
    "detail": {"scope": "repo", "steps": ["deploy"]},
}


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/admin/rekey":
            return httpx.Response(200, json=REKEY)
        if request.url.path == "/api/audit":
            return httpx.Response(200, json=[EVENT])
        return httpx.Response(404, json={"message": "no such route"})

    def factory(settings: ClientSettings) -> BastionClient:
        return BastionClient(settings.server, settings.token, transport=httpx.MockTransport(handle))

    monkeypatch.setattr(remote, "client_factory", factory)
    for name in ("DRONE_SERVER", "DRONE_TOKEN", "BASTION_TOKEN_FILE", "BASTION_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BASTION_SERVER", SERVER)
    monkeypatch.setenv("BASTION_TOKEN", "t" * 40)
    monkeypatch.setenv("COLUMNS", "200")
    return seen


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def test_rekey_prints_keys_and_exits_1_for_undecryptable_rows(
    requests: list[httpx.Request],
) -> None:
    result = run("secret", "rekey", "--batch-size", "50")
    assert result.exit_code == 1, result.output
    assert json.loads(requests[0].content) == {"dry_run": False, "batch_size": 50}
    assert "current key id aaaaaaaa" in result.output
    assert "first format (no key id)" in result.output
    assert "not current" in result.output
    assert "4 values re-encrypted" in result.output
    assert "repo_secrets.value: rows 17 decrypt with no configured key" in result.output


def test_rekey_dry_run_json(requests: list[httpx.Request]) -> None:
    result = run("secret", "rekey", "--dry-run", "--format", "json")
    assert json.loads(requests[0].content)["dry_run"] is True
    assert json.loads(result.stdout)["keys"] == REKEY["keys"]


def test_rekey_bad_batch_size(requests: list[httpx.Request]) -> None:
    result = run("secret", "rekey", "--batch-size", "0")
    assert result.exit_code == 2
    assert "--batch-size" in result.output
    assert requests == []


def test_audit_ls_sends_filters_and_prints_events(requests: list[httpx.Request]) -> None:
    result = run(
        "audit", "ls", "--kind", "secret.", "--repo", "acme/web", "--build", "7",
        "--secret", "token", "--since", "2026-11-01", "--until", "1800000000", "--limit", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    params = dict(requests[0].url.params)
    assert params == {
        "kind": "secret.",
        "repo": "acme/web",
        "build": "7",
        "secret": "token",
        "since": str(int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())),
        "until": "1800000000",
        "limit": "1",
    }
    assert "secret.delivered" in result.output
    assert "acme/web #7 stage 1 step deploy runner r1" in result.output
    assert "more events: add --before 41" in result.output


def test_parse_time_forms() -> None:
    assert parse_time("1764115200", "--since") == 1_764_115_200
    assert parse_time("7d", "--since", now=1_000_000) == 1_000_000 - 7 * 86400
    assert parse_time("90m", "--since", now=1_000_000) == 1_000_000 - 5400
    assert parse_time("2026-11-26T00:00:00Z", "--since") == 1_795_651_200
    assert parse_time("2026-11-26", "--since") == 1_795_651_200  # UTC when no zone
    assert parse_time("2026-11-26T01:00:00+01:00", "--since") == 1_795_651_200
    for bad in ("yesterday", "7y", "", "-5"):
        with pytest.raises(CliError, match="--until"):
            parse_time(bad, "--until")
