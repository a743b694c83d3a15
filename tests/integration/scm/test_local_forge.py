"""The local forge end to end, with real git: create a repository, clone it, push a
``.drone.yml``; the post-receive hook POSTs to a small HTTP server on 127.0.0.1 run by the
test; the delivery verifies and parses; the file, the commit and a bundle of it come back
from the repository."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bastion.scm import ForgeClient, ForgeError, LocalForge, WebhookError, parse_local_hook
from bastion.scm.local import HOOK_CONFIG_NAME, MAX_FILE_BYTES

KEY = b"integration-hook-key-0123456789"
PIPELINE = b"kind: pipeline\ntype: docker\nname: default\nsteps:\n- name: test\n  image: alpine\n"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class HookServer:
    """Collects what the hook POSTs; answers ``status``."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    status: int = 202


@pytest.fixture
def hook_server() -> Iterator[HookServer]:
    state = HookServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.deliveries.append(Delivery(dict(self.headers.items()), body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook/local"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    """An environment for the test's own git commands: no user or system config, a fixed
    identity, no GIT_* leaking in from the outside."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Ada Lovelace",
        GIT_AUTHOR_EMAIL="ada@example.com",
        GIT_COMMITTER_NAME="Charles Babbage",
        GIT_COMMITTER_EMAIL="charles@example.com",
        GIT_AUTHOR_DATE="2024-05-14T10:00:00+00:00",
        GIT_COMMITTER_DATE="2024-05-14T10:00:00+00:00",
    )
    return env


@dataclass
class Workspace:
    forge: LocalForge
    clone: Path
    env: dict[str, str]
    server: HookServer

    def git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=cwd or self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )

    def commit(self, files: dict[str, bytes], message: str) -> str:
        for name, content in files.items():
            path = self.clone / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            self.git("add", "--", name)
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def push(self, *refspecs: str) -> str:
        """Push, returning what the hook printed for the pusher (git's "remote:" lines)."""
        return self.git("push", "origin", *refspecs).stderr


@pytest.fixture
def workspace(tmp_path: Path, hook_server: HookServer, git_env: dict[str, str]) -> Workspace:
    forge = LocalForge(tmp_path / "repos", hook_url=hook_server.url, hook_key=KEY)
    bare = forge.create("acme", "app")
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", str(bare), str(clone)],
        env=git_env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Workspace(forge, clone, git_env, hook_server)


def only_delivery(server: HookServer) -> Delivery:
    assert len(server.deliveries) == 1, server.deliveries
    return server.deliveries[0]


