"""Attacks on the log masker: every form, every split, overlaps, unicode, too-short values."""

from __future__ import annotations

import base64
import json
import random
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


def naive_mask(text: str, forms: Iterable[str]) -> str:
    """Reference: every occurrence of every form, overlapping or touching ones merged."""
    spans = []
    for form in forms:
        start = text.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = text.find(form, start + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    parts, position = [], 0
    for start, end in merged:
        parts += [text[position:start], REPLACEMENT]
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
    masker = SecretMasker([])
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
