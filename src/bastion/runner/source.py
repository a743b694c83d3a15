"""Get a stage's source onto the runner's host, and pack it for the workspace volume.

The clone happens **on the host**, with the host's ``git``, never in a container: clone
credentials (a forge token, or the lease that authorises the bundle download) therefore
never enter a build container, whatever its steps do. The steps get a finished checkout,
``.git`` included, copied into the workspace volume as a tar (``Backend.populate_workspace``).

Kinds (``CloneInfo.kind``):

* ``bundle`` — the server sends a git bundle of the commit (local forge). It is downloaded
  into the stage's temporary folder and cloned from there.
* ``git`` — clone ``url`` (a forge). Credentials reach git only through a ``GIT_ASKPASS``
  helper that reads them from git's environment: never in ``argv`` (visible in ``ps``), never
  in the URL (which git would store in ``.git/config`` and print in errors). Only ``https``
  (and ``http`` to loopback, or with ``--insecure``) is accepted, so a URL cannot make git run
  a command (``ext::``) or read host files (``file://``).
* ``none`` — nothing: the workspace starts empty.

git runs with an empty configuration (``HOME`` in the stage's folder, no system config), so a
credential helper or ``url.insteadOf`` of the runner's user cannot capture or redirect
anything. The checkout's ``origin`` is set back to the repository's public URL.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from bastion.engine.masking import SecretMasker
from bastion.rpc.messages import StageDetails

MAX_WORKSPACE_BYTES = 4 << 30  # refuse to copy more than 4 GiB into a workspace
GIT_TIMEOUT = 600.0  # seconds for one git command (a large clone on a slow link)
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_BRANCH_EVENTS = frozenset({"push", "custom", "cron", "promote", "rollback"})

_ASKPASS = """#!/bin/sh
# Answers git's credential prompts from its own environment; holds no secret itself.
case "$1" in
  Username*) printf '%s\\n' "$BASTION_GIT_USERNAME" ;;
  *) printf '%s\\n' "$BASTION_GIT_PASSWORD" ;;
esac
"""


class SourceError(Exception):
    """The source could not be fetched or checked out; the message says what and why."""


class SourceCancelledError(SourceError):
    """The stage was cancelled while its source was being fetched."""


Downloader = Callable[[Path], None]


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def check_clone_url(url: str, *, insecure: bool) -> None:
    """Refuse clone URLs that are not http(s) or that carry credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise SourceError("the clone URL is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SourceError(
            f"clone URL scheme {parts.scheme or '(none)'!r} is not allowed: the runner clones "
            "over https only"
        )
    if parts.username or parts.password:
        raise SourceError("the clone URL contains credentials; the server must send them apart")
    if parts.scheme == "http" and not insecure and not is_loopback_host(parts.hostname):
        raise SourceError(
            f"the clone URL uses plain HTTP to {parts.hostname}; the runner refuses to send "
            "credentials unencrypted (use https, or start the runner with --insecure)"
        )


