"""Getting the source on the runner's host with real git: bundles, clones over HTTP with
credentials that never reach argv, the URL or ``.git/config``, refusals, cancellation."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import os
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.runner.factories import git, make_bundle, make_repo, stage_details

from bastion.engine.masking import SecretMasker
from bastion.rpc.messages import CloneInfo
from bastion.runner.source import (
    SourceCancelledError,
    SourceError,
    prepare_source,
    workspace_archive,
)

PASSWORD = "s3cret-clone-token-0123456789"


def no_download(dest: Path) -> None:
    raise AssertionError("no bundle should be downloaded")


def copy_from(bundle: Path) -> functools.partial[None]:
    def copy(src: Path, dest: Path) -> None:
        shutil.copyfile(src, dest)

    return functools.partial(copy, bundle)


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "origin"
    sha = make_repo(repo, {"README.md": "hello\n", "src/app.py": "print('hi')\n"})
    return repo, sha


def test_bundle_checkout(tmp_path: Path, origin: tuple[Path, str]) -> None:
    repo, sha = origin
    bundle = tmp_path / "b.bundle"
    make_bundle(repo, bundle)
    work = tmp_path / "work"
    work.mkdir()
    details = stage_details(clone=CloneInfo(kind="bundle"), sha=sha, branch="main")
    checkout = prepare_source(details, work, copy_from(bundle), SecretMasker(()), threading.Event())
    assert checkout is not None
    assert (checkout / "README.md").read_text() == "hello\n"
    assert git(checkout, "rev-parse", "HEAD") == sha
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    # origin points at the repository's public URL, not at the runner's temporary bundle.
    assert git(checkout, "remote", "get-url", "origin") == "https://git.example.com/acme/web.git"


def test_bundle_without_sha_uses_the_ref(tmp_path: Path, origin: tuple[Path, str]) -> None:
    repo, sha = origin
    bundle = tmp_path / "b.bundle"
    make_bundle(repo, bundle, "main")
    work = tmp_path / "work"
    work.mkdir()
    details = stage_details(clone=CloneInfo(kind="bundle"), sha="", ref="refs/heads/main")
    checkout = prepare_source(details, work, copy_from(bundle), SecretMasker(()), threading.Event())
    assert checkout is not None
    assert git(checkout, "rev-parse", "HEAD") == sha


def test_tag_event_is_a_detached_checkout(tmp_path: Path, origin: tuple[Path, str]) -> None:
    repo, sha = origin
    bundle = tmp_path / "b.bundle"
    make_bundle(repo, bundle)
    work = tmp_path / "work"
    work.mkdir()
    details = stage_details(
        clone=CloneInfo(kind="bundle"), sha=sha, event="tag", ref="refs/tags/v1", tag="v1"
    )
    checkout = prepare_source(details, work, copy_from(bundle), SecretMasker(()), threading.Event())
    assert checkout is not None
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"


def test_a_hostile_branch_name_is_not_an_option(tmp_path: Path, origin: tuple[Path, str]) -> None:
    repo, sha = origin
    bundle = tmp_path / "b.bundle"
    make_bundle(repo, bundle)
    work = tmp_path / "work"
    work.mkdir()
    details = stage_details(clone=CloneInfo(kind="bundle"), sha=sha, branch="--orphan=x")
    checkout = prepare_source(details, work, copy_from(bundle), SecretMasker(()), threading.Event())
    assert checkout is not None
    assert git(checkout, "rev-parse", "HEAD") == sha  # detached at the commit, nothing else


def test_a_commit_missing_from_the_bundle(tmp_path: Path, origin: tuple[Path, str]) -> None:
    repo, _ = origin
    bundle = tmp_path / "b.bundle"
    make_bundle(repo, bundle)
    work = tmp_path / "work"
    work.mkdir()
    details = stage_details(clone=CloneInfo(kind="bundle"), sha="f" * 40)
    with pytest.raises(SourceError, match="not in the repository"):
        prepare_source(details, work, copy_from(bundle), SecretMasker(()), threading.Event())


def test_not_a_commit_id(tmp_path: Path) -> None:
    details = stage_details(clone=CloneInfo(kind="bundle"), sha="--upload-pack=touch /tmp/x")
    with pytest.raises(SourceError, match="not a commit id"):
        prepare_source(details, tmp_path, no_download, SecretMasker(()), threading.Event())


def test_kind_none_is_an_empty_workspace(tmp_path: Path) -> None:
    details = stage_details(clone=CloneInfo(kind="none"))
    assert (
        prepare_source(details, tmp_path, no_download, SecretMasker(()), threading.Event()) is None
    )


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("file:///etc", "not allowed"),
        ("ext::sh -c touch% /tmp/pwned", "not allowed"),
        ("ssh://git@example.com/x.git", "not allowed"),
        ("https://user:pw@example.com/x.git", "credentials"),
        ("http://git.example.com/x.git", "plain HTTP"),
    ],
)
def test_refused_clone_urls(tmp_path: Path, url: str, needle: str) -> None:
    details = stage_details(clone=CloneInfo(kind="git", url=url, password=PASSWORD))
    with pytest.raises(SourceError, match=needle):
        prepare_source(details, tmp_path, no_download, SecretMasker(()), threading.Event())


# -- clones over HTTP with credentials --------------------------------------------------------


class _DumbGit(http.server.SimpleHTTPRequestHandler):
    """Git's "dumb" HTTP protocol is plain file serving; this one wants Basic auth."""

    password = PASSWORD
    seen_auth: list[str] = []  # noqa: RUF012 - shared on purpose, one server per test
    hang = False

    def do_GET(self) -> None:
        if self.hang:
            time.sleep(30)
            return
        header = self.headers.get("Authorization", "")
        self.seen_auth.append(header)
        expected = "Basic " + base64.b64encode(f"ci:{self.password}".encode()).decode()
        if header != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_repo(
    tmp_path: Path, origin: tuple[Path, str]
) -> Iterator[tuple[str, str, type[_DumbGit]]]:
    repo, sha = origin
    served = tmp_path / "served"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(served / "web.git"))
    git(served / "web.git", "update-server-info")
    handler = type("Handler", (_DumbGit,), {"seen_auth": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(served))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/web.git", sha, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def git_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `git` first on PATH that logs its arguments, then runs the real git."""
    real = shutil.which("git")
    assert real is not None
    bindir = tmp_path / "spy"
    bindir.mkdir()
    log = tmp_path / "argv.log"
    spy = bindir / "git"
    spy.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    spy.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def test_git_clone_with_credentials(
    tmp_path: Path, http_repo: tuple[str, str, type[_DumbGit]], git_spy: Path
) -> None:
    url, sha, handler = http_repo
    work = tmp_path / "work"
    work.mkdir()
    details = stage_details(
        clone=CloneInfo(kind="git", url=url, username="ci", password=PASSWORD), sha=sha
    )
    masker = SecretMasker([PASSWORD])
    checkout = prepare_source(details, work, no_download, masker, threading.Event())
    assert checkout is not None
    assert git(checkout, "rev-parse", "HEAD") == sha
    assert (checkout / "src" / "app.py").exists()
    assert any(h.startswith("Basic ") for h in handler.seen_auth)  # credentials were used
    argv = git_spy.read_text()
    assert "fetch" in argv
    assert PASSWORD not in argv
    config = (checkout / ".git" / "config").read_text()
    assert PASSWORD not in config
    assert "127.0.0.1" not in config  # origin is the public URL, not the one cloned from
    askpass = (work / "askpass.sh").read_text()
    assert PASSWORD not in askpass


def test_wrong_credentials_fail_without_showing_them(
    tmp_path: Path, http_repo: tuple[str, str, type[_DumbGit]]
) -> None:
    url, sha, _ = http_repo
    work = tmp_path / "work"
    work.mkdir()
    wrong = "wrong-password-9876543210"
    details = stage_details(
        clone=CloneInfo(kind="git", url=url, username="ci", password=wrong), sha=sha
    )
    with pytest.raises(SourceError) as err:
        prepare_source(details, work, no_download, SecretMasker([wrong]), threading.Event())
    assert "git fetch failed" in str(err.value)
    assert wrong not in str(err.value)


def test_cancel_stops_a_hanging_clone(
    tmp_path: Path, http_repo: tuple[str, str, type[_DumbGit]]
) -> None:
    url, sha, handler = http_repo
    handler.hang = True
    work = tmp_path / "work"
    work.mkdir()
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    details = stage_details(clone=CloneInfo(kind="git", url=url), sha=sha)
    started = time.monotonic()
    with pytest.raises(SourceCancelledError):
        prepare_source(details, work, no_download, SecretMasker(()), cancel)
    assert time.monotonic() - started < 5


# -- the workspace archive ----------------------------------------------------------------------


def test_workspace_archive(tmp_path: Path, origin: tuple[Path, str]) -> None:
    repo, _ = origin
    (repo / "link").symlink_to("/etc/passwd")
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    with workspace_archive(repo, tmp_path) as archive:
        data = archive.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "README.md" in members
    assert "src/app.py" in members
    assert ".git/HEAD" in members
    assert members["link"].issym()
    assert members["link"].linkname == "/etc/passwd"  # kept as a link, never followed
    assert members["run.sh"].mode & 0o111
    assert {(m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, "root")}
