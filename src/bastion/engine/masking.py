"""Secret masking for build logs: every known form of every secret becomes ``********``.

A step's output is untrusted text that may print a secret it was given, on purpose or by
accident, and not only verbatim: ``echo -n "user:$TOKEN" | base64``, a URL with the token in
its query string, a JSON document, a hex dump. Drone masks only the raw value, per line and
per write; Woodpecker skips encodings and garbles multi-line secrets. This module masks, for
each secret value (see :func:`secret_forms`):

* the value itself, and the value without surrounding whitespace;
* every line of a multi-line value, stripped (a PEM key printed line by line);
* base64 in the standard and the URL-safe alphabet, at each of the three byte alignments
  (see below): the *stable core*, and the encoding through its end, with and without
  padding, for a value at the end of the encoded data;
* URL encoding (``quote`` with ``safe=""``, with the default ``safe="/"``, and ``quote_plus``);
* the JSON string escape (``json.dumps`` with and without ``ensure_ascii``);
* hex of the UTF-8 bytes, lowercase and uppercase.

The encoded forms are computed for the whole value, for the stripped value and for each line.
Any form also matches when wrapped over several lines, as ``base64`` and ``xxd -p`` print it
(see *Wrapped base64* below).

**JSON secrets.** A value that is a JSON object or array (a GCP service-account key, a
Docker ``config.json``) is printed in parts far more often than whole: ``jq -r
.private_key``, a client id in a URL. So each string leaf at least ``MIN_SECRET_LENGTH``
long, and each number leaf at least :data:`JSON_NUMBER_MIN_LENGTH` characters long (as
written), is a secret of its own, with all the forms above. Keys are not masked, nor true,
false and null; every leaf is, including public ones such as a key file's ``auth_uri``: the
masker cannot tell which leaves are secret.

**Credentials nobody declared.** With ``detect`` (the default), the masker also masks the
well-known credential formats of :mod:`bastion.engine._credentials` (AWS key ids and secret
keys in their usual context, GitHub, GitLab and Slack tokens, private key blocks), replacing
each with a marker naming its kind, ``[masked: github-token]``
(:func:`credential_marker`), so that the server can audit the leak from the marker alone
(:func:`credential_kinds_in`). A detector is one more kind of anchor in the same automaton
(its literal prefix), checked with a regular expression where the anchor occurs, in the text
itself (not across joins), so it costs little more than a secret. Where a detected credential
overlaps a declared secret, the secret's ``********`` wins (it is not an undeclared leak); a
private key block wins over everything within it (a key printed is worth an audit event,
declared or not). A private key block runs from its
``-----BEGIN ... PRIVATE KEY-----`` header through the matching END line, across line breaks
and writes: each line of it becomes one marker (its line breaks and indentation kept); the
stream remembers that a block is open and how many lines it has run, and a block with no END
ends after ``KEY_BLOCK_MAX_LINES`` line breaks.

**Base64 inside a longer text.** ``base64("user:" + secret)`` does not contain
``base64(secret)``: base64 maps 3-byte groups to 4 characters, so what the secret becomes
depends on how many bytes precede it modulo 3. For ``k`` in 0, 1, 2 we encode ``k`` filler
bytes + the value and keep only the characters whose 6 bits all come from the value: the
first ``ceil(8k/6)`` characters mix in the unknown prefix, and the characters from
``floor(8(k+n)/6)`` on mix in the unknown following bytes or the padding. A core shorter than
6 characters is dropped: it would mask random base64 text too often (short values are still
masked when encoded alone). When the value ends the encoded data (``"user:" + secret``), the
characters from ``floor(8(k+n)/6)`` on depend only on the value and the padding, so the
encoding through its end is a form too.

**One automaton, searched for anchors.** All forms of all secrets go into a single
Aho-Corasick automaton (pyahocorasick), so a chunk of output is scanned once, in C, whatever
the number of patterns; Python code runs per *candidate* only, and the common case has none.
pyahocorasick follows failure links and finds a character in a trie node by scanning the
node's children as a list, so its speed depends on the shape of the trie. With every form
inserted whole, the root has a child for nearly every letter and digit, most log characters
walk into the trie, and throughput was 40-50 MB/s with 50 secrets, less with 200: short of
the 50 MB/s target. So the automaton holds, for each form, an *anchor*: a substring of 6 to
12 characters that starts with a character rare in build output (``Z``, ``Q``, ``F``, ...).
The anchor characters are chosen as a weighted set cover (few distinct characters, each
rare), so the root has a handful of children and most log characters fail there at once:
about 3 to 4 times faster (``docs/benchmarks.md``). Each anchor hit is checked against the
whole forms it stands for with ``str.startswith``: only exact occurrences of a form count,
so anchors change the speed, never the result.

**Overlaps.** Matches may overlap (a secret containing another, two occurrences sharing
characters): their intervals are merged, and each merged interval (also two that touch)
becomes one replacement, so no character of a secret is left between two replacements and
the output does not show where one secret ends and the next begins.

**Wrapped base64.** ``base64`` (coreutils, busybox) and Python's ``base64.encodebytes`` wrap
their output at 76 columns, ``openssl base64`` and PEM at 64, ``xxd -p`` (hex) at 60: the
encoding of ``"user:" + secret`` is split over two or more lines for a secret longer than
about 50 characters, and no form matches any of its pieces. So some line breaks are
*joins*: a line break (``\\n`` or ``\\r\\n``) whose line ends with at least
:data:`WRAP_MIN_WIDTH` (40) characters of the base64 alphabets (``A-Z a-z 0-9 + / - _``, no
``=``: padding ends the data), together with the spaces and tabs that indent the next line.
Matches are searched in the text *without its joins*, with the same automaton, so a form may
run across any number of joins; each match is mapped back to the original positions. Every
line piece of a masked range becomes one replacement and the joins are kept: the line
structure shows (the head of the first line, which encodes ``"user:"``, and the line count
are visible), no character of the encoded secret does. The rule looks at the line before the
break only, which is what a stream can decide at once and what covers the usual shapes: a
whole base64 line at any width of 40 or more, a first line with a prefix (``Authorization:
Basic $(... | base64)``, a ``set -x`` trace), the last line of the block, whatever follows
it, YAML-indented continuation lines. Joining more lines than a wrapper produced costs
nothing in safety (a match needs a whole form) and almost never masks more (a form would have
to run across the join by chance). Not joined, so still a leak: a line with trailing
whitespace after the base64, continuation lines with a prefix other than indentation
(``docker build`` prefixes every output line with its step and time), ``\\r``-only line
endings.

**Streaming and hold-back.** Output arrives in arbitrary chunks, so a secret may be split
across writes, even one character per write. No form contains a line break (``\\n`` or
``\\r``; forms that would are dropped, their lines are masked one by one), so no match
crosses one that is not a join: text up to the last such line break is final and is
emitted masked at once. A line that ends with 40 base64 characters is held back until the
next line ends, since that one may complete a match; ordinary lines are not delayed. Of the
text after the last final line break, everything but the last ``longest_form - 1``
characters (not counting joins) is final too: a match that is not complete yet must start
within that tail. This also bounds what is held back for an endless base64 dump. A match
that is complete and straddles the cut is emitted as one replacement per line piece and its
remainder is remembered, so the streamed output is exactly ``mask`` of the whole text,
however it was split. The stream remembers how many base64 characters end the part of the
current line it has emitted, to decide about the next line break. The detector's matches are
at most ``_credentials.LONGEST`` (266) characters long and count in ``longest_form``. A
private key block is the exception to "no match crosses a line break": it is found by its
header (a match like the others), and from there on it is a state of the stream (a block is
open, so many line breaks of it were emitted), which masks whatever comes until the END
marker; an END marker is never split by a cut, since an incomplete one starts within the
held-back tail.
:meth:`MaskingStream.line` masks a text that arrives as complete lines (the server's), with
nothing held back.

**Cost.** When no line ends with 40 base64 characters (most of a build log), finding the
joins is one regular-expression scan in C that starts at line breaks only: the automaton
then searches the text itself, as before. Otherwise the text without its joins is built in C
(``re.split``, ``str.join``) and Python code runs per match and per held-back line.

Values shorter than :data:`MIN_SECRET_LENGTH` characters are refused
(:class:`SecretTooShortError`): masking ``"ab"`` everywhere would garble the logs and reveal
the value by where the replacements appear, and not masking it would leak it.
"""

