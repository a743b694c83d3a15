"""Checks on the names a forge or a pusher hands us: object ids, ref names, file paths.

These values travel into git command lines, API URLs and the build environment. Each is
checked against the shape it must have (a hex object id, a ref name git itself would accept,
a relative path without ``..``) so that a hostile payload is refused at the door instead of
being escaped correctly in every place it later reaches.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from bastion.scm.errors import IgnoredEvent, WebhookError

_HEX_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# git check-ref-format, rule 4 and 5: no control characters, space, ~ ^ : ? * [ or backslash
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")

# a pipeline config over 1 MiB is refused (not truncated) by every forge driver
MAX_FILE_BYTES = 1 << 20

BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"


def is_hex_sha(value: str) -> bool:
    """A full SHA-1 (40) or SHA-256 (64) object name in lower-case hex."""
    return _HEX_SHA.fullmatch(value) is not None


def require_sha(value: str, field: str, what: str) -> str:
    """``value`` if it is a full object id, else ``WebhookError(400)`` naming the field."""
    if not is_hex_sha(value):
        raise WebhookError(400, f"{what}: {field} is not a full commit id: {value[:80]!r}")
    return value


def is_valid_ref(ref: str) -> bool:
    """What ``git check-ref-format`` accepts for a full ref name (``refs/...``)."""
    if not ref.startswith("refs/") or len(ref) > 1024:
        return False
    if _REF_FORBIDDEN.search(ref) or ".." in ref or "@{" in ref or "//" in ref:
        return False
    if ref.endswith(("/", ".")):
        return False
    return all(
        part and not part.startswith(".") and not part.endswith(".lock") for part in ref.split("/")
    )


def require_ref(ref: str, field: str, what: str) -> str:
    if not is_valid_ref(ref):
        raise WebhookError(400, f"{what}: {field} is not a valid git ref: {ref[:200]!r}")
    return ref


def require_branch_name(name: str, field: str, what: str) -> str:
    """A short branch name (``main``, ``feature/x``), checked as ``refs/heads/<name>``."""
    require_ref(BRANCH_PREFIX + name, field, what)
    return name


def classify_push(ref: str, what: str) -> tuple[str, str, str]:
    """``(event, branch, tag)`` for a pushed ref, as Drone names them: a branch is a ``push``
    (branch set), a tag is a ``tag`` (tag set, no branch). Other refs (notes, pull request
    refs written by the forge itself) start no build."""
    require_ref(ref, "ref", what)
    if ref.startswith(BRANCH_PREFIX):
        return "push", ref.removeprefix(BRANCH_PREFIX), ""
    if ref.startswith(TAG_PREFIX):
        return "tag", "", ref.removeprefix(TAG_PREFIX)
    raise IgnoredEvent(f"push to {ref}: only branches and tags start builds")


def normalise_repo_path(path: str) -> str:
    """A file path inside a repository, relative and normalised (``./a//b`` → ``a/b``).

    ``ValueError`` for an empty or absolute path, a ``..`` component, or control characters:
    the config path is set by repository admins, but it reaches git and forge URLs, so it is
    held to the shape of a path inside the tree.
    """
    if not path or "\x00" in path or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise ValueError(f"invalid file path {path!r}: empty or with control characters")
    if path.startswith("/"):
        raise ValueError(f"invalid file path {path!r}: must be relative to the repository")
    if any(part == ".." for part in path.split("/")):
        raise ValueError(f"invalid file path {path!r}: '..' is not allowed")
    normalised = posixpath.normpath(path)
    if normalised in (".", "") or normalised.startswith("../"):
        raise ValueError(f"invalid file path {path!r}: names no file")
    return normalised


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names folded to lower case (HTTP header names are case-insensitive; a plain
    ``dict`` is not, Starlette's ``Headers`` already is)."""
    return {name.lower(): value for name, value in headers.items()}
