"""What is known about the build being run: repository, commit, build, stage, system.

A ``BuildContext`` is filled in by whoever starts a run (``bastion exec`` from the local git
checkout, the server from a webhook) and read by the condition matcher and by
``bastion.spec.environ``, which turns it into the ``DRONE_*`` / ``CI_*`` variables. Values
such as the commit message, branch and pull-request title are untrusted text: they are only
ever passed to containers as environment variable values, never substituted into YAML or into
a shell script.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Repo:
    owner: str = "local"
    name: str = "project"
    branch: str = "main"  # the default branch
    private: bool = True
    visibility: str = "private"
    link: str = ""
    http_url: str = ""
    ssh_url: str = ""
    scm: str = "git"
    trusted: bool = False

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class Commit:
    sha: str = ""
    before: str = ""
    ref: str = "refs/heads/main"
    branch: str = "main"  # for a pull request: its target branch, as Drone does
    source_branch: str = ""  # for a pull request: the branch it comes from
    message: str = ""
    author: str = ""
    author_name: str = ""
    author_email: str = ""
    author_avatar: str = ""
    link: str = ""


@dataclass(frozen=True)
class Build:
    number: int = 1
    parent: int = 0
    event: str = "push"  # push, pull_request, tag, promote, rollback, cron, custom
    action: str = ""  # e.g. opened, synchronized for pull requests
    trigger: str = "@exec"
    tag: str = ""
    pull_request: int = 0
    pull_request_title: str = ""
    deploy_to: str = ""  # the target of promote / rollback
    cron: str = ""  # the cron job's name for cron events
    link: str = ""
    created: int = 0
    started: int = 0
    changed_files: tuple[str, ...] | None = None  # None: not known, `paths` conditions pass
    fork: bool = False
    # Parameters of a promote / rollback build (name, value): variables for every step that
    # never replace one Bastion sets (see ``environ.build_environ``).
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class System:
    host: str = "localhost"
    hostname: str = "localhost"
    proto: str = "http"
    version: str = "bastion"


@dataclass(frozen=True)
class BuildContext:
    repo: Repo = field(default_factory=Repo)
    commit: Commit = field(default_factory=Commit)
    build: Build = field(default_factory=Build)
    system: System = field(default_factory=System)
