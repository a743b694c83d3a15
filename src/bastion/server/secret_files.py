"""Files holding one secret each (generated keys, bootstrap tokens), readable by the owner only.

Written with ``os.open(path, O_CREAT | O_EXCL, 0o600)`` so the file never exists with looser
permissions, even for an instant, and an existing file is never silently replaced. A file
found with looser permissions is tightened to 0600 before it is read, and a warning says so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("bastion.server")

SECRET_FILE_MODE = 0o600


def write_secret_file(path: Path, value: str, *, replace: bool = False) -> None:
    """Create ``path`` (mode 0600) holding ``value`` and a newline. ``replace``: write a new
    file next to it and rename it over the old one (atomic; still never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = path.with_name(path.name + ".new") if replace else path
    if replace:
        target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        os.fchmod(fd, SECRET_FILE_MODE)  # the umask may only remove bits; be explicit anyway
        os.write(fd, (value + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(target, path)


def read_secret_file(path: Path) -> str | None:
    """The value in ``path`` (stripped), or None when there is no such file or it is empty."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        path.chmod(SECRET_FILE_MODE)
    value = path.read_text(encoding="utf-8").strip()
    return value or None