# -- creating repositories ------------------------------------------------------------------
def test_create_lays_out_a_private_bare_repository(tmp_path: Path, hook_server: HookServer) -> None:
    forge = LocalForge(tmp_path / "repos", hook_url=hook_server.url, hook_key=KEY)
    path = forge.create("acme", "app", default_branch="trunk")
    assert path == tmp_path / "repos" / "acme" / "app.git" == forge.path("acme", "app")
    assert forge.exists("acme", "app")
    assert not forge.exists("acme", "other")
    assert (path / "HEAD").read_text() == "ref: refs/heads/trunk\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    hook = path / "hooks" / "post-receive"
    settings = path / "hooks" / HOOK_CONFIG_NAME
    assert stat.S_IMODE(hook.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600  # it holds a signing key
    assert hook.read_text().splitlines()[0] == f"#!{sys.executable} -I"
    assert sorted(p.name for p in (path / "hooks").iterdir()) == [HOOK_CONFIG_NAME, "post-receive"]
    assert KEY.hex() not in settings.read_text()  # a derived key, not the server's
    assert "hook_key" not in repr(forge) and KEY.hex() not in repr(forge)


def test_create_refuses_an_existing_repository(tmp_path: Path, hook_server: HookServer) -> None:
    forge = LocalForge(tmp_path / "repos", hook_url=hook_server.url, hook_key=KEY)
    forge.create("acme", "app")
    with pytest.raises(FileExistsError):
        forge.create("acme", "app")


@pytest.mark.parametrize(
    ("owner", "name"),
    [("..", "app"), ("acme", "../../etc"), ("-acme", "app"), ("acme", "a/b"), ("acme", ".git")],
)
def test_create_refuses_unsafe_names(
    tmp_path: Path, hook_server: HookServer, owner: str, name: str
) -> None:
    forge = LocalForge(tmp_path / "repos", hook_url=hook_server.url, hook_key=KEY)
    with pytest.raises(ValueError, match="invalid"):
        forge.create(owner, name)
    assert not (tmp_path / "repos").exists()


def test_create_leaves_nothing_behind_when_it_fails(
    tmp_path: Path, hook_server: HookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    forge = LocalForge(tmp_path / "repos", hook_url=hook_server.url, hook_key=KEY)
    with pytest.raises(ValueError, match="default branch"):
        forge.create("acme", "app", default_branch="bad..name")

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(forge, "_install_hook", broken)
    with pytest.raises(OSError, match="disk full"):
        forge.create("acme", "app")
    assert list((tmp_path / "repos" / "acme").iterdir()) == []
    monkeypatch.undo()
    forge.create("acme", "app")  # and the name is free again


def test_constructor_checks_its_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        LocalForge(tmp_path, hook_url="file:///etc/passwd", hook_key=KEY)
    with pytest.raises(ValueError, match="16 bytes"):
        LocalForge(tmp_path, hook_url="http://127.0.0.1:1/hook/local", hook_key=b"short")


def test_ca_cert_from_the_environment_reaches_the_hook_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_CA_CERT", "/etc/bastion/ca.pem")
    forge = LocalForge(tmp_path / "r", hook_url="https://127.0.0.1:8443/hook/local", hook_key=KEY)
    settings = (forge.create("acme", "app") / "hooks" / HOOK_CONFIG_NAME).read_text()
    assert '"ca_cert": "/etc/bastion/ca.pem"' in settings


# -- push → hook → events -------------------------------------------------------------------
def test_push_reaches_the_server_signed_and_parses(workspace: Workspace) -> None:
    sha = workspace.commit({".drone.yml": PIPELINE}, "Add the pipeline\n\nWith a body.")
    output = workspace.push("HEAD:main")
    assert "remote: bastion: build requested" in output

    delivery = only_delivery(workspace.server)
    assert delivery.headers["X-Bastion-Repo"] == "acme/app"
    (event,) = parse_local_hook(delivery.headers, delivery.body, KEY)
    assert (event.forge, event.event, event.branch, event.ref) == (
        "local",
        "push",
        "main",
        "refs/heads/main",
    )
    assert event.after == sha
    assert event.before == "0" * 40

    event = workspace.forge.enrich(event)
    assert event.after == sha
    assert event.message == "Add the pipeline\n\nWith a body."
    assert (event.author_name, event.author_email) == ("Ada Lovelace", "ada@example.com")


def test_tampered_delivery_is_401(workspace: Workspace) -> None:
    workspace.commit({".drone.yml": PIPELINE}, "Add the pipeline")
    workspace.push("HEAD:main")
    delivery = only_delivery(workspace.server)
    tampered = delivery.body.replace(b"refs/heads/main", b"refs/heads/prod")
    with pytest.raises(WebhookError) as caught:
        parse_local_hook(delivery.headers, tampered, KEY)
    assert caught.value.status_code == 401
    with pytest.raises(WebhookError):
        parse_local_hook(delivery.headers, delivery.body, b"a-different-server-key")


def test_tag_push_is_a_tag_event(workspace: Workspace) -> None:
    sha = workspace.commit({".drone.yml": PIPELINE}, "Release")
    workspace.push("HEAD:main")
    workspace.git("tag", "-a", "v1.0.0", "-m", "Version 1.0.0")
    tag_object = workspace.git("rev-parse", "v1.0.0").stdout.strip()
    assert tag_object != sha
    output = workspace.push("v1.0.0")
    assert "bastion: build requested" in output

    (event,) = parse_local_hook(
        workspace.server.deliveries[1].headers, workspace.server.deliveries[1].body, KEY
    )
    assert (event.event, event.tag, event.branch, event.ref) == (
        "tag",
        "v1.0.0",
        "",
        "refs/tags/v1.0.0",
    )
    assert event.after == tag_object  # what git reported; enrich peels it to the commit
    assert workspace.forge.read_file("acme", "app", event.after, ".drone.yml") == PIPELINE
    assert workspace.forge.enrich(event).after == sha


def test_branch_deletion_is_skipped(workspace: Workspace) -> None:
    workspace.commit({".drone.yml": PIPELINE}, "Add the pipeline")
    workspace.push("HEAD:main", "HEAD:feature")
    assert (
        len(
            parse_local_hook(
                workspace.server.deliveries[0].headers, workspace.server.deliveries[0].body, KEY
            )
        )
        == 2
    )

    # deleting alone: the hook does not even call the server
    output = workspace.push("--delete", "feature")
    assert "bastion: nothing to build (only deletions)" in output
    assert len(workspace.server.deliveries) == 1

    # deleting along with a branch update: the deletion is left out
    workspace.commit({"README": b"hello\n"}, "Readme")
    workspace.push("HEAD:feature")
    sha = workspace.commit({"README": b"hello again\n"}, "Readme 2")
    workspace.push("HEAD:main", ":feature")
    last = workspace.server.deliveries[-1]
    (event,) = parse_local_hook(last.headers, last.body, KEY)
    assert (event.branch, event.after) == ("main", sha)


def test_push_succeeds_when_the_server_is_down_or_refuses(workspace: Workspace) -> None:
    workspace.server.status = 401
    workspace.commit({".drone.yml": PIPELINE}, "First")
    output = workspace.push("HEAD:main")
    assert "bastion: the server refused the push notification (HTTP 401" in output

    # the server moved (and nothing listens at the new address): rewrite the hook
    moved = LocalForge(workspace.forge.root, hook_url="http://127.0.0.1:9/x", hook_key=KEY)
    moved.install_hook("acme", "app")
    hooks = moved.path("acme", "app") / "hooks"
    assert stat.S_IMODE((hooks / HOOK_CONFIG_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE((hooks / "post-receive").stat().st_mode) == 0o700
    assert sorted(p.name for p in hooks.iterdir()) == [HOOK_CONFIG_NAME, "post-receive"]
    workspace.commit({"README": b"x\n"}, "Second")
    output = workspace.push("HEAD:main")  # check=True: the push itself succeeded
    assert "bastion: could not reach the Bastion server at http://127.0.0.1:9/x" in output
    assert len(workspace.server.deliveries) == 1


# -- reading the repository -----------------------------------------------------------------
def test_read_file(workspace: Workspace) -> None:
    big = b"#" * (MAX_FILE_BYTES + 1)
    sha = workspace.commit(
        {".drone.yml": PIPELINE, "ci/other.yml": b"x: 1\n", "big.yml": big}, "Files"
    )
    os.symlink(".drone.yml", workspace.clone / "link.yml")
    workspace.git("add", "link.yml")
    workspace.git("commit", "--quiet", "-m", "Link")
    with_link = workspace.git("rev-parse", "HEAD").stdout.strip()
    workspace.push("HEAD:main")
    forge = workspace.forge

    assert forge.read_file("acme", "app", sha, ".drone.yml") == PIPELINE
    assert forge.read_file("acme", "app", sha, "./ci//other.yml") == b"x: 1\n"
    assert forge.read_file("acme", "app", sha, "missing.yml") is None
    assert forge.read_file("acme", "app", sha, "ci") is None  # a directory
    assert forge.read_file("acme", "app", sha, "ci/*.yml") is None  # a path, not a pattern
    assert forge.fetch_file("acme", "app", sha, ".drone.yml") == PIPELINE
    assert isinstance(forge, ForgeClient)
    with pytest.raises(ForgeError, match="over the 1 MiB limit"):
        forge.read_file("acme", "app", sha, "big.yml")
    with pytest.raises(ForgeError, match="symbolic link"):
        forge.read_file("acme", "app", with_link, "link.yml")
    with pytest.raises(ValueError, match=r"'\.\.' is not allowed"):
        forge.read_file("acme", "app", sha, "../app.git/config")
    with pytest.raises(ValueError, match="must be relative"):
        forge.read_file("acme", "app", sha, "/etc/passwd")
    with pytest.raises(ValueError, match="invalid commit id"):
        forge.read_file("acme", "app", "HEAD", ".drone.yml")
    with pytest.raises(ValueError, match="invalid commit id"):
        forge.read_file("acme", "app", "--output=/tmp/x", ".drone.yml")
    with pytest.raises(ForgeError, match="is not in acme/app"):
        forge.read_file("acme", "app", "1" * 40, ".drone.yml")
    with pytest.raises(ForgeError, match="does not exist"):
        forge.read_file("acme", "nope", sha, ".drone.yml")


def test_commit_info(workspace: Workspace) -> None:
    sha = workspace.commit({".drone.yml": PIPELINE}, "Subject line\n\nBody with ünïcode.\n")
    workspace.push("HEAD:main")
    info = workspace.forge.commit("acme", "app", sha)
    assert info.sha == sha
    assert info.message == "Subject line\n\nBody with ünïcode."
    assert (info.author_name, info.author_email) == ("Ada Lovelace", "ada@example.com")
    assert (info.committer, info.committer_email) == ("Charles Babbage", "charles@example.com")
    assert info.timestamp == 1715680800


def test_bundle_clones_and_checks_out_the_commit(workspace: Workspace, tmp_path: Path) -> None:
    first = workspace.commit({".drone.yml": PIPELINE}, "First")
    workspace.commit({"README": b"later\n"}, "Second")
    workspace.push("HEAD:main")
    refs_before = workspace.git("ls-remote", "origin").stdout

    bundle = tmp_path / "source.bundle"
    workspace.forge.bundle("acme", "app", first, bundle)
    clone = tmp_path / "from-bundle"
    workspace.git("clone", "--quiet", str(bundle), str(clone), cwd=tmp_path)
    assert workspace.git("rev-parse", "HEAD", cwd=clone).stdout.strip() == first
    assert (clone / ".drone.yml").read_bytes() == PIPELINE
    assert not (clone / "README").exists()  # the later commit is not in the bundle
    workspace.git("checkout", "--quiet", first, cwd=clone)

    # the real repository gained no refs, not even for a moment's worth of leftovers
    assert workspace.git("ls-remote", "origin").stdout == refs_before
    with pytest.raises(ForgeError, match="is not in acme/app"):
        workspace.forge.bundle("acme", "app", "2" * 40, tmp_path / "x.bundle")


def test_hook_reports_a_push_the_server_ignored(workspace: Workspace) -> None:
    workspace.server.status = 204
    workspace.commit({"README": b"no pipeline here\n"}, "Readme")
    output = workspace.push("HEAD:main")
    assert "remote: bastion: the server received the push; nothing to build" in output
