"""Client commands: ``info``, ``repo``, ``build``, ``user`` and ``runner ls|add|rm``.

They mirror Drone's CLI tree and talk to a server through ``bastion.client`` (settings:
``--server`` or ``BASTION_SERVER`` / ``DRONE_SERVER``; the token only from the environment
or a file, ``BASTION_TOKEN`` / ``DRONE_TOKEN`` / ``BASTION_TOKEN_FILE``, never from the
command line where ``ps`` shows it). Output is a table by default, ``--format json`` for
scripts. Exit codes: see ``bastion.cli.remote``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from bastion.cli.errors import CliError
from bastion.cli.output import (
    DONE,
    FormatOption,
    OutputFormat,
    dump,
    dump_line,
    first_line,
    log_text,
    pairs,
    status,
    stdout,
    table,
    took,
    when,
    when_short,
    yes_no,
)
from bastion.cli.remote import CaCertOption, InsecureOption, ServerOption, connect, failures

if TYPE_CHECKING:
    # At run time these load only when a command runs: `bastion exec` never needs them.
    from bastion.client import BastionClient
    from bastion.rpc.api import BuildOut, LogLineOut, RepoOut, StageOut, StepOut

_SLUG = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,99})/([A-Za-z0-9][A-Za-z0-9_.-]{0,99})$")
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_FORGES = ("local", "github", "gitea", "gitlab")
_VISIBILITIES = ("private", "internal", "public")
_FOLLOW_POLL = 1.0  # seconds between looks at a build whose next step has not started

repo_app = typer.Typer(help="Repositories: list, inspect, register, activate, configure.")
build_app = typer.Typer(help="Builds: list, inspect, start, restart, stop, read logs.")
user_app = typer.Typer(help="Users and their API tokens (admins).")

RepoArg = Annotated[str, typer.Argument(metavar="OWNER/NAME", help="the repository")]
NumberArg = Annotated[str, typer.Argument(metavar="NUMBER", help="build number, or 'latest'")]
LoginArg = Annotated[str, typer.Argument(metavar="LOGIN", help="the user's login")]


def split_repo(value: str) -> tuple[str, str]:
    match = _SLUG.match(value.strip())
    if match is None:
        raise CliError(f"{value!r}: give the repository as OWNER/NAME, e.g. acme/website")
    return match.group(1), match.group(2)


def _login(value: str) -> str:
    if not _LOGIN.match(value):
        raise CliError(f"{value!r}: a login holds letters, digits, _ . - (at most 100)")
    return value


def _positive(value: str, what: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise CliError(f"{what} {value!r}: give a positive number")
    return int(value)


def _build(client: BastionClient, owner: str, name: str, number: str) -> BuildOut:
    if number in ("latest", "last"):
        return client.builds_latest(owner, name)
    return client.builds_get(owner, name, _positive(number, "build number"))


# -- info --------------------------------------------------------------------------------------


def info_command(
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show the server's version and who you are to it."""
    with failures(), connect(server, insecure, ca_cert) as client:
        version = client.version()
        user = client.user_self()
        if output is OutputFormat.JSON:
            dump(
                {
                    "server": client.server,
                    "version": version.model_dump(mode="json"),
                    "user": user.model_dump(mode="json"),
                }
            )
            return
        role = "admin" if user.admin else ("machine" if user.machine else "user")
        stdout().print(
            pairs(
                [
                    ("server", client.server),
                    ("version", f"{version.version} (runner protocol {version.protocol})"),
                    ("user", f"{user.login} ({role})"),
                    ("email", user.email or "-"),
                ],
            )
        )


# -- repo --------------------------------------------------------------------------------------


def _repo_rows(repos: list[RepoOut]) -> Iterator[tuple[str | Text, ...]]:
    for r in repos:
        yield (
            r.slug,
            r.forge,
            yes_no(r.active),
            yes_no(r.trusted),
            r.visibility,
            r.default_branch,
        )