from __future__ import annotations

import base64
import json
import re
import string
import urllib.parse
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import accumulate

import ahocorasick

from bastion.engine import _credentials
from bastion.engine._credentials import KINDS, Detector

MIN_SECRET_LENGTH = 4
REPLACEMENT = "********"
# A number leaf of a JSON secret is masked from this length: shorter numbers (ports, years,
# counts, versions) are everywhere in logs and carry little of the secret.
JSON_NUMBER_MIN_LENGTH = 8

# A base64 core shorter than this (36 bits) would match unrelated base64 text too often.
_MIN_BASE64_CORE_LENGTH = 6

# No pattern contains these, so text up to the last of them in a buffer is final.
_LINE_BREAKS = ("\n", "\r")

# Wrapped base64 (see the module docstring): a line break is a join when its line ends with
# at least this many characters of the base64 alphabets, padding excluded.
WRAP_MIN_WIDTH = 40
_BASE64_CHARACTERS = string.ascii_letters + string.digits + "+/-_"
_BASE64_SET = frozenset(_BASE64_CHARACTERS)
_BASE64_CLASS = "[A-Za-z0-9+/_-]"
# ``split`` patterns: the join (captured) between the pieces of the text without its joins.
# Both start with the literal "\n", so that the scan skips to line breaks in C; the look-
# behind checks the end of the line. The second one also joins at "\r\n" (the "\r" ends up
# at the end of the piece before the join and is moved into the join): it is slower, and
# used only for text that has a "\r\n".
_JOIN_LF = re.compile(rf"(\n(?<={_BASE64_CLASS}{{{WRAP_MIN_WIDTH}}}\n)[ \t]*)")
_JOIN_CRLF = re.compile(
    rf"(\n(?:(?<={_BASE64_CLASS}{{{WRAP_MIN_WIDTH}}}\n)"
    rf"|(?<={_BASE64_CLASS}{{{WRAP_MIN_WIDTH}}}\r\n))[ \t]*)"
)
# Inside a masked range every line break belongs to a join (or to a private key block, which
# may have "\r" alone too): this splits the range at them.
_JOINS_IN_RANGE = re.compile(r"(\r\n[ \t]*|[\r\n][ \t]*)")
_INDENTATION = re.compile(r"[ \t]*")
_BASE64_RUN = re.compile(rf"{_BASE64_CLASS}{{{WRAP_MIN_WIDTH}}}")

