"""``bastion exec --secret-files``, end to end: the real CLI on a real Docker engine. A step
reads its secret from ``$TOKEN_FILE`` (masked in the output like any secret), has no
``TOKEN`` variable, another step sees no file, and the host's tmpfs keeps nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.plans import BUSYBOX

from bastion.backends._secret_files import PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

BASTION = Path(sys.executable).with_name("bastion")
VALUE = "exec-secret-file-Zq9xKvB7wtLm"

PIPELINE = f"""\
kind: pipeline
name: files
steps:
- name: reader
  image: {BUSYBOX}
  environment:
    TOKEN: {{from_secret: token}}
  commands:
  - echo "variable:$${{TOKEN:-unset}} file:$${{TOKEN_FILE}}"
  - cat "$${{TOKEN_FILE}}"; echo
  - test "$$(cat "$${{TOKEN_FILE}}")" = "{VALUE}" && echo content-ok
  - env | grep -c '^TOKEN=' || true
- name: other
  image: {BUSYBOX}
  commands:
  - ls /run/secrets 2>&1 || echo no-secrets-here
"""


def shm_runs() -> set[str]:
    return {entry.name for entry in Path("/dev/shm").iterdir() if entry.name.startswith(PREFIX)}


def test_exec_with_secret_files(tmp_path: Path) -> None:
    (tmp_path / ".drone.yml").write_text(PIPELINE)
    before = shm_runs()
    done = subprocess.run(
        [str(BASTION), "exec", "--secret-files", "--secret", f"token={VALUE}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert VALUE not in output
    assert "variable:unset file:/run/secrets/TOKEN" in output
    assert "content-ok" in output
    assert "********" in output  # the cat: masked like any secret
    # `env | grep -c '^TOKEN='` printed 0: the step has no TOKEN variable.
    lines = [line.rstrip() for line in output.splitlines()]
    count_line = lines.index(next(line for line in lines if "grep -c" in line)) + 1
    assert lines[count_line].split()[-1] == "0"
    assert "no-secrets-here" in output
    assert "Traceback" not in output
    assert shm_runs() <= before


def test_exec_explain_shows_the_setting(tmp_path: Path) -> None:
    (tmp_path / ".drone.yml").write_text(PIPELINE)
    done = subprocess.run(
        [str(BASTION), "exec", "--explain", "--secret-files", "--secret", f"token={VALUE}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BASTION_SECRET_FILES" in done.stdout
    assert VALUE not in done.stdout + done.stderr
