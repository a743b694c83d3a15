"""Attacks on the log masker: every form, every split, overlaps, unicode, too-short values."""

from __future__ import annotations

import base64
import json
import random
import string
import urllib.parse
from collections.abc import Callable, Iterable

import pytest

from bastion.engine import masking
from bastion.engine.masking import (
    MIN_SECRET_LENGTH,
    REPLACEMENT,
    SecretMasker,
    SecretTooShortError,
    secret_forms,
    validate_secrets,
)

SECRET = "s3cr3t-T0ken_value"
# Base64 of these bytes has "+" and "/" (URL-safe: "-" and "_") and padding.
AWKWARD = "??>>~~ ?>>?~~"
KEY = (
    "-----BEGIN TEST KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "    indented-line-of-the-key\n"
    "\n"
    "}\n"
    "-----END TEST KEY-----\n"
)
UNICODE = "pässwörd-秘密-\U0001f511"


def stream(masker: SecretMasker, chunks: Iterable[str]) -> str:
    masking_stream = masker.stream()
    parts = [masking_stream.feed(chunk) for chunk in chunks]
    parts.append(masking_stream.flush())
    return "".join(parts)


BASE64_CHARACTERS = set(string.ascii_letters + string.digits + "+/-_")


def naive_joins(text: str) -> set[int]:
    """Reference for the wrapped-base64 rule, line by line: the positions of the characters
    of every join (a "\\n" or "\\r\\n" after a line that ends with 40 base64 characters, and
    the indentation of the next line)."""
    joins: set[int] = set()
    start = 0
    while (newline := text.find("\n", start)) >= 0:
        content = text[start:newline].removesuffix("\r")
        if len(content) >= 40 and all(char in BASE64_CHARACTERS for char in content[-40:]):
            end = newline + 1
            while end < len(text) and text[end] in " \t":
                end += 1
            joins.update(range(start + len(content), end))
        start = newline + 1
    return joins


def naive_mask(text: str, forms: Iterable[str]) -> str:
    """Reference: every occurrence of every form in the text without its joins, overlapping
    or touching ones (in the text) merged; one replacement per line piece, joins kept."""
    joins = naive_joins(text)
    kept = [position for position in range(len(text)) if position not in joins]
    joined = "".join(text[position] for position in kept)
    spans = []
    for form in forms:
        start = joined.find(form)
        while start >= 0:
            spans.append((kept[start], kept[start + len(form) - 1] + 1))
            start = joined.find(form, start + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    parts, position = [], 0
    for start, end in merged:
        parts.append(text[position:start])
        in_piece = False
        for index in range(start, end):
            if index in joins:
                parts.append(text[index])
                in_piece = False
            elif not in_piece:
                parts.append(REPLACEMENT)
                in_piece = True
        position = end
    return "".join([*parts, text[position:]])


def significant_lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_SECRET_LENGTH]


# --- plain values ------------------------------------------------------------------------


def test_plain_value_is_masked_and_the_rest_kept() -> None:
    masker = SecretMasker([SECRET])
    text = f"export TOKEN={SECRET}\ncurl -H 'X-Token: {SECRET}' https://x.test\n"
    assert masker.mask(text) == (
        f"export TOKEN={REPLACEMENT}\ncurl -H 'X-Token: {REPLACEMENT}' https://x.test\n"
    )


def test_value_is_masked_without_its_surrounding_whitespace() -> None:
    # A secret read from a file often ends with a newline that the program does not print.
    masker = SecretMasker(["  padded-secret-value\n"])
    assert masker.mask("token=padded-secret-value;") == f"token={REPLACEMENT};"


def test_custom_replacement() -> None:
    assert SecretMasker([SECRET], replacement="[masked]").mask(f"<{SECRET}>") == "<[masked]>"


# --- multi-line values -------------------------------------------------------------------


def test_multi_line_value_printed_whole_masks_every_line() -> None:
    masked = SecretMasker([KEY]).mask(f"key:\n{KEY}done\n")
    for line in significant_lines(KEY):
        assert line not in masked
    # The line count shows, the content does not; the short "}" line is not secret alone.
    assert masked == (
        f"key:\n{REPLACEMENT}\n{REPLACEMENT}\n    {REPLACEMENT}\n\n}}\n{REPLACEMENT}\ndone\n"
    )