# ``mask`` of a text longer than this goes through a stream in slices of this size, so that
# the automaton's UCS-4 copy of its input stays small.
_MASK_SLICE = 1 << 20

# Anchors: a substring of each form, at most this long (longer: fewer false candidates) and
# at least the shorter of the form and the minimum (shorter anchors would hit too often).
_ANCHOR_LENGTH = 12
_MIN_ANCHOR_LENGTH = 6

# Approximate share (percent) of each character in build output: compiler, test and package
# manager lines, paths, hashes, timestamps. Only the speed depends on it (see the module
# docstring): anchors start with characters that are rare here. Unlisted: 0.001.
_LOG_CHARACTER_PERCENT = {
    char: percent
    for percent, chars in (
        (14.0, " "),
        (8.0, "e"),
        (6.0, "t"),
        (5.0, "aoinsr"),
        (3.0, "lcd"),
        (2.5, "u"),
        (2.0, "mph.\n"),
        (1.5, "g01/-"),
        (1.2, "2"),
        (1.0, "bf_:"),
        (0.8, "yw3"),
        (0.7, "v45"),
        (0.6, "68"),
        (0.5, "k79=,"),
        (0.4, "E"),
        (0.3, "xTASI()[]'\"\t"),
        (0.2, "ONRLCDP\x1b"),
        (0.15, "UM"),
        (0.1, "jqzHGBF%#"),
        (0.08, "W"),
        (0.05, "YVK+@*{}"),
        (0.03, "X<>|;!&$"),
        (0.02, "JQZ\\?"),
        (0.01, "~^`"),
    )
    for char in chars
}
_UNLISTED_PERCENT = 0.001

# In the set cover, a character costs 1 for joining the root (one more comparison for every
# log character that fails there) plus this times its share of the log (each occurrence
# walks into the trie). Measured on the benchmark log: 100 is near the best.
_DESCENT_COST = 100.0


class SecretTooShortError(ValueError):
    """One or more secret values are too short to be masked.

    The message names the secrets, never their values, so it is safe to show and to log.
    """

    def __init__(self, lengths: Mapping[str, int]) -> None:
        self.names = tuple(lengths)
        described = "; ".join(
            f"secret {name!r} is {length} character{'' if length == 1 else 's'} long"
            for name, length in lengths.items()
        )
        super().__init__(
            f"{described}; secrets shorter than {MIN_SECRET_LENGTH} characters cannot be "
            "masked without garbling the logs - use a longer value"
        )


def validate_secrets(secrets: Mapping[str, str]) -> None:
    """Refuse the secrets whose value (without surrounding whitespace) is too short to mask.

    All offending secrets are reported in one error, by name.
    """
    too_short = {
        name: len(value.strip())
        for name, value in secrets.items()
        if len(value.strip()) < MIN_SECRET_LENGTH
    }
    if too_short:
        raise SecretTooShortError(too_short)


def credential_marker(kind: str) -> str:
    """What replaces a detected credential of ``kind`` (one of :data:`CREDENTIAL_KINDS`)."""
    return _credentials.marker(kind)


CREDENTIAL_KINDS: tuple[str, ...] = KINDS


def credential_kinds_in(text: str) -> set[str]:
    """The kinds of the credential markers in ``text`` (masked output): what was detected.

    Only known kinds count. A step can print a marker itself; that costs it an audit event
    per kind, never a value."""
    if _credentials.MARKER_PREFIX not in text:
        return set()
    kinds = set(_credentials.MARKER_PATTERN.findall(text))
    return kinds & set(KINDS)


