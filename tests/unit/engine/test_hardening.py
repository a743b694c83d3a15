"""Hardening settings: defaults, overrides, Drone aliases, and values that are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.engine.hardening import (
    DEFAULT_CAPABILITIES,
    DROPPED_FROM_DOCKER_DEFAULT,
    Hardening,
    SettingsError,
    load_hardening,
)


def test_defaults_are_hardened(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASTION_PIDS_LIMIT", "BASTION_MEMORY_LIMIT", "DRONE_MEMORY_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    h = load_hardening()
    assert h == Hardening()
    assert h.no_new_privileges
    assert h.security_opt() == ("no-new-privileges:true",)
    assert not set(DROPPED_FROM_DOCKER_DEFAULT) & set(h.cap_add)
    assert h.cap_add == DEFAULT_CAPABILITIES
    assert h.pids_limit > 0
    assert h.mem_limit > 0
    assert h.cpus > 0
    rows = {row[0]: row for row in h.explain()}
    assert rows["pids limit"][2] == "BASTION_PIDS_LIMIT"
    assert "NET_RAW" not in rows["capabilities"][1]


def test_environment_overrides_and_drone_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_PIDS_LIMIT", "64")
    monkeypatch.setenv("DRONE_MEMORY_LIMIT", str(256 << 20))
    monkeypatch.setenv("BASTION_READ_ONLY_ROOTFS", "true")
    monkeypatch.setenv("BASTION_CPUS", "0.5")
    h = load_hardening()
    assert h.pids_limit == 64
    assert h.mem_limit == 256 << 20
    assert h.read_only_rootfs
    assert h.cpus == 0.5


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BASTION_PIDS_LIMIT", "lots", "BASTION_PIDS_LIMIT"),
        ("BASTION_PIDS_LIMIT", "0", "BASTION_PIDS_LIMIT"),
        ("BASTION_SECCOMP", "unconfined", "unconfined"),
        ("BASTION_CAP_ADD", "CHOWN,SYS_ADMIN", "SYS_ADMIN"),
        ("BASTION_CAP_ADD", "all", "ALL"),
        ("BASTION_SECCOMP", "/does/not/exist.json", "/does/not/exist.json"),
    ],
)
def test_unsafe_or_invalid_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=expected):
        load_hardening()


def test_custom_seccomp_profile_is_passed_as_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    profile = tmp_path / "seccomp.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO"}))
    monkeypatch.setenv("BASTION_SECCOMP", str(profile))
    h = load_hardening()
    (no_new_privs, seccomp) = h.security_opt()
    assert no_new_privs == "no-new-privileges:true"
    assert json.loads(seccomp.removeprefix("seccomp=")) == {"defaultAction": "SCMP_ACT_ERRNO"}


@pytest.mark.parametrize("name", ["BASTION_MEMORY_LIMIT", "DRONE_MEMORY_LIMIT"])
def test_an_invalid_memory_limit_names_the_variable_it_came_from(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for other in ("BASTION_MEMORY_LIMIT", "DRONE_MEMORY_LIMIT"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "lots")
    with pytest.raises(SettingsError, match=f"^{name}: Input should be a valid integer"):
        load_hardening()


def test_bastion_memory_limit_wins_over_drones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_MEMORY_LIMIT", str(256 << 20))
    monkeypatch.setenv("DRONE_MEMORY_LIMIT", str(512 << 20))
    assert load_hardening().mem_limit == 256 << 20


def test_variable_names_are_not_case_sensitive_and_errors_are_collected() -> None:
    environ = {"bastion_pids_limit": "64", "Bastion_Cpus": "0", "BASTION_SECCOMP": "unconfined"}
    with pytest.raises(SettingsError) as raised:
        load_hardening(environ)
    message = str(raised.value)
    assert message.startswith("BASTION_SECCOMP: unconfined turns the system-call filter off")
    assert message.endswith("; BASTION_CPUS: Input should be greater than 0")
    assert load_hardening({"bastion_pids_limit": "64"}).pids_limit == 64


def test_loading_the_settings_does_not_import_pydantic_settings() -> None:
    # pydantic-settings costs every `bastion exec` about 20 ms of start-up (asyncio, ...).
    code = (
        "import sys; from bastion.engine.hardening import load_hardening; load_hardening(); "
        "print('pydantic_settings' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
