"""The masker's credential detector and JSON-structured secrets: every kind, false positives,
private key blocks split over writes, stdout and stderr, JSON leaves in every encoding."""

from __future__ import annotations

import base64
import json
import random
import string
import urllib.parse
import uuid
from collections.abc import Iterable

import pytest

from bastion.engine import _credentials
from bastion.engine.masking import (
    CREDENTIAL_KINDS,
    JSON_NUMBER_MIN_LENGTH,
    REPLACEMENT,
    SecretMasker,
    credential_kinds_in,
    credential_marker,
    secret_forms,
)

RNG = random.Random(11)
ALNUM = string.ascii_letters + string.digits


def token(alphabet: str, length: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(length))


AWS_ID = "AKIA" + token(string.ascii_uppercase + string.digits, 16)
AWS_SESSION_ID = "ASIA" + token(string.ascii_uppercase + string.digits, 16)
AWS_SECRET = token(ALNUM + "+/", 40)
GITHUB = {prefix: prefix + token(ALNUM, 36) for prefix in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")}
GITHUB_PAT = "github_pat_" + token(ALNUM, 22) + "_" + token(ALNUM, 59)
GITLAB = "glpat-" + token(ALNUM + "_-", 20)
SLACK = {kind: f"xox{kind}-{token(string.digits, 12)}-{token(ALNUM, 24)}" for kind in "abpr"}


def pem(label: str, lines: int = 12, headers: str = "") -> str:
    body = base64.b64encode(RNG.randbytes(48 * lines)).decode()
    wrapped = "\n".join(body[start : start + 64] for start in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{headers}{wrapped}\n-----END {label}-----\n"


RSA_KEY = pem("RSA PRIVATE KEY")
KEY_LABELS = (
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "PGP PRIVATE KEY BLOCK",
)


def stream(masker: SecretMasker, chunks: Iterable[str]) -> str:
    masking_stream = masker.stream()
    parts = [masking_stream.feed(chunk) for chunk in chunks]
    parts.append(masking_stream.flush())
    return "".join(parts)


def marker(kind: str) -> str:
    return credential_marker(kind)


DETECTOR = SecretMasker([])

# (printed line, the credential in it, its kind)
SINGLE_LINE_CASES = [
    (f"aws_access_key_id = {AWS_ID}", AWS_ID, "aws-access-key-id"),
    (f'{{"AccessKeyId": "{AWS_SESSION_ID}"}}', AWS_SESSION_ID, "aws-access-key-id"),
    (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "aws-secret-access-key"),
    (f'export AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"', AWS_SECRET, "aws-secret-access-key"),
    (f"  AWS_SECRET_ACCESS_KEY: {AWS_SECRET}", AWS_SECRET, "aws-secret-access-key"),
    (f"TF_VAR_aws_secret_access_key='{AWS_SECRET}'", AWS_SECRET, "aws-secret-access-key"),
    (f'    "SecretAccessKey": "{AWS_SECRET}",', AWS_SECRET, "aws-secret-access-key"),
    *(
        (f"remote: https://x:{value}@github.com/o/r", value, "github-token")
        for value in GITHUB.values()
    ),
    (f"GITHUB_TOKEN={GITHUB_PAT}", GITHUB_PAT, "github-token"),
    (f"git clone https://oauth2:{GITLAB}@gitlab.example.com/g/p.git", GITLAB, "gitlab-token"),
    *((f"SLACK_TOKEN={value} posting", value, "slack-token") for value in SLACK.values()),
]


@pytest.mark.parametrize(("line", "credential", "kind"), SINGLE_LINE_CASES)
def test_every_kind_is_masked_with_its_marker(line: str, credential: str, kind: str) -> None:
    text = f"before\n{line}\nafter\n"
    masked = DETECTOR.mask(text)
    assert credential not in masked
    assert masked == text.replace(credential, marker(kind))
    assert credential_kinds_in(masked) == {kind}
    # Split into two writes at every position, and one character at a time.
    for cut in range(1, len(text)):
        assert stream(DETECTOR, [text[:cut], text[cut:]]) == masked
    assert stream(DETECTOR, list(text)) == masked


def test_the_aws_secret_key_name_stays_visible_only_the_value_is_masked() -> None:
    masked = DETECTOR.mask(f"aws_secret_access_key={AWS_SECRET}\n")
    assert masked == f"aws_secret_access_key={marker('aws-secret-access-key')}\n"


@pytest.mark.parametrize("label", KEY_LABELS)
def test_every_line_of_a_private_key_block_is_masked(label: str) -> None:
    key = pem(label, headers="Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\n")
    text = f"$ cat id_key\n{key}$ echo done\ndone\n"
    masked = DETECTOR.mask(text)
    lines = masked.splitlines()
    key_lines = key.splitlines()
    assert lines[0] == "$ cat id_key"
    for index, line in enumerate(key_lines, start=1):
        assert lines[index] == ("" if not line else marker("private-key"))
    assert lines[len(key_lines) + 1 :] == ["$ echo done", "done"]
    for line in key_lines:
        if len(line) >= 4:
            assert line not in masked


def test_a_private_key_split_over_writes_at_every_position_is_masked_the_same() -> None:
    key = pem("EC PRIVATE KEY", lines=2)
    text = f"x {key}tail\n"
    masked = DETECTOR.mask(text)
    assert masked == (f"x {marker('private-key')}\n" + f"{marker('private-key')}\n" * 3 + "tail\n")
    for cut in range(1, len(text)):
        assert stream(DETECTOR, [text[:cut], text[cut:]]) == masked
    for size in (1, 3, 7, 64, 65):
        chunks = [text[start : start + size] for start in range(0, len(text), size)]
        assert stream(DETECTOR, chunks) == masked


def test_a_private_key_printed_with_a_prefix_on_every_line() -> None:
    # docker build prefixes each output line: the lines of the block are still masked whole.
    key = "".join(f"#7 0.{index:03d} {line}\n" for index, line in enumerate(RSA_KEY.splitlines()))
    masked = DETECTOR.mask(key + "#8 DONE\n")
    assert masked.splitlines()[0] == f"#7 0.000 {marker('private-key')}"
    assert all(line == marker("private-key") for line in masked.splitlines()[1:-1])
    assert masked.endswith("#8 DONE\n")


def test_a_private_key_on_one_line_json_escaped() -> None:
    key = json.dumps({"private_key": RSA_KEY, "n": 1})
    masked = DETECTOR.mask(key + "\n")
    assert masked == '{"private_key": ' + f'"{marker("private-key")}\\n", "n": 1}}\n'


def test_a_key_block_without_its_end_is_masked_for_at_most_the_cap() -> None:
    cap = _credentials.KEY_BLOCK_MAX_LINES
    text = "-----BEGIN PRIVATE KEY-----\n" + "".join(f"line {n}\n" for n in range(cap + 5))
    masked = DETECTOR.mask(text)
    lines = masked.splitlines()
    assert lines[:cap] == [marker("private-key")] * cap
    assert lines[cap:] == [f"line {n}" for n in range(cap - 1, cap + 5)]
    assert (
        stream(DETECTOR, [text[start : start + 100] for start in range(0, len(text), 100)])
        == masked
    )


def test_headers_that_are_not_private_keys_are_left_alone() -> None:
    text = pem("CERTIFICATE") + pem("PUBLIC KEY") + pem("RSA PUBLIC KEY") + "BEGIN PRIVATE KEY\n"
    assert DETECTOR.mask(text) == text


def test_stdout_and_stderr_are_masked_as_separate_streams_interleaved() -> None:
    # A step writes a token to stdout and a key to stderr, both split over writes, the
    # writes of the two streams interleaved (as the executor feeds them).
    out_text = f"token {GITHUB['ghp_']} ok\n"
    err_text = f"warning: key follows\n{RSA_KEY}"
    out, err = DETECTOR.stream(), DETECTOR.stream()
    out_parts, err_parts = [], []
    out_chunks = [out_text[start : start + 5] for start in range(0, len(out_text), 5)]
    err_chunks = [err_text[start : start + 9] for start in range(0, len(err_text), 9)]
    for index in range(max(len(out_chunks), len(err_chunks))):
        if index < len(out_chunks):
            out_parts.append(out.feed(out_chunks[index]))
        if index < len(err_chunks):
            err_parts.append(err.feed(err_chunks[index]))
    out_parts.append(out.flush())
    err_parts.append(err.flush())
    assert "".join(out_parts) == f"token {marker('github-token')} ok\n"
    assert "".join(err_parts) == DETECTOR.mask(err_text)
    assert credential_kinds_in("".join(err_parts)) == {"private-key"}


def test_line_by_line_masking_carries_a_key_block_over_lines() -> None:
    # The server masks stored lines one by one: a block that starts on a line goes on.
    masking_stream = DETECTOR.stream()
    lines = ["before", *RSA_KEY.splitlines(), "after", f"tok {GITLAB}"]
    masked = [masking_stream.line(line) for line in lines]
    assert masked[0] == "before"
    assert masked[1:-2] == [marker("private-key")] * (len(lines) - 3)
    assert masked[-2:] == ["after", f"tok {marker('gitlab-token')}"]


# --- false positives ---------------------------------------------------------------------


def test_ordinary_build_output_is_not_masked() -> None:
    prose = (
        "The quick brown fox jumps over the lazy dog. Installing collected packages: "
        "requests, urllib3, AKIA-style names, ghp_short, glpat-short, xoxb-1.\n"
    )
    blobs = [base64.b64encode((prose * repeat).encode()).decode() for repeat in (1, 3, 7)]
    wrapped = base64.encodebytes((prose * 20).encode()).decode()
    lines = [
        "commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        f"request id {uuid.UUID(int=RNG.getrandbits(128))}",
        f"sha256:{RNG.randbytes(32).hex()}",
        "ASIA-PACIFIC region; AKIAX is not a key id",
        "aws_secret_access_key is read from the environment",
        "see github_pat_ docs and ghp_ prefixes",
        *blobs,
        *(base64.b64encode(RNG.randbytes(300)).decode() for _ in range(200)),
    ]
    text = "\n".join(lines) + "\n" + wrapped + prose
    assert DETECTOR.mask(text) == text


def test_a_key_id_inside_a_longer_run_is_not_a_key_id() -> None:
    for text in (f"x{AWS_ID}\n", f"{AWS_ID}Z\n", f"/{AWS_ID}+\n"):
        assert DETECTOR.mask(text) == text
    assert DETECTOR.mask(f"({AWS_ID})\n") == f"({marker('aws-access-key-id')})\n"


def test_without_detection_nothing_is_detected() -> None:
    text = f"{AWS_ID} {GITHUB['ghp_']}\n{RSA_KEY}"
    assert SecretMasker([], detect=False).mask(text) == text


# --- declared and detected together --------------------------------------------------------


def test_a_declared_token_is_masked_as_a_secret_and_a_declared_key_as_a_key() -> None:
    value = GITHUB["ghs_"]
    masker = SecretMasker([value, RSA_KEY])
    encoded = base64.b64encode(value.encode()).decode()
    masked = masker.mask(f"{value} {GITHUB['ghp_']}\n{encoded}\n")
    assert masked == f"{REPLACEMENT} {marker('github-token')}\n{REPLACEMENT}\n"
    lines = masker.mask(RSA_KEY).splitlines()
    assert lines == [marker("private-key")] * len(RSA_KEY.splitlines())


def test_credential_kinds_in_ignores_unknown_and_malformed_markers() -> None:
    text = "[masked: github-token] [masked: nonsense] [masked: private-key [masked:slack-token]"
    assert credential_kinds_in(text) == {"github-token"}
    assert credential_kinds_in("nothing here") == set()
    assert set(CREDENTIAL_KINDS) == {
        "aws-access-key-id",
        "aws-secret-access-key",
        "github-token",
        "gitlab-token",
        "slack-token",
        "private-key",
    }


def test_random_texts_with_credentials_stream_like_mask() -> None:
    rng = random.Random(23)
    pieces = [
        *(credential for _, credential, _ in SINGLE_LINE_CASES),
        RSA_KEY,
        RSA_KEY.replace("\n", "\r\n"),
        "aws_secret_access_key=",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "QUJD" * 12,
        " ",
        "\t ",
        "\n",
        "\r\n",
        "\r",
        "word",
        "declared-secret-value",
    ]
    masker = SecretMasker(["declared-secret-value"])
    for _ in range(300):
        # Separated: a credential glued to a base64 run is not one (see above).
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        masked = masker.mask(text)
        for _ in range(3):
            cuts = sorted(rng.sample(range(1, len(text) + 1), min(len(text), rng.randint(1, 9))))
            chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
            assert stream(masker, chunks) == masked
        for _, credential, kind in SINGLE_LINE_CASES:
            # An AWS secret key alone has no shape: only in its context (a piece here).
            if kind != "aws-secret-access-key":
                assert credential not in masked


# --- JSON-structured secrets ---------------------------------------------------------------

SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "bastion-test-project",
    "private_key_id": "0123456789abcdef0123456789abcdef01234567",
    "private_key": pem("PRIVATE KEY", lines=4),
    "client_email": "ci-deployer@bastion-test-project.iam.gserviceaccount.com",
    "client_id": "112233445566778899001",
    "nested": {"list": ["leaf-in-a-list", {"deep": "deeply-nested-leaf"}], "port": 8080},
    "account_number": 123456789012,
    "ratio": 0.5,
}
STRING_LEAVES = [
    "bastion-test-project",
    "0123456789abcdef0123456789abcdef01234567",
    "ci-deployer@bastion-test-project.iam.gserviceaccount.com",
    "112233445566778899001",
    "leaf-in-a-list",
    "deeply-nested-leaf",
    "service_account",
]


def encodings(text: str) -> list[str]:
    raw = text.encode()
    return [
        text,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(b"user:" + raw).decode(),
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote_plus(text),
        json.dumps(text)[1:-1],
        raw.hex(),
        raw.hex().upper(),
    ]


@pytest.mark.parametrize("leaf", STRING_LEAVES)
def test_every_string_leaf_of_a_json_secret_is_masked_in_every_encoding(leaf: str) -> None:
    masker = SecretMasker([json.dumps(SERVICE_ACCOUNT, indent=2)], detect=False)
    for index, form in enumerate(encodings(leaf)):
        masked = masker.mask(f"[{index}] value: {form} !\n")
        assert leaf not in masked
        if index != 3:  # the base64 of "user:" + leaf ends with the leaf's own padding
            assert form not in masked
        assert REPLACEMENT in masked


def test_the_private_key_leaf_is_masked_line_by_line_and_json_escaped() -> None:
    key = str(SERVICE_ACCOUNT["private_key"])
    masker = SecretMasker([json.dumps(SERVICE_ACCOUNT)], detect=False)
    masked = masker.mask(key)
    for line in key.splitlines():
        assert line not in masked
    escaped = json.dumps(key)[1:-1]
    assert masker.mask(f"key={escaped};") == f"key={REPLACEMENT};"


def test_long_number_leaves_are_masked_short_ones_and_keys_are_not() -> None:
    masker = SecretMasker([json.dumps(SERVICE_ACCOUNT)], detect=False)
    assert masker.mask("account 123456789012.") == f"account {REPLACEMENT}."
    assert len("123456789012") >= JSON_NUMBER_MIN_LENGTH
    text = "port 8080 ratio 0.5 private_key_id client_email type nested"
    assert masker.mask(text) == text


def test_a_json_array_secret_and_values_that_are_not_json() -> None:
    forms = secret_forms('["first-leaf-value", ["second-leaf"], 12345678, true, null]')
    assert {"first-leaf-value", "second-leaf", "12345678"} <= forms
    assert "true" not in forms and "null" not in forms
    # Not JSON, or not an object or array: only the value's own forms.
    assert "broken-leaf" not in secret_forms('{"broken": "broken-leaf"')
    assert "a-string" not in secret_forms('"a-string"')
    short = secret_forms('{"a": "abc", "b": "abcd"}')
    assert "abcd" in short and "abc" not in short