def test_multi_line_value_lines_printed_separately_and_reindented() -> None:
    masker = SecretMasker([KEY])
    chunks = [f"> {line.strip()}\n" for line in KEY.splitlines()]
    masked = stream(masker, chunks)
    for line in significant_lines(KEY):
        assert line not in masked
    assert f"> {REPLACEMENT}\n" in masked


def test_short_and_blank_lines_of_a_multi_line_value_are_not_masked_elsewhere() -> None:
    # Masking "}" everywhere would garble every log that prints a closing brace.
    masker = SecretMasker([KEY])
    assert masker.mask("if (x) {\n}\n\n") == "if (x) {\n}\n\n"


def test_no_form_contains_a_line_break_or_is_too_short() -> None:
    for value in (SECRET, KEY, UNICODE, AWKWARD, "a\rbcdef\r\nghij"):
        for form in secret_forms(value):
            assert "\n" not in form
            assert "\r" not in form
            assert len(form) >= MIN_SECRET_LENGTH


# --- encoded forms -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [SECRET, AWKWARD, UNICODE, "abcd", "abcde", "abcdef"])
@pytest.mark.parametrize(
    "encode",
    [base64.b64encode, base64.urlsafe_b64encode],
    ids=["standard", "url-safe"],
)
def test_base64_of_the_value(value: str, encode: Callable[[bytes], bytes]) -> None:
    encoded = encode(value.encode()).decode()
    masker = SecretMasker([value])
    assert masker.mask(f"auth={encoded} ok") == f"auth={REPLACEMENT} ok"
    assert masker.mask(f"auth={encoded.rstrip('=')} ok") == f"auth={REPLACEMENT} ok"


def _assert_core_masked(masker: SecretMasker, prefix: bytes, value: bytes, suffix: bytes) -> None:
    """The characters of base64(prefix + value + suffix) that encode only value bytes are
    all inside the one replacement; what is left around it is unchanged encoded text."""
    encoded = base64.b64encode(prefix + value + suffix).decode()
    masked = masker.mask(encoded)
    assert masked.count(REPLACEMENT) == 1, (prefix, suffix, masked)
    before, after = masked.split(REPLACEMENT)
    assert encoded.startswith(before)
    assert encoded.endswith(after)
    first_pure = -(-8 * len(prefix) // 6)
    end_pure = 8 * (len(prefix) + len(value)) // 6
    assert len(before) <= first_pure
    assert len(encoded) - len(after) >= end_pure


@pytest.mark.parametrize("value", [SECRET, AWKWARD, UNICODE])
def test_base64_of_the_value_inside_a_longer_text_at_every_alignment(value: str) -> None:
    masker = SecretMasker([value])
    raw = value.encode()
    for prefix in (b"", b"u", b"us", b"user:", b"Bearer ", b"x" * 8, "é".encode()):
        for suffix in (b"", b"@", b":pw", b"\nmore text", bytes(range(5))):
            _assert_core_masked(masker, prefix, raw, suffix)


def test_echo_user_colon_secret_piped_to_base64() -> None:
    # What `echo -n "user:$SECRET" | base64` prints (coreutils: MIME line ending).
    printed = base64.encodebytes(f"user:{SECRET}".encode()).decode()
    masker = SecretMasker([SECRET])
    # Only the head stays: it encodes "user:" and 2 bits of the secret.
    assert masker.mask(printed) == f"{printed[:7]}{REPLACEMENT}\n"


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: urllib.parse.quote(v, safe=""),
        urllib.parse.quote,
        urllib.parse.quote_plus,
    ],
    ids=["quote-safe-none", "quote", "quote_plus"],
)
def test_url_encoded_value(encode: Callable[[str], str]) -> None:
    value = "p@ss/w0rd +&=?ü"
    url = f"https://api.x.test/v1?token={encode(value)}&page=2"
    assert SecretMasker([value]).mask(url) == f"https://api.x.test/v1?token={REPLACEMENT}&page=2"


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_json_escaped_value_with_quotes_backslashes_and_newlines(ensure_ascii: bool) -> None:
    value = 'pa"ss\\wo\nrd\t-ü-end'
    document = json.dumps({"password": value, "user": "ci"}, ensure_ascii=ensure_ascii)
    masked = SecretMasker([value]).mask(document)
    assert masked == f'{{"password": "{REPLACEMENT}", "user": "ci"}}'


