"""Secrets as files: the setting, the compiled plan (files, ``NAME_FILE``, no variable), names
that cannot be files, and the host side's tmpfs check."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.backends._secret_files import SecretFiles, is_tmpfs
from bastion.engine.backend import BackendError
from bastion.engine.compiler import CompileError, CompileOptions, compile_pipeline
from bastion.engine.hardening import Hardening, load_hardening
from bastion.engine.plan import secrets_as_files
from bastion.spec.context import BuildContext
from bastion.spec.parse import parse

PIPELINE = """\
kind: pipeline
name: ci
environment:
  SHARED: {from_secret: shared}
steps:
- name: deploy
  image: alpine
  environment:
    TOKEN: {from_secret: token}
    PLAIN: visible
- name: test
  image: alpine
  environment:
    PLAIN: visible
"""
SECRETS = {"token": "deploy-token-value", "shared": "shared-secret-value"}


def compile_text(text: str, hardening: Hardening):  # type: ignore[no-untyped-def]
    result = parse(text)
    assert result.ok
    options = CompileOptions(run_id="r1", hardening=hardening)
    return compile_pipeline(result.manifest, 0, BuildContext(), SECRETS, options)


def test_the_setting_is_off_by_default_and_read_from_the_environment() -> None:
    assert Hardening().secret_files is False
    assert load_hardening({}).secret_files is False
    assert load_hardening({"BASTION_SECRET_FILES": "true"}).secret_files is True
    rows = {row[0]: row for row in Hardening(secret_files=True).explain()}
    assert rows["secrets"][2] == "BASTION_SECRET_FILES"
    assert "/run/secrets" in rows["secrets"][1]


def test_with_the_setting_secrets_become_files_and_leave_the_environment() -> None:
    plan = compile_text(PIPELINE, Hardening(secret_files=True))
    deploy = plan.step("deploy").container
    assert dict(deploy.secret_files) == {"TOKEN": SECRETS["token"], "SHARED": SECRETS["shared"]}
    assert "TOKEN" not in deploy.env and "SHARED" not in deploy.env
    assert deploy.env["TOKEN_FILE"] == "/run/secrets/TOKEN"
    assert deploy.env["SHARED_FILE"] == "/run/secrets/SHARED"
    assert deploy.env["PLAIN"] == "visible"
    for value in SECRETS.values():
        assert value not in deploy.env.values()
        assert value not in repr(deploy)
    # The step that references only the pipeline's secret gets only that file.
    test = plan.step("test").container
    assert dict(test.secret_files) == {"SHARED": SECRETS["shared"]}
    assert plan.step("deploy").secret_env == frozenset({"TOKEN", "SHARED"})


def test_without_the_setting_secrets_stay_variables() -> None:
    plan = compile_text(PIPELINE, Hardening())
    deploy = plan.step("deploy").container
    assert deploy.secret_files == {}
    assert deploy.env["TOKEN"] == SECRETS["token"]
    assert "TOKEN_FILE" not in deploy.env


def test_a_variable_name_that_cannot_be_a_file_name_is_refused() -> None:
    text = PIPELINE.replace("TOKEN: {from_secret: token}", '"../../etc/x": {from_secret: token}')
    with pytest.raises(CompileError) as caught:
        compile_text(text, Hardening(secret_files=True))
    message = str(caught.value)
    assert "../../etc/x" in message and "cannot be delivered as files" in message
    assert SECRETS["token"] not in message


def test_secrets_as_files_keeps_other_variables_and_wins_over_a_file_variable() -> None:
    env, files = secrets_as_files({"A": "1", "B": "value-b", "B_FILE": "mine"}, {"B"})
    assert env == {"A": "1", "B_FILE": "/run/secrets/B"}
    assert files == {"B": "value-b"}
    with pytest.raises(ValueError, match="'1X', 'a/b'"):
        secrets_as_files({"a/b": "x", "1X": "y"}, {"a/b", "1X"})


def test_the_host_side_refuses_a_base_that_is_not_a_tmpfs(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"30 22 0:27 / {tmp_path}/shm rw - tmpfs tmpfs rw\n"
        f"31 30 8:1 / {tmp_path}/shm/disk rw - ext4 /dev/sda2 rw\n"
    )
    (tmp_path / "shm" / "disk").mkdir(parents=True)
    assert is_tmpfs(tmp_path / "shm", mountinfo)
    assert not is_tmpfs(tmp_path / "shm" / "disk", mountinfo)
    assert not is_tmpfs(tmp_path, mountinfo)
    on_disk = SecretFiles("host", (tmp_path / "shm" / "disk", tmp_path), mountinfo=mountinfo)
    with pytest.raises(BackendError, match="no tmpfs was found"):
        on_disk.base()
    assert SecretFiles("host", (tmp_path, tmp_path / "shm"), mountinfo=mountinfo).base() == (
        tmp_path / "shm"
    )


def test_dev_shm_is_a_tmpfs_here() -> None:
    # The docker contract cases rely on it; a host without one gets the error above.
    assert is_tmpfs(Path("/dev/shm"))
