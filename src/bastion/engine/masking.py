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

**Streaming and hold-back.** Output arrives in arbitrary chunks, so a secret may be split
across writes, even one character per write. No form contains a line break (``\\n`` or
``\\r``; forms that would are dropped, their lines are masked one by one), so no match
crosses one: text up to the last line break is final and is emitted masked at once. Of an
unterminated line, everything but the last ``longest_form - 1`` characters is final too: a
match that is not complete yet must start within that tail. A match that is complete and
straddles the cut is emitted as one replacement and its remainder is remembered, so the
streamed output is exactly ``mask`` of the whole text, however it was split.

Values shorter than :data:`MIN_SECRET_LENGTH` characters are refused
(:class:`SecretTooShortError`): masking ``"ab"`` everywhere would garble the logs and reveal
the value by where the replacements appear, and not masking it would leak it.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping

import ahocorasick

MIN_SECRET_LENGTH = 4
REPLACEMENT = "********"

# A base64 core shorter than this (36 bits) would match unrelated base64 text too often.
_MIN_BASE64_CORE_LENGTH = 6

# No pattern contains these, so text up to the last of them in a buffer is final.
_LINE_BREAKS = ("\n", "\r")

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


def secret_forms(value: str) -> frozenset[str]:
    """Every text form in which ``value`` must be masked (see the module docstring)."""
    candidates = {value, value.strip()}
    # Lines are stripped: indentation is not secret, and the stripped line also matches
    # inside a line printed with different indentation. Blank and short lines are skipped:
    # a multi-line secret often has short lines (a PEM trailer's "==", a lone "}" of a JSON
    # key file) that are not secret on their own, and masking them would garble every log
    # line containing them, while the secret's long lines carry its entropy.
    candidates.update(line.strip() for line in value.splitlines())
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


class SecretMasker:
    """Masks every form of a fixed set of secret values; see the module docstring.

    Building one costs time proportional to the total size of the forms; build it once per
    stage and use :meth:`stream` for each step's output. A masker is immutable and can be
    shared between threads; a stream cannot.

    Raises :class:`SecretTooShortError` for a value too short to mask (named by its position,
    since values have no name here): callers should have called :func:`validate_secrets`,
    which names them; this is the fail-closed backstop.
    """

    def __init__(self, secrets: Iterable[str], replacement: str = REPLACEMENT) -> None:
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
        # A match not complete yet starts within the last ``longest - 1`` characters.
        self._hold_back = max(max(map(len, patterns), default=0) - 1, 0)
        self._automaton: ahocorasick.Automaton | None = None
        if patterns:
            automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY, ahocorasick.KEY_STRING)
            anchors = _choose_anchors(patterns)
            for anchor in sorted(anchors, key=_insertion_key):
                # The distance from the anchor's last character back to each form's start.
                automaton.add_word(
                    anchor,
                    tuple((offset + len(anchor) - 1, form) for offset, form in anchors[anchor]),
                )
            automaton.make_automaton()
            self._automaton = automaton

    @property
    def empty(self) -> bool:
        """True when there is nothing to mask: text passes through unchanged."""
        return self._automaton is None

    def mask(self, text: str) -> str:
        """Mask a complete text."""
        if self._automaton is None or not text:
            return text
        if len(text) > _MASK_SLICE:
            stream = self.stream()
            parts = [
                stream.feed(text[start : start + _MASK_SLICE])
                for start in range(0, len(text), _MASK_SLICE)
            ]
            parts.append(stream.flush())
            return "".join(parts)
        masked, _ = self._render(text, len(text), None)
        return masked

    def stream(self) -> MaskingStream:
        """A new stream, for one step's output (streams keep state: never share one)."""
        return MaskingStream(self)

    def _intervals(self, text: str, carried: int | None) -> list[tuple[int, int]]:
        """Merged ``[start, end)`` intervals of all matches in ``text``.

        ``carried`` is the end of a masked interval that started before ``text`` (``0`` if it
        ended exactly at its start): it is included as ``(0, carried)`` so that matches
        overlapping or touching it merge with it.
        """
        assert self._automaton is not None
        spans: list[tuple[int, int]] = []
        # The only full pass over the text: in C, and yields nothing when no anchor occurs.
        for anchor_end, candidates in self._automaton.iter(text):
            for back, form in candidates:
                start = anchor_end - back
                # A form starting before the text was dealt with by the previous cut; one
                # running past its end is not complete yet (``startswith`` says False).
                if start >= 0 and text.startswith(form, start):
                    spans.append((start, start + len(form)))
        if carried is not None:
            spans.append((0, carried))
        if not spans:
            return spans
        spans.sort()
        merged = [spans[0]]
        for start, end in spans[1:]:
            last_start, last_end = merged[-1]
            if start <= last_end:  # overlapping or touching: one replacement
                if end > last_end:
                    merged[-1] = (last_start, end)
            else:
                merged.append((start, end))
        return merged

    def _render(self, text: str, cut: int, carried: int | None) -> tuple[str, int | None]:
        """Mask ``text[:cut]``; return it and how far a replacement reaches past ``cut``.

        The second value is ``None`` when no replacement reaches ``cut``; otherwise the
        number of characters after ``cut`` that it covers (possibly ``0``).
        """
        intervals = self._intervals(text, carried)
        if not intervals:
            return text[:cut], None
        parts: list[str] = []
        position = 0
        reach: int | None = None
        for start, end in intervals:
            if start >= cut:
                break
            parts.append(text[position:start])
            # An interval starting at 0 merged with the carried one continues a replacement
            # that was already emitted.
            if not (carried is not None and start == 0):
                parts.append(self._replacement)
            if end >= cut:
                reach = end - cut
                position = cut
                break
            position = end
        parts.append(text[position:cut])
        return "".join(parts), reach