def test_json_escaped_multi_line_key() -> None:
    document = json.dumps({"private_key": KEY})
    assert SecretMasker([KEY]).mask(document) == f'{{"private_key": "{REPLACEMENT}"}}'


def test_hex_of_the_value() -> None:
    masker = SecretMasker([SECRET])
    assert masker.mask(f"dump: {SECRET.encode().hex()}.") == f"dump: {REPLACEMENT}."
    assert masker.mask(f"dump: {SECRET.encode().hex().upper()}.") == f"dump: {REPLACEMENT}."


def test_unicode_value_in_all_its_forms() -> None:
    masker = SecretMasker([UNICODE])
    forms = [
        UNICODE,
        json.dumps(UNICODE)[1:-1],  # \u00e4 ... \ud83d\udd11
        urllib.parse.quote(UNICODE, safe=""),
        base64.b64encode(UNICODE.encode()).decode(),
        UNICODE.encode().hex(),
    ]
    text = "".join(f"[{form}]\n" for form in forms)
    expected = f"[{REPLACEMENT}]\n" * len(forms)
    assert masker.mask(text) == expected
    assert stream(masker, text) == expected  # one character at a time


# --- streaming ---------------------------------------------------------------------------


def _assert_streams_like_mask(masker: SecretMasker, text: str, chunks: list[str]) -> None:
    expected = masker.mask(text)
    masking_stream = masker.stream()
    emitted = ""
    for chunk in chunks:
        emitted += masking_stream.feed(chunk)
        # Emitted text is final: never a prefix of a secret that a later chunk completes.
        assert expected.startswith(emitted), (chunks, emitted)
    assert emitted + masking_stream.flush() == expected


def test_split_at_every_position_into_two_and_three_chunks() -> None:
    masker = SecretMasker([SECRET, KEY])
    text = f"a {SECRET} b {base64.b64encode(SECRET.encode()).decode()}\n{KEY.splitlines()[1]}!"
    assert SECRET not in masker.mask(text)
    for first in range(len(text) + 1):
        _assert_streams_like_mask(masker, text, [text[:first], text[first:]])
    for first in range(0, len(text) + 1, 3):
        for second in range(first, len(text) + 1, 2):
            chunks = [text[:first], text[first:second], text[second:]]
            _assert_streams_like_mask(masker, text, chunks)


def test_fed_one_character_at_a_time() -> None:
    masker = SecretMasker([SECRET, UNICODE, KEY])
    text = (
        f"{SECRET}{SECRET} x {UNICODE}\n{json.dumps(KEY)}\r"
        f"{urllib.parse.quote_plus(SECRET)} {KEY}{SECRET}"
    )
    _assert_streams_like_mask(masker, text, list(text))


def test_long_unterminated_line_is_emitted_early_but_not_a_secret_prefix() -> None:
    masker = SecretMasker([SECRET])
    masking_stream = masker.stream()
    head = "." * 10_000 + SECRET[:7]
    emitted = masking_stream.feed(head)
    assert emitted  # a progress bar without newlines still shows
    assert emitted == "." * len(emitted)
    emitted += masking_stream.feed(SECRET[7:] + " done")
    emitted += masking_stream.flush()
    assert emitted == "." * 10_000 + REPLACEMENT + " done"


def test_complete_lines_and_carriage_returns_are_emitted_at_once() -> None:
    masking_stream = SecretMasker([SECRET]).stream()
    assert masking_stream.feed(f"step 1 {SECRET}\nstep 2") == f"step 1 {REPLACEMENT}\n"
    assert masking_stream.feed(" 10%\r 20%\r 3") == "step 2 10%\r 20%\r"
    assert masking_stream.flush() == " 3"
    assert masking_stream.flush() == ""


def test_a_replacement_straddling_the_emitted_part_is_not_repeated() -> None:
    # Overlapping secrets on one long line: the cut of the held-back tail falls inside
    # the merged match, whose rest must not become a second replacement.
    first, second = "AAAA-1111-BBBB-2222", "BBBB-2222-CCCC-3333-DDDD-4444"
    masker = SecretMasker([first, second])
    text = "x" * 100 + "AAAA-1111-BBBB-2222-CCCC-3333-DDDD-4444" + "y" * 100
    for size in range(1, 60):
        chunks = [text[start : start + size] for start in range(0, len(text), size)]
        _assert_streams_like_mask(masker, text, chunks)
    assert masker.mask(text) == "x" * 100 + REPLACEMENT + "y" * 100


