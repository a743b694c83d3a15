"""End-to-end tests of ``bastion lint``: the real CLI as a subprocess; no Docker needed.

Each test writes a ``.drone.yml`` into ``tmp_path`` and runs the ``bastion`` console script
(the one next to ``sys.executable``) on it. Every run asserts that no Python traceback
reached stdout or stderr, and that the command ended well within its time limit: hostile
files must be refused quickly, not chewed on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

BASTION = Path(sys.executable).with_name("bastion")
REPO_ROOT = Path(__file__).resolve().parents[2]
TRUST_HINT = "bastion exec --trusted for a local run"

# file:line:col: severity [kind] path: message   (the path is absent for whole-file problems)
DIAGNOSTIC = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning) "
    r"\[(?P<kind>[a-z]+)\](?: (?P<path>[^ :]+):)? (?P<message>.+)$"
)


@dataclass(frozen=True)
class LintResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ bastion {' '.join(self.args)}  (exit {self.returncode})\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def lint(*args: str, cwd: Path, timeout: float = 60.0) -> LintResult:
    """Run ``bastion lint ARGS`` in ``cwd``; fail on a hang or a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "DRONE_"))}
    env.update(COLUMNS="1000", NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8")
    try:
        done = subprocess.run(
            [str(BASTION), "lint", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"bastion lint {' '.join(args)} did not end within {timeout:g} s")
    result = LintResult(("lint", *args), done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr, f"a traceback was printed\n{result}"
    return result


def line_of(text: str, needle: str) -> int:
    """The 1-based number of the only line of ``text`` that contains ``needle``."""
    numbers = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(numbers) == 1, f"{needle!r} is on lines {numbers}"
    return numbers[0]


def diagnostics(result: LintResult) -> list[dict[str, str]]:
    """Every line of the text output, parsed; fails on a line that is not a diagnostic."""
    parsed = []
    for line in result.stdout.splitlines():
        match = DIAGNOSTIC.match(line)
        assert match, f"not a diagnostic line: {line!r}\n{result}"
        parsed.append(match.groupdict())
    return parsed


# -- a valid file ------------------------------------------------------------------------------

VALID = """\
kind: pipeline
type: docker
name: default

services:
  - name: db
    image: bastion/busybox:latest
    commands: [exec httpd -f -p 8080]

steps:
  - name: build
    image: bastion/python:3.11
    environment:
      TOKEN:
        from_secret: token
    commands:
      - python3 -m compileall .
  - name: test
    image: bastion/busybox:latest
    depends_on: [build]
    commands: [wget -q -O - http://db:8080/]
    when:
      branch: [main]
      event: [push, pull_request]
"""


@pytest.mark.parametrize("where", ["written", "greeter-demo"])
def test_a_valid_file_exits_0_and_prints_nothing(tmp_path: Path, where: str) -> None:
    if where == "written":
        (tmp_path / ".drone.yml").write_text(VALID, encoding="utf-8")
        result = lint(cwd=tmp_path)
    else:
        result = lint(".drone.yml", cwd=REPO_ROOT / "examples" / "greeter")

    assert result.returncode == 0, str(result)
    assert result.stdout == "", str(result)
    assert result.stderr == "", str(result)


# -- a file with several problems --------------------------------------------------------------

SEVERAL = """\
kind: pipeline
type: docker
name: build

volumes:
  - name: cache
    host:
      path: /var/cache/build

steps:
  - name: compile
    image: bastion/busybox:latest
    privileged: true
    colour: blue
    commands: [make]
  - name: publish
    image: bastion/busybox:latest
    network_mode: host
    volumes:
      - name: cache
        path: /cache
    commands: [make publish]
---
kind: pipeline
type: docker
name: deploy

steps:
  - name: ship
    image: bastion/busybox:latest
    devices:
      - name: /dev/kvm
        path: /dev/kvm
    extra_hosts: ["registry:10.0.0.1"]
    commands: [ship]
"""


def _expected_several() -> set[tuple[int, str, str, str]]:
    """(line, severity, kind, path) of every problem of SEVERAL."""

    def at(needle: str) -> int:
        return line_of(SEVERAL, needle)

    return {
        (at("    host:"), "error", "policy", "volumes[0].host"),
        (at("privileged: true"), "error", "policy", "steps[0].privileged"),
        (at("colour: blue"), "warning", "unknown", "steps[0].colour"),
        (at("network_mode: host"), "error", "policy", "steps[1].network_mode"),
        (at("      - name: cache"), "error", "policy", "steps[1].volumes[0]"),
        (at("devices:"), "error", "policy", "steps[0].devices"),
        (at("extra_hosts:"), "error", "policy", "steps[0].extra_hosts"),
    }


def test_every_problem_of_a_file_is_printed_with_file_line_column_kind_and_path(
    tmp_path: Path,
) -> None:
    (tmp_path / ".drone.yml").write_text(SEVERAL, encoding="utf-8")

    result = lint(".drone.yml", cwd=tmp_path)

    assert result.returncode == 2, str(result)
    assert result.stderr == "", str(result)
    found = diagnostics(result)
    assert {d["file"] for d in found} == {".drone.yml"}, str(result)
    assert {
        (int(d["line"]), d["severity"], d["kind"], d["path"]) for d in found
    } == _expected_several(), str(result)
    assert len(found) == len(_expected_several()), str(result)  # each problem once
    by_path = {d["path"]: d for d in found}
    assert by_path["steps[0].privileged"]["column"] == "5", str(result)
    assert "step 'compile'" in by_path["steps[0].privileged"]["message"], str(result)
    assert TRUST_HINT in by_path["steps[0].privileged"]["message"], str(result)
    assert "step 'publish'" in by_path["steps[1].network_mode"]["message"], str(result)
    assert "step 'ship'" in by_path["steps[0].devices"]["message"], str(result)
    assert "unknown field 'colour'" in by_path["steps[0].colour"]["message"], str(result)
    lines = [int(d["line"]) for d in found]
    assert lines == sorted(lines), str(result)  # in file order


def test_json_output_has_the_same_problems_with_line_column_path_and_kind(
    tmp_path: Path,
) -> None:
    (tmp_path / ".drone.yml").write_text(SEVERAL, encoding="utf-8")

    text = lint(".drone.yml", cwd=tmp_path)
    result = lint("--format", "json", ".drone.yml", cwd=tmp_path)

    assert result.returncode == 2, str(result)
    problems = json.loads(result.stdout)
    assert isinstance(problems, list), str(result)
    for problem in problems:
        assert isinstance(problem["line"], int) and problem["line"] >= 1, problem
        assert isinstance(problem["column"], int) and problem["column"] >= 1, problem
        assert problem["file"] == ".drone.yml", problem
        assert problem["message"], problem
    assert {
        (p["line"], p["severity"], p["kind"], p["path"]) for p in problems
    } == _expected_several(), str(result)
    # The same problems as the text output, at the same places.
    assert [
        (str(p["line"]), str(p["column"]), p["kind"], p["path"], p["message"]) for p in problems
    ] == [(d["line"], d["column"], d["kind"], d["path"], d["message"]) for d in diagnostics(text)]


def test_policy_problems_are_reported_along_with_errors_elsewhere_in_the_file(
    tmp_path: Path,
) -> None:
    text = """\
kind: pipeline
type: docker
name: build
steps:
  - name: compile
    image: 42
---
kind: pipeline
type: docker
name: release
steps:
  - name: push
    image: bastion/busybox:latest
    privileged: true
"""
    (tmp_path / ".drone.yml").write_text(text, encoding="utf-8")

    result = lint(cwd=tmp_path)

    assert result.returncode == 2, str(result)
    paths = {(d["kind"], d["path"]) for d in diagnostics(result)}
    assert ("schema", "steps[0].image") in paths, str(result)
    assert ("policy", "steps[0].privileged") in paths, str(result)


# -- trust -------------------------------------------------------------------------------------

SOCKET_AND_PRIVILEGED = """\
kind: pipeline
type: docker
name: default
volumes:
  - name: sock
    host:
      path: /var/run/docker.sock
steps:
  - name: build
    image: bastion/busybox:latest
    privileged: true
    volumes:
      - name: sock
        path: /var/run/docker.sock
    commands: [docker ps]
"""


def test_trusted_lifts_the_privileged_refusal_but_not_the_docker_socket_one(
    tmp_path: Path,
) -> None:
    (tmp_path / ".drone.yml").write_text(SOCKET_AND_PRIVILEGED, encoding="utf-8")

    untrusted = lint(cwd=tmp_path)
    trusted = lint("--trusted", cwd=tmp_path)

    assert untrusted.returncode == 2, str(untrusted)
    untrusted_paths = {d["path"] for d in diagnostics(untrusted)}
    assert {
        "steps[0].privileged",
        "volumes[0].host",
        "volumes[0].host.path",
        "steps[0].volumes[0]",
    } <= untrusted_paths, str(untrusted)

    assert trusted.returncode == 2, str(trusted)
    (socket,) = diagnostics(trusted)
    assert socket["path"] == "volumes[0].host.path", str(trusted)
    assert socket["line"] == str(line_of(SOCKET_AND_PRIVILEGED, "    host:") + 1)
    assert socket["kind"] == "policy" and socket["severity"] == "error", str(trusted)
    assert "/var/run/docker.sock" in socket["message"], str(trusted)
    assert "trusted or not" in socket["message"], str(trusted)
    assert "privileged" not in trusted.stdout, str(trusted)


# -- hostile files -----------------------------------------------------------------------------


def _alias_bomb() -> str:
    """The "billion laughs": nine levels of nine aliases each, 9**9 values once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _deep_sequences() -> str:
    return "kind: pipeline\nname: deep\nsteps: " + "[" * 10_000 + "]" * 10_000 + "\n"


def _deep_mappings() -> str:
    return "kind: pipeline\nname: deep\nsteps: " + "{a: " * 10_000 + "b" + "}" * 10_000 + "\n"


def _two_megabytes() -> str:
    padding = "\n".join(f"# {'x' * 98}" for _ in range(21_000))  # 2.1 MB of comments
    return f"kind: pipeline\ntype: docker\nname: big\n{padding}\nsteps: []\n"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("make", "words"),
    [
        pytest.param(_alias_bomb, ["[limit]", "alias"], id="alias-bomb"),
        pytest.param(_deep_sequences, ["[limit]", "nested deeper than"], id="10k-sequences"),
        pytest.param(_deep_mappings, ["[limit]", "nested deeper than"], id="10k-mappings"),
        pytest.param(_two_megabytes, ["[limit]", "bytes; the limit is"], id="2-MB"),
    ],
)
def test_a_hostile_file_is_refused_quickly_with_a_clear_message(
    tmp_path: Path, make: Callable[[], str], words: list[str]
) -> None:
    (tmp_path / ".drone.yml").write_text(make(), encoding="utf-8")

    result = lint(cwd=tmp_path, timeout=30)
    as_json = lint("--format", "json", cwd=tmp_path, timeout=30)

    assert result.returncode == 2, str(result)
    (problem,) = diagnostics(result)
    assert problem["file"] == ".drone.yml", str(result)
    for word in words:
        assert word in result.stdout, f"{word!r} missing\n{result}"
    assert as_json.returncode == 2, str(as_json)
    (entry,) = json.loads(as_json.stdout)
    assert entry["kind"] == "limit", str(as_json)


# -- bad invocations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["missing.yml"], ["missing.yml: no such file"], id="missing-file"),
        pytest.param(["."], [".: is a directory"], id="directory"),
        pytest.param(["--format", "yaml"], ["--format"], id="bad-format"),
    ],
)
def test_a_bad_invocation_exits_2_with_a_message(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    (tmp_path / ".drone.yml").write_text(VALID, encoding="utf-8")

    result = lint(*args, cwd=tmp_path)

    assert result.returncode == 2, str(result)
    for word in words:
        assert word in result.stderr, f"{word!r} missing\n{result}"
