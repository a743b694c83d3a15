"""The client commands through Typer's CliRunner, against the in-memory API of
``tests.unit.client.fakeapi`` (the CLI's ``client_factory`` is pointed at it): output in
both formats, what was sent, and exit codes — 2 for bad arguments, 1 with the server's
message for a refusal, 3 when the server cannot be reached; never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.unit.client.fakeapi import SERVER, TOKEN, FakeApi, make_build, make_step, sse
from typer.testing import CliRunner, Result

from bastion.cli import remote
from bastion.cli.app import app
from bastion.client import BastionClient, ClientSettings
from bastion.rpc.api import LogLineOut


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api = FakeApi()
    api.add_repo("acme/web", trusted=False)

    def factory(settings: ClientSettings) -> BastionClient:
        return BastionClient(
            settings.server, settings.token, insecure=settings.insecure, transport=api.transport
        )

    monkeypatch.setattr(remote, "client_factory", factory)
    for name in ("DRONE_SERVER", "DRONE_TOKEN", "BASTION_TOKEN_FILE", "BASTION_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BASTION_SERVER", SERVER)
    monkeypatch.setenv("BASTION_TOKEN", TOKEN)
    monkeypatch.setenv("COLUMNS", "200")
    return api


def run(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_info(api: FakeApi) -> None:
    result = run("info")
    assert result.exit_code == 0
    assert "0.1.0" in result.stdout
    assert "admin (admin)" in result.stdout
    data = json.loads(run("info", "--format", "json").stdout)
    assert data["user"]["login"] == "admin"
    assert data["version"]["protocol"] == 1


def test_repo_ls_and_info(api: FakeApi) -> None:
    table = run("repo", "ls")
    assert table.exit_code == 0
    assert "acme/web" in table.stdout
    data = json.loads(run("repo", "ls", "--format", "json").stdout)
    assert [r["slug"] for r in data] == ["acme/web"]
    info = run("repo", "info", "acme/web")
    assert "config path" in info.stdout
    assert json.loads(run("repo", "info", "acme/web", "--format", "json").stdout)["active"]


def test_repo_enable_disable(api: FakeApi) -> None:
    assert run("repo", "disable", "acme/web").exit_code == 0
    assert not api.repos["acme/web"].active
    result = run("repo", "enable", "acme/web")
    assert "acme/web is active" in result.stdout
    assert api.repos["acme/web"].active


def test_repo_update_sends_only_what_was_given(api: FakeApi) -> None:
    result = run("repo", "update", "acme/web", "--trusted", "--timeout", "90", "--no-ignore-forks")
    assert result.exit_code == 0, result.output
    method, path, _, body = api.requests[-1]
    assert (method, path) == ("PATCH", "/api/repos/acme/web")
    assert body == {"trusted": True, "timeout": 90, "ignore_forks": False}
    assert api.repos["acme/web"].trusted


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("repo", "update", "acme/web"), "nothing to change"),
        (("repo", "update", "acme/web", "--visibility", "secret"), "--visibility"),
        (("repo", "update", "acme/web", "--timeout", "0"), "--timeout"),
        (("repo", "info", "acme"), "OWNER/NAME"),
        (("repo", "info", "acme/web/x"), "OWNER/NAME"),
        (("repo", "create", "acme/x", "--forge", "bitbucket"), "--forge"),
        (("repo", "create", "acme/x", "--forge", "github"), "--http-url"),
        (("build", "info", "acme/web", "zero"), "build number"),
        (("build", "create", "acme/web", "--commit", "not-hex"), "--commit"),
        (("user", "add", "bad login!"), "login"),
        (("runner", "add", "bad name!"), "runner name"),
    ],
)
def test_invalid_arguments_exit_2_before_any_request(
    api: FakeApi, args: tuple[str, ...], needle: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert api.requests == []


def test_repo_create_local_prints_where_to_push(api: FakeApi) -> None:
    result = run("repo", "create", "acme/api")
    assert result.exit_code == 0, result.output
    assert "git remote add bastion http://127.0.0.1:8080/git/acme/api.git" in result.stdout
    assert "git push bastion main" in result.stdout


def test_repo_create_forge_prints_the_webhook(api: FakeApi) -> None:
    result = run(
        "repo", "create", "acme/gh", "--forge", "github", "--http-url", "https://github.com/a/b"
    )
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8080/hook" in result.stdout
    assert "whsec-" in result.stdout
    assert api.requests[-1][3]["forge"] == "github"


def test_server_refusal_exits_1_with_its_message(api: FakeApi) -> None:
    result = run("repo", "info", "acme/nothing")
    assert result.exit_code == 1
    assert "404: repository not found" in result.stderr


def test_missing_settings_exit_2(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TOKEN")
    result = run("repo", "ls")
    assert result.exit_code == 2
    assert "BASTION_TOKEN" in result.stderr
    monkeypatch.delenv("BASTION_SERVER")
    assert "BASTION_SERVER" in run("repo", "ls").stderr


def test_plain_http_elsewhere_needs_insecure(api: FakeApi) -> None:
    result = run("repo", "ls", "--server", "http://ci.example.com")
    assert result.exit_code == 2
    assert "plain HTTP" in result.stderr
    assert run("repo", "ls", "--server", "http://ci.example.com", "--insecure").exit_code == 0


def test_unreachable_server_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    monkeypatch.setattr(
        remote,
        "client_factory",
        lambda s: BastionClient(s.server, s.token, transport=httpx.MockTransport(refuse)),
    )
    monkeypatch.setenv("BASTION_SERVER", SERVER)
    monkeypatch.setenv("BASTION_TOKEN", TOKEN)
    result = run("info")
    assert result.exit_code == 3
    assert f"cannot connect to {SERVER}" in result.stderr


def test_drone_variables_work(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_SERVER")
    monkeypatch.delenv("BASTION_TOKEN")
    monkeypatch.setenv("DRONE_SERVER", SERVER)
    monkeypatch.setenv("DRONE_TOKEN", TOKEN)
    assert run("repo", "ls").exit_code == 0


# -- builds ------------------------------------------------------------------------------------


def add_builds(api: FakeApi) -> None:
    steps = [make_step(1, "build", "success"), make_step(2, "test", "failure")]
    api.builds[("acme/web", 1)] = make_build(1, "success", [make_step(1, "build", "success")])
    api.builds[("acme/web", 2)] = make_build(2, "failure", steps)
    api.logs[("acme/web", 2, 1, 1)] = [
        LogLineOut(pos=0, out="compiling\n", time=0),
        LogLineOut(pos=1, out="\x1b[32mdone\x1b[0m\n", time=1),
    ]
    api.logs[("acme/web", 2, 1, 2)] = [LogLineOut(pos=0, out="1 test failed\n", time=0)]


def test_build_ls(api: FakeApi) -> None:
    add_builds(api)
    result = run("build", "ls", "acme/web", "--limit", "10", "--page", "1")
    assert result.exit_code == 0
    assert "failure" in result.stdout
    assert "Fix the frobnicator" in result.stdout
    assert "long text" not in result.stdout
    assert api.requests[-1][2] == {"page": "1", "per_page": "10"}
    data = json.loads(run("build", "ls", "acme/web", "--format", "json").stdout)
    assert [b["number"] for b in data] == [2, 1]


def test_build_info_shows_stages_and_steps(api: FakeApi) -> None:
    add_builds(api)
    result = run("build", "info", "acme/web", "2")
    assert result.exit_code == 0
    assert "stage 1: default" in result.stdout
    assert "test" in result.stdout
    assert (
        json.loads(run("build", "info", "acme/web", "latest", "--format", "json").stdout)["number"]
        == 2
    )


def test_build_create_restart_stop(api: FakeApi) -> None:
    add_builds(api)
    created = run("build", "create", "acme/web", "--branch", "dev", "--commit", "abcdef1")
    assert "started build #3" in created.stdout
    assert api.requests[-1][2] == {"branch": "dev", "commit": "abcdef1"}
    restarted = run("build", "restart", "acme/web", "2")
    assert "restarted #2 of acme/web as build #4" in restarted.stdout
    stopped = run("build", "stop", "acme/web", "4")
    assert stopped.exit_code == 0
    assert api.builds[("acme/web", 4)].status == "killed"
    again = run("build", "stop", "acme/web", "1")
    assert again.exit_code == 1
    assert "already success" in again.stderr


def test_build_logs_of_one_step(api: FakeApi) -> None:
    add_builds(api)
    result = run("build", "logs", "acme/web", "2", "1", "1")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["compiling", "done"]  # colour codes are not text
    data = json.loads(
        run("build", "logs", "acme/web", "2", "1", "build", "--format", "json").stdout
    )
    assert [(x["name"], x["pos"], x["out"]) for x in data] == [
        ("build", 0, "compiling\n"),
        ("build", 1, "\x1b[32mdone\x1b[0m\n"),
    ]


def test_build_logs_of_every_step_in_order_with_names(api: FakeApi) -> None:
    add_builds(api)
    result = run("build", "logs", "acme/web", "2")
    assert result.exit_code == 0
    assert [line.split("│")[0].strip() for line in result.stdout.splitlines()] == [
        "build",
        "build",
        "test",
    ]
    assert "1 test failed" in result.stdout.splitlines()[2]


def test_build_logs_unknown_stage(api: FakeApi) -> None:
    add_builds(api)
    result = run("build", "logs", "acme/web", "2", "9")
    assert result.exit_code == 2
    assert "no stage '9'" in result.stderr


def test_build_logs_follow_streams_a_running_step(api: FakeApi) -> None:
    """Step 1 is done, step 2 is running (streamed live), step 3 has not started: the
    command prints 1, streams 2, waits for 3, prints it when the build ends."""
    steps = [
        make_step(1, "build", "success"),
        make_step(2, "test", "running"),
        make_step(3, "deploy", "pending"),
    ]
    api.builds[("acme/web", 5)] = make_build(5, "running", steps)
    api.logs[("acme/web", 5, 1, 1)] = [LogLineOut(pos=0, out="built", time=0)]
    live = [LogLineOut(pos=i, out=f"test {i}", time=i) for i in range(3)]
    api.logs[("acme/web", 5, 1, 2)] = live[:1]  # what was stored before the stream began
    api.streams[("acme/web", 5, 1, 2)] = sse(
        [("line", x.model_dump_json()) for x in live[1:]] + [("end", "")]
    )

    def step_ends(slug: str, build: int, stage: int, step: int) -> None:
        # While step 2 streams, it finishes and the build moves on and ends.
        api.logs[(slug, build, stage, step)] = live
        api.logs[(slug, build, 1, 3)] = [LogLineOut(pos=0, out="deployed", time=0)]
        done = [
            make_step(1, "build", "success"),
            make_step(2, "test", "success"),
            make_step(3, "deploy", "success"),
        ]
        api.builds[(slug, build)] = make_build(build, "success", done)

    api.on_stream = step_ends
    result = run("build", "logs", "acme/web", "5", "--follow")
    assert result.exit_code == 0, result.output
    lines = [line.split("│", 1)[1].strip() for line in result.stdout.splitlines()]
    assert lines == ["built", "test 0", "test 1", "test 2", "deployed"]


def test_build_logs_follow_json_is_one_object_per_line(api: FakeApi) -> None:
    add_builds(api)
    result = run("build", "logs", "acme/web", "2", "--follow", "--format", "json")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["step"], r["pos"]) for r in records] == [(1, 0), (1, 1), (2, 0)]


# -- users and runners -------------------------------------------------------------------------


def test_users(api: FakeApi) -> None:
    added = run("user", "add", "bob", "--email", "bob@example.com", "--admin")
    assert added.exit_code == 0, added.output
    assert api.users["bob"].admin
    assert "bob@example.com" in run("user", "ls").stdout
    token = run("user", "token", "bob")
    assert "tok-bobbobbob" in token.stdout
    assert run("user", "add", "bob").exit_code == 1
    assert run("user", "rm", "bob").exit_code == 0
    assert "bob" not in api.users


def test_runners(api: FakeApi) -> None:
    added = run("runner", "add", "build-1")
    assert added.exit_code == 0, added.output
    token = "runner-tok-" + "z" * 32
    assert token in added.stdout
    assert f"--server {SERVER} --name build-1 --token-file build-1.token" in added.stdout
    listed = run("runner", "ls")
    assert "build-1" in listed.stdout
    assert token not in listed.stdout
    assert run("runner", "rm", "build-1").exit_code == 0
    assert json.loads(run("runner", "ls", "--format", "json").stdout)[0]["revoked"]
    missing = run("runner", "rm", "nope")
    assert missing.exit_code == 1
    assert "no runner nope" in missing.stderr


# -- secrets -------------------------------------------------------------------------------------

VALUE = "s3cr3t-Qz7Wv3Kp9Xr2"
REPO = ("--repository", "acme/web")


def sent_values(api: FakeApi) -> list[tuple[str, bool]]:
    return [(b["data"], b["pull_request"]) for m, _p, _q, b in api.requests if m == "POST"]


def test_secret_add_from_a_file_stdin_an_at_file_and_the_command_line(
    api: FakeApi, tmp_path: Path
) -> None:
    path = tmp_path / "value.txt"
    path.write_text(VALUE + "\n")
    results = [
        run("secret", "add", *REPO, "--name", "file", "--data-file", str(path)),
        run("secret", "add", *REPO, "--name", "stdin", "--data", "-", stdin=VALUE),
        run("secret", "add", *REPO, "--name", "at", "--data", f"@{path}", "--allow-pull-request"),
        run("secret", "add", *REPO, "--name", "arg", "--data", VALUE),
    ]
    for result in results:
        assert result.exit_code == 0, result.output
        assert VALUE not in result.output
    assert "saved secret file of acme/web (not for pull requests)" in results[0].stdout
    assert "(pull requests too)" in results[2].stdout
    # Verbatim, a file's final newline included.
    assert sent_values(api) == [
        (VALUE + "\n", False),
        (VALUE, False),
        (VALUE + "\n", True),
        (VALUE, False),
    ]
    saved = json.loads(
        run("secret", "add", *REPO, "--name", "j", "--data", VALUE, "--format", "json").stdout
    )
    assert {k: saved[k] for k in ("name", "pull_request", "created", "updated")} == {
        "name": "j",
        "pull_request": False,
        "created": 100,
        "updated": 100,
    }
    assert "data" not in saved


def test_secret_ls_info_rm_never_print_a_value(api: FakeApi) -> None:
    assert run("secret", "add", *REPO, "--name", "token", "--data", VALUE).exit_code == 0
    outputs = [
        run("secret", "ls", *REPO),
        run("secret", "ls", *REPO, "--format", "json"),
        run("secret", "info", *REPO, "--name", "token"),
        run("secret", "info", *REPO, "--name", "token", "--format", "json"),
    ]
    assert all(r.exit_code == 0 for r in outputs)
    assert all(VALUE not in r.output for r in outputs)
    assert "token" in outputs[0].stdout
    assert "pull requests" in outputs[0].stdout
    [listed] = json.loads(outputs[1].stdout)
    assert (listed["name"], listed["pull_request"], listed["created"]) == ("token", False, 100)
    assert "data" not in listed
    assert "no (never forks')" in outputs[2].stdout
    removed = run("secret", "rm", *REPO, "--name", "token")
    assert removed.exit_code == 0
    assert "deleted secret token of acme/web" in removed.stdout
    missing = run("secret", "info", *REPO, "--name", "token")
    assert missing.exit_code == 1
    assert "404: repository acme/web has no secret 'token'" in missing.stderr
    assert json.loads(run("secret", "ls", *REPO, "--format", "json").stdout) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("secret", "ls"), "--repository"),
        (("secret", "ls", "--repository", "acme"), "OWNER/NAME"),
        (("secret", "info", *REPO), "--name"),
        (("secret", "info", *REPO, "--name", "1abc"), "--name"),
        (("secret", "rm", *REPO, "--name", "a b"), "--name"),
        (("secret", "add", *REPO, "--name", "token"), "--data-file FILE, --data - (stdin)"),
        (("secret", "add", *REPO, "--name", "$(id)", "--data", VALUE), "--name"),
        (("secret", "add", *REPO, "--name", "pin", "--data", "zq9"), "cannot be masked"),
        (("secret", "add", *REPO, "--name", "pin", "--data", "  zq \n"), "cannot be masked"),
        (("secret", "add", *REPO, "--name", "t", "--data", "@/nonexistent/x"), "cannot be read"),
        (("secret", "add", *REPO, "--name", "t", "--data-file", "/nonexistent"), "cannot be read"),
    ],
)
def test_secret_invalid_arguments_exit_2_before_any_request(
    api: FakeApi, args: tuple[str, ...], needle: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert needle in result.output
    assert "zq9" not in result.output
    assert api.requests == []


def test_secret_data_and_data_file_together(api: FakeApi, tmp_path: Path) -> None:
    path = tmp_path / "v"
    path.write_text(VALUE)
    result = run("secret", "add", *REPO, "--name", "t", "--data", VALUE, "--data-file", str(path))
    assert result.exit_code == 2
    assert "not both" in result.stderr
    assert VALUE not in result.output
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00secret")
    result = run("secret", "add", *REPO, "--name", "t", "--data-file", str(binary))
    assert result.exit_code == 2
    assert "not UTF-8" in result.stderr
    assert api.requests == []


def test_secret_help_recommends_a_file_or_stdin() -> None:
    text = CliRunner().invoke(app, ["secret", "add", "--help"], env={"COLUMNS": "200"}).output
    assert "--data-file" in text
    assert "shows in `ps`" in text