def test_stream_can_be_reused_after_flush() -> None:
    masking_stream = SecretMasker([SECRET]).stream()
    assert masking_stream.feed(SECRET[:5]) + masking_stream.flush() == SECRET[:5]
    assert masking_stream.feed(SECRET) + masking_stream.flush() == REPLACEMENT


def test_mask_of_a_large_text_across_internal_slices() -> None:
    masker = SecretMasker([SECRET])
    slice_size = masking._MASK_SLICE
    positions = [slice_size - 5, 2 * slice_size - 1, 2 * slice_size + 3]
    text = "x" * (3 * slice_size)
    for position in reversed(positions):
        text = text[:position] + SECRET + text[position:]
    masked = masker.mask(text)
    assert SECRET not in masked
    assert masked.count(REPLACEMENT) == 3
    assert len(masked) == len(text) - 3 * (len(SECRET) - len(REPLACEMENT))


# --- wrapped base64 (and hex) ----------------------------------------------------------

# 120 characters: base64 of "user:" + LONG is 168 characters, three lines at 76 and at 64.
LONG = "".join(random.Random(7).choices(string.ascii_letters + string.digits + "!#%+/=?~", k=120))
# 60 characters: two lines at 76 and at 64.
MEDIUM = "".join(random.Random(8).choices(string.ascii_letters + string.digits + "-_.", k=60))
ENCODERS = [base64.b64encode, base64.urlsafe_b64encode]
ENCODER_IDS = ["standard", "url-safe"]


def wrap(encoded: str, width: int, newline: str = "\n", indent: str = "") -> str:
    """What ``base64`` (76), ``openssl base64`` (64) or ``xxd -p`` (60) print."""
    return "".join(
        f"{indent}{encoded[start : start + width]}{newline}"
        for start in range(0, len(encoded), width)
    )


def _assert_streams_like_mask_at_every_split(masker: SecretMasker, text: str) -> None:
    for first in range(len(text) + 1):
        _assert_streams_like_mask(masker, text, [text[:first], text[first:]])
    for first in range(0, len(text) + 1, 7):
        for second in range(first, len(text) + 1, 5):
            _assert_streams_like_mask(
                masker, text, [text[:first], text[first:second], text[second:]]
            )
    _assert_streams_like_mask(masker, text, list(text))


def _visible_encoded_positions(encoded: str, width: int, masked: str) -> set[int]:
    """Positions in ``encoded`` of the characters still shown when ``masked`` is the masked
    ``wrap(encoded, width)`` (one replacement at most per line)."""
    lines = [encoded[start : start + width] for start in range(0, len(encoded), width)]
    masked_lines = masked.split("\n")
    assert masked_lines[-1] == ""
    assert len(masked_lines) == len(lines) + 1  # the line structure is kept
    visible: set[int] = set()
    for number, (line, shown) in enumerate(zip(lines, masked_lines, strict=False)):
        if REPLACEMENT in shown:
            before, after = shown.split(REPLACEMENT)
            assert line.startswith(before)
            assert line.endswith(after)
            offsets = [*range(len(before)), *range(len(line) - len(after), len(line))]
        else:
            assert shown == line
            offsets = list(range(len(line)))
        visible.update(number * width + offset for offset in offsets)
    return visible


@pytest.mark.parametrize("secret", [LONG, MEDIUM], ids=["three-lines", "two-lines"])
@pytest.mark.parametrize("width", [76, 64])
@pytest.mark.parametrize("encode", ENCODERS, ids=ENCODER_IDS)
def test_echo_user_colon_long_secret_piped_to_wrapping_base64(
    secret: str, width: int, encode: Callable[[bytes], bytes]
) -> None:
    # `echo -n "user:$SECRET" | base64` (76 columns) or `| openssl base64` (64): every piece
    # of the encoded secret is on a line of its own, and none of them is a form.
    encoded = encode(f"user:{secret}".encode()).decode()
    printed = wrap(encoded, width)
    lines = printed.count("\n")
    assert lines >= 2
    masker = SecretMasker([secret])
    # Only the head stays: it encodes "user:" and 2 bits of the secret. The line count shows.
    expected = f"{encoded[:7]}{REPLACEMENT}\n" + f"{REPLACEMENT}\n" * (lines - 1)
    assert masker.mask(printed) == expected
    text = f"$ ./deploy.sh\n{printed}deployed\n"
    assert masker.mask(text) == f"$ ./deploy.sh\n{expected}deployed\n"
    _assert_streams_like_mask_at_every_split(masker, text)