class Git:
    """Runs host git commands for one stage: isolated config, cancellable, masked errors."""

    def __init__(
        self,
        home: Path,
        masker: SecretMasker,
        cancel: threading.Event,
        *,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = GIT_TIMEOUT,
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.masker = masker
        self.cancel = cancel
        self.timeout = timeout
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_LFS_SKIP_SMUDGE": "1",
            "LC_ALL": "C",
            **(extra_env or {}),
        }

    def __call__(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        """Run ``git args``; its stdout, or ``SourceError`` with its (masked) stderr."""
        try:
            process = subprocess.Popen(
                ["git", "-c", "credential.helper=", *args],
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                # Its own process group: a cancel must also kill git's helpers
                # (git-remote-https), which hold the output pipes open.
                start_new_session=True,
            )
        except OSError as exc:
            raise SourceError(f"cannot run git on the runner's host: {exc}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                out, err = process.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if self.cancel.is_set() or time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.communicate()
                    if self.cancel.is_set():
                        raise SourceCancelledError("cancelled while fetching the source") from None
                    raise SourceError(
                        f"git {args[0]} did not finish within {self.timeout:g} s"
                    ) from None
        if check and process.returncode != 0:
            message = self.masker.mask(err.strip() or out.strip())[-2000:]
            raise SourceError(f"git {args[0]} failed: {message}")
        return out.strip()


def prepare_source(
    details: StageDetails,
    workdir: Path,
    download_bundle: Downloader,
    masker: SecretMasker,
    cancel: threading.Event,
    *,
    insecure: bool = False,
) -> Path | None:
    """Check the stage's commit out under ``workdir``; the checkout, or None (kind none)."""
    clone = details.clone
    build = details.build
    if clone.kind == "none":
        return None
    if clone.kind not in ("bundle", "git"):
        raise SourceError(f"unknown clone kind {clone.kind!r} (expected bundle, git or none)")
    if build.sha and not _SHA.match(build.sha):
        raise SourceError(f"commit {build.sha[:80]!r} is not a commit id")
    checkout = workdir / "src"
    extra_env: dict[str, str] = {}
    if clone.kind == "git":
        check_clone_url(clone.url, insecure=insecure)
        allowed = "https" if urlsplit(clone.url).scheme == "https" else "http:https"
        extra_env["GIT_ALLOW_PROTOCOL"] = allowed
        if clone.password or clone.username:
            askpass = workdir / "askpass.sh"
            askpass.write_text(_ASKPASS, encoding="utf-8")
            askpass.chmod(stat.S_IRWXU)
            extra_env |= {
                "GIT_ASKPASS": str(askpass),
                "BASTION_GIT_USERNAME": clone.username or "bastion",
                "BASTION_GIT_PASSWORD": clone.password,
            }
    git = Git(workdir / "home", masker, cancel, extra_env=extra_env)

    if clone.kind == "bundle":
        bundle = workdir / "source.bundle"
        download_bundle(bundle)
        if cancel.is_set():
            raise SourceCancelledError("cancelled while fetching the source")
        git("clone", "-q", "--no-checkout", "--", str(bundle), str(checkout), cwd=workdir)
        target = build.sha or _bundle_commit(git, bundle, build.ref)
    else:
        checkout.mkdir()
        git("init", "-q", cwd=checkout)
        git("remote", "add", "origin", clone.url, cwd=checkout)
        ref = build.ref or (f"refs/heads/{build.branch}" if build.branch else "")
        depth = ["--depth", str(clone.depth)] if clone.depth > 0 else []
        if ref and ref.startswith("refs/") and not ref.startswith("refs/-"):
            git("fetch", "-q", *depth, "origin", f"+{ref}:refs/remotes/origin/build", cwd=checkout)
        if build.sha and not _has_commit(git, checkout, build.sha):
            git("fetch", "-q", *depth, "origin", build.sha, cwd=checkout)
        target = build.sha or "refs/remotes/origin/build"

    if not _has_commit(git, checkout, target):
        raise SourceError(f"commit {target} is not in the repository the server sent")
    branch = build.branch if build.event in _BRANCH_EVENTS else ""
    if branch and _valid_branch(git, checkout, branch):
        git("checkout", "-q", "-f", "-B", branch, target, cwd=checkout)
    else:
        git("checkout", "-q", "-f", "--detach", target, cwd=checkout)
    _reset_origin(git, checkout, details.repo.http_url)
    return checkout


def _bundle_commit(git: Git, bundle: Path, ref: str) -> str:
    """The commit of ``ref`` in the bundle, else its first head (no sha was given)."""
    heads = [line.split(" ", 1) for line in git("bundle", "list-heads", str(bundle)).splitlines()]
    for sha, name in (h for h in heads if len(h) == 2):
        if name == ref:
            return sha
    if heads and heads[0][0]:
        return heads[0][0]
    raise SourceError("the source bundle holds no commit")


def _has_commit(git: Git, checkout: Path, rev: str) -> bool:
    if rev.startswith("-"):
        return False
    out = git("rev-parse", "-q", "--verify", f"{rev}^{{commit}}", cwd=checkout, check=False)
    return bool(out)


def _valid_branch(git: Git, checkout: Path, branch: str) -> bool:
    if branch.startswith("-"):
        return False
    return bool(git("check-ref-format", "--branch", branch, cwd=checkout, check=False))


def _reset_origin(git: Git, checkout: Path, public_url: str) -> None:
    """Point ``origin`` at the repository's public URL (no credentials), or drop it."""
    parts = urlsplit(public_url) if public_url else None
    usable = (
        parts is not None
        and parts.scheme in ("https", "http", "ssh")
        and not parts.password
        and not public_url.startswith("-")
    )
    if usable:
        git("remote", "set-url", "origin", public_url, cwd=checkout)
    else:
        git("remote", "remove", "origin", cwd=checkout, check=False)


def workspace_archive(directory: Path, spool_dir: Path) -> IO[bytes]:
    """A tar of ``directory`` (``.git`` included), owned by root, modes kept, symlinks kept
    as links; spooled to a temporary file in ``spool_dir`` (a checkout can be large)."""
    out = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - returned to the caller
    total = 0
    try:
        with tarfile.open(fileobj=out, mode="w") as tar:
            for root, dirs, files in os.walk(directory):
                dirs.sort()
                for name in [*sorted(dirs), *sorted(files)]:
                    path = Path(root) / name
                    relative = str(path.relative_to(directory))
                    info = tar.gettarinfo(str(path), arcname=relative)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    if info.isreg():
                        total += info.size
                        if total > MAX_WORKSPACE_BYTES:
                            raise SourceError(
                                f"the checkout is larger than {MAX_WORKSPACE_BYTES >> 30} GiB"
                            )
                        with path.open("rb") as fh:
                            tar.addfile(info, fh)
                    elif info.issym() or info.isdir():
                        tar.addfile(info)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out
