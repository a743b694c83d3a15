"""Well-known credential formats, detected in build output even when never declared a secret.

A step may print a credential nobody told Bastion about: an AWS key pair from ``aws iam
create-access-key``, a GitHub token in a ``git remote -v``, a private key that ``cat`` or a
debug dump shows. :class:`~bastion.engine.masking.SecretMasker` masks what this module
describes, and replaces it with a marker naming the kind (:func:`marker`, e.g. ``[masked:
github-token]``) rather than ``********``, so that the server, which only ever sees the
marker, can record that a credential of that kind leaked (an audit event) without seeing it.

Each :class:`Detector` is a regular expression anchored at a literal that the masker's
Aho-Corasick automaton finds (the *anchor*, chosen to start with a character that is rare in
build output, so the scan stays fast); the expression runs only where its anchor occurs.
Kinds (:data:`KINDS`):

* ``aws-access-key-id``: ``AKIA`` or ``ASIA`` and 16 upper-case letters or digits, not part
  of a longer base64 or alphanumeric run (base64 of ordinary text may contain ``AKIA``);
* ``aws-secret-access-key``: 40 base64 characters after ``aws_secret_access_key``,
  ``AWS_SECRET_ACCESS_KEY`` (any case) or ``SecretAccessKey`` and ``=`` or ``:`` (quotes and
  blanks allowed): the value alone has no recognisable shape, so only this context is used;
  only the value is masked;
* ``github-token``: ``ghp_ gho_ ghu_ ghs_ ghr_`` and 36 or more alphanumerics,
  ``github_pat_`` and 22 or more;
* ``gitlab-token``: ``glpat-`` and 20 or more of ``A-Z a-z 0-9 _ -``;
* ``slack-token``: ``xoxa- xoxb- xoxp- xoxr-`` and 10 or more of ``A-Z a-z 0-9 -``;
* ``private-key``: a ``-----BEGIN ... PRIVATE KEY-----`` header (PKCS#1, PKCS#8, EC,
  OpenSSH, encrypted, ``PGP PRIVATE KEY BLOCK``). The masker masks from the header through the
  matching ``-----END ... PRIVATE KEY-----`` (:data:`KEY_END`), every line of it, or through
  :data:`KEY_BLOCK_MAX_LINES` line breaks when no end comes (a truncated key is still a key;
  a header printed alone, by a linter say, costs at most that many masked lines).

Variable-length tokens are matched up to :data:`MAX_TOKEN` characters, so that every match
is at most :data:`LONGEST` long: the masker holds back that much of a stream, and a match
cut by a write is found whole in the next one.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

MAX_TOKEN = 255
KEY_BLOCK_MAX_LINES = 256
MARKER_PREFIX = "[masked: "
# The marker as the server finds it in stored lines.
MARKER_PATTERN = re.compile(r"\[masked: ([a-z0-9-]{1,40})\]")

_ALNUM = string.ascii_letters + string.digits
_BASE64 = frozenset(_ALNUM + "+/=")
_TOKEN_NEIGHBOURS = frozenset(_ALNUM + "_")

_KEY_LABEL = r"(?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-----"
KEY_END = re.compile(r"-----END " + _KEY_LABEL)
# No END line is longer than this: a stream keeps this much of a block's current line to
# find an END marker split across writes.
KEY_END_LONGEST = len("-----END ") + 4 * 21 + len("PRIVATE KEY BLOCK-----")


def marker(kind: str) -> str:
    """The text that replaces a detected credential of ``kind``."""
    return f"{MARKER_PREFIX}{kind}]"


@dataclass(frozen=True, slots=True)
class Detector:
    """One credential format. ``pattern`` is matched at the start computed from an anchor hit;
    ``group`` is what gets masked (0: the whole match); ``not_after``: characters that may not
    precede the match (it would be part of a longer run); ``block``: a private key header, the
    start of a multi-line block."""

    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    not_after: frozenset[str] = frozenset()
    block: bool = False

    def find(self, text: str, start: int, before: str) -> tuple[int, int] | None:
        """The masked span of a match at ``start`` in ``text``, or ``None``. ``before``: the
        character that preceded ``text`` in its stream (``""`` at its start)."""
        previous = text[start - 1] if start else before
        if previous and previous in self.not_after:
            return None
        found = self.pattern.match(text, start)
        if found is None:
            return None
        return found.span(self.group)


_AWS_KEY_ID = Detector(
    "aws-access-key-id",
    re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9+/=])"),
    not_after=_BASE64,
)
_AWS_SECRET = Detector(
    "aws-secret-access-key",
    re.compile(
        r"(?:(?i:aws_secret_access_key)|SecretAccessKey)[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?"
        r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
    ),
    group=1,
)
_GITHUB = Detector(
    "github-token",
    re.compile(
        rf"(?:gh[pousr]_[A-Za-z0-9]{{36,{MAX_TOKEN}}}|github_pat_[A-Za-z0-9_]{{22,{MAX_TOKEN}}})"
    ),
    not_after=_TOKEN_NEIGHBOURS,
)
_GITLAB = Detector(
    "gitlab-token",
    re.compile(rf"glpat-[A-Za-z0-9_-]{{20,{MAX_TOKEN}}}"),
    not_after=_TOKEN_NEIGHBOURS,
)
_SLACK = Detector(
    "slack-token",
    re.compile(rf"xox[abpr]-[A-Za-z0-9-]{{10,{MAX_TOKEN}}}"),
    not_after=_TOKEN_NEIGHBOURS,
)
_PRIVATE_KEY = Detector("private-key", re.compile(r"-----BEGIN " + _KEY_LABEL), block=True)

# (anchor, offset of the anchor in a match, detector). The anchors start with few distinct
# characters, each rare in build output (see ``_LOG_CHARACTER_PERCENT`` in the masker): each
# one is a child of the automaton's root, which every character of the log is looked up
# in. A detector whose match starts with a common character is anchored further in.
ANCHORS: tuple[tuple[str, int, Detector], ...] = (
    ("AKIA", 0, _AWS_KEY_ID),
    ("ASIA", 0, _AWS_KEY_ID),
    ("_access_key", 10, _AWS_SECRET),
    ("ACCESS_KEY", 11, _AWS_SECRET),
    ("Access_Key", 11, _AWS_SECRET),
    ("AccessKey", 6, _AWS_SECRET),
    *((f"gh{letter}_", 0, _GITHUB) for letter in "pousr"),
    ("github_pat_", 0, _GITHUB),
    ("glpat-", 0, _GITLAB),
    *((f"xox{letter}-", 0, _SLACK) for letter in "abpr"),
    ("BEGIN ", 5, _PRIVATE_KEY),
)

KINDS = tuple(sorted({detector.kind for _, _, detector in ANCHORS}))

# The longest match of any detector: the AWS secret's context (key name, quotes, blanks,
# value), a token with its prefix, a private key header.
LONGEST = max(
    len("aws_secret_access_key") + 2 * (1 + 8) + 1 + 40,
    len("github_pat_") + MAX_TOKEN,
    len("-----BEGIN ") + 4 * 21 + len("PRIVATE KEY BLOCK-----"),
)