class MaskingStream:
    """Masks one output stream fed in arbitrary chunks; see the module docstring.

    ``feed`` returns the text that is final now, masked; ``flush`` returns the rest. The
    concatenation of all returned strings equals ``masker.mask`` of the concatenated input.
    """

    def __init__(self, masker: SecretMasker) -> None:
        self._masker = masker
        self._hold_back = masker._hold_back
        self._pending: list[str] = []  # not yet emitted; never contains a line break
        self._pending_length = 0
        # How far into the pending text a replacement already emitted reaches, or None.
        self._carried: int | None = None

    def feed(self, data: str) -> str:
        """Add a chunk of output; return the masked text that is safe to emit now."""
        if self._masker.empty:
            return data
        if not data:
            return ""
        self._pending.append(data)
        self._pending_length += len(data)
        # Without a line break, wait until at least as much can be emitted as must be held
        # back: rescanning the held-back tail is then at most half of the work, even when
        # the output arrives one character at a time.
        if self._pending_length <= 2 * self._hold_back and not any(
            brk in data for brk in _LINE_BREAKS
        ):
            return ""
        text = "".join(self._pending)
        # Both bounds are safe; the larger emits more. ``cut >= 1`` here: either ``data``
        # has a line break, or more than ``2 * hold_back`` characters are pending.
        line_end = max(text.rfind(brk) for brk in _LINE_BREAKS) + 1
        return self._emit(text, max(line_end, len(text) - self._hold_back))

    def flush(self) -> str:
        """End of the stream: return the masked remainder. The stream can then be reused."""
        text = "".join(self._pending)
        masked = self._emit(text, len(text)) if text and not self._masker.empty else ""
        self._carried = None
        return masked

    def _emit(self, text: str, cut: int) -> str:
        masked, self._carried = self._masker._render(text, cut, self._carried)
        rest = text[cut:]
        self._pending = [rest] if rest else []
        self._pending_length = len(rest)
        return masked