@repo_app.command("ls")
def repo_ls(
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List the repositories you can see."""
    with failures(), connect(server, insecure, ca_cert) as client:
        repos = client.repos_list()
        if output is OutputFormat.JSON:
            dump(repos)
            return
        columns = ("repository", "forge", "active", "trusted", "visibility", "branch")
        stdout().print(table("", columns, _repo_rows(repos)))


def _print_repo(repo: RepoOut) -> None:
    rows = [
        ("repository", repo.slug),
        ("forge", repo.forge),
        ("active", yes_no(repo.active)),
        ("trusted", yes_no(repo.trusted)),
        ("protected", yes_no(repo.protected)),
        ("visibility", repo.visibility),
        ("default branch", repo.default_branch),
        ("config path", repo.config_path),
        ("timeout", f"{repo.timeout} min"),
        ("ignore forks", yes_no(repo.ignore_forks)),
        ("ignore pull requests", yes_no(repo.ignore_pull_requests)),
        ("auto-cancel pull requests", yes_no(repo.auto_cancel_pull_requests)),
        ("auto-cancel pushes", yes_no(repo.auto_cancel_pushes)),
        ("approval", repo.approval_mode or "server default"),
        ("approvers", ", ".join(repo.approvers) or "anyone with write access"),
        ("self-approval", "refused" if repo.prevent_self_approval else "allowed"),
        ("clone URL", repo.git_http_url or "-"),
        ("builds", str(repo.counter)),
    ]
    stdout().print(pairs(rows))


@repo_app.command("info")
def repo_info(
    repo: RepoArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show a repository's settings."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            found = client.repos_get(owner, name)
        if output is OutputFormat.JSON:
            dump(found)
        else:
            _print_repo(found)


@repo_app.command("enable")
def repo_enable(
    repo: RepoArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Activate a repository: its webhooks start builds."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            enabled = client.repos_enable(owner, name)
        if output is OutputFormat.JSON:
            dump(enabled)
        else:
            stdout().print(Text(f"{enabled.slug} is active"))


@repo_app.command("disable")
def repo_disable(
    repo: RepoArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Deactivate a repository: its webhooks are ignored, its history is kept."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            client.repos_disable(owner, name)
        if output is OutputFormat.JSON:
            dump({"repository": f"{owner}/{name}", "active": False})
        else:
            stdout().print(Text(f"{owner}/{name} is disabled"))


@repo_app.command("update")
def repo_update(
    repo: RepoArg,
    trusted: Annotated[
        bool | None,
        typer.Option(
            "--trusted/--no-trusted",
            help="allow privileged steps, host volumes ... (system admins only)",
            show_default=False,
        ),
    ] = None,
    protected: Annotated[
        bool | None,
        typer.Option(
            "--protected/--no-protected",
            help="builds wait for approval unless the pipeline is signed",
            show_default=False,
        ),
    ] = None,
    visibility: Annotated[
        str | None,
        typer.Option(help="private, internal or public", show_default=False),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(help="build timeout in minutes (1 to 1440)", show_default=False),
    ] = None,
    config_path: Annotated[
        str | None,
        typer.Option(help="path of the pipeline file, e.g. .drone.yml", show_default=False),
    ] = None,
    ignore_forks: Annotated[
        bool | None,
        typer.Option("--ignore-forks/--no-ignore-forks", show_default=False),
    ] = None,
    ignore_pull_requests: Annotated[
        bool | None,
        typer.Option("--ignore-pull-requests/--no-ignore-pull-requests", show_default=False),
    ] = None,
    auto_cancel_pull_requests: Annotated[
        bool | None,
        typer.Option(
            "--auto-cancel-pull-requests/--no-auto-cancel-pull-requests", show_default=False
        ),
    ] = None,
    auto_cancel_pushes: Annotated[
        bool | None,
        typer.Option("--auto-cancel-pushes/--no-auto-cancel-pushes", show_default=False),
    ] = None,
    approval: Annotated[
        str | None,
        typer.Option(
            "--approval",
            metavar="MODE",
            help="which builds wait for an approval: none, forks, pull_requests, all_events, "
            "or default (the server's)",
            show_default=False,
        ),
    ] = None,
    approvers: Annotated[
        str | None,
        typer.Option(
            "--approvers",
            metavar="LOGIN,...",
            help="who may approve held builds (comma-separated; '' = anyone with write access)",
            show_default=False,
        ),
    ] = None,
    prevent_self_approval: Annotated[
        bool | None,
        typer.Option(
            "--prevent-self-approval/--allow-self-approval",
            help="whether the author of a change may approve it",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Change a repository's settings; options left out stay as they are."""
    with failures():
        owner, name = split_repo(repo)
        if visibility is not None and visibility not in _VISIBILITIES:
            raise CliError(f"--visibility {visibility!r}: use one of {', '.join(_VISIBILITIES)}")
        if timeout is not None and not 1 <= timeout <= 24 * 60:
            raise CliError(f"--timeout {timeout}: give 1 to 1440 minutes")
        if config_path is not None and not config_path.strip():
            raise CliError("--config-path: give the path of the pipeline file")
        if approval is not None and approval not in _APPROVAL_MODES:
            raise CliError(f"--approval {approval!r}: use one of {', '.join(_APPROVAL_MODES)}")
        approver_list = (
            None
            if approvers is None
            else [login.strip() for login in approvers.split(",") if login.strip()]
        )
        from bastion.rpc.api import RepoPatch  # noqa: PLC0415 - see TYPE_CHECKING

        patch = RepoPatch(
            trusted=trusted,
            protected=protected,
            visibility=visibility,
            timeout=timeout,
            config_path=config_path,
            ignore_forks=ignore_forks,
            ignore_pull_requests=ignore_pull_requests,
            auto_cancel_pull_requests=auto_cancel_pull_requests,
            auto_cancel_pushes=auto_cancel_pushes,
            approval_mode=None if approval is None else approval.replace("default", ""),
            approvers=approver_list,
            prevent_self_approval=prevent_self_approval,
        )
        if not patch.model_dump(exclude_none=True):
            raise CliError("nothing to change: give at least one option (see --help)")
        with connect(server, insecure, ca_cert) as client:
            updated = client.repos_update(owner, name, patch)
        if output is OutputFormat.JSON:
            dump(updated)
        else:
            _print_repo(updated)


_APPROVAL_MODES = ("none", "forks", "pull_requests", "all_events", "default")


@repo_app.command("create")
def repo_create(
    repo: RepoArg,
    forge: Annotated[
        str, typer.Option(help="local (a repository on the server), github, gitea or gitlab")
    ] = "local",
    http_url: Annotated[
        str | None,
        typer.Option(help="clone URL of a forge repository (https://...)", show_default=False),
    ] = None,
    default_branch: Annotated[str, typer.Option(help="the default branch")] = "main",
    public: Annotated[bool, typer.Option("--public", help="the repository is public")] = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Register a repository (admins). A local one is created on the server: push to the
    URL printed. A forge one gets a webhook URL and secret to configure in the forge."""
    with failures():
        owner, name = split_repo(repo)
        if forge not in _FORGES:
            raise CliError(f"--forge {forge!r}: use one of {', '.join(_FORGES)}")
        if forge != "local" and not http_url:
            raise CliError(f"--forge {forge} needs --http-url, the repository's clone URL")
        if forge == "local" and http_url:
            raise CliError("--http-url is for forge repositories; a local one lives on the server")
        if http_url and not http_url.startswith(("https://", "http://")):
            raise CliError(f"--http-url {http_url!r}: give the https:// clone URL")
        from bastion.rpc.api import RepoCreate  # noqa: PLC0415 - see TYPE_CHECKING

        body = RepoCreate(
            owner=owner,
            name=name,
            forge=forge,
            http_url=http_url or "",
            default_branch=default_branch,
            private=not public,
        )
        with connect(server, insecure, ca_cert) as client:
            created = client.repos_create(body)
        if output is OutputFormat.JSON:
            dump(created)
            return
        out = stdout()
        out.print(
            Text(f"created {created.slug} ({created.forge}, active: {yes_no(created.active)})")
        )
        if created.git_push_url:
            out.print(Text("push to it to start a build:"))
            out.print(Text(f"  git remote add bastion {created.git_push_url}"))
            out.print(Text(f"  git push bastion {created.default_branch}"))
        if created.webhook_url:
            out.print(Text("configure this webhook in the forge (content type: application/json):"))
            out.print(Text(f"  URL:    {created.webhook_url}"))
            if created.webhook_secret:
                out.print(Text(f"  secret: {created.webhook_secret}   (shown once; store it now)"))


# -- build -------------------------------------------------------------------------------------


def _ref(b: BuildOut) -> str:
    if b.event == "pull_request" and b.source:
        return f"{b.source} → {b.target}" if b.target else b.source
    if b.event == "tag":
        return b.ref.removeprefix("refs/tags/")
    return b.target or b.ref.removeprefix("refs/heads/")


@build_app.command("ls")
def build_ls(
    repo: RepoArg,
    page: Annotated[int, typer.Option(min=1, help="page number, from 1")] = 1,
    limit: Annotated[int, typer.Option(min=1, max=100, help="builds per page")] = 25,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List a repository's builds, newest first."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            builds = client.builds_list(owner, name, page=page, per_page=limit)
        if output is OutputFormat.JSON:
            dump(builds)
            return
        rows = [
            (
                str(b.number),
                status(b.status),
                b.event,
                _ref(b),
                b.after[:8],
                b.author_login or b.author_name,
                first_line(b.message or b.title, 50),
                when_short(b.started or b.created),
                took(b.started, b.finished),
            )
            for b in builds
        ]
        columns = ("#", "status", "event", "ref", "commit", "author", "message", "started", "took")
        stdout().print(table("", columns, rows))


@build_app.command("info")
def build_info(
    repo: RepoArg,
    number: NumberArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show a build, its stages and their steps."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            build = _build(client, owner, name, number)
        if output is OutputFormat.JSON:
            dump(build)
            return
        out = stdout()
        rows: list[tuple[str, str | Text]] = [
            ("build", f"{owner}/{name} #{build.number}"),
            ("status", status(build.status)),
            ("event", build.event + (f" ({build.action})" if build.action else "")),
            ("ref", build.ref),
            ("commit", build.after or "-"),
            ("author", build.author_login or build.author_name or "-"),
            ("message", first_line(build.message or build.title)),
            ("started", when(build.started)),
            ("took", took(build.started, build.finished)),
        ]
        if build.error:
            rows.append(("error", Text(build.error, style="red")))
        out.print(pairs(rows))
        for stage in sorted(build.stages, key=lambda s: s.number):
            title = f"stage {stage.number}: {stage.name} — {stage.status}"
            if stage.error:
                title += f" ({stage.error})"
            step_rows = [
                (
                    str(step.number),
                    step.name + (" (service)" if step.service else ""),
                    status(step.status),
                    str(step.exit_code) if step.status in DONE and step.started else "",
                    took(step.started, step.stopped),
                    step.error,
                )
                for step in sorted(stage.steps, key=lambda s: s.number)
            ]
            out.print()
            out.print(table(title, ("#", "step", "status", "exit", "took", "note"), step_rows))


@build_app.command("create")
def build_create(
    repo: RepoArg,
    branch: Annotated[
        str | None, typer.Option(help="branch to build [default: the repository's]")
    ] = None,
    commit: Annotated[
        str | None, typer.Option(help="commit to build [default: the branch's head]")
    ] = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Start a build of a branch or commit (event: custom)."""
    with failures():
        owner, name = split_repo(repo)
        if commit is not None and not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
            raise CliError(f"--commit {commit!r}: give a commit id (hex)")
        with connect(server, insecure, ca_cert) as client:
            build = client.builds_create(owner, name, branch=branch, commit=commit)
        if output is OutputFormat.JSON:
            dump(build)
        else:
            stdout().print(
                Text(f"started build #{build.number} of {owner}/{name} ({build.status})")
            )


@build_app.command("restart")
def build_restart(
    repo: RepoArg,
    number: NumberArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Run a build again (as a new build with the same commit and event)."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            old = _build(client, owner, name, number)
            build = client.builds_restart(owner, name, old.number)
        if output is OutputFormat.JSON:
            dump(build)
        else:
            stdout().print(
                Text(f"restarted #{old.number} of {owner}/{name} as build #{build.number}")
            )


@build_app.command("stop")
def build_stop(
    repo: RepoArg,
    number: NumberArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Cancel a build: its containers are stopped within seconds."""
    with failures():
        owner, name = split_repo(repo)
        with connect(server, insecure, ca_cert) as client:
            build = _build(client, owner, name, number)
            after = client.builds_cancel(owner, name, build.number)
        if output is OutputFormat.JSON:
            dump(after or {"number": build.number, "cancelled": True})
        else:
            stdout().print(Text(f"cancelled build #{build.number} of {owner}/{name}"))


# -- build logs --------------------------------------------------------------------------------


@dataclass
class _LogTarget:
    stage: StageOut
    step: StepOut
    next_pos: int = 0  # the first position not printed yet
    done: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return (self.stage.number, self.step.number)


@dataclass
class _LogPrinter:
    """Prints the lines of one or more steps, each line once, in position order."""

    output: OutputFormat
    follow: bool
    prefix: bool  # several steps: prefix each line with its step's name
    width: int = 8
    collected: list[dict[str, object]] = field(default_factory=list)

    def emit(self, target: _LogTarget, lines: list[LogLineOut]) -> None:
        for line in sorted(lines, key=lambda x: x.pos):
            if line.pos < target.next_pos:
                continue  # already printed (a stream that replays history, a refetch)
            target.next_pos = line.pos + 1
            self._print(target, line)

    def _print(self, target: _LogTarget, line: LogLineOut) -> None:
        if self.output is OutputFormat.JSON:
            record: dict[str, object] = {
                "stage": target.stage.number,
                "step": target.step.number,
                "name": target.step.name,
                **line.model_dump(mode="json"),
            }
            if self.follow:
                dump_line(record)
            else:
                self.collected.append(record)
            return
        text = log_text(line.out)
        if self.prefix:
            self.width = max(self.width, len(target.step.name))
            text = Text.assemble((f"{target.step.name:<{self.width}} │ ", "cyan"), text)
        stdout().print(text, soft_wrap=True)


def _select(build: BuildOut, stage: str | None, step: str | None) -> list[tuple[StageOut, StepOut]]:
    stages = sorted(build.stages, key=lambda s: s.number)
    if stage is not None:
        chosen = [s for s in stages if str(s.number) == stage or s.name == stage]
        if not chosen:
            raise CliError(
                f"build #{build.number} has no stage {stage!r} (it has: "
                + (", ".join(f"{s.number} {s.name}" for s in stages) or "none yet")
                + ")"
            )
        stages = chosen[:1]
    out: list[tuple[StageOut, StepOut]] = []
    for s in stages:
        steps = sorted(s.steps, key=lambda x: x.number)
        if step is not None:
            steps = [x for x in steps if str(x.number) == step or x.name == step]
        out.extend((s, x) for x in steps)
    return out


def _show_logs(
    client: BastionClient,
    owner: str,
    name: str,
    number: str,
    stage: str | None,
    step: str | None,
    printer: _LogPrinter,
) -> None:
    """Print the chosen steps in order. Following, a running step is streamed live, a step
    that has not started is waited for (so parallel steps print one after another), and the
    command ends when the build does."""
    build = _build(client, owner, name, number)
    targets: dict[tuple[int, int], _LogTarget] = {}
    while True:
        for st, sp in _select(build, stage, step):
            target = targets.setdefault((st.number, sp.number), _LogTarget(st, sp))
            target.stage, target.step = st, sp
        build_done = build.status in DONE
        if step is not None and not targets and (build_done or not printer.follow):
            raise CliError(f"build #{build.number}: no step {step!r} in the chosen stage")
        progressed = False
        for target in sorted(targets.values(), key=lambda t: t.key):
            if target.done:
                continue
            st, sp = target.stage, target.step
            if not printer.follow or build_done or sp.status in DONE:
                printer.emit(target, client.logs(owner, name, build.number, st.number, sp.number))
                target.done = progressed = True
                continue
            if sp.status != "running":
                break  # not started yet: wait for it before printing the steps after it
            for line in client.stream_logs(owner, name, build.number, st.number, sp.number):
                if line.pos > target.next_pos:  # connected late: fetch what came before
                    printer.emit(
                        target, client.logs(owner, name, build.number, st.number, sp.number)
                    )
                printer.emit(target, [line])
            # Whatever the stream did not carry (it ended early, or began late).
            printer.emit(target, client.logs(owner, name, build.number, st.number, sp.number))
            target.done = progressed = True
            break  # states changed meanwhile: look at the build again
        if not printer.follow or build_done:
            return
        if not progressed:
            time.sleep(_FOLLOW_POLL)
        build = client.builds_get(owner, name, build.number)


@build_app.command("logs")
def build_logs(
    repo: RepoArg,
    number: NumberArg,
    stage: Annotated[
        str | None, typer.Argument(help="stage number or name [default: every stage]")
    ] = None,
    step: Annotated[
        str | None, typer.Argument(help="step number or name [default: every step]")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="stream live until the build ends")
    ] = False,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Print a build's logs: one step's, or every step's in order with its name in front.

    With --format json: a list of {stage, step, name, pos, out, time}; with --follow, one
    such object per line as they come."""
    with failures():
        owner, name = split_repo(repo)
        printer = _LogPrinter(output=output, follow=follow, prefix=step is None)
        with connect(server, insecure, ca_cert) as client:
            try:
                _show_logs(client, owner, name, number, stage, step, printer)
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
        if output is OutputFormat.JSON and not follow:
            dump(printer.collected)


# -- user --------------------------------------------------------------------------------------


@user_app.command("ls")
def user_ls(
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List the users (admins)."""
    with failures(), connect(server, insecure, ca_cert) as client:
        users = client.users_list()
        if output is OutputFormat.JSON:
            dump(users)
            return
        rows = [
            (u.login, u.email or "-", yes_no(u.admin), yes_no(u.machine), yes_no(u.active))
            for u in users
        ]
        stdout().print(table("", ("login", "email", "admin", "machine", "active"), rows))


@user_app.command("add")
def user_add(
    login: LoginArg,
    admin: Annotated[bool, typer.Option("--admin", help="a system administrator")] = False,
    machine: Annotated[bool, typer.Option("--machine", help="a machine account (bots)")] = False,
    email: Annotated[str, typer.Option(help="e-mail address")] = "",
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create a user (admins). Give them a token with: bastion user token LOGIN"""
    with failures():
        from bastion.rpc.api import UserCreate  # noqa: PLC0415 - see TYPE_CHECKING

        body = UserCreate(login=_login(login), email=email, admin=admin, machine=machine)
        with connect(server, insecure, ca_cert) as client:
            user = client.users_create(body)
        if output is OutputFormat.JSON:
            dump(user)
        else:
            stdout().print(
                Text(
                    f"created user {user.login}{' (admin)' if user.admin else ''}; "
                    f"create a token with: bastion user token {user.login}"
                )
            )


@user_app.command("rm")
def user_rm(
    login: LoginArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Delete a user (admins); their tokens stop working at once."""
    with failures():
        _login(login)
        with connect(server, insecure, ca_cert) as client:
            client.users_delete(login)
        if output is OutputFormat.JSON:
            dump({"login": login, "deleted": True})
        else:
            stdout().print(Text(f"deleted user {login}"))


@user_app.command("token")
def user_token(
    login: LoginArg,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create an API token for a user; it is shown once."""
    with failures():
        _login(login)
        with connect(server, insecure, ca_cert) as client:
            created = client.user_token(login)
        if output is OutputFormat.JSON:
            dump(created)
            return
        out = stdout()
        out.print(Text(f"token for {created.login} (shown once, store it now):"))
        out.print(Text(created.token))


# -- runner ls|add|rm (registered on the `runner` group by bastion.cli.runner_cmd) ------------


def runner_ls(
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List the runners (admins)."""
    with failures(), connect(server, insecure, ca_cert) as client:
        runners = client.runners_list()
        if output is OutputFormat.JSON:
            dump(runners)
            return
        rows = [
            (
                r.name,
                f"{r.os}/{r.arch}" if r.os else "-",
                str(r.capacity),
                ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())) or "-",
                r.version or "-",
                when_short(r.last_seen),
                Text("revoked", style="red") if r.revoked else Text("active", style="green"),
            )
            for r in runners
        ]
        columns = ("name", "platform", "capacity", "labels", "version", "last seen", "state")
        stdout().print(table("", columns, rows))


def runner_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="a name for the runner")],
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Register a runner (admins) and print its token, once, with how to start it."""
    with failures():
        if not _LOGIN.match(name):
            raise CliError(f"{name!r}: a runner name holds letters, digits, _ . - (at most 100)")
        with connect(server, insecure, ca_cert) as client:
            created = client.runners_create(name)
            url = client.server
        if output is OutputFormat.JSON:
            dump(created)
            return
        out = stdout()
        out.print(Text(f"runner {created.name} registered. Its token (shown once):"))
        out.print()
        out.print(Text(f"  {created.token}"))
        out.print()
        out.print(
            Text("On the machine that will run the builds, keep it in a file only you can read:")
        )
        out.print()
        out.print(Text(f"  (umask 077; printf '%s\\n' '{created.token}' > {created.name}.token)"))
        out.print(
            Text(
                f"  bastion runner --server {url} --name {created.name} "
                f"--token-file {created.name}.token"
            )
        )


def runner_rm(
    name: Annotated[str, typer.Argument(metavar="NAME", help="the runner to revoke")],
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Revoke a runner's token (admins): it can take no more work; its leases lapse."""
    with failures():
        with connect(server, insecure, ca_cert) as client:
            client.runners_revoke(name)
        if output is OutputFormat.JSON:
            dump({"name": name, "revoked": True})
        else:
            stdout().print(Text(f"runner {name} revoked"))
