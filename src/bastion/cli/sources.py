"""What ``bastion exec`` and ``bastion lint`` read from the local machine.

The pipeline file, secrets given on the command line or in a dotenv-style file, what git says
about the checkout (branch, commit, author) and the working tree to copy into the workspace.
Every problem becomes a ``CliError`` that names the file (and line, where there is one).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path

from bastion.cli.errors import CliError
from bastion.spec.context import Build, BuildContext, Commit, Repo, System

_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_WORKSPACE_BYTES = 2 << 30  # refuse to copy more than 2 GiB into a workspace


def read_pipeline_file(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise CliError(f"{path}: is a directory; give the path of a .drone.yml file")
        return path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file (bastion reads .drone.yml by default)") from None
    except PermissionError:
        raise CliError(f"{path}: permission denied") from None


def parse_secret_args(values: Iterable[str]) -> dict[str, str]:
    """``--secret NAME=VALUE`` options. Error messages never repeat what was given: a
    mistyped option may well be the secret itself."""
    secrets: dict[str, str] = {}
    for index, raw in enumerate(values, start=1):
        name, sep, value = raw.partition("=")
        if not sep or not name:
            raise CliError(
                f"--secret number {index}: expected NAME=VALUE (what was given is not shown, "
                "as it may be the secret)"
            )
        if not _SECRET_NAME.match(name):
            raise CliError(
                f"--secret {name!r}: a secret name must start with a letter or _ and hold "
                "letters, digits, _ . -"
            )
        secrets[name] = value
    return secrets


def read_secret_file(path: Path) -> dict[str, str]:
    """Secrets from a dotenv-style file: ``NAME=value`` lines; quoted values may span lines.

    Parsed with python-dotenv's own parser, so a line of a multi-line value is never taken
    for a new entry. Errors give the file and line, never the line's content."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such secret file") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read the secret file ({exc})") from None
    # Imported here: most runs have no secret file, and python-dotenv brings logging along.
    from dotenv.parser import parse_stream  # noqa: PLC0415

    out: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise CliError(
                f"{path}:{line}: not a NAME=VALUE line (is a quote left open?); the line is "
                "not shown, as it may hold a secret"
            )
        if binding.key is None:
            continue  # a blank line or a comment
        if not _SECRET_NAME.match(binding.key):
            raise CliError(
                f"{path}:{line}: the name must start with a letter or _ and hold letters, "
                "digits, _ . -"
            )
        if binding.value is None:
            raise CliError(f"{path}:{line}: {binding.key!r} has no value; write NAME=VALUE")
        out[binding.key] = binding.value
    return out


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def build_context(
    directory: Path,
    *,
    event: str,
    branch: str | None,
    ref: str | None,
    repo: str | None,
    target: str,
    cron: str,
    action: str,
    tag: str,
    trusted: bool,
    now: int,
) -> BuildContext:
    """The build as ``bastion exec`` sees it: from git where possible, else plain defaults."""
    in_git = _git(directory, "rev-parse", "--is-inside-work-tree") == "true"
    git_branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD") if in_git else None
    if git_branch == "HEAD":
        git_branch = None
    branch = branch or git_branch or "main"
    sha = (_git(directory, "rev-parse", "HEAD") if in_git else None) or ""
    log = (_git(directory, "log", "-1", "--format=%an%x00%ae%x00%B") if in_git else None) or ""
    author_name, author_email, message = ([*log.split("\x00", 2), "", "", ""])[:3]
    owner, _, name = (repo or f"local/{directory.resolve().name}").partition("/")
    if event == "tag" and not tag:
        tag = (ref or "").removeprefix("refs/tags/") or "v0.0.0"
    if not ref:
        ref = f"refs/tags/{tag}" if event == "tag" else f"refs/heads/{branch}"
    host = os.uname().nodename
    return BuildContext(
        repo=Repo(owner=owner, name=name or "project", branch=branch, trusted=trusted),
        commit=Commit(
            sha=sha,
            ref=ref,
            branch=branch,
            message=message.strip(),
            author=author_name,
            author_name=author_name,
            author_email=author_email,
        ),
        build=Build(
            number=1,
            event=event,
            action=action,
            trigger="@exec",
            tag=tag,
            deploy_to=target,
            cron=cron,
            created=now,
            started=now,
        ),
        system=System(host=host, hostname=host, proto="http", version="bastion-exec"),
    )


def workspace_archive(directory: Path) -> io.BytesIO:
    """A tar of the working tree: in a git checkout the tracked and untracked-but-not-ignored
    files (plus .git at the top of a repository, as a clone would have), else every file.
    Owned by root, modes kept; symlinks kept as links, never followed out of the tree."""
    files = _tree_files(directory)
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative in files:
            path = directory / relative
            try:
                info = tar.gettarinfo(str(path), arcname=relative)
            except OSError:
                continue  # vanished while we were reading: the step sees the tree without it
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                total += info.size
                if total > MAX_WORKSPACE_BYTES:
                    raise CliError(
                        f"{directory}: the working tree is larger than "
                        f"{MAX_WORKSPACE_BYTES >> 30} GiB; add large files to .gitignore"
                    )
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            elif info.issym() or info.isdir():
                tar.addfile(info)
    buffer.seek(0)
    return buffer


def _tree_files(directory: Path) -> list[str]:
    listed = _git(directory, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        files = [f for f in listed.split("\x00") if f and (directory / f).exists()]
        if (directory / ".git").is_dir():
            files += [
                str(p.relative_to(directory)) for p in sorted((directory / ".git").rglob("*"))
            ]
        return files
    out: list[str] = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            out.append(str((Path(root) / name).relative_to(directory)))
    return out
