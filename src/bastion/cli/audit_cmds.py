"""``bastion audit ls`` and ``bastion secret rekey`` (system administrators).

``audit ls`` reads ``GET /api/audit``: filters by kind prefix, repository, build, secret and
time (``--since`` / ``--until`` take Unix seconds, an ISO 8601 date or time, or an age such as
``7d``, ``12h``, ``30m``), newest first; a full page ends with the ``--before`` value of the
next one on stderr. ``secret rekey`` asks the running server, which holds the keys, to
re-encrypt every secret at rest under its current key (``POST /api/admin/rekey``); its help
is the operator's procedure. Bad options exit 2 naming the option; the server's refusals exit
1 with its message (``bastion.cli.remote``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.text import Text

from bastion.cli.errors import EXIT_FAILED, CliError
from bastion.cli.output import FormatOption, OutputFormat, dump, stderr, stdout, table, when
from bastion.cli.remote import CaCertOption, InsecureOption, ServerOption, connect, failures

audit_app = typer.Typer(help="Audit events (admins): secret changes and deliveries, rotations.")

_AGE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_LIMIT = 1000

_TIME_HELP = "Unix seconds, an ISO date or time (2026-11-01, 2026-11-01T12:00Z) or an age (7d)"


def parse_time(value: str, option: str, now: float | None = None) -> int:
    """``value`` as Unix seconds (see ``_TIME_HELP``); ``CliError`` naming ``option``."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    age = _AGE.match(text)
    if age is not None:
        current = time.time() if now is None else now
        return int(current) - int(age.group(1)) * _UNIT_SECONDS[age.group(2)]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CliError(f"{option} {value!r}: give {_TIME_HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # servers and logs speak UTC
    return int(moment.timestamp())


@audit_app.command("ls")
def audit_ls(
    kind: Annotated[
        str, typer.Option("--kind", help="a kind or its prefix, e.g. secret. or secret.delivered")
    ] = "",
    repo: Annotated[str, typer.Option("--repo", metavar="OWNER/NAME")] = "",
    build: Annotated[int | None, typer.Option("--build", min=1, help="build number")] = None,
    secret: Annotated[str, typer.Option("--secret", metavar="NAME")] = "",
    since: Annotated[str | None, typer.Option("--since", help=f"from: {_TIME_HELP}")] = None,
    until: Annotated[str | None, typer.Option("--until", help="before (excluded); as --since")] = (
        None
    ),
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT)] = 50,
    before: Annotated[
        int | None, typer.Option("--before", min=1, help="page: events older than this id")
    ] = None,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """List audit events, newest first (admins). Events never hold secret values."""
    with failures():
        start = parse_time(since, "--since") if since is not None else None
        end = parse_time(until, "--until") if until is not None else None
        if start is not None and end is not None and end <= start:
            raise CliError(f"--until ({until}) must be later than --since ({since})")
    with failures(), connect(server, insecure, ca_cert) as client:
        events = client.audit_list(
            kind=kind,
            repo=repo,
            build=build,
            secret=secret,
            since=start,
            until=end,
            before=before,
            limit=limit,
        )
    if output is OutputFormat.JSON:
        dump(events)
    else:
        rows = [
            (
                str(e.id),
                when(e.created),
                e.kind,
                e.actor or "-",
                _context(e.repo, e.build, e.stage, e.step, e.runner),
                e.secret or "-",
                ", ".join(f"{k}={_show(v)}" for k, v in sorted(e.detail.items())) or "-",
            )
            for e in events
        ]
        columns = ("id", "when", "kind", "actor", "where", "secret", "note")
        stdout().print(table("", columns, rows))
    if events and len(events) == limit:
        stderr().print(Text(f"more events: add --before {events[-1].id}", style="dim"))


def _context(repo: str, build: int | None, stage: int | None, step: str, runner: str) -> str:
    parts = [repo] if repo else []
    if build is not None:
        parts.append(f"#{build}")
    if stage is not None:
        parts.append(f"stage {stage}")
    if step:
        parts.append(f"step {step}")
    if runner:
        parts.append(f"runner {runner}")
    return " ".join(parts) or "-"


def _key_label(key: str, current: str) -> str | Text:
    if key == current:
        return Text("current", style="green")
    if key == "v1":
        return "first format (no key id)"
    return "not current"


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(" ".join(text.split()) for text in texts)


REKEY_HELP = _paragraphs(
    "Re-encrypt every secret at rest under the server's current database key (admins). "
    "Only the running server holds the keys: this asks it to do the work.",
    "Rotating the database key:",
    """1. Generate a key (openssl rand -hex 32). Restart the server with the new key as
    BASTION_DATABASE_SECRET (or BASTION_DATABASE_SECRET_FILE) and the old one in
    BASTION_DATABASE_SECRET_PREVIOUS (or BASTION_DATABASE_SECRET_PREVIOUS_FILE): every secret
    stays readable, new values use the new key.""",
    """2. Run bastion secret rekey --dry-run (rows under each key id), then bastion secret
    rekey. It works in batches, each its own transaction: an interruption loses nothing, and
    running it again finishes the job.""",
    """3. When --dry-run shows every row under the current key id, remove the previous key from
    the settings and restart. Details: docs/operations.md, "Rotating the database key".""",
    """Exits 1 when a value decrypts with none of the server's keys (its id is printed; the row
    is left as it is).""",
)


def rekey_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only count the values under each key id")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="rows per transaction")
    ] = 200,
    server: ServerOption = None,
    insecure: InsecureOption = False,
    ca_cert: CaCertOption = None,
    output: FormatOption = OutputFormat.TABLE,
) -> None:
    """Re-encrypt every secret at rest under the current database key (help: REKEY_HELP)."""
    with failures(), connect(server, insecure, ca_cert) as client:
        report = client.admin_rekey(dry_run=dry_run, batch_size=batch_size)
    if output is OutputFormat.JSON:
        dump(report)
    else:
        rows = [
            (
                column if index == 0 else "",
                key,
                _key_label(key, report.current_key_id),
                str(count),
                "" if report.dry_run or index else str(report.rekeyed.get(column, 0)),
            )
            for column, per_key in sorted(report.keys.items())
            for index, (key, count) in enumerate(sorted(per_key.items()))
        ]
        title = f"current key id {report.current_key_id}"
        columns = ("column", "key id", "key", "rows before", "re-encrypted")
        stdout().print(table(title, columns, rows))
        if not rows:
            stdout().print("no encrypted values are stored")
        elif report.dry_run:
            stdout().print(f"{report.remaining} values are not under the current key")
        else:
            stdout().print(f"{report.total_rekeyed} values re-encrypted")
    if report.total_failed:
        for column, ids in sorted(report.failed.items()):
            stderr().print(
                Text(f"{column}: rows {', '.join(map(str, ids))} decrypt with no configured key")
            )
        raise typer.Exit(EXIT_FAILED)
