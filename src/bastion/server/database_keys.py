"""The database keys: the current key that encrypts secrets at rest, and previous keys that
still decrypt values written before a rotation.

Sources: ``BASTION_DATABASE_SECRET`` (or Drone's ``DRONE_DATABASE_SECRET``) or
``BASTION_DATABASE_SECRET_FILE`` for the current key (not both: which one wins would be a
guess), and ``BASTION_DATABASE_SECRET_PREVIOUS`` (comma-separated) and / or
``BASTION_DATABASE_SECRET_PREVIOUS_FILE`` (one key per line, ``#`` comments) for previous keys.
A key file must be a regular file that neither the group nor others can read: the server
refuses to start otherwise rather than fixing the mode itself, because a key that was
readable may already have been read and the operator must know. Messages name the setting
and the file, never key material. The rotation procedure is in docs/operations.md.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.crypto import WeakKeyError, key_from_text

if TYPE_CHECKING:
    from bastion.server.settings import ServerSettings

CURRENT = "BASTION_DATABASE_SECRET"
CURRENT_FILE = "BASTION_DATABASE_SECRET_FILE"
PREVIOUS = "BASTION_DATABASE_SECRET_PREVIOUS"
PREVIOUS_FILE = "BASTION_DATABASE_SECRET_PREVIOUS_FILE"
_HINT = "generate one with: openssl rand -hex 32"


class DatabaseKeyError(ValueError):
    """The keys cannot be loaded; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class DatabaseKeys:
    current: bytes
    previous: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"DatabaseKeys(<current hidden>, <{len(self.previous)} previous hidden>)"


def load_database_keys(settings: ServerSettings) -> DatabaseKeys:
    """The keys the settings name; ``DatabaseKeyError`` listing every problem otherwise."""
    problems: list[str] = []
    current = _current_key(settings, problems)
    previous = _previous_keys(settings, problems)
    if problems:
        raise DatabaseKeyError(problems)
    assert current is not None  # every path without a key added a problem
    return DatabaseKeys(current, tuple(k for k in previous if k != current))


def database_key_problems(settings: ServerSettings) -> list[str]:
    """Every reason ``load_database_keys`` would fail (for ``validate_security``)."""
    try:
        load_database_keys(settings)
    except DatabaseKeyError as exc:
        return exc.problems
    return []


def _current_key(settings: ServerSettings, problems: list[str]) -> bytes | None:
    text = settings.database_secret.get_secret_value()
    path = settings.database_secret_file
    if text.strip() and path is not None:
        problems.append(
            f"{CURRENT} (or DRONE_DATABASE_SECRET) and {CURRENT_FILE} are both set: set one"
        )
        return None
    where = CURRENT
    if path is not None:
        where = f"{CURRENT_FILE} ({path})"
        read = _read_key_file(path, CURRENT_FILE, problems)
        if read is None:
            return None
        text = read
    if not text.strip():
        problems.append(
            f"{CURRENT} (or DRONE_DATABASE_SECRET) is not set, nor {CURRENT_FILE}: it "
            f"encrypts repository secrets at rest; {_HINT} (or start with --dev)"
        )
        return None
    try:
        return key_from_text(text)
    except WeakKeyError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _previous_keys(settings: ServerSettings, problems: list[str]) -> list[bytes]:
    entries: list[tuple[str, str]] = []
    listed = settings.database_secret_previous.get_secret_value().split(",")
    for number, text in enumerate(listed, start=1):
        if text.strip():
            entries.append((f"{PREVIOUS} (entry {number})", text))
    path = settings.database_secret_previous_file
    if path is not None:
        content = _read_key_file(path, PREVIOUS_FILE, problems)
        for number, line in enumerate((content or "").splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                entries.append((f"{PREVIOUS_FILE} ({path}, line {number})", line))
    keys: list[bytes] = []
    for where, text in entries:
        try:
            key = key_from_text(text)
        except WeakKeyError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if key not in keys:
            keys.append(key)
    return keys


def _read_key_file(path: Path, setting: str, problems: list[str]) -> str | None:
    try:
        info = path.stat()
    except OSError as exc:
        problems.append(f"{setting}: {path} cannot be read ({exc.strerror or exc})")
        return None
    if not stat.S_ISREG(info.st_mode):
        problems.append(f"{setting}: {path} is not a regular file")
        return None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        problems.append(
            f"{setting}: {path} is readable or writable by its group or others (mode "
            f"{mode:04o}); a database key must be private to the server's user: "
            f"chmod 600 {path} (and consider the key exposed if others could read it)"
        )
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{setting}: {path} cannot be read ({exc})")
        return None
