"""Throughput of secret masking on a realistic build log (issue 2: >= 50 MB/s).

Generates a build log in memory (compiler, package manager, test runner, docker build and
git lines, ANSI colours, hashes, URLs) with a sprinkling of secret occurrences in the forms
the masker knows: raw, base64, base64 of ``"user:" + secret`` as ``echo -n | base64`` prints
it, URL-encoded in a query string, JSON-escaped, hex, and the lines of multi-line keys; and
base64 of a credentials line wrapped at 76 columns (``base64``) and at 64 (``openssl
base64``), where the encoded secret runs across the line end.

Then it measures, best of ``--repeat`` runs, each over the same 64 KiB chunks:

* ``masker``: one ``SecretMasker.stream()`` fed every chunk, then flushed;
* ``whole-form AC``: the straightforward design, one pyahocorasick automaton with every form
  inserted whole, only searched (``iter``), nothing replaced: what the masker would cost
  without its anchors (see the ``bastion.engine.masking`` docstring);
* ``floor``: what any line-oriented log pipeline does anyway and cannot avoid: slice the
  chunk and split it into lines (``str.splitlines``). It bounds from above what a masker
  written in Python can reach;
* ``naive``: the obvious alternative, one ``str.replace`` per form per chunk (it is not even
  correct: it misses secrets split across chunks and does not merge overlaps). It scans the
  text once per form, so it is measured on the first ``--naive-mb`` MB only (throughput in
  MB/s does not depend on the length).

The credential detector is on (as in production; ``--no-detect`` to compare), and about one
line in 2000 prints a credential nobody declared (a GitHub, GitLab or Slack token, an AWS key
id, an AWS secret key after ``aws_secret_access_key =``, or a whole private key block).
``--json`` makes every secret a JSON document (a service-account key file: project, key id,
e-mail, numeric client id, token, and a private key in one in five), and the secret lines
print one of its leaves instead of the value.

It checks that no secret value survives in the masked output (nor the part of a wrapped
encoding that encodes only the secret, searched for with the line breaks removed), nor an
undeclared credential, prints MB/s (1 MB = 10^6 characters; the log is ASCII apart from a few
secrets, so characters ~ bytes), the ratios, and whether the target is met. Run:
``.venv/bin/python bench/masking_throughput.py --size-mb 100 --secrets 50`` (and
``--secrets 200``; ``--content dump`` for the worst case; ``--json``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import string
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import ahocorasick

from bastion.engine.masking import MIN_SECRET_LENGTH, SecretMasker, secret_forms

CHUNK = 64 * 1024
TARGET_MB_S = 50.0
SECRET_EVERY_LINES = 500  # about one line in 500 prints a secret in some form
CREDENTIAL_EVERY_BATCHES = 4  # and one in 2000 an undeclared credential

_VOCABULARY = (
    "build test install compile link error warning info debug module package version "
    "cache layer image step running done passed failed skipped collecting downloading "
    "resolving fetching extracting generating updating removing creating copying found "
    "requirement already satisfied using cached from src lib main index config utils "
    "server client handler request response timeout retry connection database migration"
)
_WORDS = _VOCABULARY.split()


def _hex(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))


def _log_line(rng: random.Random) -> str:
    word = rng.choice
    number = rng.randint
    kind = number(0, 11)
    if kind == 0:
        return f"Step {number(1, 20)}/{number(20, 40)} : RUN apt-get install -y {word(_WORDS)}"
    if kind == 1:
        return f" ---> Running in {_hex(rng, 12)}"
    if kind == 2:
        return f"#{number(1, 30)} sha256:{_hex(rng, 64)} {number(1, 900)}.{number(0, 9)}MB done"
    if kind == 3:
        path = f"{word(_WORDS)}/{word(_WORDS)}_{word(_WORDS)}.c"
        return f"gcc -O2 -Wall -Wextra -fPIC -Iinclude -c src/{path} -o build/{path[:-2]}.o"
    if kind == 4:
        test = f"tests/unit/test_{word(_WORDS)}.py::test_{word(_WORDS)}_{word(_WORDS)}"
        return f"{test} \x1b[32mPASSED\x1b[0m [{number(0, 100):3d}%]"
    if kind == 5:
        name = f"{word(_WORDS)}-{word(_WORDS)}"
        return (
            f"  Downloading https://files.example.org/packages/{_hex(rng, 2)}/{_hex(rng, 2)}/"
            f"{name}-{number(0, 9)}.{number(0, 30)}.{number(0, 9)}-py3-none-any.whl "
            f"({number(10, 999)} kB)"
        )
    if kind == 6:
        return f"npm WARN deprecated {word(_WORDS)}@{number(0, 9)}.{number(0, 9)}.0: use v2"
    if kind == 7:
        return f"remote: Counting objects: 100% ({number(1, 999)}/{number(1, 999)}), done."
    if kind == 8:
        stamp = f"2024-05-{number(10, 28)}T{number(10, 23)}:{number(10, 59)}:{number(10, 59)}Z"
        return f"{stamp} INFO  [{word(_WORDS)}] {' '.join(rng.choices(_WORDS, k=number(3, 9)))}"
    if kind == 9:
        return f"[{number(1, 99)}/{number(100, 300)}] Compiling {word(_WORDS)} v0.{number(1, 9)}"
    if kind == 10:
        return f'  File "/usr/lib/python3/{word(_WORDS)}.py", line {number(1, 999)}, in run'
    return " ".join(rng.choices(_WORDS, k=number(4, 14)))


def _make_secrets(rng: random.Random, count: int) -> list[str]:
    alnum = string.ascii_letters + string.digits
    secrets: list[str] = []
    for index in range(count):
        kind = index % 5
        if kind == 0:
            secrets.append("ghp_" + "".join(rng.choices(alnum, k=36)))
        elif kind == 1:
            secrets.append("".join(rng.choices(alnum + "+/", k=40)))
        elif kind == 2:
            secrets.append("".join(rng.choices(alnum + "!@#%&*-_=:?", k=rng.randint(12, 24))))
        elif kind == 3:
            secrets.append("AKIA" + "".join(rng.choices(string.ascii_uppercase, k=16)))
        elif index % 25 == 4:  # a multi-line key, now and then
            body = base64.b64encode(rng.randbytes(1190)).decode()
            lines = [body[start : start + 64] for start in range(0, len(body), 64)]
            secrets.append("-----BEGIN KEY-----\n" + "\n".join(lines) + "\n-----END KEY-----\n")
        else:
            secrets.append(_hex(rng, 32))
    return secrets


def _pem(rng: random.Random, label: str) -> str:
    body = base64.b64encode(rng.randbytes(1190)).decode()
    lines = [body[start : start + 64] for start in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _make_json_secrets(rng: random.Random, count: int) -> list[str]:
    """Service-account key files: JSON documents whose leaves are masked one by one."""
    alnum = string.ascii_letters + string.digits
    secrets: list[str] = []
    for index in range(count):
        project = f"project-{_hex(rng, 8)}"
        document: dict[str, object] = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": _hex(rng, 40),
            "client_email": f"ci-{_hex(rng, 6)}@{project}.iam.example.com",
            "client_id": "".join(rng.choices(string.digits, k=21)),
            "token": "".join(rng.choices(alnum, k=32)),
            "account": rng.randint(10**11, 10**12 - 1),
        }
        if index % 5 == 0:
            document["private_key"] = _pem(rng, "PRIVATE KEY")
        secrets.append(json.dumps(document, indent=2))
    return secrets


def _json_leaves(secret: str) -> list[str]:
    document = json.loads(secret)
    return [str(value) for key, value in document.items() if key != "type"]


def _credential_line(rng: random.Random, credentials: list[str]) -> str:
    """A credential nobody declared; ``credentials`` receives what must not survive."""
    alnum = string.ascii_letters + string.digits
    kind = rng.randint(0, 5)
    if kind == 5:
        key = _pem(rng, "RSA PRIVATE KEY")
        credentials.extend(line for line in key.splitlines() if "-----" not in line)
        return "$ cat deploy_key\n" + key.rstrip("\n")
    value = (
        "ghp_" + "".join(rng.choices(alnum, k=36)),
        "glpat-" + "".join(rng.choices(alnum, k=20)),
        "xoxb-"
        + "".join(rng.choices(string.digits, k=12))
        + "-"
        + "".join(rng.choices(alnum, k=24)),
        "AKIA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16)),
        "".join(rng.choices(alnum + "/+", k=40)),
    )[kind]
    credentials.append(value)
    if kind == 4:
        return f"aws_secret_access_key = {value}"
    return f"+ git push https://ci:{value}@git.example.org/acme/web.git"


def _wrapped(rng: random.Random, secret: str, cores: list[str]) -> str:
    """``printf 'machine ... password %s' "$SECRET" | base64``, wrapped at 76 or 64 columns;
    adds to ``cores`` the characters of the encoding that depend on the secret only."""
    head = b"machine git.example.org login ci password "
    raw = secret.encode()
    encoded = base64.b64encode(head + raw + b"\n").decode()
    cores.append(encoded[-(-8 * len(head) // 6) : 8 * (len(head) + len(raw)) // 6])
    width = rng.choice((76, 64))
    return "\n".join(encoded[start : start + width] for start in range(0, len(encoded), width))


def _secret_line(rng: random.Random, secret: str, cores: list[str]) -> str:
    kind = rng.randint(0, 7)
    if kind == 7 and "\n" not in secret.strip():
        return _wrapped(rng, secret, cores)  # two to four lines
    if kind == 0:
        lines = secret.strip().splitlines()
        return f"export TOKEN={secret}" if len(lines) == 1 else rng.choice(lines)
    if kind == 1:
        return "Authorization: Basic " + base64.b64encode(f"ci:{secret}".encode()).decode()
    if kind == 2:
        # echo -n "user:$SECRET" | base64 (unwrapped here)
        return base64.b64encode(("user:" + secret).encode()).decode()
    if kind == 3:
        return f"GET https://api.example.org/v1/items?token={urllib.parse.quote(secret)}&x=1"
    if kind == 4:
        return json.dumps({"event": "config", "password": secret})
    if kind == 5:
        return f"00000010: {secret.encode().hex()}"
    return f"debug: value={secret!s}".replace("\n", " ")


def _dump_line(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return base64.b64encode(rng.randbytes(57)).decode()  # a 76-column base64 dump
    return f"sha256:{rng.randbytes(32).hex()}  layer.tar"


def make_log(
    size_mb: float,
    secrets: list[str],
    content: str = "build",
    seed: int = 2,
    cores: list[str] | None = None,
    credentials: list[str] | None = None,
) -> str:
    """The log; ``cores`` receives what must not survive of the wrapped encodings,
    ``credentials`` the undeclared credentials (none when it is ``None``). The secrets may
    be JSON documents (``--json``): a secret line then prints one of the leaves."""
    rng = random.Random(seed)
    cores = [] if cores is None else cores
    values = [
        leaf
        for secret in secrets
        for leaf in (_json_leaves(secret) if secret.startswith("{") else [secret])
    ]
    # A pool of distinct lines sampled with replacement keeps generation fast.
    make_line = _dump_line if content == "dump" else _log_line
    pool = [make_line(rng) for _ in range(20_000)]
    target = int(size_mb * 1_000_000)
    lines: list[str] = []
    length = 0
    batches = 0
    while length < target:
        batch = rng.choices(pool, k=SECRET_EVERY_LINES - 1)
        batch.append(_secret_line(rng, rng.choice(values), cores))
        batches += 1
        if credentials is not None and batches % CREDENTIAL_EVERY_BATCHES == 0:
            batch[rng.randrange(len(batch))] = _credential_line(rng, credentials)
        lines.extend(batch)
        length += sum(len(line) + 1 for line in batch)
    return "\n".join(lines) + "\n"


def _chunks(text: str) -> list[tuple[int, int]]:
    return [(start, min(start + CHUNK, len(text))) for start in range(0, len(text), CHUNK)]


def run_masker(masker: SecretMasker, text: str) -> str:
    stream = masker.stream()
    parts = [stream.feed(text[start:end]) for start, end in _chunks(text)]
    parts.append(stream.flush())
    return "".join(parts)


def run_floor(text: str) -> int:
    lines = 0
    for start, end in _chunks(text):
        lines += len(text[start:end].splitlines())
    return lines


def whole_form_automaton(forms: list[str]) -> Any:
    automaton = ahocorasick.Automaton(ahocorasick.STORE_LENGTH, ahocorasick.KEY_STRING)
    for form in forms:
        automaton.add_word(form)
    automaton.make_automaton()
    return automaton


def run_whole_form(automaton: Any, text: str) -> int:
    matches = 0
    for start, end in _chunks(text):
        for _ in automaton.iter(text[start:end]):
            matches += 1
    return matches


def run_naive(forms: list[str], text: str) -> int:
    changed = 0
    for start, end in _chunks(text):
        chunk = text[start:end]
        for form in forms:
            chunk = chunk.replace(form, "********")
        changed += len(chunk)
    return changed


def _count_left(cores: list[str], text: str) -> int:
    """How many of ``cores`` occur in ``text``."""
    if not cores:
        return 0
    automaton = whole_form_automaton(cores)
    return len({text[end - length + 1 : end + 1] for end, length in automaton.iter(text)})


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def best_of(repeat: int, action: Callable[[], object], clock: str = "wall") -> float:
    """Best time of ``repeat`` runs on ``clock``: ``wall``, or ``cpu`` (this process's CPU
    time: what the work costs, unlike wall time, hardly changed by other processes sharing
    the cores; the work is single-threaded)."""
    measure = CLOCKS[clock]
    best = float("inf")
    for _ in range(repeat):
        began = measure()
        action()
        best = min(best, measure() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument(
        "--content",
        choices=["build", "dump"],
        default="build",
        help="build: a typical build log; dump: base64 and hex dumps only, the worst case "
        "for the masker's anchors (their characters are common there)",
    )
    parser.add_argument("--secrets", type=int, default=50)
    parser.add_argument(
        "--json", action="store_true", help="secrets are JSON key files, masked leaf by leaf"
    )
    parser.add_argument("--no-detect", action="store_true", help="turn the credential detector off")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: the process's CPU time, for a machine shared with "
        "other work (see best_of)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-mb", type=float, default=4.0)
    args = parser.parse_args()

    rng = random.Random(1)
    secrets = (_make_json_secrets if args.json else _make_secrets)(rng, args.secrets)
    detect = not args.no_detect
    began = time.perf_counter()
    masker = SecretMasker(secrets, detect=detect)
    build_seconds = time.perf_counter() - began
    forms = sorted(set().union(*(secret_forms(secret) for secret in secrets)))
    cores: list[str] = []
    credentials: list[str] = []
    text = make_log(
        args.size_mb,
        secrets,
        args.content,
        cores=cores,
        credentials=credentials if detect else None,
    )
    megabytes = len(text) / 1e6
    naive_text = text[: int(args.naive_mb * 1_000_000)]

    masked = run_masker(masker, text)
    values = [
        leaf for secret in secrets for leaf in (_json_leaves(secret) if args.json else [secret])
    ]
    secret_lines = {
        line.strip()
        for value in values
        for line in value.splitlines()
        if len(line.strip()) >= MIN_SECRET_LENGTH
    }
    # One automaton pass each (a str search per value would scan the log thousands of times).
    leaked = _count_left(sorted(secret_lines), masked)
    credentials_left = _count_left(sorted(set(credentials)), masked)
    wrapped_left = _count_left(sorted(set(cores)), masked.replace("\n", ""))
    masker_s = best_of(args.repeat, lambda: run_masker(masker, text), args.clock)
    automaton = whole_form_automaton(forms)
    whole_s = best_of(args.repeat, lambda: run_whole_form(automaton, text), args.clock)
    floor_s = best_of(args.repeat, lambda: run_floor(text), args.clock)
    naive_s = best_of(args.repeat, lambda: run_naive(forms, naive_text), args.clock)

    masker_mb_s = megabytes / masker_s
    whole_mb_s = megabytes / whole_s
    floor_mb_s = megabytes / floor_s
    naive_mb_s = len(naive_text) / 1e6 / naive_s
    print(
        f"{args.content} log: {megabytes:.1f} MB, {text.count(chr(10))} lines; "
        f"{len(secrets)} {'JSON ' if args.json else ''}secrets, {len(forms)} forms; "
        f"detector {'on' if detect else 'off'}; "
        f"masker built in {build_seconds * 1000:.0f} ms; {os.cpu_count()} CPUs; "
        f"best of {args.repeat} ({args.clock} clock), {CHUNK // 1024} KiB chunks"
    )
    print(f"masker (stream)         : {masker_mb_s:8.1f} MB/s")
    print(
        f"whole-form AC (search)  : {whole_mb_s:8.1f} MB/s  "
        f"masker/whole-form = {masker_mb_s / whole_mb_s:.2f}x"
    )
    print(
        f"floor (slice+splitlines): {floor_mb_s:8.1f} MB/s  "
        f"masker/floor = {masker_mb_s / floor_mb_s:.3f}"
    )
    print(
        f"naive (str.replace/form): {naive_mb_s:8.1f} MB/s  "
        f"masker/naive = {masker_mb_s / naive_mb_s:.1f}x  (on {len(naive_text) / 1e6:.0f} MB)"
    )
    print(
        f"replacements: {masked.count('********')}; secret lines left in the output: "
        f"{leaked}; wrapped encodings: {len(cores)}, left in the output: {wrapped_left}"
    )
    print(
        f"undeclared credentials: {len(set(credentials))} distinct lines, "
        f"{masked.count('[masked: ')} markers; left in the output: {credentials_left}"
    )
    safe = not leaked and not wrapped_left and not credentials_left
    verdict = "met" if masker_mb_s >= TARGET_MB_S and safe else "NOT met"
    print(f"target >= {TARGET_MB_S:.0f} MB/s with no secret left: {verdict}")


if __name__ == "__main__":
    main()
