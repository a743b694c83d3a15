"""Builders for the runner's protocol messages, with defaults a test overrides as needed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from bastion.rpc.messages import (
    BuildInfo,
    CloneInfo,
    Lease,
    RepoInfo,
    StageDetails,
    StageInfo,
)

FAKE_CONFIG = """\
kind: pipeline
type: docker
name: default
steps:
  - name: greet
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_OUTPUT: hello\\nworld
  - name: test
    image: bastion/busybox:latest
    environment:
      BASTION_FAKE_OUTPUT: tests passed
"""


def stage_details(
    config: str = FAKE_CONFIG,
    *,
    stage_id: int = 1,
    pipeline: str = "default",
    trusted: bool = False,
    secrets: dict[str, str] | None = None,
    clone: CloneInfo | None = None,
    timeout: int = 600,
    **build: Any,
) -> StageDetails:
    build_fields: dict[str, Any] = {
        "number": 1,
        "event": "push",
        "ref": "refs/heads/main",
        "branch": "main",
        "message": "a commit message with $(rm -rf /) in it",
        "author": "alice",
    }
    build_fields.update(build)
    return StageDetails(
        stage_id=stage_id,
        repo=RepoInfo(
            owner="acme",
            name="web",
            default_branch="main",
            private=True,
            visibility="private",
            trusted=trusted,
            http_url="https://git.example.com/acme/web.git",
        ),
        build=BuildInfo(**build_fields),
        stage=StageInfo(number=1, name=pipeline, timeout=timeout),
        config=config,
        pipeline=pipeline,
        clone=clone or CloneInfo(kind="none"),
        secrets=secrets or {},
        system_host="ci.example.com",
        system_proto="https",
    )


def lease(
    stage_id: int = 1,
    *,
    lease_id: str = "lease-" + "ab" * 16,
    expires_in: float = 30.0,
    heartbeat_interval: float = 0.2,
) -> Lease:
    return Lease(
        stage_id=stage_id,
        lease_id=lease_id,
        expires_in=expires_in,
        heartbeat_interval=heartbeat_interval,
    )


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(cwd),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Alice",
            "GIT_AUTHOR_EMAIL": "alice@example.com",
            "GIT_COMMITTER_NAME": "Alice",
            "GIT_COMMITTER_EMAIL": "alice@example.com",
        },
    )
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str], *, branch: str = "main") -> str:
    """A git repository at ``path`` with one commit of ``files``; the commit id."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return git(path, "rev-parse", "HEAD")


def make_bundle(repo: Path, dest: Path, *refs: str) -> bytes:
    """A git bundle of ``refs`` (default: every branch) of ``repo``; its bytes."""
    git(repo, "bundle", "create", str(dest), *(refs or ("--all",)))
    return dest.read_bytes()