def secret_forms(value: str) -> frozenset[str]:
    """Every text form in which ``value`` must be masked (see the module docstring)."""
    candidates: set[str] = set()
    for item in (value, *_json_leaves(value)):
        candidates.update((item, item.strip()))
        # Lines are stripped: indentation is not secret, and the stripped line also matches
        # inside a line printed with different indentation. Blank and short lines are
        # skipped: a multi-line secret often has short lines (a PEM trailer's "==", a lone
        # "}" of a JSON key file) that are not secret on their own, and masking them would
        # garble every log line containing them, while the secret's long lines carry its
        # entropy.
        candidates.update(line.strip() for line in item.splitlines())
    forms: set[str] = set()
    for candidate in candidates:
        if len(candidate.strip()) >= MIN_SECRET_LENGTH:
            forms.update(_encoded_forms(candidate))
    # A form with a line break can never match: streams are cut at line breaks (see the
    # module docstring). Such a value is masked through its lines, and its encoded forms
    # (base64, JSON "\n", URL "%0A") have no raw line break.
    return frozenset(
        form for form in forms if form and not any(brk in form for brk in _LINE_BREAKS)
    )


class _Number(str):
    """A number leaf of a JSON secret, as written in it."""

    __slots__ = ()


def _json_leaves(value: str) -> list[str]:
    """The string leaves, and the number leaves of at least :data:`JSON_NUMBER_MIN_LENGTH`
    characters, of a value that is a JSON object or array; ``[]`` for any other value."""
    stripped = value.strip()
    if not stripped.startswith(("{", "[")):
        return []
    try:
        document = json.loads(stripped, parse_int=_Number, parse_float=_Number)
    except (ValueError, RecursionError):
        return []
    leaves: list[str] = []
    stack: list[object] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, _Number):
            if len(node) >= JSON_NUMBER_MIN_LENGTH:
                leaves.append(str(node))
        elif isinstance(node, str) and len(node.strip()) >= MIN_SECRET_LENGTH:
            leaves.append(node)
    return leaves


def _encoded_forms(text: str) -> set[str]:
    raw = text.encode("utf-8", errors="surrogatepass")
    forms = {
        text,
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote(text),
        urllib.parse.quote_plus(text),
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        raw.hex(),
        raw.hex().upper(),
    }
    for standard in _base64_forms(raw):
        forms.add(standard)
        forms.add(standard.translate(_URL_SAFE_ALPHABET))
    return forms


_URL_SAFE_ALPHABET = str.maketrans("+/", "-_")