def test_python_encodebytes_of_a_long_secret_and_of_a_long_value() -> None:
    masker = SecretMasker([LONG])
    printed = base64.encodebytes(f"user:{LONG}".encode()).decode()  # 76 columns
    assert masker.mask(printed) == f"{printed[:7]}{REPLACEMENT}\n{REPLACEMENT}\n{REPLACEMENT}\n"
    alone = base64.encodebytes(LONG.encode()).decode()
    assert masker.mask(alone) == f"{REPLACEMENT}\n" * alone.count("\n")


@pytest.mark.parametrize("width", [76, 64, 60, 40])
@pytest.mark.parametrize("encode", ENCODERS, ids=ENCODER_IDS)
def test_no_character_of_the_wrapped_encoded_secret_is_visible(
    width: int, encode: Callable[[bytes], bytes]
) -> None:
    # The secret in the middle of wrapped data (a registry config printed as base64), at
    # every alignment and at every position relative to the line ends.
    masker = SecretMasker([MEDIUM])
    for prefix_length in range(40, 40 + 3 * 20):
        prefix = ('{"auths": {"registry.example": {"auth": "' + "x" * 60)[:prefix_length]
        data = f'{prefix}{MEDIUM}"}}}}}}'.encode()
        encoded = encode(data).decode()
        masked = masker.mask(wrap(encoded, width))
        core = range(-(-8 * prefix_length // 6), 8 * (prefix_length + len(MEDIUM)) // 6)
        assert not _visible_encoded_positions(encoded, width, masked) & set(core)


def test_wrapped_hex_dump_of_a_secret() -> None:
    # `echo -n "$SECRET" | xxd -p` wraps at 60 columns.
    printed = wrap(LONG.encode().hex(), 60)
    assert SecretMasker([LONG]).mask(printed) == f"{REPLACEMENT}\n" * 4


def test_wrapped_base64_after_a_prefix_on_its_first_line() -> None:
    # echo "Authorization: Basic $(echo -n "user:$SECRET" | base64)", and a `set -x` trace.
    encoded = base64.b64encode(f"user:{LONG}".encode()).decode()
    masker = SecretMasker([LONG])
    printed = f"Authorization: Basic {wrap(encoded, 76)}"
    expected = f"Authorization: Basic dXNlcjp{REPLACEMENT}\n{REPLACEMENT}\n{REPLACEMENT}\n"
    assert masker.mask(printed) == expected
    traced = f"+ curl -H 'Authorization: Basic {wrap(encoded, 76).rstrip()}' https://x.test\n"
    assert masker.mask(traced) == (
        f"+ curl -H 'Authorization: Basic dXNlcjp{REPLACEMENT}\n{REPLACEMENT}\n"
        f"{REPLACEMENT}' https://x.test\n"
    )
    _assert_streams_like_mask_at_every_split(masker, traced)


def test_wrapped_base64_with_crlf_line_ends_and_indentation() -> None:
    encoded = base64.b64encode(f"user:{LONG}".encode()).decode()
    masker = SecretMasker([LONG])
    crlf = wrap(encoded, 76, "\r\n")
    assert masker.mask(crlf) == f"dXNlcjp{REPLACEMENT}\r\n{REPLACEMENT}\r\n{REPLACEMENT}\r\n"
    yaml = "data:\n  auth: |\n" + wrap(encoded, 64, indent="    ") + "kind: Secret\n"
    assert masker.mask(yaml) == (
        f"data:\n  auth: |\n    dXNlcjp{REPLACEMENT}\n    {REPLACEMENT}\n    {REPLACEMENT}\n"
        "kind: Secret\n"
    )
    _assert_streams_like_mask_at_every_split(masker, crlf)
    _assert_streams_like_mask_at_every_split(masker, yaml)


def test_unrelated_wrapped_block_is_left_alone() -> None:
    rng = random.Random(3)
    # Without the detector: this is about the wrapped forms of declared secrets (an
    # undeclared private key is the detector's, see test_masking_detect.py).
    masker = SecretMasker([SECRET, LONG, MEDIUM, KEY], detect=False)
    pem = (
        "-----BEGIN PRIVATE KEY-----\n"
        + wrap(base64.b64encode(rng.randbytes(1200)).decode(), 64)
        + "-----END PRIVATE KEY-----\n"
    )
    dump = wrap(base64.b64encode(rng.randbytes(3000)).decode(), 76)
    hashes = "".join(rng.randbytes(20).hex() + "\n" for _ in range(50))  # 40 columns
    text = pem + dump + hashes
    assert masker.mask(text) == text
    _assert_streams_like_mask(
        masker, text, [text[start : start + 97] for start in range(0, len(text), 97)]
    )


def test_a_secret_inside_a_wrapped_block_masks_only_the_lines_it_is_on() -> None:
    rng = random.Random(4)
    masker = SecretMasker([LONG])
    data = rng.randbytes(900) + LONG.encode() + rng.randbytes(900)
    encoded = base64.b64encode(data).decode()
    printed = wrap(encoded, 64)
    masked = masker.mask(printed)
    changed = [
        number
        for number, (line, shown) in enumerate(
            zip(printed.splitlines(), masked.splitlines(), strict=True)
        )
        if line != shown
    ]
    core = range(-(-8 * 900 // 6), 8 * (900 + len(LONG)) // 6)
    assert changed == list(range(core[0] // 64, core[-1] // 64 + 1))
    assert not _visible_encoded_positions(encoded, 64, masked) & set(core)


def test_a_short_secret_across_a_line_end_of_a_long_wrapped_line() -> None:
    # The secret's forms are shorter than a wrapped line, so the stream emits the start of
    # the line before its end arrives and must remember that it was base64.
    masker = SecretMasker([SECRET], detect=False)  # the detector's hold-back is longer
    assert masker._hold_back < masking.WRAP_MIN_WIDTH
    for before in range(100, 112):
        data = bytes(range(before)) + SECRET.encode() + b"!" * 30
        encoded = base64.b64encode(data).decode()
        width = -(-8 * before // 6) + 7  # the core starts 7 characters before the line end
        text = f"x\n{wrap(encoded, width)}y\n"
        masked = masker.mask(text)
        assert REPLACEMENT in masked.splitlines()[1]
        assert masked.splitlines()[2].startswith(REPLACEMENT)
        _assert_streams_like_mask(masker, text, list(text))
        for size in (3, 17, 40, 41, 77):
            chunks = [text[start : start + size] for start in range(0, len(text), size)]
            _assert_streams_like_mask(masker, text, chunks)


def test_ordinary_lines_are_not_delayed_and_base64_lines_wait_for_one_line() -> None:
    masker = SecretMasker([SECRET, LONG])
    assert masker._hold_back > 76  # the longest form is longer than a wrapped line
    masking_stream = masker.stream()
    assert masking_stream.feed("compiling main.c\n") == "compiling main.c\n"
    base64_line = "QUJD" * 19  # 76 columns: the next line may continue it
    assert masking_stream.feed(base64_line + "\n") == ""
    assert masking_stream.feed("linking\n") == f"{base64_line}\nlinking\n"
    digest = "Digest: sha256:" + "0123456789abcdef" * 4  # ends with 64 base64 characters
    assert masking_stream.feed(digest + "\n") == ""
    assert masking_stream.feed("Status: done\n") == f"{digest}\nStatus: done\n"
    # 39 base64 characters, "=" padding, or a space after them: not a wrapped line.
    for line in ("QUJD" * 9 + "QUJ", "QUJD" * 18 + "QQ==", "QUJD" * 19 + " "):
        assert masking_stream.feed(line + "\n") == line + "\n"
    assert masking_stream.flush() == ""
    # The end of the stream releases a held line.
    assert masking_stream.feed(base64_line + "\n") == ""
    assert masking_stream.flush() == base64_line + "\n"
    # With short forms only the last ``hold_back`` characters and the line break wait.
    short_stream = SecretMasker([SECRET]).stream()
    emitted = short_stream.feed(base64_line + "\n")
    assert emitted == base64_line[: len(base64_line) - SecretMasker([SECRET])._hold_back]
    assert short_stream.feed("ok\n") == base64_line[len(emitted) :] + "\nok\n"


def test_a_join_followed_by_a_long_indentation_waits_for_the_next_line() -> None:
    # Much pending text, but almost all of it is the join's indentation: nothing is final.
    masker = SecretMasker([LONG])
    masking_stream = masker.stream()
    indentation = " " * (3 * masker._hold_back)
    assert masking_stream.feed("QUJD" * 10 + "\n" + indentation) == ""
    assert masking_stream.feed("x\n") == "QUJD" * 10 + "\n" + indentation + "x\n"
    assert masking_stream.flush() == ""


def test_an_endless_base64_dump_is_held_back_only_a_little() -> None:
    masker = SecretMasker([SECRET, LONG])
    rng = random.Random(5)
    masking_stream = masker.stream()
    fed = emitted = 0
    for _ in range(2000):
        line = base64.b64encode(rng.randbytes(57)).decode() + "\n"
        fed += len(line)
        emitted += len(masking_stream.feed(line))
        assert fed - emitted <= 2 * masker._hold_back + 2 * len(line)
    emitted += len(masking_stream.flush())
    assert emitted == fed


def test_mask_of_a_large_text_with_a_wrapped_secret_across_internal_slices() -> None:
    masker = SecretMasker([LONG])
    printed = wrap(base64.b64encode(f"user:{LONG}".encode()).decode(), 76)
    slice_size = masking._MASK_SLICE
    for offset in (-200, -100, -80, -77, -76, -20, -1, 0):
        head = "." * 99 + "\n"
        text = head * ((slice_size + offset) // 100) + printed + head
        masked = masker.mask(text)
        assert masked.endswith(f"dXNlcjp{REPLACEMENT}\n{REPLACEMENT}\n{REPLACEMENT}\n{head}")


def test_random_wrapped_texts_and_chunkings_match_a_naive_reference() -> None:
    rng = random.Random(20240502)
    alphabet = "abXY09+/-_=%é \n\r\t"
    for _ in range(150):
        secrets = [
            "".join(rng.choices(alphabet[:-4], k=rng.randint(4, 70)))
            for _ in range(rng.randint(1, 3))
        ]
        secrets = [secret for secret in secrets if len(secret.strip()) >= MIN_SECRET_LENGTH]
        if not secrets:
            continue
        masker = SecretMasker(secrets)
        forms = sorted(set().union(*(secret_forms(secret) for secret in secrets)))
        pieces = []
        for _ in range(rng.randint(1, 6)):
            roll = rng.random()
            if roll < 0.5:
                data = (
                    rng.randbytes(rng.randint(0, 50))
                    + rng.choice(secrets).encode()
                    + rng.randbytes(rng.randint(0, 50))
                )
                encoded = data.hex() if rng.random() < 0.2 else rng.choice(ENCODERS)(data).decode()
                pieces.append(
                    rng.choice(["", "", "Basic ", "x"])
                    + wrap(
                        encoded,
                        rng.choice([40, 41, 45, 60, 64, 76]),
                        rng.choice(["\n", "\n", "\r\n"]),
                        rng.choice(["", "", "  ", "\t"]),
                    )
                )
            elif roll < 0.7:
                pieces.append(rng.choice(forms) + rng.choice(["", "\n", "\r\n"]))
            else:
                pieces.append("".join(rng.choices(alphabet, k=rng.randint(0, 50))))
        text = "".join(pieces)
        assert masker.mask(text) == naive_mask(text, forms)
        size = rng.randint(1, 90)
        chunks = [text[start : start + size] for start in range(0, len(text), size)]
        _assert_streams_like_mask(masker, text, chunks)
        cuts = sorted(rng.sample(range(len(text) + 1), min(8, len(text) + 1)))
        chunks = [
            text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True)
        ]
        _assert_streams_like_mask(masker, text, chunks)


# --- overlaps ----------------------------------------------------------------------------


def test_secret_that_is_a_substring_of_another() -> None:
    masker = SecretMasker(["password123", "password123456"])
    assert masker.mask("a password123456 b") == f"a {REPLACEMENT} b"
    assert masker.mask("a password123 b") == f"a {REPLACEMENT} b"
    assert masker.mask("xpassword1234567") == f"x{REPLACEMENT}7"


def test_overlapping_and_adjacent_occurrences_become_one_replacement() -> None:
    masker = SecretMasker(["ABCD1234", "1234WXYZ", "aaaa"])
    assert masker.mask("<ABCD1234WXYZ>") == f"<{REPLACEMENT}>"
    assert masker.mask("<aaaaaaa>") == f"<{REPLACEMENT}>"
    assert masker.mask("<ABCD1234ABCD1234>") == f"<{REPLACEMENT}>"
    assert masker.mask("<ABCD1234 ABCD1234>") == f"<{REPLACEMENT} {REPLACEMENT}>"


def test_masking_is_idempotent_and_the_replacement_reveals_nothing() -> None:
    secrets = [SECRET, KEY, UNICODE, AWKWARD]
    masker = SecretMasker(secrets)
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in REPLACEMENT
    text = f"{SECRET}{SECRET}\n{KEY}{json.dumps(UNICODE)} {AWKWARD}x{REPLACEMENT}{SECRET}"
    once = masker.mask(text)
    assert masker.mask(once) == once


def test_random_texts_and_chunkings_match_a_naive_reference() -> None:
    rng = random.Random(20240501)
    alphabet = "abXY09+/=%é\U0001f511 \n\r"
    for _ in range(300):
        secrets = ["".join(rng.choices(alphabet[:-3], k=rng.randint(4, 24))) for _ in "123"]
        secrets = [secret for secret in secrets if len(secret.strip()) >= MIN_SECRET_LENGTH]
        masker = SecretMasker(secrets)
        forms = sorted(set().union(*(secret_forms(secret) for secret in secrets)))
        pieces = []
        for _ in range(rng.randint(0, 10)):
            roll = rng.random()
            if roll < 0.4 and forms:
                pieces.append(rng.choice(forms))
            elif roll < 0.5 and forms:
                form = rng.choice(forms)
                pieces.append(form[: rng.randint(0, len(form))])
            else:
                pieces.append("".join(rng.choices(alphabet, k=rng.randint(0, 16))))
        text = "".join(pieces)
        expected = naive_mask(text, forms)
        assert masker.mask(text) == expected
        size = rng.randint(1, 40)
        chunks = [text[start : start + size] for start in range(0, len(text), size)]
        _assert_streams_like_mask(masker, text, chunks)


# --- values that cannot be masked --------------------------------------------------------


def test_too_short_secret_is_refused_by_name_without_its_value() -> None:
    with pytest.raises(SecretTooShortError) as caught:
        validate_secrets({"api_key": "Q7z", "deploy_token": SECRET})
    message = str(caught.value)
    assert message == (
        "secret 'api_key' is 3 characters long; secrets shorter than 4 characters cannot be "
        "masked without garbling the logs - use a longer value"
    )
    assert "Q7z" not in message
    assert caught.value.names == ("api_key",)
    assert isinstance(caught.value, ValueError)


def test_all_too_short_secrets_are_reported_together() -> None:
    with pytest.raises(SecretTooShortError) as caught:
        validate_secrets({"a": "", "b": "  Xy  ", "c": SECRET, "d": "1"})
    assert caught.value.names == ("a", "b", "d")
    message = str(caught.value)
    assert "secret 'a' is 0 characters long" in message
    assert "secret 'b' is 2 characters long" in message
    assert "secret 'd' is 1 character long" in message
    assert "Xy" not in message


def test_valid_secrets_pass_validation() -> None:
    validate_secrets({"token": SECRET, "key": KEY, "short_but_ok": "abcd"})
    validate_secrets({})


def test_masker_refuses_a_too_short_value_without_showing_it() -> None:
    with pytest.raises(SecretTooShortError) as caught:
        SecretMasker([SECRET, "Q7z"])
    assert "'#2'" in str(caught.value)
    assert "Q7z" not in str(caught.value)


# --- nothing to mask ---------------------------------------------------------------------


def test_empty_masker_passes_text_through() -> None:
    assert not SecretMasker([]).empty  # the credential detector is on by default
    masker = SecretMasker([], detect=False)
    assert masker.empty
    text = f"anything {SECRET}\npartial"
    assert masker.mask(text) is text
    masking_stream = masker.stream()
    assert masking_stream.feed("no newline yet") == "no newline yet"
    assert masking_stream.flush() == ""
    assert not SecretMasker([SECRET]).empty


def test_empty_text_and_chunks() -> None:
    masker = SecretMasker([SECRET])
    assert masker.mask("") == ""
    assert stream(masker, ["", "", ""]) == ""