def _base64_forms(raw: bytes) -> list[str]:
    """Standard-alphabet base64 forms of ``raw`` at each of the 3 alignments: the stable
    core (the value inside longer data), and the core through the end of the encoding,
    with and without padding (the value ends the data, as in ``"user:" + secret``: then
    the last characters depend on the value only). Alignment 0 includes the plain
    encoding of the value alone."""
    forms: list[str] = []
    for prefix_length in range(3):
        encoded = base64.b64encode(bytes(prefix_length) + raw).decode("ascii")
        first = -(-8 * prefix_length // 6)  # ceil: the first character free of the prefix
        end = 8 * (prefix_length + len(raw)) // 6  # the first character touching what follows
        for form in (encoded[first:end], encoded[first:], encoded[first:].rstrip("=")):
            if len(form) >= _MIN_BASE64_CORE_LENGTH or prefix_length == 0:
                forms.append(form)
    return forms


def _log_share(char: str) -> float:
    return _LOG_CHARACTER_PERCENT.get(char, _UNLISTED_PERCENT) / 100.0


def _choose_anchors(forms: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """Map each anchor to the ``(offset of the anchor in the form, form)`` pairs it stands for.

    Greedy weighted set cover: repeatedly take the character that can start an anchor in the
    most forms not yet covered, per unit of cost (see ``_DESCENT_COST``). Deterministic.
    """
    starts: dict[str, str] = {}  # form -> the characters an anchor of it may start with
    for form in sorted(forms):
        shortest = min(_MIN_ANCHOR_LENGTH, len(form))
        starts[form] = form[: len(form) - shortest + 1]
    uncovered = list(starts)
    anchors: dict[str, list[tuple[int, str]]] = {}
    while uncovered:
        counts = Counter(char for form in uncovered for char in set(starts[form]))
        chosen = max(
            sorted(counts), key=lambda char: counts[char] / (1.0 + _DESCENT_COST * _log_share(char))
        )
        remaining = []
        for form in uncovered:
            offset = starts[form].find(chosen)
            if offset < 0:
                remaining.append(form)
            else:
                anchor = form[offset : offset + _ANCHOR_LENGTH]
                anchors.setdefault(anchor, []).append((offset, form))
        uncovered = remaining
    return anchors


def _insertion_key(anchor: str) -> list[float]:
    # pyahocorasick scans a node's children in insertion order: frequent characters first
    # make the lookups that succeed short.
    return [-_log_share(char) for char in anchor]


def _base64_run(text: str, end: int) -> int:
    """How many base64 characters end ``text[:end]``, counting at most ``WRAP_MIN_WIDTH``."""
    tail = text[max(0, end - WRAP_MIN_WIDTH) : end]
    return len(tail) - len(tail.rstrip(_BASE64_CHARACTERS))


class _Joined:
    """A text without its joins (see the module docstring), and the way back to positions in
    the text. Built only for a text that has joins."""

    __slots__ = ("_shifts", "_starts", "text")

    def __init__(self, parts: list[str]) -> None:
        # ``parts`` alternate: piece, join, piece, ..., piece.
        self.text = "".join(parts[0::2])
        # For each join: the position in ``self.text`` of the character after it, and the
        # length of the joins up to and including it.
        self._starts = list(accumulate(map(len, parts[0:-1:2])))
        self._shifts = list(accumulate(map(len, parts[1::2])))

    def position(self, joined: int) -> int:
        """The position in the text of the character at ``joined`` in ``self.text``."""
        count = bisect_right(self._starts, joined)
        return joined + self._shifts[count - 1] if count else joined


def _joined(text: str, head_run: int) -> _Joined | None:
    """``text`` without its joins, or ``None`` when it has none (the common case).

    ``head_run``: how many base64 characters (at most ``WRAP_MIN_WIDTH``) end the part of
    the line of ``text[0]`` that came before ``text`` (``0`` at the start of a line).
    """
    # ``"\r" in`` is a memchr; ``"\r\n" in`` costs as much as the pattern's scan.
    crlf = "\r" in text and "\r\n" in text
    parts = (_JOIN_CRLF if crlf else _JOIN_LF).split(text)
    if head_run:
        # The first line's end may be a join only because of characters before ``text``,
        # which the pattern cannot see.
        newline = text.find("\n")
        end = newline - 1 if newline > 0 and text[newline - 1] == "\r" else newline
        if 0 <= end < WRAP_MIN_WIDTH <= head_run + end and not text[:end].lstrip(
            _BASE64_CHARACTERS
        ):
            indentation = _INDENTATION.match(text, newline + 1)
            join_end = indentation.end() if indentation else newline + 1
            rest = (_JOIN_CRLF if crlf else _JOIN_LF).split(text[join_end:])
            parts = [text[:end], text[end:join_end], *rest]
    if len(parts) == 1:
        return None
    if crlf:
        for index in range(1, len(parts), 2):
            if parts[index - 1].endswith("\r"):
                parts[index - 1] = parts[index - 1][:-1]
                parts[index] = "\r" + parts[index]
    return _Joined(parts)


# A merged interval's kind: "" for a declared secret's form, else a detected credential's kind.
# When intervals of several kinds merge, the highest rank names the replacement: a private
# key block (all of it is one, whatever it contains), then a declared secret (a declared
# token printed is masked as a secret, as it always was), then a detected credential.
_PRIVATE_KEY = "private-key"


def _rank(kind: str) -> int:
    return 2 if kind == _PRIVATE_KEY else 0 if kind else 1


# (start, end, kind) of a masked interval; see ``_rank`` for the kind.
_Interval = tuple[int, int, str]


class SecretMasker:
    """Masks every form of a fixed set of secret values, and well-known credentials; see the
    module docstring.

    Building one costs time proportional to the total size of the forms; build it once per
    stage and use :meth:`stream` for each step's output. A masker is immutable and can be
    shared between threads; a stream cannot.

    ``detect``: also mask the credential formats of :mod:`bastion.engine._credentials`
    (undeclared), each with its marker (:func:`credential_marker`). On by default; a masker
    with nothing to mask and ``detect=False`` is :attr:`empty`.

    Raises :class:`SecretTooShortError` for a value too short to mask (named by its position,
    since values have no name here): callers should have called :func:`validate_secrets`,
    which names them; this is the fail-closed backstop.
    """

    def __init__(
        self, secrets: Iterable[str], replacement: str = REPLACEMENT, *, detect: bool = True
    ) -> None:
        values = list(secrets)
        too_short = {
            f"#{position}": len(value.strip())
            for position, value in enumerate(values, start=1)
            if len(value.strip()) < MIN_SECRET_LENGTH
        }
        if too_short:
            raise SecretTooShortError(too_short)
        patterns: set[str] = set()
        for value in values:
            patterns.update(secret_forms(value))
        self._replacement = replacement
        self._markers = {"": replacement} | {kind: credential_marker(kind) for kind in KINDS}
        # A match not complete yet starts within the last ``longest - 1`` characters.
        longest = max(max(map(len, patterns), default=0), _credentials.LONGEST if detect else 0)
        self._hold_back = max(longest - 1, 0)
        self._automaton: ahocorasick.Automaton | None = None
        if patterns or detect:
            # anchor -> (distance from the anchor's last character back to the start, the
            # form, or "" and the detector that runs there)
            entries: dict[str, list[tuple[int, str, Detector | None]]] = {}
            for anchor, pairs in _choose_anchors(patterns).items():
                entries[anchor] = [(offset + len(anchor) - 1, form, None) for offset, form in pairs]
            if detect:
                for anchor, offset, detector in _credentials.ANCHORS:
                    entries.setdefault(anchor, []).append((offset + len(anchor) - 1, "", detector))
            automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY, ahocorasick.KEY_STRING)
            for anchor in sorted(entries, key=_insertion_key):
                automaton.add_word(anchor, tuple(entries[anchor]))
            automaton.make_automaton()
            self._automaton = automaton

    @property
    def empty(self) -> bool:
        """True when there is nothing to mask: text passes through unchanged."""
        return self._automaton is None

    def mask(self, text: str) -> str:
        """Mask a complete text (exactly what a stream fed ``text`` in any chunks returns)."""
        if self._automaton is None or not text:
            return text
        stream = self.stream()
        parts = [
            stream.feed(text[start : start + _MASK_SLICE])
            for start in range(0, len(text), _MASK_SLICE)
        ]
        parts.append(stream.flush())
        return "".join(parts)

    def stream(self) -> MaskingStream:
        """A new stream, for one step's output (streams keep state: never share one)."""
        return MaskingStream(self)

    def _intervals(
        self,
        text: str,
        joined: _Joined | None,
        carried: tuple[int, str] | None,
        before: str,
        block_lines: int | None,
    ) -> tuple[list[_Interval], tuple[int, int] | None]:
        """Merged ``[start, end)`` intervals of all matches in ``text``, and the open key block.

        Matches are searched in ``joined.text`` (``text`` without its joins) when ``text`` has
        joins; intervals are positions in ``text`` and may contain joins, and line breaks
        only in a private key block. ``carried`` is ``(end, kind)`` of a masked interval that
        started before ``text`` (end ``0`` if it ended exactly at its start): it is included
        as ``(0, end)`` so that matches overlapping or touching it merge with it.
        ``before``: the character before ``text`` in its stream (``""`` at its start);
        ``block_lines``: how many line breaks of a key block that ``text`` continues came
        before ``text`` (``None``: no block is open). The open block returned: ``(start,
        line breaks before text)`` of a key block that does not end in ``text``, or ``None``.
        """
        assert self._automaton is not None
        haystack = text if joined is None else joined.text
        spans: list[_Interval] = []
        detected: list[_Interval] = []  # positions in ``text``
        headers: list[_Interval] = []
        # The only full pass over the text: in C, and yields nothing when no anchor occurs.
        for anchor_end, candidates in self._automaton.iter(haystack):
            for back, form, detector in candidates:
                start = anchor_end - back
                # A form starting before the text was dealt with by the previous cut; one
                # running past its end is not complete yet (``startswith`` says False).
                if start < 0:
                    continue
                if detector is None:
                    if haystack.startswith(form, start):
                        spans.append((start, start + len(form), ""))
                else:
                    # Credentials are searched in the text itself: no format runs across a
                    # line break, and a join would put the next line right after a token.
                    if joined is not None:
                        start = joined.position(start)
                    found = detector.find(text, start, before)
                    if found is not None:
                        (headers if detector.block else detected).append((*found, detector.kind))
        if joined is not None:
            spans = [
                (joined.position(start), joined.position(end - 1) + 1, kind)
                for start, end, kind in spans
            ]
        spans.extend(detected)
        open_block: tuple[int, int] | None = None
        if block_lines is not None or headers:
            open_block = _key_blocks(text, spans, sorted(headers), block_lines)
        if carried is not None:
            spans.append((0, *carried))
        if not spans:
            return spans, open_block
        spans.sort()
        merged = [spans[0]]
        for start, end, kind in spans[1:]:
            last_start, last_end, last_kind = merged[-1]
            if start <= last_end:  # overlapping or touching: one replacement
                if _rank(kind) > _rank(last_kind):
                    last_kind = kind
                merged[-1] = (last_start, max(end, last_end), last_kind)
            else:
                merged.append((start, end, kind))
        return merged, open_block


def _key_blocks(
    text: str, spans: list[_Interval], headers: list[_Interval], block_lines: int | None
) -> tuple[int, int] | None:
    """Add to ``spans`` the private key blocks of ``text``: the one it continues (``block_lines``
    not ``None``) and one for each header outside a block. Returns the open block (see
    ``SecretMasker._intervals``)."""
    position = 0
    if block_lines is not None:
        end, closed = _key_block_end(text, 0, block_lines)
        spans.append((0, end, _PRIVATE_KEY))
        if not closed:
            return (0, block_lines)
        position = end
    for start, header_end, _kind in headers:
        if start < position:
            continue  # a header inside a block: part of it
        end, closed = _key_block_end(text, header_end, 0)
        spans.append((start, end, _PRIVATE_KEY))
        if not closed:
            return (start, 0)
        position = end
    return None


def _key_block_end(text: str, position: int, lines: int) -> tuple[int, bool]:
    """Where a key block that reaches ``position`` ends in ``text``: after its END marker,
    or at its ``KEY_BLOCK_MAX_LINES``-th line break (``lines`` came before ``text``); and
    whether it ends in ``text`` at all (else it runs to the end of ``text``)."""
    limit, capped = len(text), False
    remaining = _credentials.KEY_BLOCK_MAX_LINES - lines
    if remaining <= 0:
        return position, True
    index = position
    for _ in range(remaining):
        index = text.find("\n", index)
        if index < 0:
            break
        index += 1
    else:
        limit, capped = index - 1, True
    # An END marker is never cut by a write: an incomplete one starts within the hold-back.
    found = _credentials.KEY_END.search(text, position, limit)
    if found is not None:
        return found.end(), True
    return (limit, True) if capped else (len(text), False)


class MaskingStream:
    """Masks one output stream fed in arbitrary chunks; see the module docstring.

    ``feed`` returns the text that is final now, masked; ``flush`` returns the rest. The
    concatenation of all returned strings equals ``masker.mask`` of the concatenated input.
    """

    def __init__(self, masker: SecretMasker) -> None:
        self._masker = masker
        self._hold_back = masker._hold_back
        self._pending: list[str] = []  # not yet emitted; never starts inside a join
        self._pending_length = 0
        # ``(reach, kind)`` of a replacement already emitted that reaches into the pending
        # text, or None.
        self._carried: tuple[int, str] | None = None
        # How many base64 characters (at most WRAP_MIN_WIDTH) end the emitted part of the
        # line that the pending text continues: it decides whether that line ends in a join.
        self._head_run = 0
        # The last character emitted (a detector must not start within a longer run).
        self._before = ""
        # Line breaks emitted of an open private key block, or None.
        self._block_lines: int | None = None
        # The carried replacement's current line piece has had its replacement emitted.
        self._marked = False

    def feed(self, data: str) -> str:
        """Add a chunk of output; return the masked text that is safe to emit now."""
        if self._masker.empty:
            return data
        if not data:
            return ""
        before = self._pending_length
        self._pending.append(data)
        self._pending_length += len(data)
        # Without a line break, wait until at least as much can be emitted as must be held
        # back: rescanning the held-back tail is then at most half of the work, even when
        # the output arrives one character at a time.
        small = self._pending_length <= 2 * self._hold_back
        if small and not any(brk in data for brk in _LINE_BREAKS):
            return ""
        text = "".join(self._pending)
        # Both bounds below are safe; the larger emits more.
        if small:
            # The pending text had no final line break (but for a trailing "\r"): look at
            # the new ones, and wait as above if they are all joins (a wrapped base64 block
            # fed line by line).
            line_end = self._final_line_end(text, max(before - 1, 0))
            if not line_end:
                self._pending = [text]
                return ""
            joined = _joined(text, self._head_run)
            cut = line_end
            if line_end < len(text):
                cut = max(line_end, self._hold_back_cut(text, joined))
        else:
            joined = _joined(text, self._head_run)
            cut = self._hold_back_cut(text, joined)
            cut = max(cut, self._final_line_end(text, cut))
        if not cut:
            self._pending = [text]
            return ""
        return self._emit(text, cut, joined)

    def flush(self) -> str:
        """End of the stream: return the masked remainder. The stream can then be reused."""
        text = "".join(self._pending)
        masked = ""
        if text and not self._masker.empty:
            masked = self._emit(text, len(text), _joined(text, self._head_run))
        self._reset()
        return masked

    def line(self, text: str) -> str:
        """Mask one complete line (without its line break) of a text that arrives line by
        line, as the server stores it: nothing is held back, but a private key block that
        starts on a line goes on masking the next lines. Not to be mixed with ``feed``."""
        if self._masker.empty:
            return text
        whole = text + "\n"
        masked = self._emit(whole, len(whole), None)
        # An open block goes on at the start of the next line (like a stream cut there).
        self._carried = None if self._block_lines is None else (0, _PRIVATE_KEY)
        self._head_run, self._before, self._marked = 0, "\n", False
        return masked[:-1]

    def _reset(self) -> None:
        self._pending, self._pending_length = [], 0
        self._carried, self._head_run, self._before, self._block_lines = None, 0, "", None
        self._marked = False

    def _final_line_end(self, text: str, floor: int) -> int:
        """The position after the last line break at ``floor`` or later in ``text`` that is
        not, and cannot become, part of a join; ``0`` if there is none.

        Decides each line break as ``_joined`` does, from the end of its line only.
        """
        position = len(text)
        while True:
            brk = max(text.rfind("\n", floor, position), text.rfind("\r", floor, position))
            if brk < 0:
                return 0
            if text[brk] == "\n":
                end = brk - 1 if brk and text[brk - 1] == "\r" else brk
                if end >= WRAP_MIN_WIDTH:
                    join = _BASE64_RUN.match(text, end - WRAP_MIN_WIDTH, end) is not None
                else:
                    join = self._run(text, end) >= WRAP_MIN_WIDTH
                if not join:
                    return brk + 1
                position = end  # a join: its line is not final
            elif brk + 1 < len(text):
                if text[brk + 1] != "\n":
                    return brk + 1  # a "\r" alone: never part of a join
                position = brk  # (not reached: the "\n" after it came first, and was a join)
            elif self._run(text, brk) < WRAP_MIN_WIDTH:
                return brk + 1  # a trailing "\r" that cannot start a "\r\n" join
            else:
                position = brk  # a trailing "\r" that may start a "\r\n" join

    def _hold_back_cut(self, text: str, joined: _Joined | None) -> int:
        """The position after which ``hold_back`` characters of ``text`` without its joins
        remain (a trailing "\\r" is not counted: it may yet become part of a join)."""
        haystack = text if joined is None else joined.text
        end = len(haystack) - haystack.endswith("\r") - self._hold_back
        if end <= 0:
            return 0
        # Just after a character of ``joined.text``: never between a join and the line piece
        # after it.
        return end if joined is None else joined.position(end - 1) + 1

    def _run(self, text: str, end: int) -> int:
        """How many base64 characters (at most ``WRAP_MIN_WIDTH``) end the current line's
        text up to ``text[:end]``, counting the emitted part."""
        if not end:
            return self._head_run
        if text[end - 1] not in _BASE64_SET:  # most lines: no slicing
            return 0
        run = _base64_run(text, end)
        return min(run + self._head_run, WRAP_MIN_WIDTH) if run == end else run

    def _emit(self, text: str, cut: int, joined: _Joined | None) -> str:
        """Mask ``text[:cut]``, emit it, keep the rest pending.

        ``cut`` is never just after a join inside an interval (the callers cut after a
        character of ``joined.text`` or after a line break that is not a join), so a
        replacement that reaches past ``cut`` continues the line piece just before it, or
        (in a key block) may start the next line: ``_marked`` says which.
        """
        masker = self._masker
        carried = self._carried
        intervals, open_block = masker._intervals(
            text, joined, carried, self._before, self._block_lines
        )
        parts: list[str] = []
        position = 0
        reach: tuple[int, str] | None = None
        for start, end, kind in intervals:
            if start >= cut:
                break
            parts.append(text[position:start])
            replacement = masker._markers[kind]
            covered = text[start : min(end, cut)]
            # Across joins or the lines of a key block: one replacement per line piece, the
            # line breaks and the indentation after them kept.
            broken = "\n" in covered or "\r" in covered
            pieces = _JOINS_IN_RANGE.split(covered) if broken else [covered]
            marked = False  # the current piece has its replacement
            for index, piece in enumerate(pieces):
                if index % 2:
                    parts.append(piece)
                    marked = False
                    continue
                body = piece
                if index == 0 and carried is not None and start == 0:
                    # This continues the carried replacement, whose current piece may have
                    # had its replacement already, or only (part of) its indentation.
                    marked = self._marked
                    if not marked:
                        body = piece.lstrip(" \t")
                        parts.append(piece[: len(piece) - len(body)])
                if body and not marked:
                    parts.append(replacement)
                    marked = True
            if end >= cut:
                reach = (end - cut, kind)
                self._marked = marked
                position = cut
                break
            position = end
        parts.append(text[position:cut])
        self._carried = reach
        self._block_lines = None
        if open_block is not None and open_block[0] < cut:
            start, lines = open_block
            self._block_lines = lines + text.count("\n", start, cut)
        self._head_run = self._run(text, cut)
        self._before = text[cut - 1]
        rest = text[cut:]
        self._pending = [rest] if rest else []
        self._pending_length = len(rest)
        return "".join(parts)
